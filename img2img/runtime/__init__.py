"""The inference runtime: image I/O, ONNX models and the shipped weights.

Imports numpy, Pillow and (when a model is opened) onnxruntime; never torch.

Example:
    >>> from img2img.runtime import OnnxModel, load_image, resolve_model, save_image
    >>> model = OnnxModel(resolve_model(None, task="superres", scale=4))
    >>> image = load_image("photo.png")
    >>> save_image(model.run(image.rgb), "photo_x4.png")
"""

from img2img.runtime.image_io import (
    LoadedImage,
    check_output_path,
    load_image,
    output_format,
    resize_alpha,
    save_image,
)
from img2img.runtime.onnx_model import DEVICES, ModelInfo, OnnxModel, select_providers
from img2img.runtime.shipped import (
    ShippedModel,
    load_manifest,
    resolve_model,
    verify_sha256,
    weights_dir,
)

__all__ = [
    "DEVICES",
    "LoadedImage",
    "ModelInfo",
    "OnnxModel",
    "ShippedModel",
    "check_output_path",
    "load_image",
    "load_manifest",
    "output_format",
    "resize_alpha",
    "resolve_model",
    "save_image",
    "select_providers",
    "verify_sha256",
    "weights_dir",
]
