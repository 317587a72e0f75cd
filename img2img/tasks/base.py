"""What a task gives the training engine, and the GAN objective that tasks share.

A task owns its data, its nets and its losses; the engine (`img2img.engine.trainer`) owns the
loop: optimizers, mixed precision, EMA, checkpoints, validation cadence. Paper-to-code names:
G is the generator, D the discriminator; loss terms are named `l_g_*` and `l_d_*`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from img2img.engine.config import RunConfig
from img2img.errors import ConfigError
from img2img.losses import PENALTIES, build_adversarial_loss, clip_weights

Batch = dict[str, torch.Tensor]


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
        self, generator_net: nn.Module, count: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Batches of (generated, real) images, each (B, 3, H, W) in [0, 1], `count` generated in
        all, made from the same fixed inputs at every call: what FID/KID compare during training
        (`engine.fid_every`). The real side may run out before `count` (a small training set):
        its batches are then None. `generator_net` is in eval mode and gradients are off."""
        raise ConfigError(f"task {self.name} does not measure FID/KID during training; set engine.fid_every=0")

    @abstractmethod
    def sample_images(self, generator_net: nn.Module) -> torch.Tensor:
        """Images (N * sample_columns, 3, H, W) in [0, 1] for the sample grid, example by example."""

    @classmethod
    @abstractmethod
    def export_metadata(cls, config: RunConfig, generator_net: nn.Module, direction: str = "") -> dict[str, str]:
        """ONNX metadata_props of the exported model (task, scale, multiple_of, ...); `direction`
        is a key of `export_nets` and `generator_net` the net it names."""


class GanObjective:
    """An adversarial loss plus optional gradient penalty and WGAN clipping, as named terms.

    Args:
        loss: name in ADVERSARIAL_LOSSES (minimax, nonsaturating, lsgan, wgan, hinge).
        weight: weight of G's adversarial term.
        real_label: target for real samples in D's loss; < 1 is one-sided label smoothing.
        penalty: "none" or a name in PENALTIES (wgan-gp, dragan, r1).
        penalty_weight: weight of the penalty. R1 is returned as E||grad||^2, so pass gamma / 2.
        penalty_interval: the penalty runs every k-th D update and is scaled by k (lazy
            regularisation, StyleGAN2) so its average strength does not change.
        clip: WGAN weight clipping limit applied after each D step; 0 disables.
    """

    def __init__(
        self,
        *,
        loss: str,
        weight: float,
        real_label: float = 1.0,
        penalty: str = "none",
        penalty_weight: float = 10.0,
        penalty_interval: int = 1,
        clip: float = 0.0,
    ) -> None:
        self.adversarial = build_adversarial_loss(loss, real_label=real_label)
        self.weight = weight
        self.penalty = None if penalty == "none" else PENALTIES.get(penalty)
        self.penalty_weight = penalty_weight
        self.penalty_interval = penalty_interval
        self.clip = clip

    @classmethod
    def from_config(cls, config: Any) -> GanObjective:
        """From a task config's gan_loss, gan_weight, real_label, penalty, penalty_weight,
        wgan_clip and engine.penalty_interval fields."""
        return cls(
            loss=config.gan_loss,
            weight=config.gan_weight,
            real_label=config.real_label,
            penalty=config.penalty,
            penalty_weight=config.penalty_weight,
            penalty_interval=config.engine.penalty_interval,
            clip=config.wgan_clip,
        )

    def generator_term(self, discriminator: nn.Module, fake: torch.Tensor) -> torch.Tensor:
        return self.weight * self.adversarial.g_loss(discriminator(fake))

    def discriminator_terms(
        self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, *, regularize: bool
    ) -> Batch:
        terms = {}
        real_logits = discriminator(real)
        fake_logits = discriminator(fake)
        terms["l_d_adv"] = self.adversarial.d_loss(real_logits, fake_logits)
        if self.penalty is not None and regularize:
            terms["l_d_penalty"] = self.penalty_term(discriminator, real, fake)
        return terms

    def penalty_term(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The weighted gradient penalty (scaled by the lazy-regularisation interval)."""
        # Double backward is unstable in bf16; the penalty always runs in float32.
        with torch.autocast(real.device.type, enabled=False):
            penalty = self.penalty(discriminator, real.float(), fake.float())
        return self.penalty_weight * self.penalty_interval * penalty

    def after_discriminator_step(self, discriminator: nn.Module) -> None:
        if self.clip > 0:
            clip_weights(discriminator, self.clip)
