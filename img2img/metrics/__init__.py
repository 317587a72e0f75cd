"""Image quality metrics: full-reference (PSNR, SSIM, both also over an inpainted hole),
distribution (FID, KID, IS), a VGG19 feature distance and the grid an upscaler can leave.
Everything here needs the train extra (torch)."""

from img2img.metrics.artifacts import grid_amplitude
from img2img.metrics.distribution import (
    FeatureSet,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
)
from img2img.metrics.folders import FolderFeatures, folder_features, load_rgb
from img2img.metrics.full_reference import psnr, rgb_to_y, ssim
from img2img.metrics.inception import (
    INCEPTION_RESIZE,
    InceptionFeatures,
    LogitsHead,
    load_inception,
    resize_for_inception,
)
from img2img.metrics.masked import hole_metrics
from img2img.metrics.perceptual import VGGFeatureDistance

__all__ = [
    "INCEPTION_RESIZE",
    "FeatureSet",
    "FolderFeatures",
    "InceptionFeatures",
    "LogitsHead",
    "VGGFeatureDistance",
    "folder_features",
    "frechet_distance",
    "grid_amplitude",
    "hole_metrics",
    "inception_score",
    "kernel_inception_distance",
    "load_inception",
    "load_rgb",
    "psnr",
    "resize_for_inception",
    "rgb_to_y",
    "ssim",
]
