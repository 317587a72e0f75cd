"""Pixel-space reconstruction losses and total variation.

Every loss takes `input` and `target` of the same shape (any shape, usually (B, C, H, W) in the
net's output range) and returns a scalar mean over all elements, so its size does not depend on
the batch or image size and loss weights carry over between resolutions.

Example:
    >>> import torch
    >>> loss = PIXEL_LOSSES.get("charbonnier")
    >>> round(float(loss(torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4))), 4)  # sqrt(1 + eps^2)
    1.0
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from img2img.registry import Registry

PixelLoss = Callable[[Tensor, Tensor], Tensor]

PIXEL_LOSSES: Registry[PixelLoss] = Registry("pixel loss")


def _check_same_shape(input: Tensor, target: Tensor) -> None:
    # Silent broadcasting between e.g. (B, 3, H, W) and (3, H, W) gives a loss that trains
    # towards the wrong thing, so a mismatch is an error here.
    if input.shape != target.shape:
        raise ValueError(
            f"input and target must have the same shape, got {tuple(input.shape)} and "
            f"{tuple(target.shape)}; resize or crop one of them first"
        )


@PIXEL_LOSSES.register("l1")
def l1_loss(input: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error: mean(|input - target|)."""
    _check_same_shape(input, target)
    return F.l1_loss(input, target)


@PIXEL_LOSSES.register("l2")
def l2_loss(input: Tensor, target: Tensor) -> Tensor:
    """Mean squared error: mean((input - target)^2)."""
    _check_same_shape(input, target)
    return F.mse_loss(input, target)


@PIXEL_LOSSES.register("charbonnier")
def charbonnier_loss(input: Tensor, target: Tensor, eps: float = 1e-3) -> Tensor:
    """Charbonnier loss, a differentiable L1: mean(sqrt((input - target)^2 + eps^2)).

    For |input - target| >> eps it equals L1 plus at most eps; near zero it is quadratic, so
    its gradient is smooth where L1's flips sign. The floor of the loss is `eps`, not 0.
    """
    _check_same_shape(input, target)
    if eps <= 0:
        raise ValueError(f"charbonnier eps must be > 0, got {eps}")
    return torch.sqrt((input - target).pow(2) + eps * eps).mean()


def phase_deviation(x: Tensor, period: int) -> Tensor:
    """What repeats every `period` pixels in `x`: its mean at each of the period x period phases
    (row mod period, column mod period), over the whole cells, less the mean of those means.

    A sub-pixel (PixelShuffle) upscaler computes each phase with its own output channel, so a
    drift between those channels shows here as a fixed pattern; image content averages out.

    Args:
        x: (B, C, H, W), any range; H and W at least `period`.
        period: >= 1 (an upscaler's scale).

    Returns:
        (B, C, period, period) in float32, summing to zero over the last two dimensions.

    Example:
        >>> x = torch.zeros(1, 1, 4, 4); x[..., ::2, ::2] = 4.0
        >>> phase_deviation(x, 2)[0, 0].tolist()
        [[3.0, -1.0], [-1.0, -1.0]]
    """
    height, width = x.shape[-2:]
    if period < 1 or height < period or width < period:
        raise ValueError(f"phase_deviation needs period >= 1 and at least {period}x{period} pixels, got {height}x{width}")
    cells = x[..., : height // period * period, : width // period * period].float()
    cells = cells.unflatten(-1, (width // period, period)).unflatten(-3, (height // period, period))
    means = cells.mean(dim=(-4, -2))  # (B, C, period, period)
    return means - means.mean(dim=(-2, -1), keepdim=True)


def grid_loss(input: Tensor, target: Tensor, period: int) -> Tensor:
    """The fixed pattern of period `period` in the error: mean(|phase_deviation(input - target)|).

    An L1 on the part of the error that repeats at every LR pixel of a x`period` upscale and on
    nothing else: it leaves texture free and removes the grid that a perceptual or adversarial
    loss can teach a pixel-shuffle net. Shapes as `phase_deviation`.
    """
    _check_same_shape(input, target)
    return phase_deviation(input - target, period).abs().mean()


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic total variation of images `x` of shape (B, C, H, W), any range.

    Returns mean(|x[..., i+1, j] - x[..., i, j]|) + mean(|x[..., i, j+1] - x[..., i, j]|):
    the mean absolute difference between vertical neighbours plus the same between horizontal
    neighbours. Each mean is over its own B*C*(H-1)*W or B*C*H*(W-1) differences, so a ramp
    rising by `d` per pixel along W alone scores exactly `d` at any image size.
    """
    if x.ndim != 4:
        raise ValueError(f"total_variation expects (B, C, H, W) images, got shape {tuple(x.shape)}")
    if x.shape[-2] < 2 or x.shape[-1] < 2:
        raise ValueError(f"total_variation needs H and W >= 2, got shape {tuple(x.shape)}")
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    return dh + dw
