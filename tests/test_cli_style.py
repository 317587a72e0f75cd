"""`img2img style` as users run it, in a separate process, with tiny hand-built style graphs:
a per-style "invert" net and an arbitrary-style net whose output is
(1 - alpha) * content + alpha * (weighted mean colour of the styles)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import build_colour_mixer, build_translator
from test_cli_superres import assert_one_line_error, img2img


@pytest.fixture
def mixer(tmp_path: Path) -> Path:
    return build_colour_mixer(tmp_path / "mixer.onnx")


@pytest.fixture
def invert_style(tmp_path: Path) -> Path:
    return build_translator(
        tmp_path / "invert.onnx", name="style-negative", metadata={"task": "style", "style": "negative", "domains": None}
    )


@pytest.fixture
def paintings(tmp_path: Path) -> dict[str, Path]:
    colours = {"red": (255, 0, 0), "blue": (0, 0, 255)}
    paths = {}
    for name, colour in colours.items():
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(np.full((20, 30, 3), colour, np.uint8)).save(paths[name])
    return paths


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 256, (12, 17, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(float)


def test_a_per_style_model_restyles_beside_the_input_named_after_its_style(weights, photo, invert_style):
    result = img2img("style", photo, "--model", invert_style, weights=weights)
    assert result.returncode == 0, result.stderr
    output = photo.with_name("photo_negative.png")
    assert result.stdout.startswith(f"wrote {output} (17x12, negative, ")
    np.testing.assert_array_equal(read(output), 255 - read(photo))


def test_style_image_with_alpha_mixes_content_and_style(weights, photo, mixer, paintings, tmp_path):
    output = tmp_path / "half.png"
    result = img2img(
        "style", photo, "--model", mixer, "--style-image", paintings["red"], "--alpha", "0.5", "-o", output,
        weights=weights,
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(read(output), 0.5 * read(photo) + 0.5 * np.array([255, 0, 0]), atol=1)


def test_two_style_images_are_interpolated_by_their_weights(weights, photo, mixer, paintings, tmp_path):
    output = tmp_path / "mix.png"
    result = img2img(
        "style", photo, "--model", mixer,
        "--style-image", paintings["red"], "--style-image", paintings["blue"],
        "--style-weight", "3", "--style-weight", "1", "-o", output,
        weights=weights,
    )
    assert result.returncode == 0, result.stderr
    expected = np.broadcast_to(np.array([0.75 * 255, 0, 0.25 * 255]), read(photo).shape)
    np.testing.assert_allclose(read(output), expected, atol=1)
    assert "red+blue" in result.stdout


def test_preserve_color_keeps_the_photos_chroma(weights, photo, invert_style, tmp_path):
    output = tmp_path / "kept.png"
    result = img2img("style", photo, "--model", invert_style, "--preserve-color", "-o", output, weights=weights)
    assert result.returncode == 0, result.stderr

    def ycbcr(pixels: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(pixels.astype(np.uint8)).convert("YCbCr")).astype(float)

    source, written = ycbcr(read(photo)), ycbcr(read(output))
    inverted = ycbcr(255 - read(photo))
    # Where no channel clipped, chroma is the photo's and brightness the stylised image's.
    unclipped = (read(output) > 2).all(axis=2) & (read(output) < 253).all(axis=2)
    assert unclipped.sum() > 20
    np.testing.assert_allclose(written[unclipped][:, 1:], source[unclipped][:, 1:], atol=2)
    np.testing.assert_allclose(written[unclipped][:, 0], inverted[unclipped][:, 0], atol=2)


def test_alpha_is_refused_for_a_per_style_model(weights, photo, invert_style, tmp_path):
    output = tmp_path / "never.png"
    result = img2img("style", photo, "--model", invert_style, "--alpha", "0.5", "-o", output, weights=weights)
    assert_one_line_error(result, "--alpha")
    assert not output.exists()


def test_style_images_are_refused_for_a_per_style_model(weights, photo, invert_style, paintings, tmp_path):
    output = tmp_path / "never.png"
    result = img2img(
        "style", photo, "--model", invert_style, "--style-image", paintings["red"], "-o", output, weights=weights
    )
    assert_one_line_error(result, "renders one fixed style", "AdaIN")
    assert not output.exists()


def test_an_arbitrary_style_model_without_a_style_image_is_refused(weights, photo, mixer, tmp_path):
    output = tmp_path / "never.png"
    result = img2img("style", photo, "--model", mixer, "-o", output, weights=weights)
    assert_one_line_error(result, "--style-image")
    assert not output.exists()


def test_a_missing_style_image_is_one_error_and_no_output(weights, photo, mixer, tmp_path):
    output = tmp_path / "never.png"
    result = img2img(
        "style", photo, "--model", mixer, "--style-image", tmp_path / "nope.jpg", "-o", output, weights=weights
    )
    assert_one_line_error(result, "nope.jpg")
    assert not output.exists()


def test_weights_must_match_the_style_images(weights, photo, mixer, paintings, tmp_path):
    result = img2img(
        "style", photo, "--model", mixer, "--style-image", paintings["red"],
        "--style-weight", "1", "--style-weight", "2", weights=weights,
    )
    assert_one_line_error(result, "one weight per image")


def test_no_style_at_all_names_the_shipped_styles(weights, photo):
    assert_one_line_error(img2img("style", photo, weights=weights), "--style NAME", "--style-image")


def test_an_unknown_style_name_is_one_error(weights, photo):
    assert_one_line_error(img2img("style", photo, "--style", "no-such-painting", weights=weights), "style-no-such-painting")


def test_the_output_may_not_overwrite_the_style_image(weights, photo, mixer, paintings):
    before = paintings["red"].read_bytes()
    result = img2img(
        "style", photo, "--model", mixer, "--style-image", paintings["red"], "-o", paintings["red"], weights=weights
    )
    assert_one_line_error(result, "refusing to overwrite")
    assert paintings["red"].read_bytes() == before


def test_a_folder_goes_on_past_a_bad_file(weights, tmp_path, invert_style):
    source = tmp_path / "photos"
    source.mkdir()
    Image.fromarray(np.full((6, 9, 3), 40, np.uint8)).save(source / "good.png")
    (source / "broken.png").write_bytes(b"not a png")
    result = img2img("style", source, "--model", invert_style, weights=weights)
    assert result.returncode == 1, result.stderr
    assert "1 written, 0 skipped, 1 failed" in result.stderr
    np.testing.assert_array_equal(read(tmp_path / "photos_negative" / "good.png"), np.full((6, 9, 3), 215.0))
    assert not (tmp_path / "photos_negative" / "broken.png").exists()


def test_python_api_takes_style_arrays(mixer):
    import img2img

    photo = np.zeros((5, 7, 3), np.uint8)
    green = np.zeros((10, 10, 3), np.uint8)
    green[..., 1] = 255
    model = img2img.load(str(mixer), task="style", style=[green], style_alpha=1.0)
    np.testing.assert_array_equal(model(photo)[..., 1], np.full((5, 7), 255))


def test_info_shows_the_style_inputs(weights, mixer):
    result = img2img("info", mixer, weights=weights)
    assert result.returncode == 0, result.stderr
    assert "image,style,style_weights,alpha" in result.stdout and "style_size" in result.stdout



def test_an_incomplete_style_input_list_is_refused_when_the_model_opens():
    from img2img.errors import ModelError
    from img2img.contract import ModelInfo

    with pytest.raises(ModelError, match="image,style,style_weights,alpha"):
        ModelInfo.from_metadata({"scale": "1", "inputs": "image,style"}, source="m.onnx")


def test_style_image_without_a_model_says_how_to_get_one_when_none_is_shipped(weights, photo, paintings):
    result = img2img("style", photo, "--style-image", paintings["red"], weights=weights)
    assert_one_line_error(result, "--model")
