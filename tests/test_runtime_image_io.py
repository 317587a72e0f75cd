import fnmatch
import os
import re
import struct
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import pytest
from image_cases import (
    CORNERS,
    MAX_HEIGHT,
    MAX_WIDTH,
    UNICODE_NAME,
    Case,
    cmyk_profile,
    png_chunk,
    quadrants,
    write_image_cases,
)
from PIL import Image, ImageCms, ImageFile, ImageOps

from img2img.errors import ImageReadError, OutputError
from img2img.runtime import image_io
from img2img.runtime.image_io import (
    DEFAULT_MAX_PIXELS,
    TEMP_SUFFIX,
    LoadedImage,
    check_output_path,
    from_pil,
    load_image,
    remove_stale_temp_files,
    resize_alpha,
    save_image,
    stale_temp_files,
    temp_file_pattern,
    to_pil,
)


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


def current_umask() -> int:
    # The only portable way to read the umask is to set it and put it back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_saved_file_gets_normal_permissions(tmp_path: Path, bit_depth: int) -> None:
    save_image(np.zeros((2, 2, 3), np.float32), tmp_path / "out.png", bit_depth=bit_depth)
    mode = (tmp_path / "out.png").stat().st_mode & 0o777
    assert mode == 0o666 & ~current_umask()


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


# Images as people have them: every case of tests/image_cases.py.

GOOD_CASES = (
    "rgb8.png",
    "a/rgba.png",
    "a/gray.png",
    "a/gray_alpha.png",
    "a/b/gray16.png",
    "a/b/rgb16.png",
    "a/b/rgba16.png",
    "palette.png",
    "a/palette_transparent.png",
    "b/cmyk.jpg",
    "photos/exif_rotated.jpg",
    "multiframe.gif",
    UNICODE_NAME,
)
BAD_CASES = ("bad/corrupt.png", "bad/truncated.jpg", "bad/empty.png", "bad/text.png", "bad/huge_header.png")


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Case]]:
    root = tmp_path_factory.mktemp("cases")
    return root, write_image_cases(root)


def at(array: np.ndarray, position: tuple[float, float]) -> np.ndarray:
    """The sample at fractional (x, y) of an (H, W, ...) array."""
    height, width = array.shape[:2]
    return array[min(int(position[1] * height), height - 1), min(int(position[0] * width), width - 1)]


def check_loaded(image: LoadedImage, expect: dict) -> None:
    width, height = expect["size"]
    assert image.size == (width, height)
    assert image.rgb.shape == (height, width, 3) and image.rgb.dtype == np.float32
    assert image.rgb.flags.c_contiguous and 0.0 <= image.rgb.min() and image.rgb.max() <= 1.0
    assert (image.mode, image.bit_depth, image.grayscale) == (expect["mode"], expect["bit_depth"], expect["grayscale"])
    assert (image.alpha is not None, image.icc_profile is not None, image.exif is not None) == (
        expect["alpha"],
        expect["icc"],
        expect["exif"],
    )
    if expect["warning"] is None:
        assert image.warnings == ()
    else:
        assert any(expect["warning"] in warning for warning in image.warnings), image.warnings
    if image.alpha is not None:
        assert image.alpha.shape == (height, width) and image.alpha.dtype == np.float32
        assert 0.0 <= image.alpha.min() and image.alpha.max() <= 1.0
    if image.grayscale:
        np.testing.assert_array_equal(image.rgb[:, :, 0], image.rgb[:, :, 2])
    for position, colour, tolerance in expect["probes"]:
        np.testing.assert_allclose(at(image.rgb, position) * 255, colour, atol=tolerance + 0.5)
    for position, opacity, tolerance in expect["alpha_probes"]:
        assert abs(at(image.alpha, position) * 255 - opacity) <= tolerance + 0.5


def test_every_case_is_tested_and_small(cases: tuple[Path, dict[str, Case]]) -> None:
    root, described = cases
    assert set(GOOD_CASES) | set(BAD_CASES) | {"notes.txt"} == set(described)
    assert all(described[name].good for name in GOOD_CASES)
    assert not any(described[name].good for name in BAD_CASES)
    assert described["notes.txt"].expect == {"ignored": True} and described["notes.txt"].reason_contains is None
    for name in GOOD_CASES:
        width, height = described[name].expect["stored_size"]
        assert width <= MAX_WIDTH and height <= MAX_HEIGHT
        with Image.open(root / name) as stored:
            assert stored.size == (width, height)


@pytest.mark.parametrize("name", GOOD_CASES)
def test_good_case_loads_as_described(cases: tuple[Path, dict[str, Case]], name: str) -> None:
    root, described = cases
    image = load_image(root / name)
    check_loaded(image, described[name].expect)
    if image.exif is not None:
        exif = Image.Exif()
        exif.load(image.exif)
        assert exif.get(ORIENTATION, 1) == 1


@pytest.mark.parametrize("name", GOOD_CASES)
def test_good_case_written_like_its_source_reads_back_the_same(
    cases: tuple[Path, dict[str, Case]], tmp_path: Path, name: str
) -> None:
    root, described = cases
    expect = described[name].expect
    image = load_image(root / name)
    out = tmp_path / "out.png"
    save_image(
        image.rgb,
        out,
        alpha=image.alpha,
        bit_depth=image.bit_depth,
        grayscale=image.grayscale,
        icc_profile=image.icc_profile,
        exif=image.exif,
    )
    with Image.open(out) as written:
        assert written.mode == expect["png_mode"]
        assert written.info.get("icc_profile") == image.icc_profile
        assert ("exif" in written.info) == expect["exif"]
    again = load_image(out)
    check_loaded(again, {**expect, "mode": again.mode, "warning": None})
    step = 1.0 / (2**image.bit_depth - 1)
    np.testing.assert_allclose(again.rgb, image.rgb, atol=step / 2 + 1e-6)
    if image.alpha is not None:
        np.testing.assert_allclose(again.alpha, image.alpha, atol=step / 2 + 1e-6)


@pytest.mark.parametrize("name", BAD_CASES)
def test_bad_case_fails_with_its_reason(cases: tuple[Path, dict[str, Case]], name: str) -> None:
    root, described = cases
    with pytest.raises(ImageReadError) as caught:
        load_image(root / name)
    message = str(caught.value)
    assert described[name].reason_contains in message
    assert str(root / name) in message and "\n" not in message


# Size limits.


def test_huge_header_is_refused_before_any_decoding(
    cases: tuple[Path, dict[str, Case]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = cases

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    start = time.perf_counter()
    with pytest.raises(ImageReadError, match=r"100000x100000 .*--max-pixels"):
        load_image(root / "bad/huge_header.png")
    assert time.perf_counter() - start < 1.0
    assert DEFAULT_MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS


def test_max_pixels_is_a_per_call_limit(rgb_png: Path) -> None:
    with pytest.raises(ImageReadError, match="13x7 .*91 pixels.*limit of 90"):
        load_image(rgb_png, max_pixels=90)
    assert load_image(rgb_png, max_pixels=91).size == (13, 7)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".gif"])
def test_pillows_own_limit_gives_way_to_max_pixels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    path = tmp_path / f"photo{suffix}"
    Image.fromarray(noise(7, 13)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor Pillow's DecompressionBombWarning
        assert load_image(path, max_pixels=None).size == (13, 7)
        assert load_image(path, max_pixels=91).size == (13, 7)
    assert Image.MAX_IMAGE_PIXELS == 10


# Sample depth and colour.


@pytest.mark.parametrize("channels", [3, 4])
def test_sixteen_bit_colour_png_keeps_every_bit(tmp_path: Path, channels: int) -> None:
    values = noise16(6, 9, channels)
    cv2.imwrite(str(tmp_path / "deep.png"), bgr(values))
    image = load_image(tmp_path / "deep.png")
    assert (image.mode, image.bit_depth, image.grayscale) == ("RGBA;16" if channels == 4 else "RGB;16", 16, False)
    np.testing.assert_array_equal(to16(image.rgb), values[:, :, :3])
    if channels == 4:
        np.testing.assert_array_equal(to16(image.alpha), values[:, :, 3])
    else:
        assert image.alpha is None


@pytest.mark.parametrize("compression", [1, 5])  # none (Pillow's raw decoder), LZW (libtiff)
def test_sixteen_bit_colour_tiff_keeps_every_bit(tmp_path: Path, compression: int) -> None:
    values = noise16(6, 9, 3)
    cv2.imwrite(str(tmp_path / "deep.tif"), bgr(values), [cv2.IMWRITE_TIFF_COMPRESSION, compression])
    image = load_image(tmp_path / "deep.tif")
    assert (image.mode, image.bit_depth) == ("RGB;16", 16)
    np.testing.assert_array_equal(to16(image.rgb), values)


def test_sixteen_bit_gray_png_keeps_every_bit(tmp_path: Path) -> None:
    values = noise16(5, 7, 1)[:, :, 0]
    Image.fromarray(values).save(tmp_path / "gray16.png")
    image = load_image(tmp_path / "gray16.png")
    assert (image.bit_depth, image.grayscale, image.alpha) == (16, True, None)
    for channel in range(3):
        np.testing.assert_array_equal(to16(image.rgb[:, :, channel]), values)


def test_sixteen_bit_colour_key_becomes_alpha(tmp_path: Path) -> None:
    values = noise16(4, 5, 3)
    values[1, 2] = values[0, 0]
    save_image(values, tmp_path / "keyed.png", bit_depth=16)
    data = (tmp_path / "keyed.png").read_bytes()
    end_of_header = 8 + 12 + 13
    key = png_chunk(b"tRNS", struct.pack(">3H", *values[0, 0]))
    (tmp_path / "keyed.png").write_bytes(data[:end_of_header] + key + data[end_of_header:])
    image = load_image(tmp_path / "keyed.png")
    expected = np.ones((4, 5), np.float32)
    expected[0, 0] = expected[1, 2] = 0.0
    np.testing.assert_array_equal(image.alpha, expected)
    np.testing.assert_array_equal(to16(image.rgb), values)


@pytest.mark.parametrize(
    ("values", "expected_mode", "expected_gray", "bit_depth"),
    [
        (np.array([[0, 1, 1]], bool), "1", [0.0, 1.0, 1.0], 8),
        (np.array([[-5, 0, 1000, 65535, 70000]], np.int32), "I", [0.0, 0.0, 1000 / 65535, 1.0, 1.0], 16),
        (np.array([[np.nan, -1.0, 0.25, 1.5]], np.float32), "F", [0.0, 0.0, 0.25, 1.0], 16),
    ],
)
def test_gray_modes_become_equal_channels_in_range(
    tmp_path: Path, values: np.ndarray, expected_mode: str, expected_gray: list[float], bit_depth: int
) -> None:
    Image.fromarray(values).save(tmp_path / "gray.tif")
    image = load_image(tmp_path / "gray.tif")
    assert (image.mode, image.grayscale, image.bit_depth) == (expected_mode, True, bit_depth)
    for channel in range(3):
        np.testing.assert_allclose(image.rgb[0, :, channel], expected_gray, atol=1e-7)


def test_cmyk_jpeg_is_converted_through_its_embedded_profile(tmp_path: Path) -> None:
    # A profile in which cyan ink absorbs green, magenta blue and yellow red: its colours are far
    # from the naive CMYK inversion, so only a conversion through the profile finds them.
    inks = quadrants(40, 32, ((255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 0)))
    path = tmp_path / "print.jpg"
    Image.frombytes("CMYK", (40, 32), inks.tobytes()).save(path, quality=95, icc_profile=cmyk_profile((1, 2, 0)))
    assert b"Adobe" in path.read_bytes()  # stored inverted, as Photoshop does
    image = load_image(path)
    assert (image.mode, image.icc_profile, image.warnings) == ("CMYK", None, ())
    for corner, colour in zip(CORNERS, ((255, 0, 255), (255, 255, 0), (0, 255, 255), (255, 255, 255))):
        np.testing.assert_allclose(at(image.rgb, corner) * 255, colour, atol=24)


def test_cmyk_without_profile_inverts_the_inks(tmp_path: Path) -> None:
    inks = quadrants(8, 8, ((255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255)))
    Image.frombytes("CMYK", (8, 8), inks.tobytes()).save(tmp_path / "print.tif")
    image = load_image(tmp_path / "print.tif")
    for corner, colour in zip(CORNERS, ((0, 1, 1), (1, 0, 1), (1, 1, 0), (0, 0, 0))):
        np.testing.assert_array_equal(at(image.rgb, corner), colour)


def test_unusable_cmyk_profile_falls_back_with_a_warning(tmp_path: Path) -> None:
    broken = bytearray(cmyk_profile())
    broken[36:40] = b"xxxx"  # not an ICC profile any more
    Image.new("CMYK", (4, 4), (255, 0, 0, 0)).save(tmp_path / "print.jpg", icc_profile=bytes(broken))
    image = load_image(tmp_path / "print.jpg")
    assert any("colour profile" in warning for warning in image.warnings)
    np.testing.assert_allclose(image.rgb[0, 0], [0, 1, 1], atol=0.02)


def test_profile_for_another_colour_space_is_left_out(tmp_path: Path) -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(noise(3, 4)[:, :, 0]).save(tmp_path / "gray.png", icc_profile=srgb)
    Image.fromarray(noise(3, 4)).save(tmp_path / "rgb.png", icc_profile=srgb)
    assert load_image(tmp_path / "gray.png").icc_profile is None
    assert load_image(tmp_path / "rgb.png").icc_profile == srgb


# Orientation and EXIF.


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_turned_upright_like_pillow_does(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[MAKE] = "test camera"
    path = tmp_path / "photo.png"
    Image.fromarray(noise(3, 5)).save(path, exif=exif)
    image = load_image(path)
    with Image.open(path) as stored:
        upright = np.asarray(ImageOps.exif_transpose(stored))
        stored_exif = stored.info["exif"]
    np.testing.assert_array_equal(to8(image.rgb), upright)
    written = Image.Exif()
    written.load(image.exif)
    assert written[ORIENTATION] == 1 and written[MAKE] == "test camera"
    # Only the orientation value changed; everything else is kept byte for byte.
    assert len(image.exif) == len(stored_exif)
    assert sum(a != b for a, b in zip(image.exif, stored_exif)) <= (0 if orientation == 1 else 1)


def test_big_endian_exif_without_prefix_is_patched(tmp_path: Path) -> None:
    # TIFF header "MM", one IFD entry: orientation (SHORT, count 1) = 8, then no next IFD.
    block = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">HHHIHH", 1, ORIENTATION, 3, 1, 8, 0) + bytes(4)
    Image.fromarray(noise(2, 3)).save(tmp_path / "photo.webp", lossless=True, exif=block)
    image = load_image(tmp_path / "photo.webp")
    assert image.size == (2, 3)  # orientation 8 turns it a quarter
    assert image.exif == b"Exif\x00\x00" + block.replace(struct.pack(">HH", 8, 0), struct.pack(">HH", 1, 0))


def test_malformed_exif_is_dropped_with_a_warning(tmp_path: Path) -> None:
    Image.new("RGB", (4, 3)).save(tmp_path / "photo.jpg", exif=b"Exif\x00\x00not a TIFF block")
    image = load_image(tmp_path / "photo.jpg")
    assert image.exif is None and image.size == (4, 3)
    assert any("EXIF" in warning for warning in image.warnings)


# Frames.


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif", ".gif"])
def test_first_of_several_frames_is_used_with_a_warning(tmp_path: Path, suffix: str) -> None:
    frames = [Image.new("RGB", (8, 6), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    path = tmp_path / f"animation{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, lossless=True)
    image = load_image(path)
    assert image.warnings == (f"animation{suffix} has 3 frames; only the first is used",)
    np.testing.assert_array_equal(to8(image.rgb)[0, 0], [255, 0, 0])


def test_camera_multi_picture_jpeg_gives_no_warning(tmp_path: Path) -> None:
    Image.new("RGB", (8, 6), (255, 0, 0)).save(
        tmp_path / "camera.jpg", format="MPO", save_all=True, append_images=[Image.new("RGB", (4, 3))]
    )
    image = load_image(tmp_path / "camera.jpg")
    assert image.warnings == () and image.size == (8, 6)


def test_unreadable_file_is_reported(rgb_png: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(ImageReadError, match="permission denied"):
        load_image(rgb_png)


# Writing.


@pytest.mark.parametrize(("grayscale", "with_alpha"), [(False, False), (False, True), (True, False), (True, True)])
def test_sixteen_bit_png_round_trips_exactly(tmp_path: Path, grayscale: bool, with_alpha: bool) -> None:
    values = noise16(5, 7, 3)
    if grayscale:
        values[:] = values[:, :, :1]
    alpha = noise16(5, 7, 1, seed=1)[:, :, 0] if with_alpha else None
    save_image(values, tmp_path / "deep.png", alpha=alpha, bit_depth=16, grayscale=grayscale)
    image = load_image(tmp_path / "deep.png")
    assert (image.bit_depth, image.grayscale, image.alpha is not None) == (16, grayscale, with_alpha)
    np.testing.assert_array_equal(to16(image.rgb), values)
    if with_alpha:
        np.testing.assert_array_equal(to16(image.alpha), alpha)
    # An independent decoder agrees (OpenCV hands gray + alpha over as BGRA).
    decoded = cv2.imread(str(tmp_path / "deep.png"), cv2.IMREAD_UNCHANGED)
    expected = values[:, :, 0] if grayscale and not with_alpha else bgr(values)
    if with_alpha:
        expected = np.dstack([bgr(values), alpha])
    np.testing.assert_array_equal(decoded, expected)


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_images_taller_than_one_band_round_trip_exactly(tmp_path: Path, bit_depth: int) -> None:
    # 700 rows of 1500 pixels are converted and, at 16 bits, filtered in several bands.
    values = noise(700, 1500) if bit_depth == 8 else noise16(700, 1500, 3)
    save_image(values, tmp_path / "tall.png", bit_depth=bit_depth)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "tall.png"), cv2.IMREAD_UNCHANGED), bgr(values))


@pytest.mark.parametrize(("suffix", "bit_depth"), [(".png", 8), (".png", 16), (".jpg", 8), (".webp", 8)])
def test_icc_profile_and_exif_are_written(tmp_path: Path, suffix: str, bit_depth: int) -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[MAKE] = "test camera"
    path = tmp_path / f"out{suffix}"
    save_image(np.full((4, 6, 3), 0.5, np.float32), path, bit_depth=bit_depth, icc_profile=srgb, exif=exif.tobytes())
    with Image.open(path) as written:
        assert written.info["icc_profile"] == srgb
        assert written.getexif()[MAKE] == "test camera"
    assert load_image(path).icc_profile == srgb


def test_exif_without_its_prefix_is_written(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[MAKE] = "test camera"
    save_image(np.zeros((2, 2, 3), np.uint8), tmp_path / "out.jpg", exif=exif.tobytes()[6:])
    with Image.open(tmp_path / "out.jpg") as written:
        assert written.getexif()[MAKE] == "test camera"


def test_grayscale_output_uses_pillows_luma(tmp_path: Path) -> None:
    pixels = noise(6, 8)
    save_image(pixels, tmp_path / "gray.png", grayscale=True)
    with Image.open(tmp_path / "gray.png") as written:
        assert written.mode == "L"
        np.testing.assert_array_equal(np.asarray(written), np.asarray(Image.fromarray(pixels).convert("L")))
    save_image(pixels.astype(np.float32) / 255, tmp_path / "gray_float.png", grayscale=True)
    with Image.open(tmp_path / "gray_float.png") as written:
        np.testing.assert_array_equal(np.asarray(written), np.asarray(Image.fromarray(pixels).convert("L")))


def test_grayscale_output_modes(tmp_path: Path) -> None:
    rgb, alpha = np.full((3, 4, 3), 0.5, np.float32), np.full((3, 4), 0.25, np.float32)
    for name, kwargs, mode in [
        ("l.png", {}, "L"),
        ("la.png", {"alpha": alpha}, "LA"),
        ("i16.png", {"bit_depth": 16}, "I;16"),
        ("l.jpg", {"alpha": alpha}, "L"),
        ("rgba.webp", {"alpha": alpha}, "RGBA"),
    ]:
        save_image(rgb, tmp_path / name, grayscale=True, **kwargs)
        with Image.open(tmp_path / name) as written:
            assert written.mode == mode, name


def test_jpeg_output_is_composited_onto_white(tmp_path: Path) -> None:
    # Magenta hides under the transparent block; the opaque one is green, the half one between.
    # Blocks of 16 columns, wide enough for JPEG's halved colour resolution.
    rgb = np.zeros((16, 48, 3), np.float32)
    rgb[:, :16] = (1.0, 0.0, 1.0)
    rgb[:, 16:] = (0.0, 1.0, 0.0)
    alpha = np.repeat(np.array([0.0, 1.0, 0.5], np.float32), 16)[None, :].repeat(16, axis=0)
    save_image(rgb, tmp_path / "out.jpg", alpha=alpha, quality=100)
    written = load_image(tmp_path / "out.jpg").rgb[8, 8::16]
    np.testing.assert_allclose(written, [[1, 1, 1], [0, 1, 0], [0.5, 1, 0.5]], atol=0.02)
    save_image(to8(rgb), tmp_path / "out8.jpg", alpha=to8(alpha), quality=100)
    np.testing.assert_allclose(load_image(tmp_path / "out8.jpg").rgb[8, 8::16], written, atol=0.02)


def test_webp_keeps_alpha(tmp_path: Path) -> None:
    alpha = np.tile(np.linspace(0, 1, 6, dtype=np.float32), (4, 1))
    save_image(np.full((4, 6, 3), 0.5, np.float32), tmp_path / "out.webp", alpha=alpha)
    loaded = load_image(tmp_path / "out.webp")
    assert loaded.alpha is not None
    np.testing.assert_allclose(loaded.alpha, alpha, atol=0.02)


def test_integer_pixels_are_rescaled_exactly(tmp_path: Path) -> None:
    deep = np.array([[[0, 128, 129], [385, 386, 65535]]], np.uint16)
    save_image(deep, tmp_path / "eight.png")
    with Image.open(tmp_path / "eight.png") as written:
        assert np.asarray(written).tolist() == [[[0, 0, 1], [1, 2, 255]]]
    shallow = noise(2, 3)
    save_image(shallow, tmp_path / "sixteen.png", bit_depth=16)
    np.testing.assert_array_equal(to16(load_image(tmp_path / "sixteen.png").rgb), shallow.astype(np.uint16) * 257)
    save_image(deep, tmp_path / "deep.jpg", bit_depth=16)  # JPEG has 8 bits
    assert load_image(tmp_path / "deep.jpg").bit_depth == 8


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_float_dtypes_are_accepted(tmp_path: Path, dtype: type) -> None:
    pixels = noise(3, 4)
    save_image((pixels / 255).astype(dtype), tmp_path / "out.png")
    np.testing.assert_array_equal(to8(load_image(tmp_path / "out.png").rgb), pixels)


def test_invalid_arguments_are_refused_before_writing(tmp_path: Path) -> None:
    rgb = np.zeros((2, 2, 3), np.float32)
    with pytest.raises(ValueError, match="uint16"):
        save_image(rgb.astype(np.int32), tmp_path / "out.png")
    with pytest.raises(ValueError, match="bit_depth"):
        save_image(rgb, tmp_path / "out.png", bit_depth=12)
    with pytest.raises(OutputError, match="quality"):
        save_image(rgb, tmp_path / "out.jpg", quality=0)
    wide = np.broadcast_to(np.zeros(3, np.uint8), (2, 17_000, 3))  # no memory behind it
    with pytest.raises(OutputError, match=r"WEBP allows \(16383 pixels per side\); write a \.png"):
        save_image(wide, tmp_path / "out.webp")
    assert list(tmp_path.iterdir()) == []


def test_large_outputs_make_no_full_size_float_copy(tmp_path: Path) -> None:
    rgb = np.tile(np.linspace(0, 1, 1024, dtype=np.float32)[None, :, None], (8192, 1, 3))
    alpha = np.ones((8192, 1024), np.float32)
    for name, kwargs in [("a.png", {}), ("b.png", {"bit_depth": 16}), ("c.jpg", {"alpha": alpha})]:
        tracemalloc.start()
        try:
            save_image(rgb, tmp_path / name, **kwargs)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < rgb.nbytes / 4, (name, peak)


# Atomic writes.

TEMP_NAME = re.compile(r"\.out\.png\.[0-9a-f]{16}\.img2img\.tmp")


def test_image_is_written_to_a_named_temporary_file_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    original_save = Image.Image.save

    def recording_save(self: Image.Image, fp: os.PathLike[str], *args: object, **kwargs: object) -> None:
        seen.append(Path(fp))
        original_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", recording_save)
    save_image(np.zeros((2, 2, 3), np.float32), tmp_path / "out.png")
    assert len(seen) == 1 and seen[0].parent == tmp_path and TEMP_NAME.fullmatch(seen[0].name)
    assert fnmatch.fnmatchcase(seen[0].name, temp_file_pattern(tmp_path / "out.png"))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.png"]


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_sixteen_bit_save_leaves_nothing_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"previous result")
    original = image_io._write_chunk
    chunks = []

    def fail_at_image_data(file: BinaryIO, kind: bytes, body: bytes) -> None:
        chunks.append(kind)
        original(file, kind, body)
        if kind == b"IDAT":
            raise failure

    monkeypatch.setattr(image_io, "_write_chunk", fail_at_image_data)
    with pytest.raises(OutputError if isinstance(failure, OSError) else KeyboardInterrupt):
        save_image(noise16(4, 4, 3), target, bit_depth=16)
    assert b"IDAT" in chunks
    assert target.read_bytes() == b"previous result"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.png"]


def test_leftover_temporary_files_of_the_same_name_are_removed(tmp_path: Path) -> None:
    token = "0123456789abcdef"
    stale = [tmp_path / f".out.png.{token}.img2img.tmp", tmp_path / f".out.png.{token[::-1]}.img2img.tmp"]
    kept = [
        tmp_path / f".out.png.x.png.{token}.img2img.tmp",  # a write to "out.png.x.png"
        tmp_path / f".other.png.{token}.img2img.tmp",
        tmp_path / ".out.png.notes",
    ]
    for path in stale + kept:
        path.write_bytes(b"partial")
    assert stale_temp_files(tmp_path / "out.png") == sorted(stale)
    save_image(np.zeros((2, 2, 3), np.float32), tmp_path / "out.png")
    assert sorted(tmp_path.iterdir()) == sorted([*kept, tmp_path / "out.png"])
    assert stale_temp_files(tmp_path / "out.png") == []


def test_temporary_file_pattern_escapes_glob_characters(tmp_path: Path) -> None:
    token = "0123456789abcdef"
    mine = tmp_path / f".shot [1].png.{token}{TEMP_SUFFIX}"
    theirs = tmp_path / f".shot 1.png.{token}{TEMP_SUFFIX}"
    mine.write_bytes(b"partial")
    theirs.write_bytes(b"partial")
    assert remove_stale_temp_files(tmp_path / "shot [1].png") == [mine]
    assert not mine.exists() and theirs.exists()


# Sample arrays and conversions used above.

ORIENTATION, MAKE = 0x0112, 0x010F


def noise16(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, size=(height, width, channels), dtype=np.uint16)


def bgr(values: np.ndarray) -> np.ndarray:
    """RGB(A) -> OpenCV's BGR(A) order."""
    order = [2, 1, 0, 3][: values.shape[2]]
    return np.ascontiguousarray(values[:, :, order])


def to8(values: np.ndarray) -> np.ndarray:
    return np.rint(values * 255).astype(np.uint8)


def to16(values: np.ndarray) -> np.ndarray:
    return np.rint(values * 65535).astype(np.uint16)


# PIL images in memory.


@pytest.mark.parametrize("name", [name for name in GOOD_CASES if name not in ("a/b/rgb16.png", "a/b/rgba16.png")])
def test_pil_images_decode_like_their_files(cases: tuple[Path, dict[str, Case]], name: str) -> None:
    root, _ = cases
    from_file = load_image(root / name)
    with Image.open(root / name) as opened:
        upright = ImageOps.exif_transpose(opened)  # from_pil takes the pixels as they are
        in_memory = from_pil(upright)
    assert (in_memory.mode, in_memory.bit_depth, in_memory.grayscale) == (
        from_file.mode,
        from_file.bit_depth,
        from_file.grayscale,
    )
    np.testing.assert_array_equal(in_memory.rgb, from_file.rgb)
    if from_file.alpha is None:
        assert in_memory.alpha is None
    else:
        np.testing.assert_array_equal(in_memory.alpha, from_file.alpha)


def test_pil_image_keeps_its_orientation(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    Image.fromarray(noise(2, 3)).save(tmp_path / "sideways.png", exif=exif)
    with Image.open(tmp_path / "sideways.png") as opened:
        assert from_pil(opened).size == (3, 2)


def test_to_pil_modes() -> None:
    pixels, alpha = noise(2, 3), noise(2, 3)[:, :, 0]
    assert to_pil(pixels).mode == "RGB"
    np.testing.assert_array_equal(np.asarray(to_pil(pixels, alpha=alpha)), np.dstack([pixels, alpha]))
    gray = to_pil(pixels, grayscale=True)
    assert gray.mode == "L"
    np.testing.assert_array_equal(np.asarray(gray), np.asarray(Image.fromarray(pixels).convert("L")))
    assert to_pil(pixels, alpha=alpha, grayscale=True).mode == "LA"
    deep = noise16(2, 3, 1)
    deep_gray = to_pil(np.repeat(deep, 3, axis=2), grayscale=True)
    assert deep_gray.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(deep_gray), deep[:, :, 0])
    deep_colour = to_pil(noise16(2, 3, 3))
    assert deep_colour.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(deep_colour), (noise16(2, 3, 3).astype(np.uint32) + 128) // 257)


def test_sixteen_bit_pixels_in_any_memory_layout_are_written(tmp_path: Path) -> None:
    # Model outputs arrive as transposed views of NCHW buffers, not C-contiguous arrays.
    values = np.random.default_rng(7).integers(0, 65536, (3, 9, 11), dtype=np.uint16)
    pixels = values.transpose(1, 2, 0)
    assert not pixels.flags.c_contiguous
    save_image(pixels, tmp_path / "deep.png", bit_depth=16)
    loaded = load_image(tmp_path / "deep.png")
    np.testing.assert_array_equal(np.rint(loaded.rgb * 65535).astype(np.uint16), pixels)


@pytest.mark.parametrize("kind", ["rgb", "rgba", "gray", "gray+alpha"])
def test_large_8bit_pngs_are_encoded_band_by_band_with_the_same_pixels(tmp_path, monkeypatch, kind) -> None:
    # Pillow would copy the whole image (4 bytes a pixel) before encoding; above the threshold
    # the writer streams bands from the caller's buffer instead. Same file contract either way.
    from img2img.runtime import image_io

    monkeypatch.setattr(image_io, "STREAMED_PNG_PIXELS", 1)
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (37, 53), dtype=np.uint8) if kind in ("rgba", "gray+alpha") else None
    gray = kind.startswith("gray")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "out.png"
    image_io.save_image(pixels, path, alpha=alpha, grayscale=gray, icc_profile=None if gray else icc, exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x00\x00")
    with Image.open(path) as written:
        assert written.mode == {"rgb": "RGB", "rgba": "RGBA", "gray": "L", "gray+alpha": "LA"}[kind]
        assert written.info.get("icc_profile") == (None if gray else icc) and "exif" in written.info
        decoded = np.asarray(written)
    reference = tmp_path / "pillow.png"
    monkeypatch.setattr(image_io, "STREAMED_PNG_PIXELS", 10**12)
    image_io.save_image(pixels, reference, alpha=alpha, grayscale=gray)
    with Image.open(reference) as expected:
        assert np.array_equal(decoded, np.asarray(expected))


@pytest.mark.parametrize(("depth", "gray"), [(8, False), (16, False), (8, True), (16, True)])
def test_pngs_written_from_bands_as_they_come_match_the_whole_image_writer(tmp_path, depth, gray) -> None:
    dtype = np.uint8 if depth == 8 else np.uint16
    pixels = np.random.default_rng(4).integers(0, np.iinfo(dtype).max + 1, (45, 31, 3), dtype=dtype)
    icc = None if gray else ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = b"II*\x00\x08\x00\x00\x00\x00\x00"
    uneven = [(0, pixels[:7]), (7, pixels[7:8]), (8, pixels[8:45])]
    image_io.save_png_bands(
        tmp_path / "bands.png", iter(uneven), height=45, width=31, bit_depth=depth, grayscale=gray,
        icc_profile=icc, exif=exif,
    )
    image_io.save_image(pixels, tmp_path / "whole.png", bit_depth=depth, grayscale=gray, icc_profile=icc, exif=exif)
    with Image.open(tmp_path / "bands.png") as streamed, Image.open(tmp_path / "whole.png") as whole:
        assert streamed.mode == whole.mode and streamed.info.get("icc_profile") == icc and "exif" in streamed.info
        np.testing.assert_array_equal(np.asarray(streamed), np.asarray(whole))


@pytest.mark.parametrize(
    "bands",
    [
        [(0, np.zeros((4, 8, 3), np.uint8)), (5, np.zeros((5, 8, 3), np.uint8))],  # a gap
        [(0, np.zeros((4, 8, 3), np.uint8))],  # ends early
        [(0, np.zeros((10, 9, 3), np.uint8))],  # wrong width
        [(0, np.zeros((10, 8, 3), np.uint16))],  # wrong depth
    ],
)
def test_bands_that_do_not_make_the_image_write_nothing(tmp_path, bands) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"earlier")
    with pytest.raises(ValueError, match="row"):
        image_io.save_png_bands(target, iter(bands), height=10, width=8, bit_depth=8)
    assert target.read_bytes() == b"earlier" and sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_only_png_is_written_from_bands(tmp_path) -> None:
    with pytest.raises(OutputError, match="only .png"):
        image_io.save_png_bands(tmp_path / "out.jpg", iter([]), height=1, width=1, bit_depth=8)
