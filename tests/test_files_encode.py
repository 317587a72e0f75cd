"""Writing image files (img2img.files.encode and png_stream): formats, bit depths, gray, alpha,
profiles, band-by-band PNGs and refused arguments."""

import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
from image_cases import MAKE, bgr, noise, noise16, to8, to16
from PIL import Image, ImageCms

from img2img.errors import OutputError
from img2img.files import encode
from img2img.files.decode import load_image
from img2img.files.encode import check_output_path, save_image, save_png_bands, to_pil
from img2img.files.pixels import resize_alpha


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


def test_unknown_suffix_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"\.bmp"):
        save_image(np.zeros((2, 2, 3), np.float32), tmp_path / "out.bmp")
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        save_image(np.zeros((2, 2, 3), np.float32), tmp_path / "nowhere" / "out.png")


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
    monkeypatch.setattr(encode, "STREAMED_PNG_PIXELS", 1)
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (37, 53), dtype=np.uint8) if kind in ("rgba", "gray+alpha") else None
    gray = kind.startswith("gray")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "out.png"
    save_image(pixels, path, alpha=alpha, grayscale=gray, icc_profile=None if gray else icc, exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x00\x00")
    with Image.open(path) as written:
        assert written.mode == {"rgb": "RGB", "rgba": "RGBA", "gray": "L", "gray+alpha": "LA"}[kind]
        assert written.info.get("icc_profile") == (None if gray else icc) and "exif" in written.info
        decoded = np.asarray(written)
    reference = tmp_path / "pillow.png"
    monkeypatch.setattr(encode, "STREAMED_PNG_PIXELS", 10**12)
    save_image(pixels, reference, alpha=alpha, grayscale=gray)
    with Image.open(reference) as expected:
        assert np.array_equal(decoded, np.asarray(expected))


@pytest.mark.parametrize(("depth", "gray"), [(8, False), (16, False), (8, True), (16, True)])
def test_pngs_written_from_bands_as_they_come_match_the_whole_image_writer(tmp_path, depth, gray) -> None:
    dtype = np.uint8 if depth == 8 else np.uint16
    pixels = np.random.default_rng(4).integers(0, np.iinfo(dtype).max + 1, (45, 31, 3), dtype=dtype)
    icc = None if gray else ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = b"II*\x00\x08\x00\x00\x00\x00\x00"
    uneven = [(0, pixels[:7]), (7, pixels[7:8]), (8, pixels[8:45])]
    save_png_bands(
        tmp_path / "bands.png", iter(uneven), height=45, width=31, bit_depth=depth, grayscale=gray,
        icc_profile=icc, exif=exif,
    )
    save_image(pixels, tmp_path / "whole.png", bit_depth=depth, grayscale=gray, icc_profile=icc, exif=exif)
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
        save_png_bands(target, iter(bands), height=10, width=8, bit_depth=8)
    assert target.read_bytes() == b"earlier" and sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_only_png_is_written_from_bands(tmp_path) -> None:
    with pytest.raises(OutputError, match="only .png"):
        save_png_bands(tmp_path / "out.jpg", iter([]), height=1, width=1, bit_depth=8)
