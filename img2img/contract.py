"""The img2img model contract: what an exported ONNX model declares about itself.

Every model `img2img export` or `img2img import` writes, and every model the runtime runs, is
described by one `ModelInfo`, stored as the file's ONNX metadata_props (all strings; the keys and
value formats are those of `ModelInfo.to_metadata`). The graph itself follows one layout:

- inputs named and ordered as one of INPUT_LAYOUTS: "image" float32 (N, 3, H, W) RGB in [0, 1];
  with "mask" float32 (N, 1, H, W) in {0, 1}, 1 = fill (inpainting); with "style" float32
  (K, 3, h, w) RGB in [0, 1], "style_weights" float32 (K,) summing to 1 and "alpha" float32 (1,)
  (arbitrary style transfer); or, for a noise-to-image generator, "z" float32 (N, latent_dim)
  and, when class-conditional, "label" int64 (N,);
- one output "output" float32 (N, 3, H * scale, W * scale) RGB in [0, 1], already clamped
  ((N, 3, R, R) for a noise-to-image generator).

A model comes in up to three precisions (PRECISIONS): `name.onnx` (float32), `name.fp16.onnx`
(float16 inside, float32 at the graph's edges) and `name.int8.onnx` (8-bit convolutions with
calibrated activation ranges, `img2img quantize`; float32 edges); `precision_variant` maps each
name to the others.

This module imports no torch and no onnx: the inference path (`pip install img2img`) reads it.

Example:
    >>> info = ModelInfo(task="superres", name="superres-x4", scale=4)
    >>> info.to_metadata()["scale"]
    '4'
    >>> ModelInfo.from_metadata(info.to_metadata(), source="superres-x4.onnx") == info
    True
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from img2img.errors import ModelError

# The input layouts a graph may declare, by the kind of each input in order.
IMAGE = ("image",)
IMAGE_MASK = ("image", "mask")
IMAGE_STYLES = ("image", "style", "style_weights", "alpha")
LATENT = ("z",)
LATENT_LABEL = ("z", "label")
INPUT_LAYOUTS = (IMAGE, IMAGE_MASK, IMAGE_STYLES, LATENT, LATENT_LABEL)

PRECISIONS = ("fp32", "fp16", "int8")
FP16_SUFFIX = ".fp16.onnx"
INT8_SUFFIX = ".int8.onnx"
# The file name ending of each precision's variant of `name.onnx`.
VARIANT_SUFFIXES = {"fp32": ".onnx", "fp16": FP16_SUFFIX, "int8": INT8_SUFFIX}

# The largest value each size-giving metadata field may take; beyond them a file is broken or
# hostile (no real upscaler is x64, no net needs inputs padded to a multiple of 4096).
METADATA_LIMITS = {
    "scale": 16,
    "channels": 4,
    "multiple_of": 1024,
    "min_size": 4096,
    "resolution": 8192,
    "style_size": 4096,
    "latent_dim": 16384,
}


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What an exported model declares about itself in its ONNX metadata_props.

    Each attribute is the metadata key of the same name; `to_metadata` leaves out the optional
    ones that are unset (empty text, 0, None, False).

    Attributes:
        task: the task it was trained for, e.g. "superres" ("" when not recorded).
        name: model name, e.g. "superres-x4".
        scale: output size / input size (1 for same-size tasks).
        channels: number of input channels (3 for RGB).
        multiple_of: input height and width must be multiples of this.
        min_size: input height and width must be at least this.
        range: value range of the graph's input and output, always (0.0, 1.0) for img2img exports.
        inputs: kinds of the graph's inputs in order, one of INPUT_LAYOUTS.
        precision: one of PRECISIONS, the arithmetic inside the graph (its edges are float32).
        license, data, version: provenance strings for the model card.
        source: where an imported model comes from (`img2img import --source`; "" for others).
        config: the resolved training configuration the model was trained with (for an imported
            model: the import's provenance and the rebuilt net).
        trained_as: the training recipe of a translation model ("cyclegan", "pix2pix"; "" for others).
        direction: which net of a two-way run this is ("a2b", "b2a"; "" for one-way runs).
        size: free text on the training image size, e.g. "trained on 64x64 crops".
        background: (R, G, B) in 0..255 that transparent pixels were composited onto in
            training, so the runtime composites them the same way before the net; None: no
            compositing (metadata "background", "r,g,b").
        domains: what a translation model turns into what, free text "A->B" ("" when not recorded).
        whole_image: the net normalises over the whole image (instance norm), so tiles would
            change its output: `tile="auto"` then runs images whole (metadata "whole_image", "1").
        opaque_output: the net paints over what its input leaves transparent (a colouring of
            line art fills the shapes between the lines), so the input's transparency does not
            fit the output: the runtime writes it opaque unless asked to keep the input's
            (metadata "opaque_output", "1").
        resolution: the square side, in pixels, the model works best at (an inpainting net sees
            holes at the scale it was trained at): the runtime shrinks a crop around the hole so
            that its longer side is at most this. 0 when not recorded: crops run at their own size.
        style: the painting a per-style transfer model renders ("" for others).
        style_size: for a model that takes style images: the square side they are scaled to
            (0 when not recorded).
        latent_dim: for a noise-to-image model (inputs "z"): the size of z (0 for others).
        labels: for a class-conditional noise-to-image model: the class names, label i being
            labels[i] (empty for others).
    """

    task: str = ""
    name: str = ""
    scale: int
    channels: int = 3
    multiple_of: int = 1
    min_size: int = 1
    range: tuple[float, float] = (0.0, 1.0)
    inputs: tuple[str, ...] = IMAGE
    precision: str = "fp32"
    license: str = ""
    data: str = ""
    source: str = ""
    version: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    trained_as: str = ""
    direction: str = ""
    size: str = ""
    background: tuple[int, int, int] | None = None
    domains: str = ""
    whole_image: bool = False
    opaque_output: bool = False
    resolution: int = 0
    style: str = ""
    style_size: int = 0
    latent_dim: int = 0
    labels: tuple[str, ...] = ()

    @property
    def generates(self) -> bool:
        """A noise-to-image model: its inputs are latents, not an image."""
        return self.inputs[0] == "z"

    def to_metadata(self) -> dict[str, str]:
        """The ONNX metadata_props that `from_metadata` reads back into this descriptor."""
        props = {
            "name": self.name,
            "task": self.task,
            "trained_as": self.trained_as,
            "scale": str(self.scale),
            "channels": str(self.channels),
            # Absent means an image alone: the files written before inputs were recorded.
            "inputs": "" if self.inputs == IMAGE else ",".join(self.inputs),
            # A generator's output size is its own; size requirements are an image input's.
            "multiple_of": "" if self.generates else str(self.multiple_of),
            "min_size": "" if self.generates else str(self.min_size),
            "range": f"{self.range[0]:g},{self.range[1]:g}",
            "domains": self.domains,
            "background": "" if self.background is None else ",".join(map(str, self.background)),
            "whole_image": "1" if self.whole_image else "",
            "opaque_output": "1" if self.opaque_output else "",
            "size": self.size,
            "resolution": str(self.resolution or ""),
            "style": self.style,
            "style_size": str(self.style_size or ""),
            "latent_dim": str(self.latent_dim or ""),
            "data": self.data,
            "license": self.license,
            "source": self.source,
            "version": self.version,
            "config": json.dumps(self.config) if self.config else "",
            "direction": self.direction,
            "precision": self.precision,
        }
        props = {key: value for key, value in props.items() if value}
        if self.generates:
            # Written even when empty: an unconditional generator says it has no labels.
            props["labels"] = ",".join(self.labels)
        return props

    @classmethod
    def from_metadata(cls, props: dict[str, str], *, source: str) -> ModelInfo:
        """Parse metadata_props (all strings); `source` names the file in error messages.

        Raises:
            ModelError: "scale" is missing, or a field does not parse, or range is not "0,1", or
                background is not three values 0-255, or whole_image is not "0" or "1", or
                resolution is given but is not a whole number of at least 1.
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
            # Bounded: these values size buffers and padding, so a file may not make them huge.
            if not 1 <= value <= METADATA_LIMITS[key]:
                raise ModelError(
                    f"{source}: metadata {key!r} is {value}, expected 1 to {METADATA_LIMITS[key]:,}; re-export the model"
                )
            return value

        def optional(key: str) -> int:
            return integer(key, 1) if key in props else 0

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
        inputs = tuple(kind.strip() for kind in props.get("inputs", "image").split(","))
        if inputs not in INPUT_LAYOUTS:
            layouts = ", ".join(repr(",".join(layout)) for layout in INPUT_LAYOUTS)
            raise ModelError(
                f"{source}: metadata 'inputs' is {props['inputs']!r}; this runtime runs {layouts} "
                "models, upgrade img2img or re-export the model"
            )
        precision = props.get("precision", "fp32")
        if precision not in PRECISIONS:
            raise ModelError(
                f"{source}: metadata 'precision' is {precision!r}, expected one of {', '.join(PRECISIONS)}; "
                "re-export the model"
            )
        try:
            config = json.loads(props["config"]) if props.get("config") else {}
        except json.JSONDecodeError as error:
            raise ModelError(
                f"{source}: metadata 'config' is not valid JSON ({error}); re-export the model"
            ) from None
        flags = {key: props.get(key, "0").strip() for key in ("whole_image", "opaque_output")}
        for key, flag in flags.items():
            if flag not in ("0", "1"):
                raise ModelError(f"{source}: metadata {key!r} is {flag!r}, expected '1' or '0'; re-export the model")
        text = {key: props.get(key, "") for key in (
            "task", "license", "data", "source", "version", "trained_as", "direction", "size", "domains", "style"
        )}
        return cls(
            **text,
            name=props.get("name", Path(source).stem),
            scale=integer("scale", 1),
            channels=integer("channels", 3),
            multiple_of=integer("multiple_of", 1),
            min_size=integer("min_size", 1),
            range=(low, high),
            inputs=inputs,
            precision=precision,
            config=config,
            background=_parse_background(props["background"], source) if "background" in props else None,
            whole_image=flags["whole_image"] == "1",
            opaque_output=flags["opaque_output"] == "1",
            resolution=optional("resolution"),
            style_size=optional("style_size"),
            latent_dim=optional("latent_dim"),
            labels=tuple(name for name in props.get("labels", "").split(",") if name),
        )

    def require(self, *, task: str | None, scale: int | None = None, channels: int = 3) -> None:
        """Check that this model fits a request: its task (when both are known), scale and channels.

        Raises:
            ModelError: it was trained for another task, has another scale or channel count.
        """
        if task and self.task and self.task != task:
            raise ModelError(f"model {self.name!r} is a {self.task} model, not {task}; pick a {task} model")
        if self.channels != channels:
            raise ModelError(
                f"model {self.name!r} takes {self.channels} input channels; the runtime feeds {channels}"
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


def _parse_background(text: str, source: str) -> tuple[int, int, int]:
    """Metadata "r,g,b" (each 0-255) -> (r, g, b)."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= value <= 255 for value in values):
        raise ModelError(
            f"{source}: metadata 'background' is {text!r}, expected 'r,g,b' with each 0-255; re-export the model"
        )
    return values  # type: ignore[return-value]


def precision_variant(path: str | os.PathLike[str], precision: str) -> Path:
    """The file holding `precision`'s variant of the model at `path`.

    `model.onnx` is float32, `model.fp16.onnx` its float16 twin and `model.int8.onnx` its 8-bit
    one; any of the names maps to the others.

    Raises:
        ModelError: unknown precision.

    Example:
        >>> precision_variant("weights/superres-x4.fp16.onnx", "int8").as_posix()
        'weights/superres-x4.int8.onnx'
    """
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    return Path(path).with_name(f"{model_stem(path)}{VARIANT_SUFFIXES[precision]}")


def model_stem(path: str | os.PathLike[str]) -> str:
    """The model's name in a variant's file name: "superres-x4" for superres-x4.fp16.onnx."""
    name = Path(path).name
    for suffix in (FP16_SUFFIX, INT8_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def variant_precision(path: str | os.PathLike[str]) -> str:
    """The precision a file's name declares: "fp16" for *.fp16.onnx, "int8" for *.int8.onnx,
    else "fp32"."""
    name = Path(path).name
    return next((precision for precision, suffix in VARIANT_SUFFIXES.items() if precision != "fp32" and name.endswith(suffix)), "fp32")
