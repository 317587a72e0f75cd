"""Evaluation during training, on rank 0: sample grids, validation, FID/KID and best.pt.

Every `engine.sample_every` steps a grid of the task's sample images goes to
RUN/samples/step_NNNNNNN.png (and TensorBoard); every `engine.validate_every` steps the task's
validation scores are logged; every `engine.fid_every` steps FID and KID of the generated
images against the task's real images are logged with them. The generator evaluated is the one
the trainer hands in (the EMA weights when kept). A new best value of the task's primary metric
(a validation score, or FID/KID for noise-to-image GANs) that meets every `engine.best_requires`
condition is kept as best.pt. An FID/KID measured at a validation step is ranked together with
that step's validation scores, so a run ranked by FID can require, say, a PSNR.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.utils import make_grid, save_image

from img2img.engine.config import condition_holds, parse_condition
from img2img.engine.run_log import RunLog
from img2img.engine.task import Task
from img2img.errors import ConfigError


class TrainingEvaluation:
    """Samples, validates and measures FID/KID for `task`, logging to `log`; `save_best(metrics)`
    writes best.pt. `best` ({"metric", "value", "step"}) is saved in and restored from last.pt."""

    def __init__(self, task: Task, log: RunLog, save_best: Callable[[dict[str, float]], Any]) -> None:
        if task.primary_goal not in ("max", "min"):
            raise ConfigError(f"task {task.name}: primary_goal must be max or min, not {task.primary_goal!r}")
        self.task = task
        self.engine = task.config.engine
        self.log = log
        self.save_best = save_best
        if self.engine.best_metric:
            self.metric, self.goal = self.engine.best_metric, self.engine.best_goal
        else:
            self.metric, self.goal = task.primary_metric, task.primary_goal
        self._best = self.no_best()
        # FID/KID: the Inception net and the real images' features (by direction) are built at
        # the first measurement and kept, since the real side is the same at every measurement.
        self.inception: nn.Module | None = None
        self.fid_references: dict[str, Any] = {}
        # (step, scores) of the latest validation, which an FID of the same step is ranked with.
        self.validated: tuple[int, dict[str, float]] = (-1, {})

    def no_best(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": -math.inf if self.goal == "max" else math.inf, "step": None}

    @property
    def best(self) -> dict[str, Any]:
        """{"metric", "value", "step"} of best.pt so far."""
        return self._best

    @best.setter
    def best(self, best: dict[str, Any]) -> None:
        # A resume that ranks by another metric than the run did starts ranking afresh.
        self._best = best if best.get("metric") == self.metric else self.no_best()

    @torch.no_grad()
    def write_samples(self, net: nn.Module, step: int) -> None:
        """RUN/samples/step_`step`.png: the task's sample images of `net`, one example a row."""
        net.eval()
        images = self.task.sample_images(net).float().cpu()
        grid = make_grid(images, nrow=self.task.sample_columns, padding=2)
        path = self.log.run_dir / "samples" / f"step_{step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
        self.log.image("samples", grid, step)

    @torch.no_grad()
    def validate(self, net: nn.Module, step: int) -> dict[str, Any]:
        """The task's validation scores of `net`, logged and offered to best.pt, with the step."""
        net.eval()
        metrics = self.task.validate(net)
        if not metrics:
            return {"step": step}
        self.log.scalars("validation", step, metrics)
        self.validated = (step, metrics)
        self.keep_if_best(metrics, step)
        return {"step": step, **metrics}

    @torch.no_grad()
    def measure_distribution(self, net: nn.Module, step: int) -> dict[str, float]:
        """FID and KID (with its standard error) of `net`'s images against the task's real
        images, on `engine.fid_samples` fixed inputs; logged with validation. A two-way task
        gets them per direction (fid_a2b, ...) and their means (fid_mean, kid_mean)."""
        from img2img.metrics import FeatureSet, InceptionFeatures, frechet_distance, kernel_inception_distance

        if self.inception is None:
            self.inception = InceptionFeatures().to(self.task.device)
        net.eval()
        metrics: dict[str, float] = {}
        for direction in self.task.distribution_directions:
            generated, real = [], []
            for fake_batch, real_batch in self.task.distribution_samples(net, self.engine.fid_samples, direction):
                generated.append(self.inception(fake_batch.float()).cpu().numpy())
                if direction not in self.fid_references and real_batch is not None:
                    real.append(self.inception(real_batch.float()).cpu().numpy())
            if direction not in self.fid_references:
                self.fid_references[direction] = FeatureSet.from_features(np.concatenate(real))
            reference = self.fid_references[direction]
            fakes = FeatureSet.from_features(np.concatenate(generated))
            kid, kid_error = kernel_inception_distance(reference.features, fakes.features)
            suffix = f"_{direction}" if direction else ""
            metrics |= {f"fid{suffix}": frechet_distance(reference, fakes), f"kid{suffix}": kid,
                        f"kid_std_error{suffix}": kid_error}  # fmt: skip
        directions = self.task.distribution_directions
        if len(directions) > 1:
            for name in ("fid", "kid"):
                metrics[f"{name}_mean"] = sum(metrics[f"{name}_{d}"] for d in directions) / len(directions)
        self.log.scalars("validation", step, metrics)
        # A task that ranks checkpoints by FID or KID (noise-to-image GANs) keeps the best one,
        # which guards the shipped weights against a late collapse.
        validated_step, scores = self.validated
        self.keep_if_best((scores if validated_step == step else {}) | metrics, step)
        return metrics

    def keep_if_best(self, metrics: dict[str, float], step: int) -> None:
        """Writes best.pt when `metrics` holds a new best value of the ranking metric
        (`engine.best_metric`, else the task's) and meets every `engine.best_requires` condition."""
        metric = self.metric
        value = metrics.get(metric)
        if value is None:
            return
        for condition in self.engine.best_requires:
            key, _, _ = parsed = parse_condition(condition)
            if not condition_holds(parsed, metrics.get(key)):
                print(f"step {step}: {metric} {value:.4g} not kept as best.pt: "
                      f"it fails engine.best_requires {condition!r}", file=sys.stderr)
                return
        better = value > self.best["value"] if self.goal == "max" else value < self.best["value"]
        if better:
            self.best = {"metric": metric, "value": value, "step": step}
            self.save_best(metrics)
