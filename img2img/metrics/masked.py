"""Full-reference scores of inpainted images, over the whole image and over the hole alone.

An inpainting result keeps every pixel outside the hole, so whole-image PSNR and SSIM mix the
fill with pixels that are right by construction: the same fill scores higher in a small hole
than in a large one. ``psnr_hole`` and ``ssim_hole`` average over the hole pixels only, so they
measure the fill itself and compare across hole sizes.

Conventions are those of ``img2img.metrics.full_reference``: (B, 3, H, W) RGB in [0, 1],
clamped and rounded to 8-bit levels first (a method is scored on the image it would save), one
value per image.
"""

from __future__ import annotations

import torch
from kornia.metrics import ssim as ssim_map

from img2img.metrics.full_reference import _SSIM_WINDOW, _prepare, psnr


def hole_metrics(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """PSNR and SSIM of inpainted images over the whole image and over the hole.

    - "psnr", "ssim": ``full_reference.psnr`` and ``ssim`` of the whole RGB image (SSIM with no
      padding, averaged where the 11x11 window fits).
    - "psnr_hole": 10 log10(1 / MSE), the MSE averaged over the hole pixels and the three
      channels only. The kept pixels do not enter it, so it is not inflated by them when the
      hole is small.
    - "ssim_hole": the SSIM map (11x11 Gaussian window, sigma 1.5, reflect padding so the map
      has a value at every pixel) averaged over the hole pixels and the channels. Windows near
      the hole's edge also see kept pixels, as any local measure of a fill must.

    Args:
        prediction, target: (B, 3, H, W) RGB in [0, 1], H and W at least 11.
        mask: (B, 1, H, W), 1 = hole, 0 = kept; values above 0.5 count as hole.

    Returns:
        {"psnr", "ssim", "psnr_hole", "ssim_hole"}: (B,) float32 each. PSNR is ``inf`` where
        the images agree (over the hole, for "psnr_hole"); SSIM is 1 there. An image whose mask
        holds no hole pixel gets NaN for the hole scores.

    Example:
        >>> target = torch.full((1, 3, 16, 16), 0.4)
        >>> mask = torch.zeros(1, 1, 16, 16)
        >>> mask[..., 4:12, 4:12] = 1
        >>> scores = hole_metrics(target + 0.2 * mask, target, mask)  # off by 0.2 in the hole
        >>> round(scores["psnr_hole"].item(), 2)  # 10 log10(1 / 0.2^2)
        13.98
    """
    pred, truth = _prepare(prediction, target, crop_border=0, y_channel=False, quantize=True)
    batch, _, height, width = pred.shape
    if mask.shape != (batch, 1, height, width):
        raise ValueError(
            f"mask must be (B, 1, H, W) = {(batch, 1, height, width)} to match the images, got {tuple(mask.shape)}"
        )
    if min(height, width) < _SSIM_WINDOW:
        raise ValueError(f"hole metrics need images of at least {_SSIM_WINDOW}x{_SSIM_WINDOW}, got {height}x{width}")
    hole = (mask.to(pred.device) > 0.5).double()
    # Hole pixels times channels: the number of values each hole average divides by.
    count = hole.sum(dim=(1, 2, 3)) * pred.shape[1]
    squared_error = (pred - truth).pow(2)
    mse_hole = (squared_error * hole).sum(dim=(1, 2, 3)) / count
    similarity = ssim_map(pred, truth, _SSIM_WINDOW, max_val=1.0, padding="same")
    ssim_hole = (similarity * hole).sum(dim=(1, 2, 3)) / count
    # Where the window fits inside the image the padded map holds the unpadded values, so the
    # whole-image SSIM of ``full_reference.ssim`` is that region's mean: one SSIM pass, not two.
    inner = _SSIM_WINDOW // 2
    return {
        # Already quantized above; a second rounding leaves 8-bit levels unchanged.
        "psnr": psnr(pred, truth, quantize=False),
        "ssim": similarity[..., inner:-inner, inner:-inner].mean(dim=(1, 2, 3)).float(),
        # 10 log10(1 / 0) is inf, a perfect fill; 0 / 0 (no hole) is NaN.
        "psnr_hole": (-10.0 * torch.log10(mse_hole)).float(),
        "ssim_hole": ssim_hole.float(),
    }
