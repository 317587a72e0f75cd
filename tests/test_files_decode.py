"""Decoding image files (img2img.files.decode and metadata): modes, bit depths, colour
profiles, EXIF, frames, limits and the errors a user can act on."""

import struct
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from image_cases import (
    CORNERS,
    MAKE,
    MAX_HEIGHT,
    MAX_WIDTH,
    ORIENTATION,
    UNICODE_NAME,
    Case,
    bgr,
    cmyk_profile,
    noise,
    noise16,
    png_chunk,
    quadrants,
    to16,
    to8,
    write_image_cases,
)
from PIL import Image, ImageCms, ImageFile, ImageOps

from img2img.errors import ImageReadError
from img2img.files.decode import DEFAULT_MAX_PIXELS, LoadedImage, from_pil, load_image
from img2img.files.encode import save_image


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
