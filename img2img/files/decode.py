"""Reading image files as float arrays, with errors a user can act on.

Images travel as float32 arrays of shape (H, W, 3), RGB in [0, 1]; an alpha channel, when the
file has one, travels beside them as (H, W) in [0, 1], because the models only see RGB. What the
file was like (bit depth, gray, colour profile, EXIF) travels in the LoadedImage too, so that the
output can be written the same way. Training decodes through `load_image` too, so a model is
trained on the pixels it will later be run on.

Example:
    >>> image = load_image("photo.png")
    >>> image.rgb.shape, image.rgb.dtype, image.bit_depth
    ((384, 512, 3), dtype('float32'), 8)
"""

from __future__ import annotations

import os
import struct
import sys
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from img2img.errors import ImageReadError
from img2img.files import DEFAULT_MAX_PIXELS, metadata
from img2img.files.pixels import unit_float

# Modes holding one integer channel wider than 8 bits (16-bit PNG and TIFF, 32-bit TIFF).
_WIDE_INTEGER_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
# Modes without colour: their files are written back as gray (and PIL images given back so).
GRAY_MODES = frozenset({"1", "L", "LA", "La", "F"} | _WIDE_INTEGER_MODES)

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
                metadata.check_jpeg_can_hold(path, width, height)
            warnings = []
            frames = getattr(opened, "n_frames", 1)
            # MPO (camera JPEG) frames are previews and depth maps of the first, not animation.
            if frames > 1 and opened.format != "MPO":
                warnings.append(f"{path.name} has {frames} frames; only the first is used")
            with _pillow_limit_lifted(_above_pillow_limit(width * height)):
                decoded = _decode(path, opened)
            orientation = metadata.orientation(opened)
            try:
                exif = metadata.upright_exif(opened.info.get("exif"))
            except ValueError:
                exif = None
                warnings.append(f"{path.name}: its EXIF block is malformed and is not copied to the output")
        return _loaded(decoded, orientation=orientation, exif=exif, warnings=tuple(warnings))
    except UnidentifiedImageError:
        kind = metadata.signature_kind(path)
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


def _loaded(decoded: _Decoded, *, orientation: int, exif: bytes | None, warnings: tuple[str, ...]) -> LoadedImage:
    """The LoadedImage of decoded samples: upright, as float32 in [0, 1]."""
    alpha = decoded.alpha
    if alpha is not None:
        alpha = unit_float(metadata.upright(alpha, orientation), scale=decoded.scale)
    return LoadedImage(
        rgb=unit_float(metadata.upright(decoded.values, orientation), scale=decoded.scale, channels=3),
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
            icc_profile=metadata.fitting_profile(opened.info.get("icc_profile"), gray=True),
        )
    if rawmodes and all(rawmode in _LOW_BYTE_RAWMODES for rawmode in rawmodes):
        return _decode_wide_colour(path, opened, rawmodes)

    opened.load()
    return _decode_loaded(opened, str(path))


def _decode_loaded(loaded: Image.Image, label: str) -> _Decoded:
    """Samples of a decoded image; `label` names it in errors and warnings (its path)."""
    mode = loaded.mode
    icc = loaded.info.get("icc_profile") or None
    if mode in GRAY_MODES:
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
        icc_profile=metadata.fitting_profile(icc, gray=False),
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
        icc_profile=metadata.fitting_profile(info.get("icc_profile"), gray=False),
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
        icc_profile=metadata.fitting_profile(icc, gray=True),
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


