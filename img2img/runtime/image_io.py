"""Reading and writing images as float arrays, with errors a user can act on.

Images travel through the runtime as float32 arrays of shape (H, W, 3), RGB in [0, 1]; an alpha
channel, when the file has one, travels beside them as (H, W) in [0, 1], because the models only
see RGB. What the file was like (bit depth, gray, colour profile, EXIF) travels in the
LoadedImage too, so that the output can be written the same way.

Example:
    >>> image = load_image("photo.png")
    >>> image.rgb.shape, image.rgb.dtype, image.bit_depth
    ((384, 512, 3), dtype('float32'), 8)
    >>> save_image(image.rgb, "copy.webp", alpha=image.alpha, icc_profile=image.icc_profile)
"""

from __future__ import annotations

import glob
import hashlib
import os
import secrets
import struct
import sys
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from img2img.errors import ImageReadError, OutputError

# Pillow's own decompression-bomb error threshold (twice Image.MAX_IMAGE_PIXELS), about
# 13400x13400: larger images are refused unless the caller raises the limit.
DEFAULT_MAX_PIXELS = 178_956_970

# Pillow format per output suffix. Only formats that store RGB without surprises are offered.
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_ALPHA_FORMATS = {"PNG", "WEBP"}
# Largest width or height each format can store (libjpeg and libwebp limits).
_MAX_SIDE = {"JPEG": 65_500, "WEBP": 16_383}
# zlib level for PNG (OpenCV's default too). On a 2880x2160 upscaled photo level 1 took 0.17 s
# and 1.55 MB, level 3 0.28 s and 1.44 MB, level 6 (Pillow's default) 0.39 s and 1.19 MB: on a
# small CPU, encoding competes with the model for the cores, so speed wins.
_PNG_COMPRESS_LEVEL = 1

# A file being written is named `.<name>.<16 hex digits>.img2img.tmp` beside its destination; a
# run killed mid-write leaves one behind, and the next write of the same name removes it.
TEMP_SUFFIX = ".img2img.tmp"
_TEMP_TOKEN_BYTES = 8
# The longest file name most file systems take (ext4, XFS, APFS, NTFS: 255 bytes or UTF-16 units).
NAME_MAX_BYTES = 255
# What a temporary name adds to its destination's: two dots, the random token and TEMP_SUFFIX.
_TEMP_OVERHEAD_BYTES = 2 + 2 * _TEMP_TOKEN_BYTES + len(TEMP_SUFFIX)

# Modes holding one integer channel wider than 8 bits (16-bit PNG and TIFF, 32-bit TIFF).
_WIDE_INTEGER_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
_GRAY_MODES = {"1", "L", "LA", "La", "F"} | _WIDE_INTEGER_MODES

# Pillow decodes 16-bit colour to 8 bits, keeping each sample's high byte. Decoding the same data
# again with the opposite byte order keeps the low bytes instead.
_NATIVE = "L" if sys.byteorder == "little" else "B"
_OPPOSITE = {"B": "L", "L": "B", "N": "B" if _NATIVE == "L" else "L"}
_LOW_BYTE_RAWMODES = {
    f"{layout};16{order}": f"{layout};16{_OPPOSITE[order]}"
    for layout in ("RGB", "RGBA")
    for order in ("B", "L", "N")
}
# 16-bit gray with alpha in PNG: as many bytes per pixel as 8-bit RGBA, so decoding it as RGBA
# hands over the raw big-endian bytes (gray high, gray low, alpha high, alpha low).
_GRAY_ALPHA_16_RAWMODE = "LA;16B"

# Image.open applies Pillow's global pixel limit (Image.MAX_IMAGE_PIXELS: a warning above it, an
# error above twice it); load_image applies its own per-call limit instead, so Pillow's is lifted
# while a file is opened, and while it is decoded when it is above Pillow's limit (the GIF and
# TIFF decoders check again). The lock keeps concurrent loads from restoring each other's value;
# it is reentrant because a 16-bit image is opened a second time while its decoding is lifted.
_PILLOW_LIMIT_LOCK = threading.RLock()

_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
}

_EXIF_PREFIX = b"Exif\x00\x00"
# A JPEG APP1 segment holds at most 65,535 bytes, two of them its length: the EXIF block (with
# its "Exif\0\0" prefix) must fit in the rest.
_JPEG_MAX_EXIF_BYTES = 65_533
_ORIENTATION_TAG = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type per number of channels (gray, gray + alpha, RGB, RGB + alpha).
_PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
_PILLOW_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
# Outputs are converted a band of rows at a time, so that no full-size float copy is made.
_STRIP_ELEMENTS = 1 << 20
# 8-bit PNGs of at least this many pixels are encoded band by band (see save_image); smaller ones
# by Pillow, whose adaptive row filters compress a little better.
STREAMED_PNG_PIXELS = 16_000_000


@dataclass(frozen=True)
class LoadedImage:
    """An image file decoded for the models, with what is needed to write its output alike.

    Attributes:
        rgb: (H, W, 3) float32 RGB in [0, 1], already turned upright by its EXIF orientation.
        alpha: (H, W) float32 opacity in [0, 1], or None when the file has no transparency.
        mode: the Pillow mode the file was stored in ("RGB", "P", "I;16", "CMYK", ...), or
            "RGB;16" and "RGBA;16" for 16-bit colour (PNG, TIFF), "LA;16" for 16-bit gray with
            alpha (PNG), which Pillow itself reads as 8-bit RGB and RGBA.
        bit_depth: bits per sample of the source, 8 or 16 (16 also for 32-bit integer and float).
        grayscale: the source has no colour (modes 1, L, LA, I, I;16, F); rgb holds three equal
            channels and the output is written back as gray.
        icc_profile: the embedded colour profile, valid for `rgb` (for the gray output when
            grayscale), or None. CMYK sources are converted to sRGB and get None.
        exif: the EXIF block ("Exif\\0\\0" + TIFF data) with its orientation reset to 1, since
            the pixels are already upright; None when the file has none.
        warnings: things the user should know that did not stop the decoding, for example
            "photo.gif has 12 frames; only the first is used".
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    mode: str
    bit_depth: int = 8
    grayscale: bool = False
    icc_profile: bytes | None = None
    exif: bytes | None = None
    warnings: tuple[str, ...] = ()

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), in Pillow's order."""
        return self.rgb.shape[1], self.rgb.shape[0]


@dataclass(frozen=True)
class _Decoded:
    """Samples as decoded: `values` (H, W, 1 or 3) integer on a 0..`scale` range, or float."""

    values: np.ndarray
    alpha: np.ndarray | None
    scale: float
    mode: str
    bit_depth: int
    grayscale: bool
    icc_profile: bytes | None
    warnings: tuple[str, ...] = ()


def load_image(path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read an image file fully and convert it to float RGB (plus alpha if present).

    Palette, gray and CMYK images become RGB (CMYK through its embedded ICC profile when it has
    one); 16-bit values are scaled by 1/65535, 8-bit values by 1/255. Of a file with several
    frames (GIF, TIFF, animated PNG or WebP) the first is read, with a warning.

    Args:
        path: the image file.
        max_pixels: refuse images with more pixels than this before decoding them, so that a
            small file claiming a huge size cannot exhaust memory; None lifts the limit (and
            Pillow's own) for trusted files.

    Raises:
        ImageReadError: the path is missing, a folder, empty, unreadable, not an image, corrupt,
            truncated or larger than `max_pixels`.
    """
    path = Path(path)
    if max_pixels is not None and max_pixels < 1:
        raise ImageReadError(f"the pixel limit is {max_pixels:,}; pass a positive number (or 0 on the command line: no limit)")
    if not path.exists():
        raise ImageReadError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise ImageReadError(f"{path} is a folder, not an image; pass an image file")
    if path.stat().st_size == 0:
        raise ImageReadError(
            f"{path} is empty (0 bytes); it was not written completely, save or download it again"
        )
    try:
        with _open(path) as opened:
            width, height = opened.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageReadError(
                    f"{path} is {width}x{height} ({width * height:,} pixels), more than the limit of "
                    f"{max_pixels:,}; if you trust the file, pass a larger --max-pixels"
                )
            if opened.format in ("JPEG", "MPO"):
                _check_jpeg_can_hold(path, width, height)
            warnings = []
            frames = getattr(opened, "n_frames", 1)
            # MPO (camera JPEG) frames are previews and depth maps of the first, not animation.
            if frames > 1 and opened.format != "MPO":
                warnings.append(f"{path.name} has {frames} frames; only the first is used")
            with _pillow_limit_lifted(_above_pillow_limit(width * height)):
                decoded = _decode(path, opened)
            orientation = _orientation(opened)
            try:
                exif = _upright_exif(opened.info.get("exif"))
            except ValueError:
                exif = None
                warnings.append(f"{path.name}: its EXIF block is malformed and is not copied to the output")
        return _loaded(decoded, orientation=orientation, exif=exif, warnings=tuple(warnings))
    except UnidentifiedImageError:
        kind = _signature_kind(path)
        if kind is not None:
            raise ImageReadError(
                f"{path} is truncated or corrupt: it starts like a {kind} file but its header cannot "
                f"be read; save or download it again"
            ) from None
        raise ImageReadError(
            f"{path} is not an image file Pillow can read; pass a PNG, JPEG, WebP, BMP, GIF or TIFF image"
        ) from None
    except Image.DecompressionBombError as error:
        raise ImageReadError(
            f"{path} is too large to decode safely ({error}); downscale it first"
        ) from None
    except PermissionError:
        raise ImageReadError(
            f"{path} cannot be read: permission denied; check the file's permissions"
        ) from None
    except MemoryError:
        raise ImageReadError(
            f"{path}: not enough memory to decode it; downscale it or free memory first"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as error:
        raise ImageReadError(f"{path} is truncated or corrupt ({error}); save or download it again") from None


def from_pil(image: Image.Image) -> LoadedImage:
    """Decode a PIL image held in memory the way load_image decodes a file.

    The pixels are taken as they are: no EXIF orientation is applied (ImageOps.exif_transpose
    does that) and no size limit. 16-bit colour cannot be had this way, since Pillow keeps only 8
    bits of it in memory; 16-bit gray ("I;16") can.

    Raises:
        ImageReadError: the image's colour mode cannot be converted to RGB.
    """
    image.load()
    return _loaded(_decode_loaded(image, "the image"), orientation=1, exif=None, warnings=())


def _check_jpeg_can_hold(path: Path, width: int, height: int) -> None:
    """Refuses a JPEG too short for the size its header claims.

    Its data may end early (a cut download) or the header may lie (a small file claiming
    13000x13000); libjpeg then fills the missing rows with gray and only warns, so the decode
    would allocate the whole claimed size and hand a gray image on. A Huffman-coded JPEG spends
    at least one bit on every 8x8 luma block (the shortest code of its DC difference), which
    gives a floor on its size. Arithmetic-coded JPEGs (rare) can go below it and are not checked.
    """
    blocks = -(-width // 8) * -(-height // 8)
    least = blocks // 8
    size = path.stat().st_size
    if size < least and not _jpeg_arithmetic_coded(path):
        raise ImageReadError(
            f"{path} is truncated or corrupt: its {size:,} bytes cannot hold the {width}x{height} pixels "
            f"its header claims (a JPEG that size takes at least {least:,}); save or download it again"
        )


def _jpeg_arithmetic_coded(path: Path) -> bool:
    """Whether the JPEG's frame header (SOF) is one of the arithmetic-coded kinds (SOF9 to SOF15)."""
    with path.open("rb") as file:
        if file.read(2) != b"\xff\xd8":
            return False
        while True:
            marker = file.read(2)
            if len(marker) < 2 or marker[0] != 0xFF:
                return False
            kind = marker[1]
            if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):  # a SOF (not DHT, JPG, DAC)
                return kind >= 0xC9
            if kind == 0xDA:  # start of scan: no frame header before it
                return False
            length = file.read(2)
            if len(length) < 2:
                return False
            file.seek(struct.unpack(">H", length)[0] - 2, os.SEEK_CUR)


def _loaded(decoded: _Decoded, *, orientation: int, exif: bytes | None, warnings: tuple[str, ...]) -> LoadedImage:
    """The LoadedImage of decoded samples: upright, as float32 in [0, 1]."""
    alpha = decoded.alpha
    if alpha is not None:
        alpha = _to_unit_float(_upright(alpha, orientation), decoded.scale)
    return LoadedImage(
        rgb=_to_unit_float(_upright(decoded.values, orientation), decoded.scale, rgb=True),
        alpha=alpha,
        mode=decoded.mode,
        bit_depth=decoded.bit_depth,
        grayscale=decoded.grayscale,
        icc_profile=decoded.icc_profile,
        exif=exif,
        warnings=warnings + decoded.warnings,
    )


@contextmanager
def _pillow_limit_lifted(lift: bool = True) -> Iterator[None]:
    """Lift Pillow's global pixel limit inside the block (when `lift`), one thread at a time."""
    if not lift:
        yield
        return
    with _PILLOW_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _above_pillow_limit(pixels: int) -> bool:
    """Whether Pillow would warn about (or refuse) an image of `pixels` pixels while decoding it."""
    with _PILLOW_LIMIT_LOCK:  # read the value Pillow has outside any lifted block
        limit = Image.MAX_IMAGE_PIXELS
    return limit is not None and pixels > limit


def _open(path: Path) -> Image.Image:
    """Image.open (which reads only the header) under load_image's pixel limit instead of Pillow's."""
    with _pillow_limit_lifted():
        return Image.open(path)


def _signature_kind(path: Path) -> str | None:
    """The format a file's first bytes announce, if any (to tell corrupt images from non-images)."""
    try:
        with path.open("rb") as file:
            head = file.read(16)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _SIGNATURES.items() if head.startswith(magic)), None)


def _decode(path: Path, opened: Image.Image) -> _Decoded:
    """Decode the pixels of an opened (not yet loaded) image, keeping 16-bit samples whole."""
    rawmodes = [_tile_rawmode(tile) for tile in opened.tile]
    if opened.format == "PNG" and rawmodes == [_GRAY_ALPHA_16_RAWMODE]:
        opened.tile = [_with_rawmode(tile, "RGBA") for tile in opened.tile]
        opened.load()
        raw = np.asarray(opened).astype(np.uint16)
        return _Decoded(
            values=(raw[:, :, 0:1] << 8) | raw[:, :, 1:2],
            alpha=(raw[:, :, 2] << 8) | raw[:, :, 3],
            scale=65535.0,
            mode="LA;16",
            bit_depth=16,
            grayscale=True,
            icc_profile=_fitting_profile(opened.info.get("icc_profile"), gray=True),
        )
    if rawmodes and all(rawmode in _LOW_BYTE_RAWMODES for rawmode in rawmodes):
        return _decode_wide_colour(path, opened, rawmodes)

    opened.load()
    return _decode_loaded(opened, str(path))


def _decode_loaded(loaded: Image.Image, label: str) -> _Decoded:
    """Samples of a decoded image; `label` names it in errors and warnings (its path)."""
    mode = loaded.mode
    icc = loaded.info.get("icc_profile") or None
    if mode in _GRAY_MODES:
        return _decode_gray(loaded, icc)
    warnings: tuple[str, ...] = ()
    if mode == "CMYK":
        image, warnings = _cmyk_to_srgb(label, loaded, icc)
        icc = None
    elif loaded.has_transparency_data:
        image = _convert(label, loaded, "RGBA")
    else:
        image = _convert(label, loaded, "RGB")
    pixels = np.asarray(image)
    alpha = pixels[:, :, 3] if image.mode == "RGBA" else None
    return _Decoded(
        values=pixels[:, :, :3],
        alpha=alpha,
        scale=255.0,
        mode=mode,
        bit_depth=8,
        grayscale=False,
        icc_profile=_fitting_profile(icc, gray=False),
        warnings=warnings,
    )


def _decode_wide_colour(path: Path, opened: Image.Image, rawmodes: list[str]) -> _Decoded:
    """16-bit RGB or RGBA: decode the high bytes, then the low bytes from a second opening."""
    opened.load()
    info = opened.info
    high = np.asarray(opened)
    with _open(path) as again:
        again.tile = [_with_rawmode(tile, _LOW_BYTE_RAWMODES[rawmode]) for tile, rawmode in zip(again.tile, rawmodes)]
        again.load()
        low = np.asarray(again)
    values = (high.astype(np.uint16) << 8) | low
    alpha = values[:, :, 3] if values.shape[2] == 4 else None
    colour = values[:, :, :3]
    key = info.get("transparency")
    if alpha is None and isinstance(key, tuple) and len(key) == 3:
        # A 16-bit colour key (PNG tRNS): that exact colour is transparent, everything else opaque.
        alpha = np.where(np.all(colour == np.array(key, np.uint16), axis=2), 0, 65535).astype(np.uint16)
    return _Decoded(
        values=colour,
        alpha=alpha,
        scale=65535.0,
        mode="RGBA;16" if values.shape[2] == 4 else "RGB;16",
        bit_depth=16,
        grayscale=False,
        icc_profile=_fitting_profile(info.get("icc_profile"), gray=False),
    )


def _decode_gray(image: Image.Image, icc: bytes | None) -> _Decoded:
    """Gray modes: 1, L, LA, La (8 bits), I and I;16 (16 bits), F (float, taken as [0, 1])."""
    mode = image.mode
    alpha = None
    if mode in _WIDE_INTEGER_MODES:
        gray = np.asarray(image)
        key = image.info.get("transparency")
        if isinstance(key, int):
            alpha = np.where(gray == key, 0, 65535).astype(np.uint16)
        scale, depth = 65535.0, 16
    elif mode == "F":
        gray, scale, depth = np.asarray(image), 1.0, 16
    elif mode in ("LA", "La") or image.has_transparency_data:
        pair = np.asarray(image.convert("LA"))
        gray, alpha, scale, depth = pair[:, :, 0], pair[:, :, 1], 255.0, 8
    else:
        gray, scale, depth = np.asarray(image.convert("L")), 255.0, 8
    return _Decoded(
        values=gray[:, :, None],
        alpha=alpha,
        scale=scale,
        mode=mode,
        bit_depth=depth,
        grayscale=True,
        icc_profile=_fitting_profile(icc, gray=True),
    )


def _cmyk_to_srgb(label: str, image: Image.Image, icc: bytes | None) -> tuple[Image.Image, tuple[str, ...]]:
    """CMYK -> sRGB through the embedded profile; without one, Pillow's plain ink inversion."""
    if icc is None:
        return image.convert("RGB"), ()
    try:
        source = ImageCms.ImageCmsProfile(BytesIO(icc))
        return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB"), ()
    except (ImageCms.PyCMSError, OSError, ValueError) as error:
        warning = f"{label}: its CMYK colour profile cannot be used ({error}); colours are approximate"
        return image.convert("RGB"), (warning,)


def _convert(label: str, image: Image.Image, mode: str) -> Image.Image:
    try:
        return image.convert(mode)
    except ValueError:
        raise ImageReadError(
            f"{label} uses the {image.mode} colour mode, which cannot be converted to {mode}; "
            f"convert it to RGB first"
        ) from None


def _tile_rawmode(tile: object) -> str:
    args = tile.args  # type: ignore[attr-defined]
    return args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else ""


def _with_rawmode(tile: object, rawmode: str) -> object:
    args = tile.args  # type: ignore[attr-defined]
    return tile._replace(args=rawmode if isinstance(args, str) else (rawmode, *args[1:]))  # type: ignore[attr-defined]


def _fitting_profile(icc: bytes | None, *, gray: bool) -> bytes | None:
    """The profile if it describes the colours written out (gray or RGB), else None.

    A profile for another colour space (a CMYK profile left on an RGB image, an RGB one on a
    gray image) would make viewers misread the output, or refuse it.
    """
    if not icc or len(icc) < 20:
        return None
    return icc if icc[16:20] == (b"GRAY" if gray else b"RGB ") else None


def _orientation(image: Image.Image) -> int:
    """The EXIF (or TIFF, or XMP) orientation 1..8; 1 when absent or unreadable."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except (SyntaxError, ValueError, TypeError, KeyError, IndexError, OSError, struct.error):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """A view of (H, W, ...) `array` turned upright for EXIF `orientation` (as Pillow's exif_transpose)."""
    if orientation in (5, 6, 7, 8):
        array = array.swapaxes(0, 1)  # 5: transpose; the others are a transpose and a flip
    if orientation in (2, 3, 6, 7):
        array = array[:, ::-1]
    if orientation in (3, 4, 7, 8):
        array = array[::-1]
    return array


def _to_unit_float(values: np.ndarray, scale: float, *, rgb: bool = False) -> np.ndarray:
    """A fresh C-ordered float32 copy of `values` / `scale` in [0, 1]; (H, W, 1) -> (H, W, 3) when `rgb`."""
    shape = values.shape[:2] + ((3,) if rgb else ())
    out = np.empty(shape, np.float32)
    np.divide(values, np.float32(scale), out=out)
    if values.dtype.kind in "fi":
        # Float and 32-bit integer samples can lie outside the range (or be NaN).
        np.nan_to_num(out, copy=False, nan=0.0)
        np.clip(out, 0.0, 1.0, out=out)
    return out


def _upright_exif(exif: bytes | None) -> bytes | None:
    """The EXIF block with "Exif\\0\\0" in front and its orientation set to 1.

    The orientation is patched in place so that everything else (maker notes, thumbnail) is
    kept byte for byte.

    Raises:
        ValueError: the block is too broken to find the orientation in.
    """
    if not exif:
        return None
    exif = exif if exif.startswith(_EXIF_PREFIX) else _EXIF_PREFIX + exif
    start = len(_EXIF_PREFIX)
    try:
        order = {b"II": "<", b"MM": ">"}[exif[start : start + 2]]
        (first_ifd,) = struct.unpack_from(order + "I", exif, start + 4)
        entries = start + first_ifd
        (count,) = struct.unpack_from(order + "H", exif, entries)
        for index in range(count):
            entry = entries + 2 + 12 * index
            tag, kind, length = struct.unpack_from(order + "HHI", exif, entry)
            if tag == _ORIENTATION_TAG and kind == 3 and length == 1:  # one SHORT, stored inline
                patched = bytearray(exif)
                struct.pack_into(order + "H", patched, entry + 8, 1)
                return bytes(patched)
    except (KeyError, struct.error):
        raise ValueError("malformed EXIF block") from None
    return exif


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

    if exif and not exif.startswith(_EXIF_PREFIX):
        exif = _EXIF_PREFIX + exif
    warnings: tuple[str, ...] = ()
    if exif and fmt == "JPEG" and len(exif) > _JPEG_MAX_EXIF_BYTES:
        warnings += (
            f"its EXIF metadata ({len(exif):,} bytes) is over JPEG's limit of {_JPEG_MAX_EXIF_BYTES:,} and was "
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
                _write_png_stream(
                    file, strips, width=width, height=height, channels=channels, bit_depth=bit_depth,
                    icc_profile=icc_profile, exif=exif,
                )

    else:
        image = _pillow_image(pixels, alpha, bit_depth=8, grayscale=grayscale, keep_alpha=keep_alpha, flatten=flatten)
        options: dict[str, object] = (
            {"compress_level": _PNG_COMPRESS_LEVEL} if fmt == "PNG" else {"quality": quality}
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
    if exif and not exif.startswith(_EXIF_PREFIX):
        exif = _EXIF_PREFIX + exif
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
                yield top + start, _luma(part) if grayscale else part
            expected = top + band.shape[0]
        if expected != height:
            raise ValueError(f"bands ended at row {expected} of {height}")

    def write(temp: Path) -> None:
        with temp.open("wb") as file:
            _write_png_stream(
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


def write_atomically(path: Path, write: Callable[[Path], None], *, remove_stale: bool = False) -> None:
    """Run `write(temp)` on a fresh temporary file beside `path`, then rename it to `path`.

    Readers see the old file or the complete new one, never half of it; on any failure the
    temporary file is removed. With `remove_stale`, temporary files a killed earlier write to
    `path` left behind are removed first.

    Raises:
        OutputError: the folder is not writable, or the write or rename fails.
    """
    folder = path.parent
    if remove_stale:
        remove_stale_temp_files(path)
    # The temporary file sits in the destination folder so os.replace is a same-filesystem
    # rename, which is atomic: readers never see a half-written image.
    temp = folder / f".{temp_key(path.name)}.{secrets.token_hex(_TEMP_TOKEN_BYTES)}{TEMP_SUFFIX}"
    try:
        # O_EXCL: the name is ours alone. Mode 0o666 less the umask, like any new file.
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as error:
        raise OutputError(
            f"cannot write into {folder}: {error.strerror or error}; pick another output folder"
        ) from None
    try:
        write(temp)
        os.replace(temp, path)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def temp_key(name: str) -> str:
    """The part of a temporary file's name that stands for its destination `name`.

    The name itself where `.<name>.<16 hex digits>.img2img.tmp` fits in NAME_MAX_BYTES; a longer
    name (any name up to the limit is legal for the destination) is cut and given 12 hex digits
    of its SHA-1, so the temporary file fits wherever the destination does and still belongs to
    exactly one destination.
    """
    encoded = os.fsencode(name)
    if len(encoded) + _TEMP_OVERHEAD_BYTES <= NAME_MAX_BYTES:
        return name
    digest = hashlib.sha1(encoded).hexdigest()[:12]
    keep = NAME_MAX_BYTES - _TEMP_OVERHEAD_BYTES - len(digest) - 1
    # surrogateescape decodes any byte cut: a split UTF-8 sequence becomes escaped bytes.
    return os.fsdecode(encoded[:keep]) + "~" + digest


def temp_file_pattern(path: str | os.PathLike[str]) -> str:
    """The glob pattern (relative to its folder) matching temporary files of writes to `path`.

    It matches `.<key>.<16 hex digits>.img2img.tmp` (see `temp_key`) for exactly this name,
    never the temporary files of another destination in the same folder.
    """
    return f".{glob.escape(temp_key(Path(path).name))}.{'[0-9a-f]' * 2 * _TEMP_TOKEN_BYTES}{TEMP_SUFFIX}"


def stale_temp_files(path: str | os.PathLike[str]) -> list[Path]:
    """Temporary files that writes to `path` left behind (a killed run), sorted."""
    path = Path(path)
    return sorted(path.parent.glob(temp_file_pattern(path)))


def remove_stale_temp_files(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files earlier writes to `path` left behind; returns those deleted.

    Only call it when no other process writes `path` at the same time: its temporary file
    would be taken for a leftover.
    """
    removed = []
    for temp in stale_temp_files(path):
        try:
            temp.unlink()
        except OSError:
            # Gone already, or not ours to remove: neither stops a write, whose rename replaces
            # only the destination.
            continue
        removed.append(temp)
    return removed


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
            weight = _unit_band(opacity)[:, :, None]
            band = _unit_band(band) * weight + (1.0 - weight)
        samples = _quantize(band, bit_depth)
        if grayscale:
            samples = _luma(samples)
        if keep_alpha:
            samples = np.concatenate([samples, _quantize(opacity, bit_depth)[:, :, None]], axis=2)
        yield top, samples


def _unit_band(values: np.ndarray) -> np.ndarray:
    """A float32 copy of a band, on [0, 1] whatever its dtype."""
    if values.dtype == np.uint8:
        return values.astype(np.float32) / 255.0
    if values.dtype == np.uint16:
        return values.astype(np.float32) / 65535.0
    band = values.astype(np.float32)
    np.nan_to_num(band, copy=False, nan=0.0)
    return np.clip(band, 0.0, 1.0, out=band)


def _quantize(values: np.ndarray, bit_depth: int) -> np.ndarray:
    """A band as uint8 (bit_depth 8) or uint16 (16); integers are rescaled exactly, floats rounded."""
    target = np.uint8 if bit_depth == 8 else np.uint16
    if values.dtype == target:
        return values
    if values.dtype == np.uint8:
        return values.astype(np.uint16) * np.uint16(257)
    if values.dtype == np.uint16:
        return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)
    band = values.astype(np.float32)
    np.nan_to_num(band, copy=False, nan=0.0)
    np.clip(band, 0.0, 1.0, out=band)
    band *= 255.0 if bit_depth == 8 else 65535.0
    return np.rint(band, out=band).astype(target)


def _luma(samples: np.ndarray) -> np.ndarray:
    """(rows, W, 3) -> (rows, W, 1) ITU-R 601 luma, in the fixed point Pillow's convert("L") uses."""
    wide = samples.astype(np.uint32)
    luma = wide[:, :, 0] * 19595 + wide[:, :, 1] * 38470 + wide[:, :, 2] * 7471 + 0x8000
    return (luma >> 16).astype(samples.dtype)[:, :, None]


def _write_png_stream(
    file: BinaryIO,
    strips: Iterator[tuple[int, np.ndarray]],
    *,
    width: int,
    height: int,
    channels: int,
    bit_depth: int,
    icc_profile: bytes | None,
    exif: bytes | None,
) -> None:
    """Stream an 8- or 16-bit PNG (gray, gray + alpha, RGB or RGBA) from bands of rows, holding
    one band at a time (Pillow cannot write 16-bit colour, and copies the whole image for 8).

    Every row uses the "Up" filter (each byte minus the one above it), which numpy computes for
    a whole band at once and which shrinks smooth images well.
    """
    file.write(_PNG_SIGNATURE)
    _write_chunk(
        file, b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    )
    if icc_profile:
        # Profile name, NUL, compression method 0 (zlib), compressed profile.
        _write_chunk(file, b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc_profile))
    if exif:
        _write_chunk(file, b"eXIf", exif.removeprefix(_EXIF_PREFIX))
    compressor = zlib.compressobj(_PNG_COMPRESS_LEVEL)
    row_bytes = width * channels * bit_depth // 8
    above = np.zeros(row_bytes, np.uint8)
    for _, strip in strips:
        # PNG samples are big-endian.
        samples = strip.astype(">u2", order="C") if bit_depth == 16 else np.ascontiguousarray(strip, np.uint8)
        rows = samples.view(np.uint8).reshape(-1, row_bytes)
        filtered = np.empty((rows.shape[0], row_bytes + 1), np.uint8)
        filtered[:, 0] = 2  # filter type Up
        np.subtract(rows[0], above, out=filtered[0, 1:])
        np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
        above = rows[-1].copy()
        # Each piece zlib hands back is its own IDAT chunk (readers join them), so no compressed
        # data is buffered here.
        compressed = compressor.compress(filtered)
        if compressed:
            _write_chunk(file, b"IDAT", compressed)
    _write_chunk(file, b"IDAT", compressor.flush())
    _write_chunk(file, b"IEND", b"")


def _write_chunk(file: BinaryIO, kind: bytes, body: bytes) -> None:
    file.write(struct.pack(">I", len(body)) + kind)
    file.write(body)
    file.write(struct.pack(">I", zlib.crc32(body, zlib.crc32(kind))))


def resize_alpha(alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W) opacity plane in [0, 1] with bicubic filtering.

    Args:
        alpha: (H, W) float opacity in [0, 1].
        size: output (width, height), in Pillow's order.

    Returns:
        (height, width) float32 opacity clipped to [0, 1] (bicubic overshoots at sharp edges).
    """
    plane = Image.fromarray(np.asarray(alpha, dtype=np.float32))
    resized = np.asarray(plane.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    return np.clip(resized, 0.0, 1.0)


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
