"""Training data: folders of images (``folder``) and the degradations that make
low-resolution inputs from high-resolution batches (``degradations``)."""

from img2img.data.degradations import (
    DEGRADATIONS,
    BicubicDegradation,
    RealWorldDegradation,
    bicubic_downscale,
    bicubic_upscale,
    build_degradation,
)
from img2img.data.folder import IMAGE_EXTENSIONS, HRCropDataset, ValidationImages, list_images

__all__ = [
    "DEGRADATIONS",
    "IMAGE_EXTENSIONS",
    "BicubicDegradation",
    "HRCropDataset",
    "RealWorldDegradation",
    "ValidationImages",
    "bicubic_downscale",
    "bicubic_upscale",
    "build_degradation",
    "list_images",
]
