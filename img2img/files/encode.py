"""Writing float or integer pixels as image files, atomically, the way their source was stored.

Pixels come as (H, W, 3) RGB, float32 in [0, 1], uint8 or uint16, with an optional (H, W)
opacity plane. The format follows the output suffix; 16-bit and large 8-bit PNGs are encoded band
by band (`png_stream`), everything else by Pillow.

Example:
    >>> save_image(image.rgb, "copy.webp", alpha=image.alpha, icc_profile=image.icc_profile)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from img2img.errors import OutputError
from img2img.files.atomic import write_atomically
from img2img.files.metadata import EXIF_PREFIX, JPEG_MAX_EXIF_BYTES
from img2img.files.pixels import composite, luma, quantize, unit_float
from img2img.files.png_stream import PNG_COMPRESS_LEVEL, write_png_stream

# Pillow format per output suffix. Only formats that store RGB without surprises are offered.
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_ALPHA_FORMATS = {"PNG", "WEBP"}
# What JPEG shows under transparent pixels, since it cannot store them.
_WHITE = (255, 255, 255)
# Largest width or height each format can store (libjpeg and libwebp limits).
_MAX_SIDE = {"JPEG": 65_500, "WEBP": 16_383}
_PILLOW_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
# Outputs are converted a band of rows at a time, so that no full-size float copy is made.
_STRIP_ELEMENTS = 1 << 20
# 8-bit PNGs of at least this many pixels are encoded band by band (see save_image); smaller ones
# by Pillow, whose adaptive row filters compress a little better.
STREAMED_PNG_PIXELS = 16_000_000


def output_format(path: str | os.PathLike[str]) -> str:
    """The Pillow format written for `path`, chosen by its suffix.

    Raises:
        OutputError: the suffix is not one of .png, .jpg, .jpeg, .webp.
    """
    suffix = Path(path).suffix.lower()
    try:
        return OUTPUT_FORMATS[suffix]
    except KeyError:
        choices = ", ".join(OUTPUT_FORMATS)
        raise OutputError(
            f"cannot write {Path(path).name!r}: unknown image suffix {suffix or '(none)'!r}; "
            f"use one of {choices}"
        ) from None


def save_image(
    pixels: np.ndarray,
    path: str | os.PathLike[str],
    *,
    alpha: np.ndarray | None = None,
    bit_depth: int = 8,
    grayscale: bool = False,
    quality: int = 95,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    remove_stale: bool = True,
) -> tuple[str, ...]:
    """Write an image atomically: either the complete file appears at `path` or nothing changes.

    The image is written to `.<name>.<random>.img2img.tmp` in the same folder and renamed over
    `path` when complete; with `remove_stale`, leftovers of an earlier, killed write to the same
    `path` are removed first (see `stale_temp_files`). That lists the folder, so a batch writing
    thousands of files into one folder cleans up once beforehand and passes False.

    Args:
        pixels: (H, W, 3) RGB: float in [0, 1] (clipped, NaN as 0, rounded to the bit depth),
            uint8 or uint16. Integers of the written depth are written as they are; others are
            rescaled exactly (x257 from 8 to 16 bits, rounded /257 from 16 to 8).
        path: output file; its suffix picks the format (.png, .jpg/.jpeg, .webp).
        alpha: optional (H, W) opacity, float in [0, 1], uint8 or uint16. Kept for PNG and WebP;
            JPEG has no alpha, so the image is composited onto white instead, and transparent
            areas do not show whatever colour hides under them.
        bit_depth: 8 or 16 bits per sample. 16 is written for PNG only; JPEG and WebP get 8.
        grayscale: write gray (L, LA or 16-bit gray PNG), from the ITU-R 601 luma of `pixels`
            (the weights of Pillow's convert("L")).
        quality: JPEG and WebP quality, 1 to 100.
        icc_profile: colour profile to embed (an RGB one, or a gray one when `grayscale`).
        exif: EXIF block to embed, with or without the leading "Exif\\0\\0".
        remove_stale: delete leftover temporary files of `path` first.

    Returns:
        Warnings about what the format could not keep (an EXIF block over JPEG's 64 KB limit is
        left out rather than failing the write).

    Raises:
        OutputError: unknown suffix, missing folder, an image too large for the format, a bad
            quality, or the file cannot be written.
    """
    path = Path(path)
    fmt = output_format(path)
    _check_pixels(pixels, alpha)
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if not 1 <= quality <= 100:
        raise OutputError(f"quality must be between 1 and 100, got {quality}")
    height, width = pixels.shape[:2]
    _check_destination(path, fmt, height, width)

    if exif and not exif.startswith(EXIF_PREFIX):
        exif = EXIF_PREFIX + exif
    warnings: tuple[str, ...] = ()
    if exif and fmt == "JPEG" and len(exif) > JPEG_MAX_EXIF_BYTES:
        warnings += (
            f"its EXIF metadata ({len(exif):,} bytes) is over JPEG's limit of {JPEG_MAX_EXIF_BYTES:,} and was "
            "left out; write .png or .webp to keep it",
        )
        exif = None
    keep_alpha = alpha is not None and fmt in _ALPHA_FORMATS
    flatten = alpha is not None and not keep_alpha
    # Pillow has no 16-bit colour mode, and its 8-bit image is a full copy of the pixels (4 bytes
    # a pixel): a 16-bit PNG, or a large 8-bit one, is encoded band by band from `pixels` instead.
    if streams_png(path, height, width, bit_depth):
        strips = _output_strips(
            pixels, alpha, bit_depth=bit_depth, grayscale=grayscale, keep_alpha=keep_alpha, flatten=flatten
        )
        channels = (1 if grayscale else 3) + keep_alpha

        def write(temp: Path) -> None:
            with temp.open("wb") as file:
                write_png_stream(
                    file, strips, width=width, height=height, channels=channels, bit_depth=bit_depth,
                    icc_profile=icc_profile, exif=exif,
                )

    else:
        image = _pillow_image(pixels, alpha, bit_depth=8, grayscale=grayscale, keep_alpha=keep_alpha, flatten=flatten)
        options: dict[str, object] = (
            {"compress_level": PNG_COMPRESS_LEVEL} if fmt == "PNG" else {"quality": quality}
        )
        if icc_profile:
            options["icc_profile"] = icc_profile
        if exif:
            options["exif"] = exif

        def write(temp: Path) -> None:
            image.save(temp, format=fmt, **options)

    write_atomically(path, write, remove_stale=remove_stale)
    return warnings


def streams_png(path: str | os.PathLike[str], height: int, width: int, bit_depth: int) -> bool:
    """Whether a (height, width) result of `bit_depth` bits written to `path` is a PNG encoded
    band by band (by `save_image` from its pixels, or by `save_png_bands` as they are made)."""
    return output_format(Path(path)) == "PNG" and (bit_depth == 16 or height * width >= STREAMED_PNG_PIXELS)


def save_png_bands(
    path: str | os.PathLike[str],
    bands: Iterable[tuple[int, np.ndarray]],
    *,
    height: int,
    width: int,
    bit_depth: int,
    grayscale: bool = False,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    remove_stale: bool = True,
) -> None:
    """Write a PNG atomically from bands of rows as they are made, so the whole image is never
    held: the peak is one band and its encoding copies.

    Args:
        path: a .png output file.
        bands: (top row, (rows, width, 3) RGB band) pairs, top to bottom, covering `height`
            rows once; uint8 for 8 bits, uint16 for 16 (`tiling.tiled_bands` makes them).
        height, width: the image's size.
        bit_depth: 8 or 16, the bands' depth.
        grayscale, icc_profile, exif, remove_stale: as for `save_image`.

    Raises:
        OutputError: not a .png path, a missing folder, or the file cannot be written.
        ValueError: the bands do not cover the image in order, or do not match its depth.
        Whatever `bands` raises while it is consumed (the temporary file is removed).
    """
    path = Path(path)
    fmt = output_format(path)
    if fmt != "PNG":
        raise OutputError(f"cannot stream {path} as {fmt}: only .png is written band by band")
    _check_destination(path, fmt, height, width)
    if exif and not exif.startswith(EXIF_PREFIX):
        exif = EXIF_PREFIX + exif
    sample = np.uint8 if bit_depth == 8 else np.uint16

    def checked() -> Iterator[tuple[int, np.ndarray]]:
        expected = 0
        for top, band in bands:
            if top != expected or band.shape[1:] != (width, 3) or band.dtype != sample:
                raise ValueError(
                    f"band at row {top} of shape {band.shape} and dtype {band.dtype} does not continue a "
                    f"{width}x{height} {bit_depth}-bit RGB image at row {expected}"
                )
            # Short bands keep the encoder's big-endian and filtered copies small.
            rows = max(1, _STRIP_ELEMENTS // (width * 3))
            for start in range(0, band.shape[0], rows):
                part = band[start : start + rows]
                yield top + start, luma(part) if grayscale else part
            expected = top + band.shape[0]
        if expected != height:
            raise ValueError(f"bands ended at row {expected} of {height}")

    def write(temp: Path) -> None:
        with temp.open("wb") as file:
            write_png_stream(
                file, checked(), width=width, height=height, channels=1 if grayscale else 3, bit_depth=bit_depth,
                icc_profile=icc_profile, exif=exif,
            )

    write_atomically(path, write, remove_stale=remove_stale)


def _check_destination(path: Path, fmt: str, height: int, width: int) -> None:
    """Refuse a folder, a missing parent folder, or a size the format cannot hold."""
    if path.is_dir():
        raise OutputError(f"{path} is a folder; pass an image file name such as {path / 'out.png'}")
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist; create it first")
    if max(width, height) > _MAX_SIDE.get(fmt, 2**31 - 1):
        raise OutputError(
            f"cannot write {path}: {width}x{height} is larger than {fmt} allows "
            f"({_MAX_SIDE[fmt]} pixels per side); write a .png instead"
        )


def to_pil(pixels: np.ndarray, *, alpha: np.ndarray | None = None, grayscale: bool = False) -> Image.Image:
    """A PIL image of (H, W, 3) pixels, the way save_image would write them to a PNG file.

    Args:
        pixels: (H, W, 3) RGB, float in [0, 1], uint8 or uint16.
        alpha: optional (H, W) opacity, float in [0, 1], uint8 or uint16.
        grayscale: make a gray image from the ITU-R 601 luma.

    Returns:
        Mode RGB, RGBA, L or LA with 8 bits per sample, or I;16 for gray uint16 pixels without
        alpha. Pillow has no 16-bit colour (or gray with alpha) mode, so those get 8 bits.
    """
    _check_pixels(pixels, alpha)
    deep = grayscale and alpha is None and pixels.dtype == np.uint16
    return _pillow_image(
        pixels, alpha, bit_depth=16 if deep else 8, grayscale=grayscale, keep_alpha=alpha is not None, flatten=False
    )


def _check_pixels(pixels: np.ndarray, alpha: np.ndarray | None) -> None:
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.size == 0:
        raise ValueError(f"expected pixels of shape (H, W, 3) with H, W > 0, got {pixels.shape}")
    for name, array in (("pixels", pixels), ("alpha", alpha)):
        if array is not None and array.dtype.kind != "f" and array.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"{name} must be float, uint8 or uint16, got {array.dtype}")
    if alpha is not None and alpha.shape != pixels.shape[:2]:
        raise ValueError(f"alpha must have shape {pixels.shape[:2]} to match pixels, got {alpha.shape}")


def _pillow_image(
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    *,
    bit_depth: int,
    grayscale: bool,
    keep_alpha: bool,
    flatten: bool,
) -> Image.Image:
    """Fill a Pillow image band by band (see _output_strips), with no full-size temporary array."""
    channels = (1 if grayscale else 3) + keep_alpha
    mode = "I;16" if bit_depth == 16 else _PILLOW_MODES[channels]
    image = Image.new(mode, (pixels.shape[1], pixels.shape[0]))
    strips = _output_strips(
        pixels, alpha, bit_depth=bit_depth, grayscale=grayscale, keep_alpha=keep_alpha, flatten=flatten
    )
    for top, strip in strips:
        image.paste(Image.fromarray(strip[:, :, 0] if channels == 1 else strip), (0, top))
    return image


def _output_strips(
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    *,
    bit_depth: int,
    grayscale: bool,
    keep_alpha: bool,
    flatten: bool,
) -> Iterator[tuple[int, np.ndarray]]:
    """(top row, (rows, W, C) uint8 or uint16 band) pairs covering the image, C in 1..4.

    Working a band at a time keeps the temporary float and integer copies small, whatever the
    image size.
    """
    height, width = pixels.shape[:2]
    rows = max(1, _STRIP_ELEMENTS // (width * 4))
    for top in range(0, height, rows):
        band = pixels[top : top + rows]
        opacity = None if alpha is None else alpha[top : top + rows]
        if flatten:
            band = composite(unit_float(band), unit_float(opacity), _WHITE)
        samples = _to_depth(band, bit_depth)
        if grayscale:
            samples = luma(samples)
        if keep_alpha:
            samples = np.concatenate([samples, _to_depth(opacity, bit_depth)[:, :, None]], axis=2)
        yield top, samples


def _to_depth(values: np.ndarray, bit_depth: int) -> np.ndarray:
    """A band as uint8 (bit_depth 8) or uint16 (16); integers are rescaled exactly, floats rounded."""
    target = np.uint8 if bit_depth == 8 else np.uint16
    if values.dtype == target:
        return values
    if values.dtype == np.uint8:
        return values.astype(np.uint16) * np.uint16(257)
    if values.dtype == np.uint16:
        return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return quantize(values, target)


def check_output_path(input_path: str | os.PathLike[str], output_path: str | os.PathLike[str]) -> None:
    """Refuse an output path that is the input file itself (also through links or `..`).

    Raises:
        OutputError: the output would overwrite the input.
    """
    source, target = Path(input_path), Path(output_path)
    if target.exists() and source.exists():
        same = os.path.samefile(source, target)
    else:
        same = source.resolve() == target.resolve()
    if same:
        raise OutputError(
            f"refusing to overwrite the input {source}; pass -o/--output with a different file name"
        )
