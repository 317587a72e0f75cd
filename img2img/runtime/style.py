"""Style transfer at inference: style images for an arbitrary-style model, and colour keeping.

An arbitrary-style model (AdaIN, inputs "image,style,style_weights,alpha") takes its style
images as squares of its `style_size`: each is scaled so its shorter side is that size and
centre-cropped (Lanczos, antialiased), which keeps the brush strokes at the scale the model was
trained with, whatever the painting's resolution. Several styles with weights are mixed in
feature space (interpolation between paintings).

`preserve_color` is the luminance-only transfer of Gatys et al. (2016): the stylised image's
luma with the content's chroma (ITU-R BT.601 YCbCr), so the painting's brushwork lands on the
photo's own colours.

Example:
    >>> styles = load_styles(["starry.jpg", "kiss.png"], size=256)   # (2, 256, 256, 3)
    >>> model.onnx.set_styles(styles, [0.7, 0.3], alpha=0.8)
    >>> recoloured = preserve_color(stylised, content)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from img2img.errors import ImageReadError, ModelError
from img2img.files.decode import DEFAULT_MAX_PIXELS, load_image
from img2img.files.pixels import unit_float

# ITU-R BT.601 RGB -> YCbCr (full range, without offsets): rows give Y, Cb, Cr.
_RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR).astype(np.float32)
# Styles in one mix: each is decoded and run through the encoder at style_size.
MAX_STYLES = 16


def square_style(rgb: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) float RGB in [0, 1] -> (size, size, 3) float32: scaled so the shorter side is
    `size` (Lanczos), then the centre square."""
    height, width = rgb.shape[:2]
    factor = size / min(height, width)
    new_width, new_height = max(size, round(width * factor)), max(size, round(height * factor))
    planes = [
        np.asarray(Image.fromarray(rgb[:, :, channel].astype(np.float32), mode="F").resize(
            (new_width, new_height), Image.Resampling.LANCZOS
        ))
        for channel in range(3)
    ]
    scaled = np.stack(planes, axis=2)
    top, left = (new_height - size) // 2, (new_width - size) // 2
    return np.clip(scaled[top : top + size, left : left + size], 0.0, 1.0).astype(np.float32)


def load_styles(
    styles: Sequence[str | os.PathLike[str] | np.ndarray], size: int, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Style images as (K, size, size, 3) float32 in [0, 1] (see `square_style`); transparency
    is dropped.

    Args:
        styles: 1 to MAX_STYLES image files, or (H, W, 3) or (H, W, 4) arrays of uint8, uint16
            or float in [0, 1].
        size: the side of the squares.
        max_pixels: the pixel limit of the files (see `load_image`).

    Raises:
        ImageReadError: no style given, or a file is missing or unreadable.
        ModelError: more than MAX_STYLES, or an array of another shape.
    """
    if not styles:
        raise ImageReadError("no style image given; pass one or more style images (--style-image PATH)")
    if len(styles) > MAX_STYLES:
        raise ModelError(f"{len(styles)} style images given; a mix takes 1 to {MAX_STYLES}")
    return np.stack([square_style(_style_rgb(item, max_pixels), size) for item in styles])


def _style_rgb(item: str | os.PathLike[str] | np.ndarray, max_pixels: int | None) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1] of a style file or array."""
    if not isinstance(item, np.ndarray):
        return load_image(item, max_pixels=max_pixels).rgb
    if item.ndim != 3 or item.shape[2] not in (3, 4):
        raise ModelError(f"a style image array must be (H, W, 3) or (H, W, 4), got shape {item.shape}")
    return unit_float(item[:, :, :3])


def preserve_color(stylised: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The stylised image's luma with the content's chroma.

    Args:
        stylised: (H, W, 3) float RGB in [0, 1].
        content: (H, W, 3) float RGB in [0, 1], the photo it was made from.

    Returns:
        (H, W, 3) float32 in [0, 1].
    """
    if stylised.shape != content.shape:
        raise ValueError(f"stylised {stylised.shape} and content {content.shape} must have the same shape")
    luma = stylised.astype(np.float32, copy=False) @ _RGB_TO_YCBCR[0]
    ycbcr = content.astype(np.float32, copy=False) @ _RGB_TO_YCBCR.T
    ycbcr[..., 0] = luma
    return np.clip(ycbcr @ _YCBCR_TO_RGB.T, 0.0, 1.0)
