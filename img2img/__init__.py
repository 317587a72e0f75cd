"""img2img: GAN image-to-image toolkit.

The package splits in two halves that never meet at import time:

- the inference side (`img2img.runtime`, the `img2img` command) runs exported ONNX models with
  onnxruntime, numpy and Pillow only;
- the training side (`img2img.nets`, `img2img.losses`, `img2img.engine`, `img2img.tasks`,
  `img2img.export`) needs the `train` extra (torch, kornia, albumentations, onnx).

Importing `img2img` itself imports neither.

Example:
    >>> import img2img
    >>> upscale = img2img.load("superres-x4")   # or a path to any exported .onnx model
    >>> upscale(Image.open("photo.jpg")).save("photo_x4.png")
    >>> faces = img2img.load_faces()            # the shipped face generator
    >>> faces.generate(faces.latents([0, 1, 2], truncation=0.7), faces.labels_for([0, 1, 2], "smiley"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from img2img.runtime.api import Model
    from img2img.runtime.faces import FaceGenerator

__version__ = "0.1.0"


def load(model: str | None = None, *, task: str | None = None, **options: Any) -> Model:
    """Open an exported model for inference (ONNX Runtime, no torch); see `img2img.runtime.api.Model`
    for the options (scale, device, precision, tile, tile_overlap, batch_size, alpha, threads)."""
    from img2img.runtime.api import load as load_model

    return load_model(model, task=task, **options)


def load_faces(model: str | None = None, *, device: str = "auto", threads: int | None = None) -> FaceGenerator:
    """Open a face generator (default: the shipped faces-emoji; or a shipped name or an .onnx
    path) for inference without torch; see `img2img.runtime.faces.FaceGenerator`."""
    from img2img.runtime.faces import FaceGenerator
    from img2img.runtime.shipped import resolve_model

    return FaceGenerator(resolve_model(model, task="faces", scale=None), device=device, threads=threads)
