"""Export a trained generator to ONNX for the inference runtime.

The ONNX graph follows one contract for every task (see `img2img.runtime`):
input "input" float32 (N, 3, H, W) RGB in [0, 1] (and, for nets that take a hole mask, "mask"
float32 (N, 1, H, W) in {0, 1}, 1 = fill), output "output" float32 (N, 3, H*s, W*s) in [0, 1];
batch, height and width are dynamic; mapping to the net's own input range, pasting a fill into
the hole only, and the final clamp are inside the graph; metadata_props say task, scale,
channels, multiple_of, range, data, license, version and the resolved training config.

Each model can also be written as a float16 variant (`model.fp16.onnx`): weights and activations
in float16, the graph's input and output still float32. Where float16 overflows, the variant
outputs NaN rather than a clamped black or white pixel, so the runtime can detect it and rerun
that tile with the float32 model.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from img2img.engine.checkpoint import LoadedGenerator, load_generator
from img2img.errors import ModelError, OutputError

PARITY_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
FP16_SUFFIX = ".fp16.onnx"


# ITU-R BT.601 luma weights: how an RGB input becomes the input of a gray-domain net.
_LUMA = (0.299, 0.587, 0.114)


class ExportWrapper(nn.Module):
    """Maps [0, 1] float32 RGB input to the net's range, channels and dtype, runs it, maps back
    and clamps, so every exported graph takes and gives RGB in [0, 1].

    A net with one input channel gets the BT.601 luma of the input; one with one output channel
    has its output repeated on R, G and B. A net that `takes_mask` (inpainting) is called as
    net(image, mask), and its output is used inside the hole only: outside it the graph returns
    the input itself. With a float16 net the output is float32 again, and any non-finite value
    (float16 overflow) is passed on as NaN instead of being clamped into a valid-looking pixel.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.low, self.high = (float(v) for v in net.input_range)
        self.dtype = next(net.parameters()).dtype
        self.gray_in = getattr(net, "in_channels", 3) == 1
        self.gray_out = getattr(net, "out_channels", 3) == 1
        self.takes_mask = getattr(net, "takes_mask", False)
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
        if self.dtype == torch.float32:
            return output.clamp(0.0, 1.0)
        return torch.where(torch.isfinite(output), output.clamp(0.0, 1.0), torch.nan)


def export_onnx(
    net: nn.Module,
    output: Path,
    *,
    metadata: dict[str, str],
    opset: int = 18,
    parity_size: tuple[int, int] | None = None,
    precision: str = "fp32",
) -> float:
    """Writes `net` (eval mode, CPU) as ONNX at `output`; returns the parity max abs error.

    `precision` "fp16" writes the float16 variant (the net is copied, not changed). The file is
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
    reference = ExportWrapper(net.float().cpu().eval()).eval()
    wrapper = reference if precision == "fp32" else ExportWrapper(copy.deepcopy(net).half()).eval()
    metadata = {**metadata, "precision": precision}
    multiple = int(net.multiple_of)
    # Sizes count in blocks of `multiple` pixels; a net with a larger minimum (reflection padding
    # deep down) gets a traced example and a dynamic range that respect it.
    min_blocks = max(1, -(-int(getattr(net, "min_size", 1)) // multiple))
    if multiple > 1:
        example = torch.rand(1, 3, max(4, min_blocks) * multiple, max(6, min_blocks + 2) * multiple)
    else:
        example = torch.rand(1, 3, 32, 48)
    batch, height, width = (torch.export.Dim(n, min=1) for n in ("batch", "height", "width"))
    if multiple > 1:
        block_range = {"min": min_blocks} if min_blocks > 1 else {}
        height = multiple * torch.export.Dim("height_blocks", **block_range)
        width = multiple * torch.export.Dim("width_blocks", **block_range)
    inputs, input_names, dynamic_shapes = (example,), ["input"], [{0: batch, 2: height, 3: width}]
    if wrapper.takes_mask:
        inputs += ((torch.rand(1, 1, *example.shape[2:]) > 0.5).float(),)
        input_names.append("mask")
        dynamic_shapes.append({0: batch, 2: height, 3: width})
    with tempfile.TemporaryDirectory() as scratch:
        traced = Path(scratch) / "model.onnx"
        program = torch.onnx.export(
            wrapper,
            inputs,
            dynamo=True,
            opset_version=opset,
            input_names=input_names,
            output_names=["output"],
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            verbose=False,
        )
        program.save(str(traced))
        model = onnx.load(str(traced))
    onnx.helper.set_model_props(model, {key: str(value) for key, value in metadata.items()})
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
    temp = output.with_name(f".{output.name}.tmp")
    try:
        onnx.save(model, str(temp))
        temp.replace(output)
    finally:
        temp.unlink(missing_ok=True)
    return error


def parity_error(wrapper: nn.Module, model_bytes: bytes, size: tuple[int, int], batch: int = 2) -> float:
    """Max abs difference between PyTorch and onnxruntime (CPU) on one random batch (with a
    random hole mask for nets that take one)."""
    import onnxruntime

    generator = torch.Generator().manual_seed(0)
    image = torch.rand(batch, 3, *size, generator=generator)
    inputs = {"input": image}
    if getattr(wrapper, "takes_mask", False):
        inputs["mask"] = (torch.rand(batch, 1, *size, generator=generator) > 0.5).float()
    with torch.no_grad():
        expected = wrapper(*inputs.values()).numpy()
    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    (actual,) = session.run(["output"], {name: value.numpy() for name, value in inputs.items()})
    if actual.shape != expected.shape:
        raise ModelError(f"ONNX output shape {actual.shape} differs from PyTorch's {expected.shape}")
    return float(np.abs(actual - expected).max())


def fp16_path(output: Path) -> Path:
    """Where the float16 variant of `output` goes: model.onnx -> model.fp16.onnx."""
    return output.with_name(output.stem + FP16_SUFFIX)


def export_net(generator: LoadedGenerator, direction: str | None = None) -> tuple[nn.Module, dict[str, str]]:
    """The net an export writes and its task's metadata (without "name").

    `direction` picks one net of a two-way run ("a2b" or "b2a" for CycleGAN); one-way tasks
    take None.

    Raises:
        ModelError: the direction is missing, unknown or given to a one-way task.
    """
    from img2img.engine.config import config_from_dict
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
    return net, task.export_metadata(config, net, key)


def export_generator(
    generator: LoadedGenerator, output: Path, *, opset: int = 18, fp16: bool = False, direction: str | None = None
) -> dict[str, float]:
    """Exports a rebuilt generator (one direction of a two-way run) with its task's metadata
    (named after the file), and with `fp16` its float16 variant beside it; returns the parity
    error per precision."""
    net, metadata = export_net(generator, direction)
    metadata = {"name": output.stem, **metadata}
    errors = {"fp32": export_onnx(net, output, metadata=metadata, opset=opset)}
    if fp16:
        errors["fp16"] = export_onnx(net, fp16_path(output), metadata=metadata, opset=opset, precision="fp16")
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
    written = output if not fp16 else f"{output} and {fp16_path(output)}"
    parity = ", ".join(f"{precision} {error:.2e}" for precision, error in errors.items())
    print(f"exported {source} -> {written} (opset {opset}, parity max abs error {parity}, "
          f"{time.perf_counter() - started:.1f} s)")
    return errors
