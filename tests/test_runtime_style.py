"""The shipped style models on the example photo, through the torch-free runtime, and the
runtime's style helpers (style squares, colour keeping)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import img2img
from img2img.runtime import load_image
from img2img.runtime.style import preserve_color, square_style

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights"
PHOTO = ROOT / "examples" / "spaniels.png"
# The paintings' mean colours (RGB in [0, 1]) as built by scripts/build_styles.py; measured
# once from data/styles/paintings, so the tests need neither the packages nor the data.
PAINTING_MEANS = {"starry-night": (0.275, 0.376, 0.447), "the-kiss": (0.638, 0.434, 0.151)}


def colour_gap(image: np.ndarray, mean: tuple[float, float, float]) -> float:
    return float(np.abs(image.reshape(-1, 3).mean(axis=0) - np.asarray(mean)).sum())


@pytest.mark.parametrize("style", sorted(PAINTING_MEANS))
def test_shipped_per_style_model_paints_the_photo_in_its_paintings_colours(style):
    path = WEIGHTS / f"style-{style}.onnx"
    if not path.is_file():
        pytest.skip("shipped weights not present")
    photo = load_image(PHOTO).rgb
    model = img2img.load(path, task="style", device="cpu")
    assert model.info.style == style and model.info.whole_image
    painted = model(photo)
    assert painted.shape == photo.shape
    assert colour_gap(painted, PAINTING_MEANS[style]) < 0.5 * colour_gap(photo, PAINTING_MEANS[style])


def test_shipped_adain_goes_from_the_photo_at_alpha_0_to_the_painting_at_alpha_1():
    path = WEIGHTS / "style-adain.onnx"
    if not path.is_file():
        pytest.skip("shipped weights not present")
    photo = load_image(PHOTO).rgb
    kiss = np.full((64, 64, 3), PAINTING_MEANS["the-kiss"], np.float32)
    kiss[::4] *= 0.5  # some texture: a flat style has no standard deviation to transfer
    reconstructed = img2img.load(path, task="style", device="cpu", style=[kiss], style_alpha=0.0)(photo)
    painted = img2img.load(path, task="style", device="cpu", style=[kiss], style_alpha=1.0)(photo)
    # alpha 0 is the photo itself (to the 8-bit step), whatever the painting.
    assert np.abs(reconstructed - photo).max() <= 1 / 255
    assert colour_gap(painted, PAINTING_MEANS["the-kiss"]) < 0.5 * colour_gap(photo, PAINTING_MEANS["the-kiss"])


def test_square_style_scales_the_shorter_side_and_crops_the_centre():
    wide = np.zeros((20, 60, 3), np.float32)
    wide[:, 25:35] = 1.0  # a white band in the middle third of the width
    square = square_style(wide, 10)
    assert square.shape == (10, 10, 3) and square.dtype == np.float32
    # The 30x10 scaled image keeps its centre 10 columns: the band's 3.3 columns sit in the middle.
    assert square[:, 4:6].mean() > 0.9 and square[:, 0].mean() < 0.1 and square[:, -1].mean() < 0.1


def test_preserve_color_takes_luma_from_the_stylised_image_and_chroma_from_the_photo():
    rng = np.random.default_rng(0)
    photo = rng.uniform(0.3, 0.7, (8, 8, 3)).astype(np.float32)
    stylised = rng.uniform(0.3, 0.7, (8, 8, 3)).astype(np.float32)
    kept = preserve_color(stylised, photo)

    def ycbcr(rgb: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray((rgb * 255).round().astype(np.uint8)).convert("YCbCr"), float)

    np.testing.assert_allclose(ycbcr(kept)[..., 0], ycbcr(stylised)[..., 0], atol=1.5)
    np.testing.assert_allclose(ycbcr(kept)[..., 1:], ycbcr(photo)[..., 1:], atol=1.5)
