"""OpenCV's classical inpainting: the baseline that learned fills are scored against.

Training validation (`img2img.tasks.inpaint`) and the evaluation report (`img2img.evaluate.inpaint`)
both compare a model's fill with these.
"""

from __future__ import annotations

import cv2
import numpy as np

OPENCV_METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


def opencv_inpaint(image: np.ndarray, mask: np.ndarray, method: str = "telea", radius: int = 3) -> np.ndarray:
    """Fills a hole with OpenCV's classical inpainting.

    Args:
        image: (H, W, 3) uint8 RGB; the values inside the hole are not used.
        mask: (H, W), nonzero = hole.
        method: "telea" (fast marching) or "ns" (Navier-Stokes).
        radius: pixels around each filled pixel that its value is drawn from.

    Returns:
        (H, W, 3) uint8 RGB, equal to ``image`` outside the hole.

    Example:
        >>> image = np.full((16, 16, 3), 90, np.uint8)
        >>> mask = np.zeros((16, 16), np.float32)
        >>> mask[6:10, 6:10] = 1
        >>> int(opencv_inpaint(image, mask)[8, 8, 0])
        90
    """
    if method not in OPENCV_METHODS:
        raise ValueError(f"method must be one of {', '.join(OPENCV_METHODS)}, got {method!r}")
    if radius < 1:
        raise ValueError(f"radius must be a positive number of pixels, got {radius}")
    check_image_mask(image, mask)
    hole = np.where(mask != 0, 255, 0).astype(np.uint8)
    # OpenCV's colour order is BGR. Both fills treat channels alike, but the conversion keeps
    # this right whatever OpenCV does per channel.
    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    filled = cv2.inpaint(bgr, hole, radius, OPENCV_METHODS[method])
    return cv2.cvtColor(filled, cv2.COLOR_BGR2RGB)


def check_image_mask(image: np.ndarray, mask: np.ndarray) -> None:
    """Raises ValueError unless `image` is (H, W, 3) uint8 RGB and `mask` is (H, W)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got {image.dtype} {image.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} must be (H, W) = {image.shape[:2]}, the image's size")
