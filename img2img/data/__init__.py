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
from img2img.data.two_domain import (
    AlignedDataset,
    PairedDataset,
    SingleDataset,
    UnalignedDataset,
    load_domain_image,
    parse_background,
    translation_transform,
)

__all__ = [
    "DEGRADATIONS",
    "IMAGE_EXTENSIONS",
    "AlignedDataset",
    "BicubicDegradation",
    "HRCropDataset",
    "PairedDataset",
    "RealWorldDegradation",
    "SingleDataset",
    "UnalignedDataset",
    "ValidationImages",
    "bicubic_downscale",
    "bicubic_upscale",
    "build_degradation",
    "list_images",
    "load_domain_image",
    "parse_background",
    "translation_transform",
]
