"""Hole masks for inpainting: random ones for training and a fixed held-out set for validation.

A mask is an (H, W) float32 array in {0, 1}, 1 marking a hole (pixels to fill) and 0 a pixel to
keep. The shapes follow LaMa (Suvorov et al. 2022), whose models learn to fill both the thin
scribbles of a retouching brush and large blocks:

- "thin", "medium", "thick": free-form brush strokes, random walks of line segments drawn with
  a round brush (rounded joints), 4-12, 12-30 and 30-60 pixels wide on a 256-pixel image and
  scaled with min(H, W) / 256 on others;
- "box": axis-aligned rectangles;
- "mixed": strokes of every width and rectangles in one mask.

Each mask draws a target coverage uniformly in [``MaskSettings.min_coverage``,
``max_coverage``] and adds shapes until the hole covers at least the target; a shape that would
push it past ``max_coverage`` is dropped and another drawn, so every mask's coverage lies in the
range (when random shapes keep missing a narrow range, a block of the right area is used).
Everything is drawn from the ``numpy.random.Generator`` passed in, so a mask is fixed
by the generator's state.

``validation_set`` pairs the images of a folder with ``validation_masks``: the held-out set that
training validation and ``scripts/evaluate_inpainting.py`` both score, so their numbers agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from img2img.data.folder import list_images, read_rgb
from img2img.errors import TrainingError

MASK_KINDS = ("thin", "medium", "thick", "box", "mixed")
# Smallest mask side: a brush stroke or a box needs a few pixels to be more than a dot.
MIN_SIDE = 8
# Stroke sizes are given for a 256-pixel image and scale with min(H, W) / 256, so a mask has
# the same look at every training resolution.
_REFERENCE_SIDE = 256


@dataclass(frozen=True)
class _Stroke:
    """A brush stroke class, sizes in pixels at the reference side; ranges are inclusive."""

    width: tuple[float, float]
    segment_length: tuple[float, float]
    segments: tuple[int, int]


_STROKES = {
    "thin": _Stroke(width=(4, 12), segment_length=(10, 40), segments=(4, 12)),
    "medium": _Stroke(width=(12, 30), segment_length=(15, 50), segments=(3, 8)),
    "thick": _Stroke(width=(30, 60), segment_length=(20, 60), segments=(2, 5)),
}
# Largest change of direction between two segments of a stroke, in radians: wide enough for
# the stroke to curl back like a hand-drawn scribble.
_MAX_TURN = 2.0
# Rectangle sides as fractions of the image's height and width.
_BOX_SIDE = (0.15, 0.6)
# Shapes drawn for one mask before giving up on the random shapes and using the fallback block.
_MAX_DRAWS = 100


@dataclass(frozen=True)
class MaskSettings:
    """What random masks look like.

    Attributes:
        min_coverage: smallest fraction of the image a hole covers, in (0, 1).
        max_coverage: largest fraction, in [min_coverage, 1).
        kinds: the mask kinds to draw from, a subset of ``MASK_KINDS``.
        kind_weights: relative probability of each of ``kinds`` (non-negative, not all zero);
            None draws them uniformly.

    Raises:
        ValueError: a coverage outside the ranges above, an unknown or repeated kind, or weights
            that do not match the kinds.
    """

    min_coverage: float = 0.10
    max_coverage: float = 0.60
    kinds: tuple[str, ...] = MASK_KINDS
    kind_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.min_coverage <= self.max_coverage < 1.0:
            raise ValueError(
                f"mask coverage must satisfy 0 < min_coverage <= max_coverage < 1, got "
                f"min_coverage={self.min_coverage} and max_coverage={self.max_coverage}"
            )
        # Tuples, so that settings given lists stay hashable and cannot change after the check.
        object.__setattr__(self, "kinds", tuple(self.kinds))
        if not self.kinds:
            raise ValueError(f"kinds must name at least one mask kind of {', '.join(MASK_KINDS)}")
        unknown = [kind for kind in self.kinds if kind not in MASK_KINDS]
        if unknown:
            raise ValueError(f"unknown mask kinds {unknown}; choose from {', '.join(MASK_KINDS)}")
        if len(set(self.kinds)) != len(self.kinds):
            raise ValueError(f"mask kinds {list(self.kinds)} repeat a kind; give weights to favour one")
        if self.kind_weights is None:
            return
        object.__setattr__(self, "kind_weights", tuple(float(weight) for weight in self.kind_weights))
        weights = self.kind_weights
        if len(weights) != len(self.kinds):
            raise ValueError(
                f"{len(weights)} kind_weights for {len(self.kinds)} kinds {list(self.kinds)}; "
                "give one weight per kind"
            )
        if not all(math.isfinite(weight) and weight >= 0 for weight in weights) or sum(weights) <= 0:
            raise ValueError(f"kind_weights must be non-negative and not all zero, got {list(weights)}")

    @property
    def probabilities(self) -> np.ndarray:
        """(len(kinds),) float64 summing to 1: the chance of drawing each kind."""
        weights = np.ones(len(self.kinds)) if self.kind_weights is None else np.array(self.kind_weights)
        return weights / weights.sum()


def random_mask(
    height: int, width: int, rng: np.random.Generator, settings: MaskSettings = MaskSettings()
) -> np.ndarray:
    """A random hole mask of a kind drawn from ``settings``.

    Args:
        height, width: mask size in pixels, each at least 8.
        rng: the source of every random choice; the same state gives the same mask.
        settings: coverage range and kinds.

    Returns:
        (height, width) float32 in {0, 1}, 1 = hole, whose mean lies in
        [settings.min_coverage, settings.max_coverage].

    Example:
        >>> mask = random_mask(64, 64, np.random.default_rng(0))
        >>> bool(0.10 <= mask.mean() <= 0.60)
        True
    """
    kind = settings.kinds[rng.choice(len(settings.kinds), p=settings.probabilities)]
    return _mask_of_kind(kind, height, width, rng, settings)


def validation_masks(
    count: int, height: int, width: int, *, seed: int = 0, settings: MaskSettings = MaskSettings()
) -> np.ndarray:
    """A fixed set of hole masks: mask i depends only on (seed, i, height, width, settings).

    Mask i is drawn by ``np.random.default_rng([seed, i])`` and is of kind ``kinds[i % n]``, the
    kinds taken in the order of ``settings.kinds`` among those with a non-zero weight, so every
    kind appears once ``count`` reaches their number. Asking for more masks keeps the first ones.

    Args:
        count: number of masks (>= 0).
        height, width: mask size in pixels, each at least 8.
        seed: picks another set of the same kinds.
        settings: coverage range and kinds.

    Returns:
        (count, height, width) float32 in {0, 1}, 1 = hole.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    _check_size(height, width)
    kinds = [kind for kind, p in zip(settings.kinds, settings.probabilities, strict=True) if p > 0]
    masks = np.empty((count, height, width), dtype=np.float32)
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        masks[index] = _mask_of_kind(kinds[index % len(kinds)], height, width, rng, settings)
    return masks


def square_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The centre square of an image, resized so its shorter side is ``size``.

    The resize is Lanczos (antialiased when shrinking); an image whose shorter side already is
    ``size`` is only cropped.

    Args:
        image: (H, W, 3) uint8 RGB.
        size: side of the result in pixels (>= 1).

    Returns:
        (size, size, 3) uint8.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got {image.dtype} {image.shape}")
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    height, width = image.shape[:2]
    if min(height, width) != size:
        scale = size / min(height, width)
        # max(): rounding must not leave the longer side a pixel short of the square.
        new_width, new_height = max(size, round(width * scale)), max(size, round(height * scale))
        image = np.array(Image.fromarray(image).resize((new_width, new_height), Image.Resampling.LANCZOS))
        height, width = new_height, new_width
    top, left = (height - size) // 2, (width - size) // 2
    return np.ascontiguousarray(image[top : top + size, left : left + size])


def validation_set(
    root: str | Path, size: int = 256, *, seed: int = 0, settings: MaskSettings = MaskSettings()
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The held-out inpainting set: each image of a folder as a square crop with its fixed mask.

    Images are found by ``list_images`` (recursively, sorted by path); image i gets
    ``validation_masks(n, size, size, seed=seed, settings=settings)[i]``.

    Args:
        root: folder of images.
        size: side of the square crops in pixels (>= 8).
        seed, settings: as for ``validation_masks``.

    Returns:
        (relative path with "/" separators, (size, size, 3) uint8 RGB crop, (size, size)
        float32 mask in {0, 1}) per image.

    Raises:
        ValueError: the folder is missing or holds no image.
        TrainingError: an image cannot be decoded.
    """
    root = Path(root)
    try:
        paths = list_images(root)
    except TrainingError as error:
        raise ValueError(f"no images under {root}: {error}") from None
    masks = validation_masks(len(paths), size, size, seed=seed, settings=settings)
    return [
        (path.relative_to(root).as_posix(), square_crop(read_rgb(path), size), mask)
        for path, mask in zip(paths, masks, strict=True)
    ]


def _check_size(height: int, width: int) -> None:
    if height < MIN_SIDE or width < MIN_SIDE:
        raise ValueError(f"masks need at least {MIN_SIDE}x{MIN_SIDE} pixels, got {width}x{height}")


def _mask_of_kind(
    kind: str, height: int, width: int, rng: np.random.Generator, settings: MaskSettings
) -> np.ndarray:
    """A mask of one kind whose coverage lies in the settings' range (see ``random_mask``)."""
    _check_size(height, width)
    low, high = _pixel_range(height, width, settings)
    # A target drawn across the whole range: stopping at the first shape past min_coverage
    # would crowd the coverages just above it.
    target = int(rng.integers(low, high + 1))
    canvas = np.zeros((height, width), dtype=np.uint8)
    for _ in range(_MAX_DRAWS):
        shape = kind if kind != "mixed" else ("thin", "medium", "thick", "box")[rng.integers(4)]
        candidate = canvas.copy()
        _draw_shape(candidate, shape, rng)
        count = int(np.count_nonzero(candidate))
        # A shape that overshoots is dropped and another drawn; the kept ones stay.
        if count > high:
            continue
        canvas = candidate
        if count >= target:
            return canvas.astype(np.float32)
    return _fallback_block(height, width, low, high, rng)


def _pixel_range(height: int, width: int, settings: MaskSettings) -> tuple[int, int]:
    """The smallest and largest number of hole pixels the coverage range allows."""
    pixels = height * width
    # The epsilon keeps a product such as 0.1 * 1000 = 100.00000000000001 from rounding up.
    low = max(1, math.ceil(settings.min_coverage * pixels - 1e-9))
    high = math.floor(settings.max_coverage * pixels + 1e-9)
    if low > high:
        raise ValueError(
            f"no whole number of pixels of a {width}x{height} mask covers between "
            f"{settings.min_coverage} and {settings.max_coverage} of it; widen the coverage range"
        )
    return low, high


def _draw_shape(canvas: np.ndarray, shape: str, rng: np.random.Generator) -> None:
    """Draws one stroke ("thin", "medium", "thick") or rectangle ("box") into ``canvas`` (1 = hole)."""
    height, width = canvas.shape
    if shape == "box":
        box_height = max(1, round(height * rng.uniform(*_BOX_SIDE)))
        box_width = max(1, round(width * rng.uniform(*_BOX_SIDE)))
        top = int(rng.integers(0, height - box_height + 1))
        left = int(rng.integers(0, width - box_width + 1))
        canvas[top : top + box_height, left : left + box_width] = 1
        return
    stroke = _STROKES[shape]
    scale = min(height, width) / _REFERENCE_SIDE
    brush = max(1, round(rng.uniform(*stroke.width) * scale))
    x, y = rng.uniform(0, width - 1), rng.uniform(0, height - 1)
    angle = rng.uniform(0, 2 * math.pi)
    point = (round(x), round(y))
    # A disc at every vertex: the round brush, so joints between segments have no notches.
    cv2.circle(canvas, point, brush // 2, 1, thickness=-1)
    for _ in range(int(rng.integers(stroke.segments[0], stroke.segments[1] + 1))):
        angle += rng.uniform(-_MAX_TURN, _MAX_TURN)
        length = rng.uniform(*stroke.segment_length) * scale
        # Clipped to the image, so a stroke that meets an edge slides along it instead of leaving.
        x = min(max(x + length * math.cos(angle), 0), width - 1)
        y = min(max(y + length * math.sin(angle), 0), height - 1)
        following = (round(x), round(y))
        cv2.line(canvas, point, following, 1, thickness=brush, lineType=cv2.LINE_8)
        cv2.circle(canvas, following, brush // 2, 1, thickness=-1)
        point = following


def _fallback_block(height: int, width: int, low: int, high: int, rng: np.random.Generator) -> np.ndarray:
    """A near-square block of between ``low`` and ``high`` pixels at a random place.

    Used when random shapes keep missing the coverage range (a narrow range, or strokes too
    wide for a small image). The block is full rows of ``block_width`` pixels, the last one
    possibly partial, so its pixel count is exact.
    """
    pixels = int(rng.integers(low, high + 1))
    # At least pixels / height wide, so the rows fit in the image's height.
    block_width = min(width, max(math.ceil(pixels / height), round(math.sqrt(pixels * width / height))))
    rows, rest = divmod(pixels, block_width)
    block_height = rows + (rest > 0)
    top = int(rng.integers(0, height - block_height + 1))
    left = int(rng.integers(0, width - block_width + 1))
    mask = np.zeros((height, width), dtype=np.float32)
    mask[top : top + rows, left : left + block_width] = 1
    if rest:
        mask[top + rows, left : left + rest] = 1
    return mask
