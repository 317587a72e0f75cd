"""`img2img translate` as users run it, in a separate process, with the tiny invert translator."""

import hashlib
import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import build_translator
from test_cli_superres import assert_one_line_error, img2img, python


@pytest.fixture
def invert(make_translator: Callable[..., Path]) -> Path:
    return make_translator()


def test_single_file_lands_beside_the_input_with_alpha_kept(weights: Path, rgba_png: Path, invert: Path) -> None:
    result = img2img("translate", rgba_png, "--model", invert, weights=weights)
    assert result.returncode == 0, result.stderr
    output = rgba_png.with_name("sprite_invert.png")
    assert result.stdout.startswith(f"wrote {output} (10x6, positive->negative, ")
    source = np.asarray(Image.open(rgba_png)).astype(float)
    with Image.open(output) as written:
        assert written.mode == "RGBA" and written.size == (10, 6)
        pixels = np.asarray(written).astype(float)
    np.testing.assert_array_equal(pixels[:, :, 3], source[:, :, 3])  # the silhouette is kept
    # Composited onto white, then inverted: 255 - (rgb * a + 255 * (1 - a)) = (255 - rgb) * a.
    opacity = source[:, :, 3:] / 255
    np.testing.assert_allclose(pixels[:, :, :3], (255 - source[:, :, :3]) * opacity, atol=1)


def test_output_option_and_alpha_drop(weights: Path, rgba_png: Path, invert: Path, tmp_path: Path) -> None:
    output = tmp_path / "flat.webp"
    result = img2img("translate", rgba_png, "--model", invert, "-o", output, "--alpha", "drop", weights=weights)
    assert result.returncode == 0, result.stderr
    with Image.open(output) as written:
        assert written.format == "WEBP" and written.mode == "RGB"
    assert not rgba_png.with_name("sprite_invert.png").exists()


def test_a_model_that_paints_over_transparency_writes_opaque_unless_asked(
    weights: Path, rgba_png: Path, make_translator: Callable[..., Path], tmp_path: Path
) -> None:
    """opaque_output (a colouring model): the input's alpha would cut away the fills it paints,
    so --alpha auto (the default) drops it; --alpha bicubic keeps it all the same."""
    colouring = make_translator(name="colouring", metadata={"opaque_output": "1"})
    result = img2img("translate", rgba_png, "--model", colouring, "-o", tmp_path / "auto.png", weights=weights)
    assert result.returncode == 0, result.stderr
    source = np.asarray(Image.open(rgba_png)).astype(float)
    with Image.open(tmp_path / "auto.png") as written:
        assert written.mode == "RGB"
        opacity = source[:, :, 3:] / 255
        np.testing.assert_allclose(np.asarray(written).astype(float), (255 - source[:, :, :3]) * opacity, atol=1)
    kept = img2img("translate", rgba_png, "--model", colouring, "-o", tmp_path / "kept.png", "--alpha", "bicubic",
                   weights=weights)  # fmt: skip
    assert kept.returncode == 0, kept.stderr
    with Image.open(tmp_path / "kept.png") as written:
        assert written.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(written)[:, :, 3], source[:, :, 3])


def test_folder_goes_to_in_underscore_model_name(weights: Path, tmp_path: Path, invert: Path) -> None:
    source = tmp_path / "emoji"
    (source / "faces").mkdir(parents=True)
    images = {"a.png": np.full((6, 9, 3), 30, np.uint8), "faces/b.png": np.full((5, 5, 3), 200, np.uint8)}
    for name, pixels in images.items():
        Image.fromarray(pixels).save(source / name)
    result = img2img("translate", source, "--model", invert, weights=weights)
    assert result.returncode == 0, result.stderr
    assert "2 written, 0 skipped, 0 failed" in result.stderr
    for name, pixels in images.items():
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "emoji_invert" / name)), 255 - pixels)


def test_a_superres_model_is_refused_in_one_line(weights: Path, rgb_png: Path) -> None:
    by_name = img2img("translate", rgb_png, "--model", "superres-x2", weights=weights)
    assert_one_line_error(by_name, "superres-x2", "superres model, not translate")
    by_path = img2img("translate", rgb_png, "--model", weights / "superres-x4.onnx", weights=weights)
    assert_one_line_error(by_path, "superres model, not translate")
    assert sorted(path.name for path in rgb_png.parent.iterdir()) == ["photo.png", "weights"]


def test_model_is_required_and_shipped_translators_are_named(weights: Path, rgb_png: Path) -> None:
    missing = img2img("translate", rgb_png, weights=weights)
    assert_one_line_error(missing, "--model", "no default translation model", "shipped ones: (none)", "img2img models")

    # Ship a translator: the error lists it, and its name runs it.
    path = build_translator(weights / "emoji-g2t.onnx", name="emoji-g2t")
    manifest = json.loads((weights / "manifest.json").read_text())
    manifest["models"].append(
        {
            "name": "emoji-g2t",
            "task": "translate",
            "scale": 1,
            "file": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
    )
    (weights / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(img2img("translate", rgb_png, weights=weights), "shipped ones: emoji-g2t")
    named = img2img("translate", rgb_png, "--model", "emoji-g2t", weights=weights)
    assert named.returncode == 0, named.stderr
    written = np.asarray(Image.open(rgb_png.with_name("photo_emoji-g2t.png")))
    np.testing.assert_array_equal(written, 255 - np.asarray(Image.open(rgb_png)))


def test_explicit_tile_on_a_whole_image_model_warns(weights: Path, rgb_png: Path, invert: Path) -> None:
    result = img2img("translate", rgb_png, "--model", invert, "--tile", "8", "--tile-overlap", "2", weights=weights)
    assert result.returncode == 0, result.stderr
    assert "warning: invert normalises over the whole image" in result.stderr
    plain = img2img("translate", rgb_png, "--model", invert, "-o", rgb_png.with_name("auto.png"), weights=weights)
    assert plain.returncode == 0 and plain.stderr == ""


def test_info_shows_the_translation_metadata(weights: Path, invert: Path) -> None:
    result = img2img("info", invert, weights=weights)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.strip()}
    assert rows["task"] == ["translate"] and rows["domains"] == ["positive->negative"]
    assert rows["background"] == ["255,255,255"] and rows["whole_image"] == ["yes"]


def test_translate_never_imports_torch_or_onnx(weights: Path, rgb_png: Path, invert: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from cli.main import app

        code = app(["translate", {str(rgb_png)!r}, "--model", {str(invert)!r}], standalone_mode=False)
        assert code is None, code
        heavy = sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "onnx"))
        assert not heavy, heavy
        """
    )
    result = python("-c", script, weights=weights)
    assert result.returncode == 0, result.stderr
    assert rgb_png.with_name("photo_invert.png").is_file()
