"""Full-reference image quality metrics as super-resolution papers report them.

Conventions (those of the SRCNN/EDSR/ESRGAN evaluation code and BasicSR):

- images are (B, 3, H, W) RGB in [0, 1]; every metric returns one value per image, shape (B,);
- ``quantize=True`` (the default) first clamps to [0, 1] and rounds to 8-bit levels, so a model
  is scored on the image it would save, not on unclamped floats;
- ``crop_border`` pixels are dropped on every side (papers use the scale factor), because the
  borders depend on how each method pads;
- ``y_channel=True`` scores the ITU-R BT.601 luma that MATLAB's ``rgb2ycbcr`` computes.

PSNR of identical images is ``inf``. SSIM is the standard one (Wang et al. 2004): an 11x11
Gaussian window with sigma 1.5, constants (0.01, 0.03) of the data range, computed where the
window fits inside the image (no padding) and averaged over positions and channels.
"""

from __future__ import annotations

import torch
from kornia.metrics import ssim as ssim_map

_SSIM_WINDOW = 11


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma, as MATLAB's ``rgb2ycbcr`` and super-resolution papers compute it.

    Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 for R, G, B in [0, 1], so black maps to
    16/255 and white to 235/255 (the "studio" range).

    Args:
        x: (B, 3, H, W) RGB in [0, 1].

    Returns:
        (B, 1, H, W) in [16/255, 235/255].

    Example:
        >>> round(rgb_to_y(torch.ones(1, 3, 1, 1)).item() * 255, 3)
        235.0
    """
    _check_images(x, "x")
    weights = x.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
    return (16.0 + (x * weights).sum(dim=1, keepdim=True)) / 255.0


def _check_images(x: torch.Tensor, name: str) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must be a (B, 3, H, W) batch of RGB images, got {tuple(x.shape)}")


def _prepare(
    pred: torch.Tensor,
    target: torch.Tensor,
    crop_border: int,
    y_channel: bool,
    quantize: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    _check_images(pred, "pred")
    _check_images(target, "target")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape"
        )
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    height, width = pred.shape[-2:]
    if 2 * crop_border >= min(height, width):
        raise ValueError(f"crop_border {crop_border} leaves nothing of a {height}x{width} image")
    # float64 keeps the MSE of near-identical 8-bit images exact enough for PSNR near 60 dB.
    pred, target = pred.double(), target.double()
    if quantize:
        pred = (pred.clamp(0.0, 1.0) * 255.0).round() / 255.0
        target = (target.clamp(0.0, 1.0) * 255.0).round() / 255.0
    if crop_border:
        pred = pred[..., crop_border:-crop_border, crop_border:-crop_border]
        target = target[..., crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        pred, target = rgb_to_y(pred), rgb_to_y(target)
    return pred, target


def psnr(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    crop_border: int = 0,
    y_channel: bool = False,
    quantize: bool = True,
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per image: 10 log10(1 / MSE) for a data range of 1.

    Args:
        pred, target: (B, 3, H, W) RGB in [0, 1].
        crop_border: pixels dropped on each side before scoring.
        y_channel: score the BT.601 luma (``rgb_to_y``) instead of the three RGB channels.
        quantize: clamp to [0, 1] and round to 8-bit levels first.

    Returns:
        (B,) float32; ``inf`` where an image equals its target.

    Example:
        >>> target = torch.full((1, 3, 8, 8), 0.2)
        >>> psnr(target + 0.1, target, quantize=False)
        tensor([20.])
    """
    pred, target = _prepare(pred, target, crop_border, y_channel, quantize)
    mse = (pred - target).pow(2).mean(dim=(1, 2, 3))
    # 10 log10(1 / 0) is inf, which is the honest value for a perfect match.
    return (-10.0 * torch.log10(mse)).float()


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    crop_border: int = 0,
    y_channel: bool = False,
    quantize: bool = True,
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), per image.

    Gaussian window 11x11 with sigma 1.5 (``kornia.metrics.ssim``), no padding: the map covers
    the positions where the window fits, then is averaged over positions and channels.

    Args:
        pred, target: (B, 3, H, W) RGB in [0, 1], at least 11x11 after ``crop_border``.
        crop_border: pixels dropped on each side before scoring.
        y_channel: score the BT.601 luma (``rgb_to_y``) instead of the three RGB channels.
        quantize: clamp to [0, 1] and round to 8-bit levels first.

    Returns:
        (B,) float32 in [-1, 1]; 1 where an image equals its target.
    """
    pred, target = _prepare(pred, target, crop_border, y_channel, quantize)
    height, width = pred.shape[-2:]
    if min(height, width) < _SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {_SSIM_WINDOW}x{_SSIM_WINDOW} after crop_border, "
            f"got {height}x{width}"
        )
    similarity = ssim_map(pred, target, _SSIM_WINDOW, max_val=1.0, padding="valid")
    return similarity.mean(dim=(1, 2, 3)).float()
