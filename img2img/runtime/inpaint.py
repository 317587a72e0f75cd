"""Filling holes with an inpainting model: masks from files or transparency, and the crop the
model sees.

Masks are (H, W) float32 arrays in {0, 1}, 1 = hole (a pixel to fill), 0 = keep.

A net fills a hole from its surroundings the way it learnt to at its training resolution (its
metadata "resolution"). So by default only a crop around the hole goes through it: the hole's
bounding box grown by a margin, and further up to that resolution where the image allows (no
less context than in training); a crop whose longer side is still larger is shrunk to that
resolution, and the result brought back to the crop's size. The caller then takes the model's
values for the hole's pixels alone, so every pixel outside the mask leaves exactly as it came
in. `full=True` runs the whole image at its own size instead (tiled like any other model).

The hole's own pixels are zeroed before the net sees them: what they hold (the thing being
removed) must not steer the fill, whether or not the graph masks its input itself.

Example:
    >>> mask = read_mask("photo_mask.png")               # white (any nonzero pixel) = fill
    >>> check_mask(mask, *rgb.shape[:2])
    >>> box, filled = fill_holes(run, rgb, mask, resolution=256, full=False)
    >>> rgb[box][mask[box] > 0] = filled[mask[box] > 0]
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numpy as np
from PIL import Image

from img2img.errors import ImageReadError
from img2img.files.decode import DEFAULT_MAX_PIXELS, from_pil, load_image
from img2img.files.pixels import resize_alpha

# The crop reaches this far beyond the hole's bounding box on every side: at least MIN_MARGIN
# pixels, and MARGIN_FRACTION of the box's longer side for large holes, so the net has about as
# much context around a hole as it had in training.
MIN_MARGIN = 32
MARGIN_FRACTION = 0.3
# Low-resolution pixels the shrunk hole is grown by. The antialiased bicubic shrink spreads each
# pixel over two low-resolution pixels either way, so the ones next to the hole carry some of the
# hole's content; growing the hole by as much has the net repaint them too.
LOW_RES_GROWTH = 2

Box = tuple[slice, slice]
# run(image (h, w, 3) float32 in [0, 1], mask (h, w) {0, 1}) -> (h, w, 3) float32 in [0, 1]
RunModel = Callable[[np.ndarray, np.ndarray], np.ndarray]


def read_mask(path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A mask image file as (H, W) float32 in {0, 1}: see `mask_from_pixels`.

    The file is read like an input image (any format, bit depth or colour mode; EXIF orientation
    applied), so a mask painted over a photo lines up with it.

    Raises:
        ImageReadError: the file is missing, unreadable or larger than `max_pixels`.
    """
    image = load_image(path, max_pixels=max_pixels)
    return mask_from_pixels(image.rgb, image.alpha)


def mask_from_pixels(rgb: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """The hole a mask image paints: every pixel that is not black.

    Args:
        rgb: (H, W, 3) float in [0, 1] (gray masks have three equal channels).
        alpha: (H, W) float opacity in [0, 1], or None. Fully transparent pixels are no hole,
            so strokes painted on a transparent layer work too.

    Returns:
        (H, W) float32 in {0, 1}, 1 where any channel is nonzero.
    """
    values = rgb.max(axis=2)
    if alpha is not None:
        values = values * alpha
    return (values > 0).astype(np.float32)


def as_mask(mask: Image.Image | np.ndarray) -> np.ndarray:
    """A mask given in Python as (H, W) float32 in {0, 1}.

    Args:
        mask: a PIL image of any mode, or an (H, W) array (bool or numbers), or an (H, W, 3) or
            (H, W, 4) image array; nonzero (not black) pixels are the hole, as in `mask_from_pixels`.
    """
    if isinstance(mask, Image.Image):
        image = from_pil(mask)
        return mask_from_pixels(image.rgb, image.alpha)
    plane = np.asarray(mask)
    if plane.ndim == 2:
        return (plane > 0).astype(np.float32)
    if plane.ndim == 3 and plane.shape[2] in (3, 4):
        hole = (plane[:, :, :3] > 0).any(axis=2)
        if plane.shape[2] == 4:
            hole &= plane[:, :, 3] > 0
        return hole.astype(np.float32)
    raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) mask, got shape {plane.shape}")


def mask_from_alpha(alpha: np.ndarray | None, *, name: str = "the image") -> np.ndarray:
    """The hole of an image's own transparency: every pixel that is not fully opaque.

    Args:
        alpha: (H, W) float opacity in [0, 1], or None for an image without alpha.
        name: the image as error messages call it (its path).

    Raises:
        ImageReadError: no alpha channel, or every pixel is opaque.
    """
    if alpha is None:
        raise ImageReadError(
            f"{name} has no alpha channel to take the hole from; give a mask image with --mask instead"
        )
    hole = (alpha < 1.0).astype(np.float32)
    if not hole.any():
        raise ImageReadError(
            f"every pixel of {name} is opaque, so there is nothing to fill; make the region to fill transparent"
        )
    return hole


def check_mask(mask: np.ndarray, height: int, width: int, *, name: str = "the image") -> None:
    """Refuse a mask that does not fit a (height, width) image or marks nothing.

    Raises:
        ImageReadError: the mask's size differs from the image's, or it has no hole pixel.
    """
    if mask.shape != (height, width):
        raise ImageReadError(
            f"mask is {mask.shape[1]}x{mask.shape[0]} but {name} is {width}x{height}; give a mask of the image's size"
        )
    if not mask.any():
        raise ImageReadError("mask marks no pixel to fill; paint the region to fill white")


def hole_box(mask: np.ndarray, *, min_side: int = 0) -> Box:
    """The crop around a (H, W) mask's hole: its bounding box grown by max(MIN_MARGIN,
    MARGIN_FRACTION x the box's longer side) on every side, then on each axis to at least
    `min_side` pixels (the image's size at most), staying inside the image.

    Returns:
        (rows, columns) slices; the mask must mark at least one pixel.
    """
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1
    margin = max(MIN_MARGIN, math.ceil(MARGIN_FRACTION * max(bottom - top, right - left)))
    height, width = mask.shape
    return _extent(top, bottom, margin, min_side, height), _extent(left, right, margin, min_side, width)


def _extent(first: int, stop: int, margin: int, least: int, length: int) -> slice:
    """[first, stop) grown by `margin` both ways, then about its centre to at least `least`
    pixels, within [0, length)."""
    start, stop = max(first - margin, 0), min(stop + margin, length)
    size = max(stop - start, min(least, length))
    start = min(max(start - (size - (stop - start)) // 2, 0), length - size)
    return slice(start, start + size)


def fill_holes(
    run: RunModel, rgb: np.ndarray, mask: np.ndarray, *, resolution: int, full: bool
) -> tuple[Box, np.ndarray]:
    """The model's pixels over the region around the hole.

    Args:
        run: the model on one image (see RunModel); the mask it gets is the hole at the size it
            runs at, and the image is zero there.
        rgb: (H, W, 3) float32 in [0, 1].
        mask: (H, W) float32 in {0, 1}, 1 = hole, with at least one hole pixel.
        resolution: the side the crop is grown to where the image allows, and the longer side a
            larger crop is shrunk to; 0: neither.
        full: run the whole image at its own size instead of a crop.

    Returns:
        (box, filled): the region as (rows, columns) slices of the image, and (h, w, 3) float32 in
        [0, 1], the model's values there. Only the pixels where mask[box] is 1 are meant to be
        taken: outside the hole, a shrunk crop comes back blurred.
    """
    height, width = mask.shape
    box = (slice(0, height), slice(0, width)) if full else hole_box(mask, min_side=resolution)
    crop, hole = rgb[box], mask[box]
    crop_height, crop_width = hole.shape
    longer = max(crop_height, crop_width)
    if full or not resolution or longer <= resolution:
        return box, run(_blanked(crop, hole), hole)
    small_height = max(1, round(crop_height * resolution / longer))
    small_width = max(1, round(crop_width * resolution / longer))
    small_hole = _grown(_max_pooled(hole, small_height, small_width), LOW_RES_GROWTH)
    small = _resized(crop, small_height, small_width)
    filled = run(_blanked(small, small_hole), small_hole)
    return box, _resized(filled, crop_height, crop_width)


def _blanked(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(h, w, 3) float32 copy of `rgb` with the hole's pixels set to 0."""
    return rgb * (1.0 - mask)[:, :, None]


def _resized(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w, 3) float in [0, 1] -> (height, width, 3) float32, bicubic (antialiased when
    shrinking), clipped to [0, 1]."""
    return np.stack([resize_alpha(rgb[:, :, channel], (width, height)) for channel in range(3)], axis=2)


def _max_pooled(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) {0, 1} -> (height, width) no larger: each output pixel is the maximum over the input
    pixels it covers, and the covered blocks tile the input, so no hole pixel is lost."""
    rows = np.arange(height) * mask.shape[0] // height
    columns = np.arange(width) * mask.shape[1] // width
    return np.maximum.reduceat(np.maximum.reduceat(mask, rows, axis=0), columns, axis=1)


def _grown(mask: np.ndarray, pixels: int) -> np.ndarray:
    """(h, w) {0, 1} with its hole grown by `pixels` in every direction (a square window)."""
    padded = np.pad(mask, pixels)
    height, width = mask.shape
    grown = np.zeros_like(mask)
    for dy in range(2 * pixels + 1):
        for dx in range(2 * pixels + 1):
            np.maximum(grown, padded[dy : dy + height, dx : dx + width], out=grown)
    return grown
