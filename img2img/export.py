"""Export a trained generator to ONNX for the inference runtime.

The ONNX graph and its metadata follow `img2img.contract`. A generator declares the graph's
input layout (`net.inputs`, one of `contract.INPUT_LAYOUTS`), its `scale`, `multiple_of`,
`min_size` and `input_range`; the graph takes and gives RGB in [0, 1] whatever the net's own
range and channels. Batch, height and width are dynamic; mapping to the net's own input range,
pasting a fill into the hole only, and the final clamp are inside the graph. The metadata
(`ModelInfo`) takes the net's figures from the net (`describe_net`), and a task adds only its
own fields (task name, data, license, task-specific keys).

Each model can also be written as a float16 variant (`model.fp16.onnx`): weights and activations
in float16, the graph's input and output still float32. Where float16 overflows, the variant
outputs NaN rather than a clamped black or white pixel, so the runtime can detect it and rerun
that tile with the float32 model.
"""

from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from img2img import __version__
from img2img.contract import (
    IMAGE,
    IMAGE_MASK,
    IMAGE_STYLES,
    LATENT,
    LATENT_LABEL,
    ModelInfo,
    precision_variant,
    variant_precision,
)
from img2img.engine.checkpoint import LoadedGenerator, load_generator
from img2img.errors import ModelError, OutputError
from img2img.files.atomic import write_atomically

PARITY_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}


# ITU-R BT.601 luma weights: how an RGB input becomes the input of a gray-domain net.
_LUMA = (0.299, 0.587, 0.114)


class ExportWrapper(nn.Module):
    """Maps [0, 1] float32 RGB input to the net's range, channels and dtype, runs it, maps back
    and clamps, so every exported graph takes and gives RGB in [0, 1].

    A net with one input channel gets the BT.601 luma of the input; one with one output channel
    has its output repeated on R, G and B. A net whose inputs are IMAGE_MASK (inpainting) is
    called as net(image, mask), and its output is used inside the hole only: outside it the graph
    returns the input itself. With a float16 net the output is float32 again, and any non-finite value
    (float16 overflow) is passed on as NaN instead of being clamped into a valid-looking pixel.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.low, self.high = (float(v) for v in net.input_range)
        self.dtype = next(net.parameters()).dtype
        self.gray_in = getattr(net, "in_channels", 3) == 1
        self.gray_out = getattr(net, "out_channels", 3) == 1
        self.takes_mask = net.inputs == IMAGE_MASK
        self.register_buffer("luma", torch.tensor(_LUMA).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        source = image
        span = self.high - self.low
        if self.gray_in:
            image = (image * self.luma).sum(dim=1, keepdim=True)
        if (self.low, self.high) != (0.0, 1.0):
            image = image * span + self.low
        if self.takes_mask:
            output = self.net(image.to(self.dtype), mask.to(self.dtype)).float()
        else:
            output = self.net(image.to(self.dtype)).float()
        if (self.low, self.high) != (0.0, 1.0):
            output = (output - self.low) / span
        if self.gray_out:
            output = output.expand(-1, 3, -1, -1)
        if self.takes_mask:
            output = output * mask + source * (1.0 - mask)
        return _finish(output, self.dtype)

    def example_inputs(self, image: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The graph's inputs by name for an (N, 3, H, W) image: the image, and a random hole
        mask for a net that takes one."""
        inputs = {"input": image}
        if self.takes_mask:
            inputs["mask"] = (torch.rand(image.shape[0], 1, *image.shape[2:], generator=generator) > 0.5).float()
        return inputs

    def dynamic_shapes(self, image_shape: dict[int, Any], net: nn.Module) -> list[dict[int, Any]]:
        """The dynamic dimensions of each input, in `example_inputs` order."""
        return [image_shape] * (2 if self.takes_mask else 1)


class StyleExportWrapper(nn.Module):
    """An arbitrary-style net (AdaIN) as a graph of four inputs: content image (N, 3, H, W),
    style images (K, 3, h, w), both RGB in [0, 1], style weights (K,) (summing to 1: a mix of
    the styles' feature statistics; one style takes [1.0]) and alpha (1,) in [0, 1] (0 gives
    the content back through the decoder). Output (N, 3, H, W) in [0, 1]."""


    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.dtype = next(net.parameters()).dtype

    def forward(
        self, image: torch.Tensor, style: torch.Tensor, style_weights: torch.Tensor, alpha: torch.Tensor
    ) -> torch.Tensor:
        dtype = self.dtype
        output = self.net.blend(image.to(dtype), style.to(dtype), style_weights.to(dtype), alpha.to(dtype))
        return _finish(output.float(), dtype)

    def example_inputs(self, image: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        multiple = int(self.net.multiple_of)
        side = max(2, -(-int(self.net.min_size) // multiple)) * multiple
        weights = torch.rand(2, generator=generator) + 0.1
        return {
            "input": image,
            # A style of another size and shape than the content: the graph must not tie them.
            "style": torch.rand(2, 3, side + multiple, side + 2 * multiple, generator=generator),
            "style_weights": weights / weights.sum(),
            "alpha": torch.rand(1, generator=generator),
        }

    def dynamic_shapes(self, image_shape: dict[int, Any], net: nn.Module) -> list[dict[int, Any] | None]:
        multiple = int(net.multiple_of)
        blocks = {"min": max(2, -(-int(net.min_size) // multiple))}
        styles = torch.export.Dim("styles", min=1)
        style_shape = {
            0: styles,
            2: multiple * torch.export.Dim("style_height_blocks", **blocks),
            3: multiple * torch.export.Dim("style_width_blocks", **blocks),
        }
        return [image_shape, style_shape, {0: styles}, None]


class LatentExportWrapper(nn.Module):
    """A noise-to-image generator as a graph: "z" float32 (N, latent_dim) and, for a
    class-conditional net, "label" int64 (N,) in [0, num_classes); output (N, 3, R, R) RGB in
    [0, 1]. Truncation and interpolation act on z, outside the graph."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.dtype = next(net.parameters()).dtype
        self.conditional = net.inputs == LATENT_LABEL

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        output = self.net(z.to(self.dtype), label if self.conditional else None).float()
        return _finish((output + 1.0) / 2.0, self.dtype)

    def example_inputs(self, image: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Latents (and labels) for one sample more than `image` has: a batch of one would be
        traced as a constant, and the parity check then runs another batch size than the trace."""
        count = image.shape[0] + 1
        inputs = {"z": torch.randn(count, self.net.latent_dim, generator=generator)}
        if self.conditional:
            inputs["label"] = torch.randint(self.net.num_classes, (count,), generator=generator)
        return inputs

    def dynamic_shapes(self, image_shape: dict[int, Any], net: nn.Module) -> list[dict[int, Any]]:
        return [{0: image_shape[0]}] * (2 if self.conditional else 1)


def _finish(output: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Clamps a float32 output to [0, 1]; a float16 net's non-finite values (overflow) become NaN
    rather than a valid-looking pixel, so the runtime can rerun that part in float32."""
    if dtype == torch.float32:
        return output.clamp(0.0, 1.0)
    return torch.where(torch.isfinite(output), output.clamp(0.0, 1.0), torch.nan)


# The wrapper that builds each input layout's graph around a net.
WRAPPERS: dict[tuple[str, ...], type[nn.Module]] = {
    IMAGE: ExportWrapper,
    IMAGE_MASK: ExportWrapper,
    IMAGE_STYLES: StyleExportWrapper,
    LATENT: LatentExportWrapper,
    LATENT_LABEL: LatentExportWrapper,
}


def export_wrapper(net: nn.Module) -> ExportWrapper | StyleExportWrapper | LatentExportWrapper:
    """The wrapper that gives `net` the graph of the input layout it declares (`net.inputs`).

    Raises:
        ModelError: the net declares no layout, or one without a graph.
    """
    layout = tuple(getattr(net, "inputs", ()))
    if layout not in WRAPPERS:
        layouts = ", ".join(repr(",".join(known)) for known in WRAPPERS)
        raise ModelError(
            f"{type(net).__name__} declares graph inputs {','.join(layout) or 'none'}; an exported net sets "
            f"`inputs` to one of {layouts} (img2img.contract)"
        )
    return WRAPPERS[layout](net)


def describe_net(net: nn.Module, *, config: dict[str, Any] | None = None, **fields: Any) -> ModelInfo:
    """The descriptor of `net`'s exported graph: its scale, size requirements and input layout as
    the net declares them, RGB [0, 1] at the graph's edges, this img2img's version and the
    resolved training `config`; `fields` are the task's own (task, data, license, domains, ...)."""
    return ModelInfo(
        scale=int(net.scale),
        # The graph takes and gives RGB whatever the net's own channels (a gray net sees the luma).
        channels=3,
        multiple_of=int(net.multiple_of),
        min_size=int(net.min_size),
        inputs=tuple(net.inputs),
        version=__version__,
        config=config or {},
        **fields,
    )


def export_onnx(
    net: nn.Module,
    output: Path,
    *,
    info: ModelInfo,
    opset: int = 18,
    parity_size: tuple[int, int] | None = None,
    precision: str = "fp32",
) -> float:
    """Writes `net` (eval mode, CPU) as ONNX at `output`, with `info` (see `describe_net`) as its
    metadata; returns the parity max abs error.

    `precision` "fp16" writes the float16 variant (the net is copied, not changed), to a file
    named as `contract.precision_variant` names it. The file is
    checked with onnx.checker and compared with the float32 PyTorch net on a random image whose
    size differs from the traced one; an error above PARITY_TOLERANCE[precision] raises
    ModelError and writes nothing.
    """
    if opset < 17:
        raise ModelError(f"opset {opset} is too old: the runtime needs opset 17 or newer")
    output = Path(output)
    if output.suffix != ".onnx":
        raise OutputError(f"{output} must end in .onnx")
    if precision not in PARITY_TOLERANCE:
        raise ModelError(f"unknown precision {precision!r}; choose fp32 or fp16")
    if precision_variant(output, precision) != output:
        # The runtime finds each variant by its name and refuses a file named as the other one.
        raise OutputError(
            f"{output} is named as the {variant_precision(output)} variant; "
            "name fp16 models *.fp16.onnx and fp32 ones *.onnx"
        )
    reference = export_wrapper(net.float().cpu().eval()).eval()
    wrapper = reference if precision == "fp32" else export_wrapper(copy.deepcopy(net).half()).eval()
    multiple = int(net.multiple_of)
    # Sizes count in blocks of `multiple` pixels; a net with a larger minimum (reflection padding
    # deep down) gets a traced example and a dynamic range that respect it.
    min_blocks = max(1, -(-int(net.min_size) // multiple))
    if multiple > 1:
        example = torch.rand(1, 3, max(4, min_blocks) * multiple, max(6, min_blocks + 2) * multiple)
    else:
        example = torch.rand(1, 3, 32, 48)
    batch, height, width = (torch.export.Dim(n, min=1) for n in ("batch", "height", "width"))
    if multiple > 1:
        block_range = {"min": min_blocks} if min_blocks > 1 else {}
        height = multiple * torch.export.Dim("height_blocks", **block_range)
        width = multiple * torch.export.Dim("width_blocks", **block_range)
    example_inputs = wrapper.example_inputs(example, torch.Generator().manual_seed(1))
    dynamic_shapes = wrapper.dynamic_shapes({0: batch, 2: height, 3: width}, net)
    with tempfile.TemporaryDirectory() as scratch:
        traced = Path(scratch) / "model.onnx"
        program = torch.onnx.export(
            wrapper,
            tuple(example_inputs.values()),
            dynamo=True,
            opset_version=opset,
            input_names=list(example_inputs),
            output_names=["output"],
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            verbose=False,
        )
        program.save(str(traced))
        model = onnx.load(str(traced))
    onnx.helper.set_model_props(model, replace(info, precision=precision).to_metadata())
    onnx.checker.check_model(model, full_check=True)

    if parity_size is None:
        parity_size = (max(3, min_blocks) * multiple, max(5, min_blocks + 1) * multiple) if multiple > 1 else (37, 29)
    error = parity_error(reference, model.SerializeToString(), parity_size)
    if not error < PARITY_TOLERANCE[precision]:
        raise ModelError(
            f"{precision} ONNX output differs from PyTorch by {error:.2e} "
            f"(limit {PARITY_TOLERANCE[precision]}); not written"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(output, lambda temp: onnx.save(model, str(temp)))
    return error


def parity_error(wrapper: nn.Module, model_bytes: bytes, size: tuple[int, int], batch: int = 2) -> float:
    """Max abs difference between PyTorch and onnxruntime (CPU) on one random batch (with the
    wrapper's other inputs: a random hole mask, random styles)."""
    from img2img.runtime.onnx_model import import_onnxruntime

    onnxruntime = import_onnxruntime()

    generator = torch.Generator().manual_seed(0)
    inputs = wrapper.example_inputs(torch.rand(batch, 3, *size, generator=generator), generator)
    with torch.no_grad():
        expected = wrapper(*inputs.values()).numpy()
    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    (actual,) = session.run(["output"], {name: value.numpy() for name, value in inputs.items()})
    if actual.shape != expected.shape:
        raise ModelError(f"ONNX output shape {actual.shape} differs from PyTorch's {expected.shape}")
    return float(np.abs(actual - expected).max())


def export_net(generator: LoadedGenerator, direction: str | None = None) -> tuple[nn.Module, ModelInfo]:
    """The net an export writes and its descriptor (without a name).

    `direction` picks one net of a two-way run ("a2b" or "b2a" for CycleGAN); one-way tasks
    take None.

    Raises:
        ModelError: the direction is missing, unknown or given to a one-way task.
    """
    from img2img.engine.config import config_from_dict, config_to_dict
    from img2img.tasks import TASKS

    task = TASKS.get(generator.task)
    config = config_from_dict(task.config_class, generator.config)
    nets = task.export_nets(generator.net)
    key = direction or ""
    if key not in nets:
        choices = ", ".join(name for name in nets if name) or "none (a one-way model)"
        raise ModelError(
            f"a {generator.task} run exports direction {choices}; "
            + ("pass --direction" if any(nets) else "drop --direction")
        )
    net = nets[key]
    return net, describe_net(net, config=config_to_dict(config), **task.export_fields(config, net, key))


def export_generator(
    generator: LoadedGenerator, output: Path, *, opset: int = 18, fp16: bool = False, direction: str | None = None
) -> dict[str, float]:
    """Exports a rebuilt generator (one direction of a two-way run) with its task's metadata
    (named after the file), and with `fp16` its float16 variant beside it; returns the parity
    error per precision."""
    net, info = export_net(generator, direction)
    info = replace(info, name=output.stem)
    errors = {"fp32": export_onnx(net, output, info=info, opset=opset)}
    if fp16:
        fp16_output = precision_variant(output, "fp16")
        errors["fp16"] = export_onnx(net, fp16_output, info=info, opset=opset, precision="fp16")
    return errors


def export_command(
    *,
    run: Path,
    output: Path,
    checkpoint: str = "last",
    opset: int = 18,
    fp16: bool = False,
    direction: str | None = None,
) -> dict[str, float]:
    """`img2img export RUN -o model.onnx [--fp16]`: exports the EMA generator of a run's checkpoint."""
    run = Path(run)
    source = run / "checkpoints" / f"{checkpoint}.pt" if checkpoint in ("last", "best") else Path(checkpoint)
    if not source.is_file():
        raise ModelError(f"no checkpoint at {source}; pass the run folder given to `img2img train --out`")
    started = time.perf_counter()
    output = Path(output)
    errors = export_generator(load_generator(source), output, opset=opset, fp16=fp16, direction=direction)
    written = output if not fp16 else f"{output} and {precision_variant(output, 'fp16')}"
    parity = ", ".join(f"{precision} {error:.2e}" for precision, error in errors.items())
    print(f"exported {source} -> {written} (opset {opset}, parity max abs error {parity}, "
          f"{time.perf_counter() - started:.1f} s)")
    return errors
