"""Training curves of a run folder: RUN/plots/losses.png and RUN/plots/validation.png.

The trainer appends one JSON object per line to RUN/train_log.jsonl every `log_every` steps,
e.g. {"step": 1200, "l_g_pix": 0.031, "l_g_gan": 0.0052, "l_d_adv": 0.69, "lr_g": 0.0002}, and
to RUN/validation_log.jsonl after each validation, e.g. {"step": 5000, "psnr_y": 27.3,
"ssim_y": 0.81, "bicubic_psnr_y": 26.7, "images": 10.0}. Lines may carry different keys (a
discriminator joins late, FID is computed only sometimes).

Losses are the `l_*` keys, drawn in one panel per network (`l_g_*` generator, `l_d_*`
discriminator, other `l_*` beside them), each series raw and faint with a smoothed line over
it. A panel gets a log y axis when all its values are positive and span more than a decade:
a pixel loss of 0.02 and a perceptual loss of 2 are then both readable. Every other
validation key gets a small panel of its own; a `bicubic_<name>` key is the baseline of
`<name>` and is drawn in that panel, dashed, so one sees at a glance whether the model beats
it.

A run killed mid-write leaves a truncated last line; unreadable lines are skipped. A resumed
run logs again the steps after its last checkpoint; the later lines win.

matplotlib (the `train` extra) draws through its object API (Figure + Agg canvas), so no global
pyplot state is touched and plotting is safe beside a GUI or in a worker thread.

Example:
    >>> plot_run(Path("runs/superres-x4"))
    [PosixPath('runs/superres-x4/plots/losses.png'), PosixPath('runs/superres-x4/plots/validation.png')]
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from img2img.errors import Img2ImgError
from img2img.files.atomic import write_bytes_atomically

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

TRAIN_LOG = "train_log.jsonl"
VALIDATION_LOG = "validation_log.jsonl"
PLOTS_FOLDER = "plots"
LOSS_PREFIX = "l_"
# Validation keys that are bookkeeping, not metrics.
NOT_METRICS = frozenset({"step", "images"})
# A key `<prefix><name>` is the baseline of the metric `<name>`.
BASELINE_PREFIXES = ("bicubic_",)
INSTALL_HINT = 'pip install "img2img[train]" (it includes matplotlib)'

_DPI = 100
# Loss panels by key prefix, in display order; the last one takes every other l_* key.
_LOSS_PANELS = (("l_g_", "generator losses"), ("l_d_", "discriminator losses"), (LOSS_PREFIX, "other losses"))
# The smoothing window spans about 1/20 of a series: long enough to show the trend under GAN
# noise, short enough to keep a collapse visible where it happens.
_SMOOTHING_FRACTION = 20
_DECADE = 10.0

Record = dict[str, float]


def read_log(path: Path) -> list[Record]:
    """The records of one jsonl log, in step order; unreadable lines are skipped.

    A line counts when it is a JSON object with an integer "step"; of its other entries only
    numbers are kept (as float; NaN and infinities too). When a step is not larger than the
    previous record's (a resumed run logging again from its checkpoint), the earlier records
    from that step on are dropped: they belong to the attempt that did not go on.

    Args:
        path: a train_log.jsonl or validation_log.jsonl; a missing file gives [].

    Returns:
        [{"step": 100.0, "l_g_pix": 0.031, ...}, ...] with strictly increasing steps.
    """
    if not path.is_file():
        return []
    records: list[Record] = []
    with path.open(encoding="utf-8", errors="replace") as stream:
        for line in stream:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            step = entry.get("step")
            if not isinstance(step, int) or isinstance(step, bool):
                continue
            record = {
                key: float(value)
                for key, value in entry.items()
                if isinstance(value, (int, float)) and not isinstance(value, bool)
            }
            while records and records[-1]["step"] >= step:
                records.pop()
            records.append(record)
    return records


def plot_run(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Draw RUN/plots/losses.png and RUN/plots/validation.png from the run's logs.

    A figure is skipped when its log is missing or holds nothing to draw (no `l_*` values, no
    validation metric). PNGs are written atomically, so a viewer refreshing them during
    training never sees half a file.

    Args:
        run_dir: the run folder (the one holding config.json and the logs).

    Returns:
        The PNGs written, losses first.

    Raises:
        Img2ImgError: the folder holds neither log, or matplotlib is not installed.
    """
    run_dir = Path(run_dir)
    train_log, validation_log = run_dir / TRAIN_LOG, run_dir / VALIDATION_LOG
    if not train_log.is_file() and not validation_log.is_file():
        raise Img2ImgError(
            f"{run_dir} holds neither {TRAIN_LOG} nor {VALIDATION_LOG}; pass the folder a training run "
            "writes into (the one with config.json), after it has logged its first steps"
        )
    written = []
    losses = loss_figure(read_log(train_log))
    if losses is not None:
        written.append(_save(losses, run_dir / PLOTS_FOLDER / "losses.png"))
    validation = validation_figure(read_log(validation_log))
    if validation is not None:
        written.append(_save(validation, run_dir / PLOTS_FOLDER / "validation.png"))
    return written


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over `window` points (odd), shrinking at both ends.

    Centred rather than exponential so the smoothed curve does not lag the raw one.

    Example:
        >>> smooth(np.array([0.0, 3.0, 0.0, 3.0]), 3)
        array([1.5, 1. , 2. , 1.5])
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be odd and >= 1, got {window}")
    half = window // 2
    totals = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    index = np.arange(len(values))
    low = np.maximum(index - half, 0)
    high = np.minimum(index + half + 1, len(values))
    return (totals[high] - totals[low]) / (high - low)


def _series(records: Sequence[Record], name: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the records holding a finite `name`."""
    points = [(r["step"], r[name]) for r in records if name in r and math.isfinite(r[name])]
    steps = np.array([step for step, _ in points], dtype=np.float64)
    values = np.array([value for _, value in points], dtype=np.float64)
    return steps, values


def _names(records: Sequence[Record]) -> list[str]:
    """Every key of the records, in order of first appearance."""
    return list(dict.fromkeys(key for record in records for key in record))


def _wants_log_scale(values: Sequence[np.ndarray]) -> bool:
    joined = np.concatenate(values)
    return bool(joined.size and joined.min() > 0 and joined.max() / joined.min() > _DECADE)


def loss_figure(records: Sequence[Record]) -> Figure | None:
    """The losses figure of `read_log` records: one panel per network, or None without losses.

    Each `l_*` series is drawn raw (faint) and smoothed (`smooth`, a window of about 1/20 of
    its points; geometric on a log axis). A panel's y axis is logarithmic when all its values
    are positive and the largest is more than 10 times the smallest.
    """
    losses = {}
    for name in _names(records):
        if name.startswith(LOSS_PREFIX):
            steps, values = _series(records, name)
            if values.size:
                losses[name] = (steps, values)
    panels: list[tuple[str, list[str]]] = []
    claimed: set[str] = set()
    for prefix, title in _LOSS_PANELS:
        names = [name for name in losses if name.startswith(prefix) and name not in claimed]
        claimed.update(names)
        if names:
            panels.append((title, names))
    if not panels:
        return None
    figure = _new_figure(9.0, 3.4 * len(panels))
    axes_list = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for axes, (title, names) in zip(axes_list, panels, strict=True):
        log_scale = _wants_log_scale([losses[name][1] for name in names])
        for name in names:
            steps, values = losses[name]
            window = 2 * (len(values) // (2 * _SMOOTHING_FRACTION)) + 1
            # On a log axis the geometric mean is the average that looks centred.
            smoothed = np.exp(smooth(np.log(values), window)) if log_scale else smooth(values, window)
            # Raw first, so the smoothed line is drawn over it in the same colour.
            (raw,) = axes.plot(steps, values, alpha=0.25, linewidth=0.8)
            axes.plot(steps, smoothed, color=raw.get_color(), linewidth=1.6, label=name)
        if log_scale:
            axes.set_yscale("log")
        axes.set_title(title, loc="left", fontsize=11)
        # Beside the panel: inside it, a legend hides the very curves it names.
        axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        _style_axes(axes)
    axes_list[-1].set_xlabel("step")
    return figure


def validation_figure(records: Sequence[Record]) -> Figure | None:
    """The validation figure of `read_log` records: one panel per metric, or None without any.

    Every key but "step" and "images" is a metric, except `bicubic_<name>` when `<name>` is
    one too: that baseline is drawn dashed in `<name>`'s panel. Panels fill rows of three, in
    the order the keys first appear; each title gives the last value.
    """
    names = [name for name in _names(records) if name not in NOT_METRICS]
    baselines: dict[str, tuple[str, str]] = {}
    for name in names:
        for prefix in BASELINE_PREFIXES:
            if name.startswith(prefix) and name[len(prefix) :] in names:
                baselines[name[len(prefix) :]] = (name, prefix.rstrip("_"))
    shown_as_baseline = {baseline for baseline, _ in baselines.values()}
    metrics = {}
    for name in names:
        if name not in shown_as_baseline:
            steps, values = _series(records, name)
            if values.size:
                metrics[name] = (steps, values)
    if not metrics:
        return None
    columns = min(3, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    figure = _new_figure(4.0 * columns, 2.9 * rows)
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, (name, (steps, values)) in enumerate(metrics.items()):
        axes = grid[index // columns, index % columns]
        axes.plot(steps, values, marker="o", markersize=3, linewidth=1.4, label="model")
        if name in baselines:
            baseline, label = baselines[name]
            base_steps, base_values = _series(records, baseline)
            axes.plot(base_steps, base_values, linestyle="--", color="0.45", linewidth=1.2, label=label)
            axes.legend(fontsize=8)
        axes.set_title(f"{name} (last {values[-1]:.4g})", fontsize=10)
        _style_axes(axes)
        if index + columns >= len(metrics):  # nothing below it
            axes.set_xlabel("step")
    for index in range(len(metrics), rows * columns):
        grid[index // columns, index % columns].set_visible(False)
    return figure


def _style_axes(axes: Axes) -> None:
    from matplotlib.ticker import EngFormatter

    axes.grid(True, alpha=0.3)
    # 250k reads faster than 250000 or a 1e5 offset label.
    axes.xaxis.set_major_formatter(EngFormatter(sep=""))


def _new_figure(width: float, height: float) -> Figure:
    # Imported here: matplotlib belongs to the train extra, and its absence deserves a message
    # that says what to install rather than an ImportError at import time.
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise Img2ImgError(f"plotting training curves needs matplotlib: {INSTALL_HINT}") from None
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return write_bytes_atomically(path, buffer.getvalue())
