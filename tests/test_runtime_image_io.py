import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2img.errors import ImageReadError, OutputError
from img2img.runtime import image_io
from img2img.runtime.image_io import check_output_path, load_image, resize_alpha, save_image


def noise(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, channels), dtype=np.uint8)


def test_png_round_trip_is_exact(tmp_path: Path) -> None:
    pixels = noise(5, 9)
    rgb = pixels.astype(np.float32) / 255.0
    save_image(rgb, tmp_path / "out.png")
    loaded = load_image(tmp_path / "out.png")
    assert loaded.rgb.dtype == np.float32 and loaded.rgb.shape == (5, 9, 3)
    assert loaded.alpha is None and loaded.mode == "RGB"
    np.testing.assert_array_equal(np.rint(loaded.rgb * 255).astype(np.uint8), pixels)


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".webp"])
def test_lossy_formats_round_trip_closely(tmp_path: Path, suffix: str) -> None:
    # A smooth gradient: lossy codecs keep it within a few levels.
    ramp = np.linspace(0.0, 1.0, 32, dtype=np.float32)
    rgb = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], 0.5 * np.ones((32, 32))), axis=2)
    save_image(rgb, tmp_path / f"out{suffix}")
    assert np.abs(load_image(tmp_path / f"out{suffix}").rgb - rgb).mean() < 0.02


def test_save_clips_and_rounds(tmp_path: Path) -> None:
    rgb = np.array([[[-0.5, 0.5, 1.7]]], dtype=np.float32)
    save_image(rgb, tmp_path / "out.png")
    assert np.asarray(Image.open(tmp_path / "out.png")).tolist() == [[[0, 128, 255]]]


def test_alpha_is_kept_for_png(tmp_path: Path) -> None:
    pixels = noise(4, 6, channels=4)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    assert loaded.alpha is not None and loaded.alpha.shape == (4, 6)
    save_image(loaded.rgb, tmp_path / "out.png", alpha=loaded.alpha)
    with Image.open(tmp_path / "out.png") as written:
        assert written.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(written), pixels)


def test_alpha_is_dropped_for_jpeg(tmp_path: Path) -> None:
    rgb = np.full((4, 4, 3), 0.5, np.float32)
    save_image(rgb, tmp_path / "out.jpg", alpha=np.zeros((4, 4), np.float32))
    with Image.open(tmp_path / "out.jpg") as written:
        assert written.mode == "RGB"


def test_palette_with_transparency_gives_alpha(tmp_path: Path) -> None:
    image = Image.new("P", (3, 2), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 1
    image.save(tmp_path / "palette.png", transparency=1)
    loaded = load_image(tmp_path / "palette.png")
    assert loaded.mode == "P"
    np.testing.assert_array_equal(loaded.rgb[1, 0], [1.0, 0.0, 0.0])
    assert loaded.alpha is not None
    assert loaded.alpha[0, 1] == 0.0 and loaded.alpha[0, 0] == 1.0


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = noise(3, 4)[:, :, 0]
    Image.fromarray(gray).save(tmp_path / "gray.png")
    loaded = load_image(tmp_path / "gray.png")
    assert loaded.rgb.shape == (3, 4, 3)
    for channel in range(3):
        np.testing.assert_allclose(loaded.rgb[:, :, channel], gray / 255.0, atol=1e-7)


def test_sixteen_bit_png_is_scaled_by_its_full_range(tmp_path: Path) -> None:
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    loaded = load_image(tmp_path / "deep.png")
    assert loaded.mode.startswith("I")
    np.testing.assert_allclose(loaded.rgb[0, :, 0], [0.0, 32768 / 65535, 1.0], atol=1e-6)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = noise(2, 3)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    Image.fromarray(pixels).save(tmp_path / "sideways.png", exif=exif)
    loaded = load_image(tmp_path / "sideways.png")
    np.testing.assert_array_equal(np.rint(loaded.rgb * 255).astype(np.uint8), np.rot90(pixels, k=-1))


def bad_input(tmp_path: Path, kind: str, truncated_png: Path) -> Path:
    if kind == "missing":
        return tmp_path / "missing.png"
    if kind == "folder":
        (tmp_path / "folder.png").mkdir()
        return tmp_path / "folder.png"
    if kind == "empty":
        (tmp_path / "empty.png").write_bytes(b"")
        return tmp_path / "empty.png"
    if kind == "text":
        (tmp_path / "notes.png").write_text("not an image\n")
        return tmp_path / "notes.png"
    return truncated_png


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("missing", "no such file"),
        ("folder", "is a folder"),
        ("empty", "is empty"),
        ("text", "not an image"),
        ("truncated", "truncated or corrupt"),
    ],
)
def test_bad_inputs_raise_an_actionable_error(
    tmp_path: Path, truncated_png: Path, kind: str, says: str
) -> None:
    path = bad_input(tmp_path, kind, truncated_png)
    with pytest.raises(ImageReadError, match=says) as caught:
        load_image(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_truncated_images_are_not_silently_accepted() -> None:
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_unknown_suffix_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"\.bmp"):
        save_image(np.zeros((2, 2, 3), np.float32), tmp_path / "out.bmp")
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        save_image(np.zeros((2, 2, 3), np.float32), tmp_path / "nowhere" / "out.png")


def test_failed_save_leaves_no_file_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"previous result")

    def write_half_then_fail(
        self: Image.Image, fp: os.PathLike[str], *args: object, **kwargs: object
    ) -> None:
        Path(fp).write_bytes(b"\x89PNG partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", write_half_then_fail)
    with pytest.raises(OutputError, match="No space left"):
        save_image(np.zeros((2, 2, 3), np.float32), target)
    assert target.read_bytes() == b"previous result"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.png"]


def test_interrupted_save_removes_the_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(self: Image.Image, fp: os.PathLike[str], *args: object, **kwargs: object) -> None:
        Path(fp).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_image(np.zeros((2, 2, 3), np.float32), tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_saved_file_gets_normal_permissions(tmp_path: Path) -> None:
    save_image(np.zeros((2, 2, 3), np.float32), tmp_path / "out.png")
    mode = (tmp_path / "out.png").stat().st_mode & 0o777
    assert mode == 0o666 & ~image_io._current_umask()


def test_output_that_is_the_input_is_refused(tmp_path: Path, rgb_png: Path) -> None:
    with pytest.raises(OutputError, match="-o"):
        check_output_path(rgb_png, rgb_png)
    with pytest.raises(OutputError):
        check_output_path(rgb_png, tmp_path / "sub" / ".." / rgb_png.name)
    link = tmp_path / "link.png"
    link.symlink_to(rgb_png)
    with pytest.raises(OutputError):
        check_output_path(rgb_png, link)
    check_output_path(rgb_png, tmp_path / "other.png")


def test_resize_alpha_keeps_range_and_shape() -> None:
    alpha = np.zeros((4, 6), np.float32)
    alpha[:, 3:] = 1.0  # a hard edge makes bicubic overshoot
    resized = resize_alpha(alpha, (12, 8))
    assert resized.shape == (8, 12)
    assert resized.min() >= 0.0 and resized.max() <= 1.0
    assert resized[:, 0].max() == 0.0 and resized[:, -1].min() == 1.0
