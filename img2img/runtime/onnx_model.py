"""Run an exported img2img ONNX model on float images with onnxruntime.

The graph contract (written by `img2img export`): input "input" and output "output", float32
NCHW RGB in [0, 1] with dynamic batch, height and width; the output is (H * scale, W * scale) and
already clamped. The model's size requirements live in its metadata_props, so this module pads
any image to what the net needs, runs it, and crops the result back.

Example:
    >>> model = OnnxModel("weights/superres-x4.onnx", device="cpu")
    >>> model.info.scale
    4
    >>> model.run(np.zeros((30, 17, 3), np.float32)).shape
    (120, 68, 3)
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from img2img.errors import ModelError

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ModelInfo:
    """What an exported model declares about itself in its ONNX metadata_props.

    Attributes:
        task: the task it was trained for, e.g. "superres" ("" when not recorded).
        name: model name, e.g. "superres-x4".
        scale: output size / input size (1 for same-size tasks).
        channels: number of input channels (3 for RGB).
        multiple_of: input height and width must be multiples of this.
        min_size: input height and width must be at least this.
        range: value range of the graph's input and output, always (0.0, 1.0) for img2img exports.
        license, data, version: provenance strings for the model card.
        config: the resolved training configuration the model was trained with.
    """

    task: str
    name: str
    scale: int
    channels: int = 3
    multiple_of: int = 1
    min_size: int = 1
    range: tuple[float, float] = (0.0, 1.0)
    license: str = ""
    data: str = ""
    version: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, props: dict[str, str], *, source: str) -> ModelInfo:
        """Parse metadata_props (all strings); `source` names the file in error messages.

        Raises:
            ModelError: "scale" is missing, or a field does not parse, or range is not "0,1".
        """
        if "scale" not in props:
            raise ModelError(
                f"{source} has no 'scale' in its ONNX metadata; export it with `img2img export`, "
                "which records scale, multiple_of and min_size"
            )

        def integer(key: str, default: int) -> int:
            text = props.get(key, str(default))
            try:
                value = int(text)
            except ValueError:
                raise ModelError(
                    f"{source}: metadata {key!r} is {text!r}, expected a whole number; re-export the model"
                ) from None
            if value < 1:
                raise ModelError(
                    f"{source}: metadata {key!r} is {value}, expected at least 1; re-export the model"
                )
            return value

        try:
            low, high = (float(part) for part in props.get("range", "0,1").split(","))
        except ValueError:
            raise ModelError(
                f"{source}: metadata 'range' is {props['range']!r}, expected 'low,high'; re-export the model"
            ) from None
        if (low, high) != (0.0, 1.0):
            # Exports normalise inside the graph; any other range means the file was not made by
            # `img2img export` and its pixels would come out wrong.
            raise ModelError(
                f"{source}: metadata 'range' is {props['range']!r}, but the runtime feeds and reads [0, 1]; "
                "export it with `img2img export`, which puts the normalisation inside the graph"
            )
        try:
            config = json.loads(props["config"]) if props.get("config") else {}
        except json.JSONDecodeError as error:
            raise ModelError(
                f"{source}: metadata 'config' is not valid JSON ({error}); re-export the model"
            ) from None

        return cls(
            task=props.get("task", ""),
            name=props.get("name", Path(source).stem),
            scale=integer("scale", 1),
            channels=integer("channels", 3),
            multiple_of=integer("multiple_of", 1),
            min_size=integer("min_size", 1),
            range=(low, high),
            license=props.get("license", ""),
            data=props.get("data", ""),
            version=props.get("version", ""),
            config=config,
        )

    def require(self, *, task: str, scale: int | None = None, channels: int = 3) -> None:
        """Check that this model fits a request: its task (when recorded), scale and channels.

        Raises:
            ModelError: it was trained for another task, has another scale or channel count.
        """
        if self.task and self.task != task:
            raise ModelError(f"model {self.name!r} is a {self.task} model, not {task}; pick a {task} model")
        if self.channels != channels:
            raise ModelError(
                f"model {self.name!r} takes {self.channels} input channels; {task} needs {channels}"
            )
        if scale is not None and scale != self.scale:
            raise ModelError(
                f"model {self.name!r} upscales x{self.scale}, but --scale {scale} was asked; "
                f"drop --scale or pick a x{scale} model"
            )

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) an input is padded to: at least min_size, a multiple of multiple_of."""

        def align(length: int) -> int:
            return math.ceil(max(length, self.min_size) / self.multiple_of) * self.multiple_of

        return align(height), align(width)


def select_providers(device: str, available: list[str]) -> list[str]:
    """onnxruntime execution providers for `device`, given the providers this install offers.

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
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


class OnnxModel:
    """An exported img2img model ready to run on (H, W, C) float images in [0, 1].

    Args:
        path: the .onnx file.
        device: "auto" (CUDA when onnxruntime offers it, else CPU), "cpu" or "cuda".
        threads: onnxruntime intra-op threads; None lets onnxruntime choose (all cores).

    Raises:
        ModelError: the file is missing or not a loadable ONNX model, its metadata is invalid,
            or the device is unavailable.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, device: str = "auto", threads: int | None = None
    ) -> None:
        # Imported here, not at module level, so `import img2img.runtime` (image I/O, the
        # model list) stays fast for commands that never run a model.
        import onnxruntime as ort

        self.path = Path(path)
        self.device = device
        self.threads = threads
        if not self.path.is_file():
            what = "is a folder" if self.path.is_dir() else "does not exist"
            raise ModelError(
                f"model file {self.path} {what}; pass a path to an .onnx file or a shipped model name"
            )
        providers = select_providers(device, ort.get_available_providers())

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Errors only: provider fallback warnings would otherwise break the CLI's one-line output.
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as error:  # onnxruntime's errors derive from Exception directly
            raise ModelError(
                f"{self.path} is not a loadable ONNX model ({_first_line(error)}); "
                "export it again with `img2img export` or reinstall the shipped weights"
            ) from None
        if device == "cuda" and "CUDAExecutionProvider" not in self.session.get_providers():
            raise ModelError(
                "onnxruntime could not start CUDA (check that the CUDA and cuDNN versions match "
                "onnxruntime-gpu's requirements), or use --device cpu"
            )

        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"{self.path} has {len(inputs)} inputs and {len(outputs)} outputs, expected one of each; "
                "export it with `img2img export`"
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.info = ModelInfo.from_metadata(
            self.session.get_modelmeta().custom_metadata_map, source=str(self.path)
        )

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses, fastest first."""
        return self.session.get_providers()

    def run(self, image: np.ndarray) -> np.ndarray:
        """Run the model on one image.

        Args:
            image: (H, W, C) float array in [0, 1], C = info.channels.

        Returns:
            (H * scale, W * scale, C_out) float32 in [0, 1].
        """
        if image.ndim != 3:
            raise ValueError(
                f"run expects one (H, W, C) image, got shape {image.shape}; use run_batch for (N, H, W, C)"
            )
        return self.run_batch(image[None])[0]

    def run_batch(self, images: np.ndarray) -> np.ndarray:
        """Run the model on same-size images in one call.

        Args:
            images: (N, H, W, C) float array in [0, 1], C = info.channels.

        Returns:
            (N, H * scale, W * scale, C_out) float32 in [0, 1].
        """
        if images.ndim != 4 or images.shape[3] != self.info.channels:
            raise ValueError(
                f"run_batch expects (N, H, W, {self.info.channels}) images, got shape {images.shape}"
            )
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(
                f"expected float images in [0, 1], got dtype {images.dtype}; divide uint8 images by 255"
            )
        _, height, width, _ = images.shape
        padded = _pad_bottom_right(
            images.astype(np.float32, copy=False), *self.info.padded_size(height, width)
        )
        batch = np.ascontiguousarray(padded.transpose(0, 3, 1, 2))
        try:
            (result,) = self.session.run([self.output_name], {self.input_name: batch})
        except Exception as error:  # onnxruntime's errors derive from Exception directly
            raise ModelError(
                f"running {self.info.name} on a {width}x{height} image failed ({_first_line(error)}); "
                "try a smaller image or --device cpu"
            ) from None
        scale = self.info.scale
        result = result.transpose(0, 2, 3, 1)[:, : height * scale, : width * scale]
        return np.clip(result, 0.0, 1.0).astype(np.float32, copy=False)


def _pad_bottom_right(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad (N, H, W, C) on the bottom and right to (N, height, width, C).

    Reflection keeps image statistics at the border, so the net sees no artificial edge; it needs
    the pad to be shorter than the image, so tiny images fall back to repeating the edge pixel.
    Padding only the far sides keeps output pixel (y, x) aligned with input (y / s, x / s).
    """
    for axis, target in ((1, height), (2, width)):
        pad = target - images.shape[axis]
        if pad == 0:
            continue
        widths = [(0, 0)] * 4
        widths[axis] = (0, pad)
        mode = "reflect" if pad < images.shape[axis] else "edge"
        images = np.pad(images, widths, mode=mode)
    return images


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
