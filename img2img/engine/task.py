"""What a task gives the training engine.

A task owns its data, its nets and its losses; the engine (`img2img.engine.trainer`) owns the
loop: optimizers, mixed precision, EMA, checkpoints, validation cadence. Paper-to-code names:
G is the generator, D the discriminator; loss terms are named `l_g_*` and `l_d_*`. The tasks
themselves live in `img2img.tasks`, one module each.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from img2img.engine.config import RunConfig
from img2img.errors import ConfigError

Batch = dict[str, torch.Tensor]


class Task(ABC):
    """One image-to-image job: its dataset, nets, named loss terms, validation and export facts."""

    name: ClassVar[str]
    config_class: ClassVar[type[RunConfig]]
    # Validation (or FID/KID) metric that picks `best.pt`, and whether higher ("max") or lower
    # ("min") is better.
    primary_metric: ClassVar[str]
    primary_goal: ClassVar[str] = "max"
    # Images per example in `sample_images` (one grid row per example).
    sample_columns: ClassVar[int]
    # The directions `distribution_samples` measures FID/KID in: "" for one-way tasks, "a2b" and
    # "b2a" for CycleGAN, whose figures are then logged per direction and as their mean.
    distribution_directions: ClassVar[tuple[str, ...]] = ("",)

    def __init__(self, config: RunConfig, device: torch.device) -> None:
        self.config = config
        self.device = device

    @abstractmethod
    def build_generator(self) -> nn.Module: ...

    def build_discriminator(self) -> nn.Module | None:
        """The discriminator, or None for a purely reconstructive stage."""
        return None

    @abstractmethod
    def train_dataset(self) -> Dataset:
        """Map-style dataset of training examples, random only through torch's global generator."""

    @abstractmethod
    def prepare_batch(self, batch: Any, generator: torch.Generator) -> Batch:
        """Moves a collated batch to the device and derives the net's inputs (e.g. degradations)."""

    @abstractmethod
    def generate(self, generator_net: nn.Module, batch: Batch) -> torch.Tensor | Batch:
        """G's output for the batch: one tensor, or named tensors (CycleGAN's fakes and
        reconstructions); the engine detaches either before the D update."""

    @abstractmethod
    def generator_loss(self, batch: Batch, fake: torch.Tensor, discriminator: nn.Module | None) -> Batch:
        """Weighted loss terms of G, by name; the engine sums them."""

    def discriminator_loss(
        self, batch: Batch, fake: torch.Tensor, discriminator: nn.Module, *, regularize: bool
    ) -> Batch:
        """Weighted loss terms of D on detached fakes; `regularize` says when the penalty is due."""
        raise NotImplementedError(f"task {self.name} has no discriminator")

    def after_discriminator_step(self, discriminator: nn.Module) -> None:
        """Hook after each D update (WGAN weight clipping)."""

    def train_scalars(self) -> dict[str, float]:
        """Scalars of the task's own state logged with each training step's losses (e.g. the
        adaptive augmentation probability); none by default."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Training state the task keeps itself (CycleGAN's image pools), saved in checkpoints
        so that a resumed run continues exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what `state_dict` returned."""

    @classmethod
    def check_data(cls, config: RunConfig) -> None:
        """Raises ConfigError when the config names no training data."""
        if not getattr(config, "data", ""):
            raise ConfigError("no training data: pass --data DIR (a folder of images, searched recursively)")

    @classmethod
    def export_nets(cls, generator_net: nn.Module) -> dict[str, nn.Module]:
        """The nets an export writes, by direction name: {"": generator_net} for one-way tasks,
        {"a2b": G, "b2a": F} for CycleGAN."""
        return {"": generator_net}

    @abstractmethod
    def validate(self, generator_net: nn.Module) -> dict[str, float]:
        """Metrics on the held-out data, computed with `generator_net` in eval mode."""

    def distribution_samples(
        self, generator_net: nn.Module, count: int, direction: str = ""
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Batches of (generated, real) images, each (B, 3, H, W) in [0, 1], `count` generated in
        all, made from the same fixed inputs at every call: what FID/KID compare during training
        (`engine.fid_every`), in `direction` (one of `distribution_directions`). The real side may
        run out before `count` (a small training set): its batches are then None.
        `generator_net` is in eval mode and gradients are off."""
        raise ConfigError(f"task {self.name} does not measure FID/KID during training; set engine.fid_every=0")

    @abstractmethod
    def sample_images(self, generator_net: nn.Module) -> torch.Tensor:
        """Images (N * sample_columns, 3, H, W) in [0, 1] for the sample grid, example by example."""

    @classmethod
    @abstractmethod
    def export_fields(cls, config: RunConfig, generator_net: nn.Module, direction: str = "") -> dict[str, Any]:
        """The task's own `ModelInfo` fields of the exported model: task, data, license and
        task-specific ones (domains, resolution, ...). The export takes scale, size requirements,
        inputs, range, version and config from the net and `config` (`export.describe_net`).
        `direction` is a key of `export_nets` and `generator_net` the net it names."""
