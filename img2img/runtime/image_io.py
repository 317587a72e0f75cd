"""Reading and writing images as float arrays, with errors a user can act on.

Images travel through the runtime as float32 arrays of shape (H, W, 3), RGB in [0, 1]; an alpha
channel, when the file has one, travels beside them as (H, W) in [0, 1], because the models only
see RGB.

Example:
    >>> image = load_image("photo.png")
    >>> image.rgb.shape, image.rgb.dtype
    ((384, 512, 3), dtype('float32'))
    >>> save_image(image.rgb, "copy.webp", alpha=image.alpha)
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from img2img.errors import ImageReadError, OutputError

# Pillow format per output suffix. Only formats that store 8-bit RGB without surprises are offered.
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_ALPHA_FORMATS = {"PNG", "WEBP"}
_SAVE_OPTIONS = {"PNG": {}, "JPEG": {"quality": 95}, "WEBP": {"quality": 95}}

# Modes holding one integer channel wider than 8 bits (16-bit PNG and TIFF).
_WIDE_INTEGER_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


@dataclass(frozen=True)
class LoadedImage:
    """An image file decoded for the models.

    Attributes:
        rgb: (H, W, 3) float32 RGB in [0, 1], already turned upright by its EXIF orientation.
        alpha: (H, W) float32 opacity in [0, 1], or None when the file has no transparency.
        mode: the Pillow mode the file was stored in (for example "RGB", "P", "I;16").
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    mode: str


def load_image(path: str | os.PathLike[str]) -> LoadedImage:
    """Read an image file fully and convert it to float RGB (plus alpha if present).

    Palette, grayscale, CMYK and 16-bit images become RGB; 16-bit values are scaled by 1/65535,
    8-bit values by 1/255.

    Raises:
        ImageReadError: the path is missing, a folder, empty, not an image, or truncated.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise ImageReadError(f"{path} is a folder, not an image; pass an image file")
    if path.stat().st_size == 0:
        raise ImageReadError(
            f"{path} is empty (0 bytes); it was not written completely, save or download it again"
        )
    try:
        with Image.open(path) as opened:
            # Image.open only reads the header; load() decodes every pixel so that a truncated
            # file fails here rather than yielding a partly grey image.
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except UnidentifiedImageError:
        raise ImageReadError(
            f"{path} is not an image file Pillow can read; pass a PNG, JPEG, WebP, BMP or TIFF image"
        ) from None
    except Image.DecompressionBombError as error:
        raise ImageReadError(f"{path} is too large to decode safely ({error}); downscale it first") from None
    except PermissionError:
        raise ImageReadError(
            f"{path} cannot be read: permission denied; check the file's permissions"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{path} is truncated or corrupt ({error}); save or download it again") from None
    rgb, alpha = _to_float_rgb(image)
    return LoadedImage(rgb=rgb, alpha=alpha, mode=image.mode)


def _to_float_rgb(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3) float32 RGB and optional (H, W) float32 alpha, both in [0, 1]."""
    if image.mode in _WIDE_INTEGER_MODES:
        gray = np.asarray(image, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(gray, 0.0, 1.0)[:, :, None], 3, axis=2), None
    if image.mode == "F":
        gray = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        return np.repeat(gray[:, :, None], 3, axis=2), None
    if image.has_transparency_data:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        return np.ascontiguousarray(rgba[:, :, :3]), np.ascontiguousarray(rgba[:, :, 3])
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0, None


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
    rgb: np.ndarray,
    path: str | os.PathLike[str],
    alpha: np.ndarray | None = None,
) -> None:
    """Write an image atomically: either the complete file appears at `path` or nothing changes.

    Args:
        rgb: (H, W, 3) float RGB; values are clipped to [0, 1] and rounded to 8 bits.
        path: output file; its suffix picks the format (.png, .jpg/.jpeg, .webp).
        alpha: optional (H, W) float opacity in [0, 1]; kept for PNG and WebP, dropped for JPEG,
            which has no alpha channel.

    Raises:
        OutputError: unknown suffix, missing folder, or the file cannot be written.
    """
    path = Path(path)
    fmt = output_format(path)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"save_image expects rgb of shape (H, W, 3), got {rgb.shape}")
    if alpha is not None and alpha.shape != rgb.shape[:2]:
        raise ValueError(f"alpha must have shape {rgb.shape[:2]} to match rgb, got {alpha.shape}")
    if path.is_dir():
        raise OutputError(f"{path} is a folder; pass an image file name such as {path / 'out.png'}")
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: folder {folder} does not exist; create it first")

    if alpha is not None and fmt in _ALPHA_FORMATS:
        image = Image.fromarray(_to_uint8(np.concatenate([rgb, alpha[:, :, None]], axis=2)))
    else:
        image = Image.fromarray(_to_uint8(rgb))

    try:
        # The temporary file sits in the destination folder so os.replace is a same-filesystem
        # rename, which is atomic: readers never see a half-written image.
        handle, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise OutputError(
            f"cannot write into {folder}: {error.strerror or error}; pick another output folder"
        ) from None
    temp = Path(temp_name)
    try:
        os.close(handle)
        image.save(temp, format=fmt, **_SAVE_OPTIONS[fmt])
        # mkstemp creates the file private (0600); give the result the permissions any new file gets.
        os.chmod(temp, 0o666 & ~_current_umask())
        os.replace(temp, path)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Float in [0, 1] (NaN counted as 0) -> uint8, rounded to nearest."""
    array = np.nan_to_num(np.asarray(array, dtype=np.float32), nan=0.0)
    return np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)


def _current_umask() -> int:
    # The only portable way to read the umask is to set it and put it back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
