"""Inpainting evaluation: fill the holes of the held-out set with each method and score the fills.

Protocol (that of ``scripts/evaluate_inpainting.py`` and of training validation):

1. the held-out set is ``img2img.data.masks.validation_set``: square crops of a folder's images,
   each with its fixed hole mask;
2. every method gets the image with its hole pixels set to black, so the truth under the hole
   never reaches a fill, and returns a filled image;
3. the fill is scored as the inpainting runtime delivers it: the method's pixels inside the
   hole, the original ones outside;
4. scores (``img2img.metrics.masked.hole_metrics``): PSNR and SSIM over the whole image and
   over the hole alone, and the VGG19 feature distance of the whole image.

The baselines are OpenCV's classical fills (``cv2.inpaint``): "telea" (Telea 2004, fast
marching) and "ns" (Bertalmio et al. 2001, Navier-Stokes). Both propagate the colours of the
hole's border inward, which suits scratches and thin strokes and smears large holes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from img2img.errors import Img2ImgError
from img2img.engine.device import resolve_device
from img2img.evaluate.scoring import EvalTable, from_uint8
from img2img.metrics.inpaint_baseline import OPENCV_METHODS, check_image_mask, opencv_inpaint
from img2img.metrics.masked import hole_metrics

# A filler: (H, W, 3) uint8 RGB with the hole blacked out and (H, W) float32 mask (1 = hole)
# -> (H, W, 3) uint8 RGB.
Filler = Callable[[np.ndarray, np.ndarray], np.ndarray]

METRICS = ("psnr", "ssim", "psnr_hole", "ssim_hole")
VGG_METRIC = "vgg_distance"
# Smallest image side each metric takes: SSIM's window, and VGG19's four 2x2 poolings.
_MIN_SIDE = {"ssim": 11, VGG_METRIC: 16}
# Shown where the hole is in the sheet's input column: a colour photos rarely hold, so the
# hole's outline reads at a glance, and nothing of the truth under it.
HOLE_COLOUR = (255, 0, 255)


@dataclass
class InpaintExample:
    """One row of a comparison sheet.

    Attributes:
        name: the image's relative path.
        image: (H, W, 3) uint8, the truth.
        mask: (H, W) float32 in {0, 1}, 1 = hole.
        fills: {method: (H, W, 3) uint8 composited fill}.
        scores: {method: {metric: value}}.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray
    fills: dict[str, np.ndarray]
    scores: dict[str, dict[str, float]]


def opencv_fillers(radius: int = 3) -> dict[str, Filler]:
    """{"telea": ..., "ns": ...}: the OpenCV baselines as fillers for ``evaluate_inpainting``."""
    return {name: partial(opencv_inpaint, method=name, radius=radius) for name in OPENCV_METHODS}


def model_filler(path: str | Path, *, device: str = "auto") -> Filler:
    """An inpainting ONNX model as a filler, run whole (no tiling) by the runtime's ``Model``.

    Raises:
        ModelError: the file is missing, not an inpainting model or cannot run on ``device``.
    """
    from img2img.runtime.api import Model

    model = Model(path, task="inpaint", device=device, tile=None)
    return lambda image, mask: np.asarray(model(image, mask))


def hide_hole(image: np.ndarray, mask: np.ndarray, colour: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """(H, W, 3) uint8 ``image`` with the hole pixels of (H, W) ``mask`` (nonzero) set to ``colour``."""
    check_image_mask(image, mask)
    hidden = image.copy()
    hidden[mask != 0] = colour
    return hidden


def evaluate_inpainting(
    items: Sequence[tuple[str, np.ndarray, np.ndarray]],
    methods: dict[str, Filler],
    *,
    device: str = "cpu",
    vgg: bool = True,
    sheet_count: int = 0,
    on_image: Callable[[str], None] | None = None,
) -> tuple[EvalTable, list[InpaintExample]]:
    """Scores every method on every (name, image, mask) item; see the module docstring.

    Args:
        items: (relative name, (H, W, 3) uint8 RGB truth, (H, W) float32 mask, 1 = hole), e.g.
            ``validation_set(...)``; images at least 16x16 with ``vgg``, else 11x11.
        methods: {name: filler}, e.g. ``opencv_fillers()`` and ``model_filler(path)``.
        device: where the metrics run: "auto", "cpu" or "cuda".
        vgg: also compute the VGG19 feature distance (slow on the CPU).
        sheet_count: keep the fills of the first this many images for ``inpainting_sheet``.
        on_image: called with each image's name before it is filled (progress).

    Returns:
        The table ({method: {"psnr", "ssim", "psnr_hole", "ssim_hole"[, "vgg_distance"]}} per
        image; means by ``table.summary()``) and the kept sheet examples. An image on which a
        method fails (raises an ``Img2ImgError`` or returns an image of another shape or type)
        is listed in ``table.failures`` and not scored for any method, so every mean is over
        the same images.
    """
    if not methods:
        raise ValueError("give at least one method to evaluate")
    torch_device = resolve_device(device, option="--device")
    metrics = list(METRICS) + ([VGG_METRIC] if vgg else [])
    distance = None
    if vgg:
        from img2img.metrics import VGGFeatureDistance

        distance = VGGFeatureDistance().to(torch_device)
    table = EvalTable(
        title=f"inpainting: {', '.join(methods)} on {len(items)} images",
        methods=list(methods),
        metrics=metrics,
        settings=settings(),
    )
    smallest = _MIN_SIDE[VGG_METRIC] if vgg else _MIN_SIDE["ssim"]
    examples: list[InpaintExample] = []
    for name, image, mask in items:
        check_image_mask(image, mask)
        if min(image.shape[:2]) < smallest:
            raise ValueError(
                f"{name} is {image.shape[1]}x{image.shape[0]}, but the metrics need at least "
                f"{smallest}x{smallest} pixels; evaluate larger crops"
            )
        if on_image is not None:
            on_image(name)
        try:
            fills = _fill(image, mask, methods)
        except Img2ImgError as error:
            table.failures.append((name, str(error)))
            continue
        scores = _score(image, mask, fills, distance, torch_device)
        table.images.append((name, scores))
        if len(examples) < sheet_count:
            examples.append(InpaintExample(name, image, mask, fills, scores))
    return table, examples


def settings() -> dict[str, Any]:
    """How the numbers of ``evaluate_inpainting`` were made, for the JSON output."""
    return {
        "method_input": "the image with its hole pixels set to black, and the mask",
        "scored_image": "the fill inside the hole, the original outside",
        "quantized": "both images rounded to 8-bit levels",
        "psnr_hole": "MSE over the hole pixels and RGB channels only",
        "ssim_hole": "SSIM map (11x11 Gaussian window, reflect padding) averaged over the hole",
        "opencv": cv2.__version__,
    }


def _fill(image: np.ndarray, mask: np.ndarray, methods: dict[str, Filler]) -> dict[str, np.ndarray]:
    """{method: its fill composited into the truth}; the methods never see the hole's pixels."""
    hidden = hide_hole(image, mask)
    hole = (mask != 0)[..., None]
    fills = {}
    for method, filler in methods.items():
        # A copy per method, so a filler that writes into its input cannot touch the next one's.
        try:
            filled = np.asarray(filler(hidden.copy(), mask.copy()))
        except Img2ImgError as error:
            raise Img2ImgError(f"{method}: {error}") from None
        if filled.shape != image.shape or filled.dtype != np.uint8:
            raise Img2ImgError(
                f"{method} returned {filled.dtype} {filled.shape} for a {image.shape} image; "
                "a filler must return uint8 RGB of the image's size"
            )
        fills[method] = np.where(hole, filled, image)
    return fills


@torch.no_grad()
def _score(
    image: np.ndarray,
    mask: np.ndarray,
    fills: dict[str, np.ndarray],
    distance: torch.nn.Module | None,
    device: torch.device,
) -> dict[str, dict[str, float]]:
    """{method: {metric: value}}, all methods scored in one batch."""
    count = len(fills)
    predictions = torch.cat([from_uint8(fill) for fill in fills.values()]).to(device)
    targets = from_uint8(image).to(device).expand(count, -1, -1, -1)
    masks = torch.from_numpy((mask != 0).astype(np.float32))[None, None].to(device).expand(count, -1, -1, -1)
    values = hole_metrics(predictions, targets, masks)
    if distance is not None:
        values[VGG_METRIC] = distance(predictions, targets)
    return {
        method: {metric: float(scores[index]) for metric, scores in values.items()}
        for index, method in enumerate(fills)
    }


def sheet_caption(scores: dict[str, float]) -> str:
    """The lines under a fill's tile: PSNR and SSIM over the hole."""
    return f"PSNR-hole {scores['psnr_hole']:.2f} dB\nSSIM-hole {scores['ssim_hole']:.3f}"


def inpainting_sheet(examples: Sequence[InpaintExample], *, tile_size: int = 256) -> Image.Image:
    """A comparison sheet, one row per example: the input with the hole in ``HOLE_COLOUR``, each
    method's fill with its hole scores, and the truth."""
    from img2img.evaluate.sheets import Tile, comparison_sheet

    if not examples:
        raise Img2ImgError("no image was scored, so there is nothing to draw")
    methods = list(examples[0].fills)
    rows = [
        [Tile(hide_hole(example.image, example.mask, HOLE_COLOUR), f"hole {np.mean(example.mask != 0):.0%}")]
        + [Tile(example.fills[method], sheet_caption(example.scores[method])) for method in methods]
        + [Tile(example.image)]
        for example in examples
    ]
    return comparison_sheet(
        rows,
        column_titles=["input", *methods, "truth"],
        row_titles=[example.name for example in examples],
        tile_size=tile_size,
    )
