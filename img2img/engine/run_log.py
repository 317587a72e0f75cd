"""What a training run writes about itself into its folder, from rank 0.

RUN/config.json holds the resolved config. Each logged scalar goes to three places:
RUN/{train,validation}_log.jsonl (one JSON object per log call, e.g. {"step": 1200,
"l_g_pix": 0.031}), RUN/metrics.csv (one `step,split,name,value` row per scalar) and
TensorBoard under RUN/tensorboard while the writer is open. At the end of a run the curves are
drawn to RUN/plots/*.png (`img2img.engine.curves`).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter


class RunLog:
    """The logs of the run folder `run_dir`; TensorBoard is written between `open` and `close`."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.writer: SummaryWriter | None = None

    def open(self, config: dict[str, Any]) -> None:
        """Creates the run folder, writes RUN/config.json and opens the TensorBoard writer."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(config, indent=2))
        self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def scalars(self, split: str, step: int, scalars: dict[str, float]) -> None:
        """Appends `scalars` of `step` to RUN/`split`_log.jsonl, RUN/metrics.csv and TensorBoard."""
        record = {"step": step, **scalars}
        with (self.run_dir / f"{split}_log.jsonl").open("a") as stream:
            stream.write(json.dumps(record) + "\n")
        # Long format, so metrics that appear later (FID every N steps) need no new columns.
        table = self.run_dir / "metrics.csv"
        new_table = not table.exists()
        with table.open("a", newline="") as stream:
            rows = csv.writer(stream)
            if new_table:
                rows.writerow(["step", "split", "name", "value"])
            rows.writerows([step, split, name, value] for name, value in scalars.items())
        if self.writer is not None:
            for name, value in scalars.items():
                self.writer.add_scalar(f"{split}/{name}", value, step)

    def image(self, name: str, image: torch.Tensor, step: int) -> None:
        """A (3, H, W) image in [0, 1] to TensorBoard, while the writer is open."""
        if self.writer is not None:
            self.writer.add_image(name, image, step)

    def plot_curves(self) -> None:
        """Draws RUN/plots/*.png; a plotting problem is reported but never fails a finished run."""
        from img2img.engine.curves import plot_run

        try:
            plot_run(self.run_dir)
        except Exception as error:  # matplotlib raises many types; the checkpoint is what matters
            print(f"warning: could not plot the training curves: {error}", file=sys.stderr)
