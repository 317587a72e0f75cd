"""Helpers the tasks share: where a task's training and held-out images are, and the
provenance fields of a model trained on them. The `Task` base class is `img2img.engine.task.Task`
and the shared GAN objective `img2img.losses.objective.GanObjective`."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def train_folder(data: str) -> Path:
    """Where a task's training images are: `data`/train when that folder exists, else `data`."""
    root = Path(data)
    return root / "train" if (root / "train").is_dir() else root


def held_out_folder(data: str, val_data: str = "") -> Path | None:
    """Where a task's held-out images are: `val_data` when given, else `data`/val when that
    folder exists, else None (no validation)."""
    if val_data:
        return Path(val_data)
    candidate = Path(data) / "val"
    return candidate if candidate.is_dir() else None


def training_provenance(config: Any) -> dict[str, str]:
    """The "data" and "license" fields of a model trained on `config.data`: its data_name (or
    the folder's name) and its data_license."""
    return {
        "data": config.data_name or Path(config.data).name,
        "license": f"weights Apache-2.0; training data {config.data_license or 'unrecorded'}",
    }
