"""No-reference measures of the artefacts an upscaler's architecture can leave.

A sub-pixel (PixelShuffle) upscaler computes each of the scale x scale output phases with its own
output channel. When those channels drift apart (a perceptual loss teaches that, measured on
`superres-x4-real`), every LR pixel gets the same small pattern and the output carries a fixed
grid with the period of the scale: the "checkerboard" of sub-pixel and
transposed-convolution nets. Image content averages out over the phases of a whole image, so the
mean detail at each phase measures that grid alone (`losses.phase_deviation`; `losses.grid_loss`
trains it away).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from img2img.losses.pixel import phase_deviation
from img2img.metrics.full_reference import rgb_to_y


def grid_amplitude(image: torch.Tensor, period: int) -> torch.Tensor:
    """Strength of a fixed pattern that repeats every `period` pixels, in [0, 1] levels.

    The luma's detail (the image minus its (2 period + 1)-wide box blur) is averaged over every
    `period` x `period` cell at each of the period^2 phases; the largest deviation of those phase
    means from their own mean is the grid's amplitude. An upscaler's output is measured with the
    phases anchored at the top-left corner, where the LR pixel grid starts.

    Args:
        image: (B, 3, H, W) RGB in [0, 1], H and W at least 2 * period.
        period: the grid's period in pixels (an upscaler's scale), >= 2.

    Returns:
        (B,) amplitudes. Without a grid, what remains is the estimate's noise: the detail's
        spread over the square root of the number of cells, about 0.0005 to 0.001 for a 256x256
        photo or upscale at period 4, and less on larger images. A grid that is plain on a flat
        area measures 0.01 and more (one 8-bit level is 0.004).

    Example:
        >>> flat = torch.full((1, 3, 32, 32), 0.5)
        >>> grid = flat.clone(); grid[..., ::4, ::4] += 0.1
        >>> bool(grid_amplitude(flat, 4) < 1e-6), bool(grid_amplitude(grid, 4) > 0.05)
        (True, True)
    """
    if period < 2:
        raise ValueError(f"grid_amplitude needs a period of at least 2 pixels, got {period}")
    height, width = image.shape[-2:]
    if height < 2 * period or width < 2 * period:
        raise ValueError(f"grid_amplitude needs at least {2 * period}x{2 * period} pixels, got {height}x{width}")
    luma = rgb_to_y(image.float())
    radius = period
    blurred = F.avg_pool2d(
        F.pad(luma, (radius,) * 4, mode="replicate"), kernel_size=2 * radius + 1, stride=1
    )
    return phase_deviation(luma - blurred, period).abs().amax(dim=(1, 2, 3))
