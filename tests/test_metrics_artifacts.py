import numpy as np
import pytest
import torch
from PIL import Image

from img2img.metrics import grid_amplitude

EXAMPLE_PHOTO = "examples/spaniels.png"


def upscaled_photo() -> torch.Tensor:
    """The repo's example photo upscaled x4 by bicubic (a clean upscale): (1, 3, 768, 1024) in
    [0, 1]. The measure averages over cells, so a large image measures with little noise."""
    pixels = np.asarray(Image.open(EXAMPLE_PHOTO).convert("RGB"), dtype=np.float32) / 255
    photo = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)
    return torch.nn.functional.interpolate(photo, scale_factor=4, mode="bicubic").clamp(0, 1)


def with_grid(image: torch.Tensor, period: int, strength: float) -> torch.Tensor:
    """`image` plus `strength` at one phase of every period x period cell, as a sub-pixel
    upscaler whose output channels drifted apart draws it."""
    marked = image.clone()
    marked[..., ::period, ::period] += strength
    return marked


def test_a_clean_upscale_has_no_grid_and_a_drawn_one_is_measured():
    image = upscaled_photo()
    assert float(grid_amplitude(image, 4)) < 0.001
    # Two 8-bit levels at one phase of each 4x4 cell: faint, but a fixed pattern across the photo.
    marked = grid_amplitude(with_grid(image, 4, 2 / 255), 4)
    assert 0.004 < float(marked) < 0.009


def test_the_amplitude_grows_with_the_grid_and_only_at_its_period():
    image = upscaled_photo()
    weak, strong = (float(grid_amplitude(with_grid(image, 4, level / 255), 4)) for level in (2, 8))
    assert strong > 3 * weak
    # A period-4 grid is also one at 8 (every other cell), but not one at period 3.
    assert float(grid_amplitude(with_grid(image, 4, 8 / 255), 3)) < 0.003 < float(grid_amplitude(with_grid(image, 4, 8 / 255), 8))


def test_each_image_of_a_batch_gets_its_own_amplitude():
    flat = torch.full((1, 3, 32, 32), 0.5)
    amplitudes = grid_amplitude(torch.cat([flat, with_grid(flat, 2, 0.1)]), 2)
    assert amplitudes.shape == (2,)
    assert float(amplitudes[0]) < 1e-6 < 0.02 < float(amplitudes[1])


@pytest.mark.parametrize(
    ("shape", "period", "message"),
    [((1, 3, 16, 16), 1, "period of at least 2"), ((1, 3, 7, 16), 4, "at least 8x8 pixels")],
)
def test_unusable_input_is_refused_with_the_reason(shape, period, message):
    with pytest.raises(ValueError, match=message):
        grid_amplitude(torch.zeros(shape), period)
