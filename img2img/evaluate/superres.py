"""`img2img eval superres`: degrade held-out HR photos, upscale them, score model and bicubic.

Protocol (that of the SR literature and of this project's training validation):
1. each HR image is centre-cropped to a multiple of the scale (and to `max_size` if set);
2. LR = antialiased bicubic downscale, rounded to 8-bit levels as a saved LR file would be
   ("clean"); or, for the photos people have, the real-world protocol ("degraded"): blur,
   resize, noise and JPEG, for half the images twice, drawn from a generator seeded by the
   image's name (`data.protocol_lr`, the same in training validation);
3. the ONNX model upscales LR through the runtime (tiling and padding as in production), and
   bicubic upscaling of the same LR is the baseline;
4. both are scored against HR: PSNR/SSIM on Y and on RGB with `scale` border pixels cropped,
   and the VGG19 feature distance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from img2img.data import bicubic_downscale, bicubic_upscale, protocol_lr
from img2img.data.degradations import PROTOCOL_SECOND_ORDER_PROB
from img2img.errors import Img2ImgError
from img2img.evaluate.scoring import (
    METRIC_LABELS,
    EvalTable,
    PairScorer,
    from_uint8,
    to_uint8,
)
from img2img.files.listing import IMAGE_SUFFIXES, image_files
from img2img.metrics.folders import load_rgb

METHODS = ("bicubic", "model")
# How LR is made from HR, as the settings record it.
PROTOCOLS = {
    "clean": "antialiased bicubic downscale, rounded to 8-bit",
    "degraded": (
        "real-world protocol: RealWorldDegradation defaults (blur, resize, noise, JPEG), a second "
        f"pass with probability {PROTOCOL_SECOND_ORDER_PROB}, seeded by the CRC-32 of each image's "
        "name; rounded to 8-bit"
    ),
}
SHEET_COLUMNS = ("input (LR)", "bicubic", "model", "target (HR)")


@dataclass
class SheetExample:
    """One row of a comparison sheet: (H, W, 3) uint8 images and the scores under them."""

    name: str
    lr: np.ndarray
    bicubic: np.ndarray
    model: np.ndarray
    hr: np.ndarray
    scores: dict[str, dict[str, float]]


def hr_images(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, sorted; an error if there are none."""
    paths = image_files(folder)
    if not paths:
        raise Img2ImgError(f"{folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def centre_crop(image: torch.Tensor, multiple: int, max_size: int) -> torch.Tensor:
    """(1, 3, H, W) -> centre crop with sides multiples of `multiple`, at most `max_size` (0: any)."""
    height, width = image.shape[-2:]
    if max_size:
        height, width = min(height, max_size), min(width, max_size)
    height, width = height // multiple * multiple, width // multiple * multiple
    top, left = (image.shape[-2] - height) // 2, (image.shape[-1] - width) // 2
    return image[..., top : top + height, left : left + width]


def evaluate_superres(
    upscale: Callable[[np.ndarray], np.ndarray],
    hr_dir: Path,
    *,
    scale: int,
    scorer: PairScorer,
    model_name: str,
    max_size: int = 0,
    sheet_count: int = 0,
    on_image: Callable[[str], None] | None = None,
    protocol: str = "clean",
    precision: str | None = None,
) -> tuple[EvalTable, list[SheetExample]]:
    """Scores `upscale` and bicubic upscaling on every image of `hr_dir`.

    Args:
        upscale: (h, w, 3) uint8 -> (h*scale, w*scale, 3) uint8, e.g. a runtime `Model`.
        hr_dir: folder of high-resolution images (searched recursively).
        scale: the upscaling factor; the scorer should crop `scale` border pixels.
        scorer: computes the metrics of one pair.
        model_name: shown in the title and settings.
        max_size: centre-crop HR images to at most this side first (0: whole images).
        sheet_count: keep the images of the first this many for a comparison sheet.
        on_image: called with each image's relative name before it is scored (progress).
        protocol: how LR is made from HR, one of `PROTOCOLS` ("clean": bicubic; "degraded":
            the seeded real-world degradation).
        precision: which variant of the model ran ("fp32", "int8", ...), shown in the title and
            settings where given.

    Returns:
        The table (methods "bicubic" and "model") and the kept sheet examples. An image that
        fails (unreadable, smaller than the scale, ...) is listed in `table.failures`.
    """
    if protocol not in PROTOCOLS:
        raise Img2ImgError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if max_size and max_size < 4 * scale:
        raise Img2ImgError(f"--max-size {max_size} is too small for x{scale}; use 0 or at least {4 * scale}")
    table = EvalTable(
        title=f"superres x{scale}: {model_name}" + (f" ({precision})" if precision else "") + f" on {hr_dir}"
        + (", degraded LR" if protocol == "degraded" else ""),
        methods=list(METHODS),
        metrics=scorer.metrics,
        settings=settings(model_name, hr_dir, scale, scorer.crop_border, max_size, protocol)
        | ({"precision": precision} if precision else {}),
    )
    examples: list[SheetExample] = []
    for path in hr_images(hr_dir):
        name = path.relative_to(hr_dir).as_posix()
        if on_image is not None:
            on_image(name)
        try:
            hr = centre_crop(load_rgb(path), scale, max_size)
            if min(hr.shape[-2:]) < scale:
                raise Img2ImgError(f"smaller than the scale {scale}")
            degraded = protocol_lr(hr, scale, name) if protocol == "degraded" else bicubic_downscale(hr, scale)
            lr_pixels = to_uint8(degraded)
            lr = from_uint8(lr_pixels)
            outputs = {"bicubic": to_uint8(bicubic_upscale(lr, scale)), "model": np.asarray(upscale(lr_pixels))}
            if outputs["model"].shape != (hr.shape[-2], hr.shape[-1], 3) or outputs["model"].dtype != np.uint8:
                raise Img2ImgError(
                    f"the model returned {outputs['model'].dtype} {outputs['model'].shape} for a "
                    f"{lr_pixels.shape} input; expected uint8 {(hr.shape[-2], hr.shape[-1], 3)} (is its scale {scale}?)"
                )
            scores = {
                method: scorer.score(from_uint8(pixels), hr)
                for method, pixels in outputs.items()
            }
        except Img2ImgError as error:
            table.failures.append((name, str(error)))
            continue
        table.images.append((name, scores))
        if len(examples) < sheet_count:
            examples.append(SheetExample(name, lr_pixels, outputs["bicubic"], outputs["model"], to_uint8(hr), scores))
    return table, examples


def settings(
    model_name: str, hr_dir: Path, scale: int, crop_border: int, max_size: int, protocol: str = "clean"
) -> dict[str, Any]:
    """How the numbers of `evaluate_superres` were made, for the JSON output and the report."""
    return {
        "model": model_name,
        "hr_dir": str(hr_dir),
        "scale": scale,
        "protocol": protocol,
        "degradation": PROTOCOLS[protocol],
        "baseline": "antialiased bicubic upscale of the same LR",
        "hr_crop": f"centre, multiple of {scale}" + (f", at most {max_size} px" if max_size else ""),
        "crop_border": crop_border,
        "luma": "ITU-R BT.601 Y, studio range (MATLAB rgb2ycbcr)",
    }


def sheet_captions(scores: dict[str, float]) -> str:
    """The lines under a sheet tile: PSNR-Y and SSIM-Y, and the VGG distance when computed."""
    lines = [f"PSNR-Y {scores['psnr_y']:.2f} dB", f"SSIM-Y {scores['ssim_y']:.4f}"]
    if "vgg_distance" in scores:
        lines.append(f"{METRIC_LABELS['vgg_distance']} {scores['vgg_distance']:.4f}")
    return "\n".join(lines)


def superres_sheet(examples: list[SheetExample], *, tile_size: int = 256):
    """A PIL comparison sheet: input (whole, zoom box outlined), then zoomed bicubic, model and
    target crops of the most detailed region, metrics under each."""
    from img2img.evaluate.sheets import Tile, comparison_sheet, find_detail_box

    if not examples:
        raise Img2ImgError("no image was scored, so there is nothing to draw")
    rows, boxes = [], []
    for example in examples:
        side = max(8, min(example.hr.shape[:2]) // 4)
        boxes.append(find_detail_box(example.hr, side))
        rows.append(
            [
                Tile(example.lr, f"{example.lr.shape[1]}x{example.lr.shape[0]}"),
                Tile(example.bicubic, sheet_captions(example.scores["bicubic"])),
                Tile(example.model, sheet_captions(example.scores["model"])),
                Tile(example.hr, f"{example.hr.shape[1]}x{example.hr.shape[0]}"),
            ]
        )
    return comparison_sheet(
        rows,
        column_titles=list(SHEET_COLUMNS),
        row_titles=[example.name for example in examples],
        tile_size=tile_size,
        zoom_box=boxes,
        zoom_reference=0,
    )
