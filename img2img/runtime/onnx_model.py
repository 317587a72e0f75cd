"""Run an exported img2img ONNX model on float images with onnxruntime.

The graph and its metadata follow `img2img.contract`: float32 NCHW inputs in [0, 1] with dynamic
batch, height and width, named in the order the "inputs" metadata lists their kinds ("image":
RGB, "mask": one channel, 1 = fill; a style-transfer model adds "style", "style_weights" and
"alpha", set once with `set_styles`); one output "output", float32 NCHW RGB in [0, 1] of size
(H * scale, W * scale), already clamped. The model's size requirements live in its
metadata_props (`ModelInfo`), so this module pads any image to what the net needs, runs it, and
crops back.

A model can come in three precisions: `name.onnx` (float32), `name.fp16.onnx` (float16 weights
and activations, float32 at the graph's edges) and `name.int8.onnx` (8-bit convolutions,
`img2img quantize`). The fp16 variant writes NaN where its arithmetic overflowed, and such an
item is run again in float32; int8 arithmetic saturates instead of overflowing.

Example:
    >>> model = OnnxModel("weights/superres-x4.onnx", device="cpu")
    >>> model.info.scale
    4
    >>> model.run(np.zeros((30, 17, 3), np.float32)).shape
    (120, 68, 3)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from img2img.contract import FP16_SUFFIX, INT8_SUFFIX, ModelInfo, precision_variant, variant_precision
from img2img.errors import InferenceMemoryError, ModelError, first_line

DEVICES = ("auto", "cpu", "cuda")

# Substrings of onnxruntime error messages that mean an allocation failed (CPU arena, CUDA,
# cuDNN, cuBLAS, TensorRT): the caller can retry with a smaller tile.
_OUT_OF_MEMORY_MARKERS = (
    "failed to allocate memory",
    "bad_alloc",
    "bad allocation",
    "out of memory",
    "alloc_failed",
    "cudaerrormemoryallocation",
)


def select_providers(device: str, available: list[str]) -> list[str]:
    """onnxruntime execution providers for `device`, fastest first, given what this install offers.

    "auto" and "cuda" put TensorRT first when onnxruntime-gpu offers it (onnxruntime itself falls
    back to CUDA for anything TensorRT cannot take), then CUDA, then the CPU.

    Raises:
        ModelError: unknown device, or "cuda" without CUDAExecutionProvider.
    """
    if device not in DEVICES:
        raise ModelError(f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}")
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not has_cuda:
        raise ModelError(
            "--device cuda needs onnxruntime with CUDA support, and this one has none; "
            'install the gpu extra (pip install "img2img[gpu]") and swap the onnxruntime wheel for '
            "onnxruntime-gpu as the README shows, or use --device cpu"
        )
    if device == "cpu" or not has_cuda:
        return ["CPUExecutionProvider"]
    gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["TensorrtExecutionProvider", *gpu] if "TensorrtExecutionProvider" in available else gpu


def automatic_precision(path: Path, device: str) -> str:
    """What `precision="auto"` runs for the model at `path` (its float32 file, or a variant's):

    - the precision a variant's file name declares (`name.int8.onnx` runs int8);
    - on the CPU, the 8-bit variant where one lies beside the model (shipped, or written by
      `img2img quantize`, which refuses one whose outputs are under 35 dB PSNR from the float32
      model's): it runs about twice as fast (benchmarks/RESULTS.md);
    - float32 otherwise, and on a GPU, where 8-bit convolutions gain nothing here.
    """
    declared = variant_precision(path)
    if declared != "fp32":
        return declared
    on_cpu = select_providers(device, import_onnxruntime().get_available_providers()) == ["CPUExecutionProvider"]
    return "int8" if on_cpu and precision_variant(path, "int8").is_file() else "fp32"


def cache_dir() -> Path:
    """Where compiled TensorRT engines are kept between runs: $IMG2IMG_CACHE or ~/.cache/img2img."""
    return Path(os.environ.get("IMG2IMG_CACHE") or Path.home() / ".cache" / "img2img")


class OnnxModel:
    """An exported img2img model ready to run on (H, W, C) float images in [0, 1].

    Args:
        path: the .onnx file (its float32 variant, `model.onnx`, or float16 one, `model.fp16.onnx`).
        device: "auto" (TensorRT or CUDA when onnxruntime offers them, else CPU), "cpu" or "cuda".
        threads: onnxruntime intra-op threads; None lets onnxruntime choose (all cores).
        precision: "fp32", "fp16" or "int8"; picks the matching variant beside `path`. With fp16, an item
            whose output holds NaN or inf is run again with the float32 variant (counted in
            `fp32_retries`).

    Raises:
        ModelError: the file (or the requested precision's variant) is missing or not a loadable
            ONNX model, its metadata is invalid, or the device is unavailable.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "auto",
        threads: int | None = None,
        precision: str = "fp32",
    ) -> None:
        self.path = precision_variant(path, precision)
        self.device = device
        self.threads = threads
        self.precision = precision
        self.fp32_retries = 0
        self._warm_shapes: set[tuple[int, ...]] = set()
        self._fp32_fallback: OnnxModel | None = None
        if not self.path.is_file():
            if precision != "fp32" and Path(path).is_file():
                how = "export one with `img2img export --fp16`" if precision == "fp16" else (
                    "make one with `img2img quantize MODEL.onnx --calibration PHOTOS`"
                )
                raise ModelError(
                    f"{Path(path).name} has no {precision} variant ({self.path.name} does not exist); {how}, "
                    "or use --precision fp32"
                )
            what = "is a folder" if self.path.is_dir() else "does not exist"
            raise ModelError(
                f"model file {self.path} {what}; pass a path to an .onnx file or a shipped model name"
            )
        self.session = open_session(self.path, device=device, threads=threads, precision=precision)
        self.info = ModelInfo.from_metadata(
            self.session.get_modelmeta().custom_metadata_map, source=str(self.path)
        )
        if self.info.precision != precision:
            raise ModelError(
                f"{self.path} holds a {self.info.precision} model but is named as the {precision} variant; "
                f"name fp16 models *{FP16_SUFFIX}, int8 ones *{INT8_SUFFIX} and fp32 ones *.onnx"
            )
        if self.info.generates:
            raise ModelError(
                f"{self.path} generates images from noise (a {self.info.task or 'noise-to-image'} model) and takes "
                "no input image; run it with `img2img faces generate --model ...`"
            )
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != len(self.info.inputs) or len(outputs) != 1:
            raise ModelError(
                f"{self.path} has {len(inputs)} inputs and {len(outputs)} outputs, but its metadata "
                f"declares inputs {','.join(self.info.inputs)} and one output; export it with `img2img export`"
            )
        self.input_names = [node.name for node in inputs]
        self.output_name = outputs[0].name
        # Inputs besides the image and mask that stay the same for every call (the styles of a
        # style-transfer model), by input kind, in the graph's layout.
        self.conditioning: dict[str, np.ndarray] = {}

    @property
    def takes_style(self) -> bool:
        """An arbitrary-style model: it takes style images with the content."""
        return "style" in self.info.inputs

    def set_styles(self, styles: np.ndarray, weights: np.ndarray, alpha: float) -> None:
        """The styles every later call renders, for a model that `takes_style`.

        Args:
            styles: (K, S, S, 3) float array in [0, 1], S a multiple of `info.multiple_of` and at
                least `info.min_size`.
            weights: (K,) non-negative weights of the styles' mix; normalised to sum to 1.
            alpha: 0 (the content, through the decoder) to 1 (fully stylised).

        Raises:
            ModelError: the model takes no styles, or weights or alpha are out of range.
        """
        if not self.takes_style:
            raise ModelError(f"{self.info.name} renders one fixed style and takes no style images")
        weights = np.asarray(weights, np.float32).reshape(-1)
        if styles.ndim != 4 or styles.shape[3] != 3 or len(weights) != len(styles):
            raise ValueError(f"expected (K, S, S, 3) styles and K weights, got {styles.shape} and {weights.shape}")
        if not np.isfinite(weights).all() or (weights < 0).any() or not weights.sum() > 0:
            raise ModelError(f"style weights must be finite, 0 or more and not all 0, got {weights.tolist()}")
        if not np.isfinite(alpha):
            raise ModelError(f"alpha must be between 0 (content) and 1 (full style), got {alpha}")
        if not 0.0 <= alpha <= 1.0:
            raise ModelError(f"alpha must be between 0 (content) and 1 (full style), got {alpha}")
        self.conditioning = {
            "style": _to_nchw(styles.astype(np.float32, copy=False)),
            "style_weights": weights / weights.sum(),
            "alpha": np.asarray([alpha], np.float32),
        }

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses, fastest first."""
        return self.session.get_providers()

    @property
    def on_gpu(self) -> bool:
        return self.providers[0] != "CPUExecutionProvider"

    def warm_up(self, height: int, width: int, batch: int = 1) -> None:
        """Run once on zeros of this input shape, so that the first real call of the shape does not
        pay for kernel selection or a TensorRT engine build. Each shape is warmed once."""
        shape = (batch, *self.info.padded_size(height, width))
        if shape in self._warm_shapes:
            return
        images = np.zeros((batch, height, width, self.info.channels), np.float32)
        masks = np.zeros((batch, height, width), np.float32) if "mask" in self.info.inputs else None
        self.run_batch(images, masks)
        self._warm_shapes.add(shape)

    def run(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Run the model on one image.

        Args:
            image: (H, W, C) float array in [0, 1], C = info.channels.
            mask: (H, W) float array in [0, 1] (1 = region to fill); only for models whose
                inputs include "mask".

        Returns:
            (H * scale, W * scale, C_out) float32 in [0, 1].
        """
        if image.ndim != 3:
            raise ValueError(
                f"run expects one (H, W, C) image, got shape {image.shape}; use run_batch for (N, H, W, C)"
            )
        return self.run_batch(image[None], None if mask is None else mask[None])[0]

    def run_batch(self, images: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """Run the model on same-size images in one call.

        Args:
            images: (N, H, W, C) float array in [0, 1], C = info.channels.
            masks: (N, H, W) float array in [0, 1]; required exactly when the model takes a mask.

        Returns:
            (N, H * scale, W * scale, C_out) float32 in [0, 1], a writable view of
            onnxruntime's NCHW output (not C-contiguous).

        Raises:
            InferenceMemoryError: the device ran out of memory (a smaller input may fit).
            ModelError: onnxruntime failed otherwise, or fp16 gave NaN and no fp32 variant exists.
        """
        if images.ndim != 4 or images.shape[3] != self.info.channels:
            raise ValueError(
                f"run_batch expects (N, H, W, {self.info.channels}) images, got shape {images.shape}"
            )
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(
                f"expected float images in [0, 1], got dtype {images.dtype}; divide uint8 images by 255"
            )
        takes_mask = "mask" in self.info.inputs
        if takes_mask != (masks is not None):
            raise ValueError(
                f"{self.info.name} {'needs' if takes_mask else 'takes no'} mask; "
                f"its inputs are {','.join(self.info.inputs)}"
            )
        if masks is not None and masks.shape != images.shape[:3]:
            raise ValueError(f"masks must have shape {images.shape[:3]} to match the images, got {masks.shape}")
        if self.takes_style and not self.conditioning:
            raise ModelError(f"{self.info.name} renders a style image it is given; pass one (--style-image)")
        _, height, width, _ = images.shape
        size = self.info.padded_size(height, width)
        # A model trained on images laid over a plain background is padded with that background.
        fill = None if self.info.background is None else np.asarray(self.info.background, np.float32) / 255
        feeds = {self.input_names[0]: _to_nchw(_pad_bottom_right(images.astype(np.float32, copy=False), *size, fill=fill))}
        if masks is not None:
            padded = _pad_bottom_right(masks.astype(np.float32, copy=False)[..., None], *size)
            feeds[self.input_names[1]] = _to_nchw(padded)
        for name, kind in zip(self.input_names, self.info.inputs, strict=True):
            if kind in self.conditioning:
                feeds[name] = self.conditioning[kind]
        try:
            (result,) = self.session.run([self.output_name], feeds)
        except Exception as error:  # onnxruntime's errors derive from Exception directly
            message = first_line(error)
            if any(marker in str(error).lower() for marker in _OUT_OF_MEMORY_MARKERS):
                raise InferenceMemoryError(
                    f"{self.info.name} ran out of memory on a {width}x{height} input ({message}); "
                    "use a smaller --tile"
                ) from None
            raise ModelError(
                f"running {self.info.name} on a {width}x{height} image failed ({message}); "
                "try a smaller --tile or --device cpu"
            ) from None
        scale = self.info.scale
        self._check_output(result, len(images), size)
        result = result.transpose(0, 2, 3, 1)[:, : height * scale, : width * scale]
        if self.precision == "fp16":
            result = self._retry_non_finite(result, images, masks)
        elif not np.isfinite(result).all():
            raise ModelError(
                f"{self.info.name} produced NaN or inf on a {width}x{height} input; the model is broken "
                "(re-export or retrain it), nothing was written"
            )
        # In place: onnxruntime's output buffer is ours, and outputs can be large.
        return np.clip(result, 0.0, 1.0, out=result)

    def _check_output(self, result: np.ndarray, count: int, size: tuple[int, int]) -> None:
        """The graph's output must be what the metadata promises for a (count, C, *size) input:
        (count, 3, H * scale, W * scale). A model whose metadata lies (says x4, computes x2) or whose
        graph returns another layout is refused before any of its pixels are used."""
        expected = (count, 3, size[0] * self.info.scale, size[1] * self.info.scale)
        if result.shape != expected:
            raise ModelError(
                f"{self.path.name}'s metadata says x{self.info.scale} RGB, so a {size[1]}x{size[0]} input should give "
                f"an output of shape {expected}, but its graph returned {tuple(result.shape)}; the file's "
                "metadata does not match its graph: re-export it with `img2img export`"
            )

    def _retry_non_finite(
        self, result: np.ndarray, images: np.ndarray, masks: np.ndarray | None
    ) -> np.ndarray:
        """Re-run in float32 the items of an fp16 batch whose output is not all finite."""
        bad = [index for index in range(len(result)) if not np.isfinite(result[index]).all()]
        if not bad:
            return result
        if self._fp32_fallback is None:
            fp32_path = precision_variant(self.path, "fp32")
            if not fp32_path.is_file():
                raise ModelError(
                    f"{self.info.name} produced NaN or inf in float16 and its float32 variant "
                    f"{fp32_path.name} is missing; use --precision fp32 with a float32 model"
                )
            self._fp32_fallback = OnnxModel(fp32_path, device=self.device, threads=self.threads)
            self._fp32_fallback.conditioning = self.conditioning
        result[bad] = self._fp32_fallback.run_batch(images[bad], None if masks is None else masks[bad])
        self.fp32_retries += len(bad)
        return result


def import_onnxruntime() -> Any:
    """The onnxruntime module, imported with its telemetry off unless the user set
    ORT_DISABLE_TELEMETRY: on import it records a device ID under $HOME (or $XDG_CACHE_HOME), and
    where that is read-only it prints a warning on every run. A local tool has no business
    writing either."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    return onnxruntime


def open_session(path: Path, *, device: str, threads: int | None, precision: str) -> Any:
    """An onnxruntime InferenceSession with tuned options for `device`."""
    # Imported here, not at module level, so `import img2img.runtime` (image I/O, the model list)
    # stays fast for commands that never run a model.
    ort = import_onnxruntime()

    providers: list[Any] = select_providers(device, ort.get_available_providers())
    if providers[0] == "TensorrtExecutionProvider":
        engines = cache_dir() / "tensorrt"
        engines.mkdir(parents=True, exist_ok=True)
        # Engines take minutes to build; caching them makes every later run start in seconds.
        providers[0] = (
            "TensorrtExecutionProvider",
            {
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(engines),
                "trt_fp16_enable": precision == "fp16",
            },
        )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Errors only: provider fallback warnings would otherwise break the CLI's one-line output.
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    # Idle worker threads sleep instead of spinning, leaving the cores to the threads that decode
    # and encode images around the model.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as error:  # onnxruntime's errors derive from Exception directly
        raise ModelError(
            f"{path} is not a loadable ONNX model ({first_line(error)}); "
            "export it again with `img2img export` or reinstall the shipped weights"
        ) from None
    if device == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
        raise ModelError(
            "onnxruntime could not start CUDA (check that the CUDA and cuDNN versions match "
            "onnxruntime-gpu's requirements), or use --device cpu"
        )
    return session


def _to_nchw(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def _pad_bottom_right(images: np.ndarray, height: int, width: int, fill: np.ndarray | None = None) -> np.ndarray:
    """Pad (N, H, W, C) on the bottom and right to (N, height, width, C).

    Reflection keeps image statistics at the border, so the net sees no artificial edge; it needs
    the pad to be shorter than the image, so tiny images fall back to repeating the edge pixel.
    With `fill` (C values), the pad is that colour instead: the background of a model trained on
    drawings laid over it, where a mirrored copy of the drawing would be made-up content.
    Padding only the far sides keeps output pixel (y, x) aligned with input (y / s, x / s).
    """
    if fill is not None:
        if images.shape[1:3] == (height, width):
            return images
        padded = np.empty((images.shape[0], height, width, images.shape[3]), images.dtype)
        padded[...] = fill
        padded[:, : images.shape[1], : images.shape[2]] = images
        return padded
    for axis, target in ((1, height), (2, width)):
        pad = target - images.shape[axis]
        if pad == 0:
            continue
        widths = [(0, 0)] * 4
        widths[axis] = (0, pad)
        mode = "reflect" if pad < images.shape[axis] else "edge"
        images = np.pad(images, widths, mode=mode)
    return images
