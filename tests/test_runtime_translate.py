"""Translation models in the runtime: background compositing, output alpha, whole-image runs.

The fixture translator inverts colours (output = 1 - input), so every expected pixel is known.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import img2img
from img2img.errors import ModelError
from img2img.runtime import ModelInfo, load_image
from img2img.runtime.describe import describe
from img2img.files.decode import from_pil

TRANSLATE_PROPS = {"task": "translate", "scale": "1", "domains": "google->twitter"}

# (R, G, B, A) test pixels: hidden colour under full transparency, half-transparent red, opaque.
HIDDEN = (10, 200, 30, 0)
HALF_RED = (255, 0, 0, 128)
OPAQUE = (40, 80, 120, 255)


def sprite(tmp_path: Path) -> Path:
    """A 3x1 RGBA PNG holding HIDDEN, HALF_RED and OPAQUE, left to right."""
    path = tmp_path / "sprite.png"
    Image.fromarray(np.array([[HIDDEN, HALF_RED, OPAQUE]], np.uint8)).save(path)
    return path


def composited_then_inverted(pixel: tuple[int, int, int, int], background: tuple[int, int, int]) -> np.ndarray:
    opacity = pixel[3] / 255
    flat = np.array(pixel[:3]) * opacity + np.array(background) * (1 - opacity)
    return 255 - flat


def test_translation_metadata_is_parsed() -> None:
    info = ModelInfo.from_metadata(
        {**TRANSLATE_PROPS, "background": "0, 128,255", "whole_image": "1"}, source="m.onnx"
    )
    assert info.background == (0, 128, 255) and info.domains == "google->twitter" and info.whole_image
    plain = ModelInfo.from_metadata({"scale": "4"}, source="m.onnx")
    assert plain.background is None and plain.domains == "" and not plain.whole_image


@pytest.mark.parametrize(
    ("key", "value"),
    [("background", "255,255"), ("background", "0,0,256"), ("background", "white"), ("whole_image", "yes")],
)
def test_bad_translation_metadata_names_the_key_and_the_fix(key: str, value: str) -> None:
    with pytest.raises(ModelError, match=rf"m\.onnx: metadata '{key}' is '{value}'.*re-export"):
        ModelInfo.from_metadata({**TRANSLATE_PROPS, key: value}, source="m.onnx")


def test_transparent_pixels_are_composited_onto_the_background_before_the_net(
    make_translator: Callable[..., Path], tmp_path: Path
) -> None:
    model = img2img.load(make_translator(metadata={"background": "0,128,255"}), task="translate")
    result = model.process(load_image(sprite(tmp_path)))
    assert result.pixels.dtype == np.uint8 and result.pixels.shape == (1, 3, 3)
    # Fully transparent: the hidden colour is gone, the net saw the background (0, 128, 255).
    np.testing.assert_array_equal(result.pixels[0, 0], [255, 127, 0])
    np.testing.assert_allclose(result.pixels[0, 1], composited_then_inverted(HALF_RED, (0, 128, 255)), atol=1)
    np.testing.assert_array_equal(result.pixels[0, 2], [215, 175, 135])  # opaque: untouched

    # numpy and PIL inputs are composited the same way.
    array = np.array([[HIDDEN, HALF_RED, OPAQUE]], np.uint8)
    np.testing.assert_array_equal(model(array)[:, :, :3], result.pixels)
    np.testing.assert_array_equal(np.asarray(model(Image.fromarray(array)))[:, :, :3], result.pixels)


def test_without_a_background_transparent_pixels_go_in_as_they_are(
    make_translator: Callable[..., Path], tmp_path: Path
) -> None:
    model = img2img.load(make_translator(metadata={"background": None}))
    assert model.info.background is None
    result = model.process(load_image(sprite(tmp_path)))
    np.testing.assert_array_equal(result.pixels[0, :, :3], 255 - np.array([HIDDEN, HALF_RED, OPAQUE])[:, :3])


def test_alpha_is_kept_by_default_and_dropped_on_request(make_translator: Callable[..., Path], tmp_path: Path) -> None:
    path = make_translator()
    image = load_image(sprite(tmp_path))

    kept = img2img.load(path).process(image)
    assert kept.alpha is not None
    np.testing.assert_array_equal(kept.alpha, [[0, 128, 255]])  # the silhouette, exactly

    dropped = img2img.load(path, alpha="drop")
    assert dropped.process(image).alpha is None
    array = np.array([[HIDDEN, HALF_RED, OPAQUE]], np.uint8)
    flat = dropped(array)
    assert flat.shape == (1, 3, 3)
    np.testing.assert_array_equal(flat[0, 0], [0, 0, 0])  # white background, inverted
    assert dropped(Image.fromarray(array)).mode == "RGB"
    assert dropped(Image.fromarray(array[:, :, [0, 3]], mode="LA")).mode == "L"


def test_unknown_alpha_mode_lists_the_choices(make_translator: Callable[..., Path]) -> None:
    with pytest.raises(ModelError, match="bicubic, model, drop"):
        img2img.load(make_translator(), alpha="keep")


def test_odd_sizes_are_padded_and_cropped_back(make_translator: Callable[..., Path]) -> None:
    model = img2img.load(make_translator(), tile=None)
    for height, width in ((7, 13), (1, 1), (5, 4)):
        array = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
        np.testing.assert_array_equal(model(array), 255 - array)


def ramp(width: int, height: int = 12) -> np.ndarray:
    """(height, width, 3) uint8, dark on the left and bright on the right: tiles of it have very
    different means from the whole."""
    row = np.linspace(0, 255, width).round().astype(np.uint8)
    return np.repeat(np.tile(row, (height, 1))[:, :, None], 3, axis=2)


def test_whole_image_models_run_whole_under_tile_auto(make_translator: Callable[..., Path]) -> None:
    # Wider than the largest automatic tile, so "auto" would tile any other model.
    image = ramp(1100)
    whole_image = make_translator(name="normalised", global_mean=True)
    reference = img2img.load(whole_image, tile=None)(image)
    np.testing.assert_array_equal(img2img.load(whole_image, tile="auto")(image), reference)

    tiled = img2img.load(whole_image, tile=256, tile_overlap=16).process(from_pil(Image.fromarray(image)))
    assert not np.array_equal(tiled.pixels, reference)
    assert any("normalises over the whole image" in warning for warning in tiled.warnings)

    # The same net without the flag is tiled by "auto" and comes out differently.
    tileable = make_translator(name="tileable", global_mean=True, metadata={"whole_image": "0"})
    assert not np.array_equal(img2img.load(tileable, tile="auto")(image), reference)


def test_an_explicit_tile_covering_the_image_does_not_warn(make_translator: Callable[..., Path]) -> None:
    model = img2img.load(make_translator(), tile=64, tile_overlap=8)
    result = model.process(from_pil(Image.fromarray(ramp(40))))
    assert result.warnings == ()
    np.testing.assert_array_equal(result.pixels, 255 - ramp(40))


def test_translate_refuses_a_model_of_another_task(tiny_x2: Path) -> None:
    with pytest.raises(ModelError, match="superres model, not translate; pick a translate model"):
        img2img.load(tiny_x2, task="translate")


def test_describe_shows_domains_background_and_whole_image(
    make_translator: Callable[..., Path], tiny_x2: Path
) -> None:
    described = describe(make_translator())
    assert described["task"] == "translate" and described["scale"] == 1
    assert described["domains"] == "positive->negative"
    assert described["background"] == "255,255,255" and described["whole_image"] == "yes"
    plain = describe(tiny_x2)
    assert (plain["domains"], plain["background"], plain["whole_image"]) == ("", "none", "no")
