"""What an image file says besides its pixels: format signatures, EXIF orientation, colour
profiles, and whether a JPEG can hold the size its header claims.

Used by `decode` (to turn pixels upright and keep a valid profile) and `encode` (to copy EXIF).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from img2img.errors import ImageReadError

_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
}

EXIF_PREFIX = b"Exif\x00\x00"
# A JPEG APP1 segment holds at most 65,535 bytes, two of them its length: the EXIF block (with
# its "Exif\0\0" prefix) must fit in the rest.
JPEG_MAX_EXIF_BYTES = 65_533
_ORIENTATION_TAG = 0x0112


def check_jpeg_can_hold(path: Path, width: int, height: int) -> None:
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


def signature_kind(path: Path) -> str | None:
    """The format a file's first bytes announce, if any (to tell corrupt images from non-images)."""
    try:
        with path.open("rb") as file:
            head = file.read(16)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _SIGNATURES.items() if head.startswith(magic)), None)


def fitting_profile(icc: bytes | None, *, gray: bool) -> bytes | None:
    """The profile if it describes the colours written out (gray or RGB), else None.

    A profile for another colour space (a CMYK profile left on an RGB image, an RGB one on a
    gray image) would make viewers misread the output, or refuse it.
    """
    if not icc or len(icc) < 20:
        return None
    return icc if icc[16:20] == (b"GRAY" if gray else b"RGB ") else None


def orientation(image: Image.Image) -> int:
    """The EXIF (or TIFF, or XMP) orientation 1..8; 1 when absent or unreadable."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except (SyntaxError, ValueError, TypeError, KeyError, IndexError, OSError, struct.error):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """A view of (H, W, ...) `array` turned upright for EXIF `orientation` (as Pillow's exif_transpose)."""
    if orientation in (5, 6, 7, 8):
        array = array.swapaxes(0, 1)  # 5: transpose; the others are a transpose and a flip
    if orientation in (2, 3, 6, 7):
        array = array[:, ::-1]
    if orientation in (3, 4, 7, 8):
        array = array[::-1]
    return array


def upright_exif(exif: bytes | None) -> bytes | None:
    """The EXIF block with "Exif\\0\\0" in front and its orientation set to 1.

    The orientation is patched in place so that everything else (maker notes, thumbnail) is
    kept byte for byte.

    Raises:
        ValueError: the block is too broken to find the orientation in.
    """
    if not exif:
        return None
    exif = exif if exif.startswith(EXIF_PREFIX) else EXIF_PREFIX + exif
    start = len(EXIF_PREFIX)
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


