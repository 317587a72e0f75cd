"""Pixel arithmetic every reader and writer shares: to and from [0, 1], gray, compositing.

Arrays are (H, W, C) or (H, W): float32 on [0, 1], uint8 on 0..255 or uint16 on 0..65535.
One rounding (`quantize`) and one scaling (`unit_float`) serve training, inference and the
encoders, so the same file gives the same pixels everywhere.

Example:
    >>> quantize(np.array([0.0, 0.5, 1.0], np.float32), np.uint8)
    array([  0, 128, 255], dtype=uint8)
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_INTEGER_SCALES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def unit_float(values: np.ndarray, *, scale: float | None = None, channels: int | None = None) -> np.ndarray:
    """A fresh C-ordered float32 copy of `values` on [0, 1].

    Args:
        values: (H, W, ...) samples: uint8 (divided by 255), uint16 (by 65535), or other integers
            and floats divided by `scale`.
        scale: the value that means 1.0; default 255 or 65535 by dtype, 1 for floats.
        channels: repeat an (H, W, 1) array to (H, W, channels) (gray to RGB).

    Returns:
        float32 of `values`' shape (or (H, W, channels)); floats and wide integers outside the
        range are clipped, NaN becomes 0.
    """
    if scale is None:
        scale = _INTEGER_SCALES.get(values.dtype, 1.0)
    shape = values.shape if channels is None else values.shape[:2] + (channels,)
    out = np.empty(shape, np.float32)
    np.divide(values, np.float32(scale), out=out)
    if values.dtype.kind in "fi":
        np.nan_to_num(out, copy=False, nan=0.0)
        np.clip(out, 0.0, 1.0, out=out)
    return out


def quantize(values: np.ndarray, dtype: type[np.generic], *, in_place: bool = False, in_range: bool = False) -> np.ndarray:
    """Float samples on [0, 1] as C-contiguous `dtype`.

    Args:
        values: float array of any shape, nominally in [0, 1].
        dtype: np.uint8 (x255) or np.uint16 (x65535), rounded to nearest after clipping to
            [0, 1] with NaN as 0; np.float32 keeps the values as they are.
        in_place: a float32 `values` is scaled in place rather than copied first (outputs can be
            hundreds of megabytes).
        in_range: the caller knows `values` are finite and within [0, 1] (a model's clamped
            output blended with weights that sum to 1), so the NaN and clipping passes, a tenth
            of a second per output of 8 megapixels, are skipped.
    """
    if dtype == np.float32:
        return np.ascontiguousarray(values, dtype=np.float32)
    scale = _INTEGER_SCALES[np.dtype(dtype)]
    work = values if in_place and values.dtype == np.float32 else values.astype(np.float32)
    if not in_range:
        np.nan_to_num(work, copy=False, nan=0.0)
        np.clip(work, 0.0, 1.0, out=work)
    work *= scale
    np.rint(work, out=work)
    return work.astype(dtype, order="C")


def luma(samples: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 or uint16 RGB -> (H, W, 1) ITU-R 601 luma of the same dtype, in the fixed
    point Pillow's convert("L") uses, so gray outputs match Pillow's byte for byte."""
    wide = samples.astype(np.uint32)
    gray = wide[:, :, 0] * 19595 + wide[:, :, 1] * 38470 + wide[:, :, 2] * 7471 + 0x8000
    return (gray >> 16).astype(samples.dtype)[:, :, None]


def composite(rgb: np.ndarray, alpha: np.ndarray | None, background: tuple[int, int, int]) -> np.ndarray:
    """(H, W, 3) float RGB in [0, 1] laid over `background` (R, G, B in 0..255) with (H, W)
    opacity `alpha` in [0, 1]; `rgb` itself when `alpha` is None.

    Transparent pixels hide arbitrary colour (black, or an editor's leftovers); models are
    trained and run on what a viewer shows instead.
    """
    if alpha is None:
        return rgb
    fill = np.asarray(background, np.float32) / 255.0
    opacity = alpha[:, :, None]
    return rgb * opacity + fill * (1.0 - opacity)


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
