"""Full-reference scoring of image pairs and the result table every eval command prints.

`EvalTable` holds per-image scores for one or more methods (for example "bicubic" and "model"),
their means, the failures and the settings; it renders as a terminal table and as JSON.
`PairScorer` computes PSNR/SSIM (on RGB and on BT.601 luma) and the VGG19 feature distance of a
prediction against its target. `evaluate_pairs` scores two folders matched by relative path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from img2img.errors import Img2ImgError
from img2img.metrics import grid_amplitude, psnr, ssim
from img2img.metrics.folders import load_rgb
from img2img.files.listing import image_files

# Metric names as columns, in table order, with the label shown on the terminal.
METRIC_LABELS = {
    "psnr_y": "PSNR-Y dB",
    "ssim_y": "SSIM-Y",
    "psnr_rgb": "PSNR-RGB dB",
    "ssim_rgb": "SSIM-RGB",
    "vgg_distance": "VGG dist",
    "grid_amplitude": "grid",
}
# Lower is better for these; higher for the rest.
LOWER_IS_BETTER = frozenset({"vgg_distance", "grid_amplitude", "fid", "kid"})


@dataclass
class EvalTable:
    """Per-image scores of several methods on the same images.

    Attributes:
        title: what was evaluated, e.g. "superres x4: superres-x4 on photos/val".
        methods: column groups, e.g. ["bicubic", "model"].
        metrics: metric names (keys of METRIC_LABELS or any other), in display order.
        images: one (relative name, {method: {metric: value}}) per scored image.
        failures: (relative name, reason) of images that could not be scored.
        settings: how the numbers were computed (crop border, degradation, resize, ...).
    """

    title: str
    methods: list[str]
    metrics: list[str]
    images: list[tuple[str, dict[str, dict[str, float]]]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, float]]:
        """{method: {metric: mean over images}}; PSNR of an identical pair is inf and stays so."""
        means: dict[str, dict[str, float]] = {}
        for method in self.methods:
            means[method] = {}
            for metric in self.metrics:
                values = [scores[method][metric] for _, scores in self.images if metric in scores[method]]
                if values:
                    means[method][metric] = float(np.mean(values))
        return means

    def summary_rows(self) -> tuple[list[str], list[list[Any]]]:
        """Columns and rows of the summary table: one row per method."""
        summary = self.summary()
        columns = ["method"] + [METRIC_LABELS.get(metric, metric) for metric in self.metrics]
        rows = [[method] + [summary[method].get(metric, math.nan) for metric in self.metrics] for method in self.methods]
        return columns, rows

    def image_rows(self) -> tuple[list[str], list[list[Any]]]:
        """Columns and rows of the per-image table: one row per image, methods side by side."""
        columns = ["image"] + [
            f"{METRIC_LABELS.get(metric, metric)} ({method})" if len(self.methods) > 1 else METRIC_LABELS.get(metric, metric)
            for method in self.methods
            for metric in self.metrics
        ]
        rows = [
            [name] + [scores[method].get(metric, math.nan) for method in self.methods for metric in self.metrics]
            for name, scores in self.images
        ]
        return columns, rows

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; inf and NaN become the strings "inf" and "nan" (JSON has neither)."""
        return _json_safe(
            {
                "title": self.title,
                "settings": self.settings,
                "summary": self.summary(),
                "images": [{"image": name, **scores} for name, scores in self.images],
                "failures": [{"image": name, "reason": reason} for name, reason in self.failures],
            }
        )

    def render(self) -> str:
        """The summary as an aligned text table, then the failures."""
        columns, rows = self.summary_rows()
        lines = [self.title, format_table(columns, rows)]
        if len(self.images) > 0:
            lines.append(f"({len(self.images)} images)")
        lines += [f"failed: {name}: {reason}" for name, reason in self.failures]
        return "\n".join(lines)


def format_value(value: Any) -> str:
    """Numbers to 4 decimals (PSNR 27.3142, SSIM 0.8123), inf as "inf"; text as is."""
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if math.isnan(value):
            return "-"
        return f"{value:.4f}"
    return str(value)


def format_table(columns: list[str], rows: Iterable[list[Any]]) -> str:
    """Left-aligned first column, right-aligned numbers, two spaces between columns."""
    cells = [columns] + [[format_value(value) for value in row] for row in rows]
    widths = [max(len(row[index]) for row in cells) for index in range(len(columns))]
    lines = []
    for row in cells:
        first = row[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join([first, *rest]).rstrip())
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def from_uint8(pixels: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0).float() / 255


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounded (what a saved PNG would hold)."""
    array = image[0].detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(array)


class PairScorer:
    """PSNR/SSIM on luma and on RGB, and optionally the VGG19 feature distance and the grid
    amplitude of the prediction, of one pair.

    Args:
        crop_border: pixels dropped on every side before PSNR/SSIM (SR papers use the scale).
        perceptual: also compute the VGG19 feature distance (slow on the CPU for large images).
        device: where the metrics run.
        grid_period: also measure the fixed pattern of this period in the prediction
            (`metrics.grid_amplitude`; an upscaler's scale); 0 leaves it out. An image under
            twice the period a side gets no grid score.

    `score(pred, target)`: (1, 3, H, W) RGB in [0, 1] each -> {metric: value}. Inputs are
    quantised to 8-bit levels first, as the saved images would be.
    """

    def __init__(
        self, *, crop_border: int = 0, perceptual: bool = True, device: torch.device | str = "cpu", grid_period: int = 0
    ) -> None:
        if grid_period == 1 or grid_period < 0:
            raise ValueError(f"grid_period must be 0 (off) or at least 2, got {grid_period}")
        self.crop_border = crop_border
        self.grid_period = grid_period
        self.device = torch.device(device)
        self.distance = None
        if perceptual:
            from img2img.metrics import VGGFeatureDistance

            self.distance = VGGFeatureDistance().to(self.device)

    @property
    def metrics(self) -> list[str]:
        names = ["psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"]
        names += ["vgg_distance"] if self.distance is not None else []
        return names + (["grid_amplitude"] if self.grid_period else [])

    @torch.no_grad()
    def score(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        if pred.shape != target.shape:
            raise Img2ImgError(
                f"sizes differ: prediction {pred.shape[-1]}x{pred.shape[-2]}, "
                f"target {target.shape[-1]}x{target.shape[-2]}"
            )
        pred, target = pred.to(self.device), target.to(self.device)
        border = self.crop_border
        try:
            scores = {
                "psnr_y": psnr(pred, target, crop_border=border, y_channel=True),
                "ssim_y": ssim(pred, target, crop_border=border, y_channel=True),
                "psnr_rgb": psnr(pred, target, crop_border=border),
                "ssim_rgb": ssim(pred, target, crop_border=border),
            }
        except ValueError as error:  # too small for SSIM's window or the border crop
            raise Img2ImgError(str(error)) from None
        if self.distance is not None:
            quantized = [(image.clamp(0, 1) * 255).round() / 255 for image in (pred, target)]
            scores["vgg_distance"] = self.distance(*quantized)
        if self.grid_period and min(pred.shape[-2:]) >= 2 * self.grid_period:
            scores["grid_amplitude"] = grid_amplitude((pred.clamp(0, 1) * 255).round() / 255, self.grid_period)
        return {name: float(value[0]) for name, value in scores.items()}


def match_pairs(pred_dir: Path, target_dir: Path) -> tuple[list[tuple[str, Path, Path]], list[str], list[str]]:
    """Pairs files of two folders by relative path without the extension (a.png <-> a.jpg).

    Returns:
        (name, prediction, target) for every match in sorted order, then the relative names
        found only among the predictions, then those found only among the targets.

    Raises:
        Img2ImgError: a folder is missing, or two files of one folder differ only by extension.
    """
    pred_files, target_files = images_by_stem(pred_dir), images_by_stem(target_dir)
    matched = sorted(set(pred_files) & set(target_files))
    pairs = [(name, pred_files[name], target_files[name]) for name in matched]
    only_pred = sorted(set(pred_files) - set(target_files))
    only_target = sorted(set(target_files) - set(pred_files))
    return pairs, only_pred, only_target


def images_by_stem(folder: Path) -> dict[str, Path]:
    """{relative path without extension: file} of the images under `folder`, recursively."""
    if not folder.is_dir():
        raise Img2ImgError(f"{folder} is not a folder; give a folder of images")
    found: dict[str, Path] = {}
    for path in image_files(folder):
        key = path.relative_to(folder).with_suffix("").as_posix()
        if key in found:
            raise Img2ImgError(
                f"{found[key]} and {path} differ only by extension, so neither can be matched; "
                "keep one of them"
            )
        found[key] = path
    return found


def evaluate_pairs(
    pred_dir: Path,
    target_dir: Path,
    scorer: PairScorer,
    *,
    on_image: Callable[[str], None] | None = None,
) -> EvalTable:
    """Scores every prediction against the target of the same relative path.

    Files present on one side only are reported as failures; an unreadable file or a size
    mismatch fails that pair and the rest go on.

    Raises:
        Img2ImgError: the folders share no image.
    """
    pairs, only_pred, only_target = match_pairs(pred_dir, target_dir)
    if not pairs:
        raise Img2ImgError(
            f"no image of {pred_dir} has a counterpart of the same relative path in {target_dir}; "
            "name predictions like their targets (extensions may differ)"
        )
    table = EvalTable(
        title=f"{pred_dir} against {target_dir}",
        methods=["prediction"],
        metrics=scorer.metrics,
        settings={
            "matching": "relative path without extension",
            "crop_border": scorer.crop_border,
            "quantized": "both images rounded to 8-bit levels",
            "luma": "ITU-R BT.601 Y, studio range (MATLAB rgb2ycbcr)",
        },
    )
    table.failures += [(name, f"no target in {target_dir}") for name in only_pred]
    table.failures += [(name, f"no prediction in {pred_dir}") for name in only_target]
    for name, pred_path, target_path in pairs:
        if on_image is not None:
            on_image(name)
        try:
            scores = scorer.score(load_rgb(pred_path), load_rgb(target_path))
        except Img2ImgError as error:
            table.failures.append((name, str(error)))
            continue
        table.images.append((name, {"prediction": scores}))
    return table
