"""Training data: folders of images (``folder``), the degradations that make
low-resolution inputs from high-resolution batches (``degradations``) and inpainting hole masks
(``masks``)."""

from img2img.data.degradations import (
    DEGRADATIONS,
    BicubicDegradation,
    RealWorldDegradation,
    bicubic_downscale,
    bicubic_upscale,
    build_degradation,
    protocol_lr,
)
from img2img.data.folder import HRCropDataset, ScaledPairDataset, ValidationImages, list_images
from img2img.data.masks import MASK_KINDS, MaskSettings, random_mask, square_crop, validation_masks, validation_set
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
    "MASK_KINDS",
    "AlignedDataset",
    "BicubicDegradation",
    "HRCropDataset",
    "MaskSettings",
    "PairedDataset",
    "RealWorldDegradation",
    "ScaledPairDataset",
    "SingleDataset",
    "UnalignedDataset",
    "ValidationImages",
    "bicubic_downscale",
    "bicubic_upscale",
    "build_degradation",
    "list_images",
    "protocol_lr",
    "load_domain_image",
    "parse_background",
    "random_mask",
    "square_crop",
    "translation_transform",
    "validation_masks",
    "validation_set",
]
