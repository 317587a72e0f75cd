"""A streaming PNG encoder for 8- and 16-bit gray, gray + alpha, RGB and RGBA.

Pillow cannot write 16-bit colour, and copies the whole image to write 8 bits; this encoder
takes bands of rows as they are made and holds one band at a time.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from img2img.files.metadata import EXIF_PREFIX

# zlib level for PNG (OpenCV's default too). On a 2880x2160 upscaled photo level 1 took 0.17 s
# and 1.55 MB, level 3 0.28 s and 1.44 MB, level 6 (Pillow's default) 0.39 s and 1.19 MB: on a
# small CPU, encoding competes with the model for the cores, so speed wins.
PNG_COMPRESS_LEVEL = 1
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type per number of channels (gray, gray + alpha, RGB, RGB + alpha).
_PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}


def write_png_stream(
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
    """Stream a PNG from `strips`: (top row, (rows, width, channels) band) pairs, top to bottom,
    uint8 for `bit_depth` 8 or uint16 for 16, `channels` 1 (gray) to 4 (RGBA).

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
        _write_chunk(file, b"eXIf", exif.removeprefix(EXIF_PREFIX))
    compressor = zlib.compressobj(PNG_COMPRESS_LEVEL)
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
