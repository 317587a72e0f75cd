"""pix2pix (Isola et al., 2017): paired translation A -> B with a conditional GAN.

G is a U-Net; D is a PatchGAN that judges the (input, output) pair, concatenated on channels,
so it asks "is this B a plausible translation of this A?". Per step, with pairs (a, b):

    fake_b = G(a)
    G: adversarial term through D(a, fake_b) + lambda_l1 * |fake_b - b|
    D: (a, b) real against (a, fake_b) fake, halved as in the reference

Defaults follow the paper and pytorch-CycleGAN-and-pix2pix: U-Net-256, 70x70 PatchGAN, the
cross-entropy GAN with the non-saturating generator loss (the reference's "vanilla"), lambda_l1
100, Adam(2e-4, betas 0.5/0.999), constant then linearly decaying rate. Data: two folders of
counterparts matched by relative path (`data_a`, `data_b`), or one folder of A|B side-by-side
images (`data`, as the reference's aligned data sets).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from img2img.data.two_domain import AlignedDataset, PairedDataset, parse_background
from img2img.engine.config import GanConfig, OptimizerConfig, ScheduleConfig
from img2img.engine.task import Batch, Task
from img2img.errors import ConfigError
from img2img.losses.objective import GanObjective
from img2img.tasks import TASKS
from img2img.tasks.translation import (
    TranslationConfig,
    as_rgb,
    build_translation_discriminator,
    build_translation_generator,
    existing,
    from_net,
    paired_batches,
    score_translation,
    split_folder,
    to_net,
    translation_fields,
    validation_distance,
)


@dataclasses.dataclass
class Pix2PixConfig(TranslationConfig):
    """Options of `img2img train pix2pix` (--data DIR of A|B images, or --data-a and --data-b)."""

    data: str = ""  # folder of A|B side-by-side images (train/ and val/ subfolders used if present)
    direction: Literal["AtoB", "BtoA"] = "AtoB"  # for side-by-side data: AtoB translates the left half to the right
    data_a: str = ""  # or two folders of counterparts with the same relative paths
    data_b: str = ""
    val_a: str = ""  # held-out pairs; empty = <data_a>/val (two-folder data only)
    val_b: str = ""
    net: str = "unet_256"
    gan: GanConfig = dataclasses.field(default_factory=lambda: GanConfig(loss="nonsaturating", weight=1.0))
    lambda_l1: float = 100.0
    optim_g: OptimizerConfig = dataclasses.field(default_factory=lambda: OptimizerConfig(lr=2e-4, betas=(0.5, 0.999)))
    optim_d: OptimizerConfig = dataclasses.field(default_factory=lambda: OptimizerConfig(lr=2e-4, betas=(0.5, 0.999)))
    schedule: ScheduleConfig = dataclasses.field(default_factory=lambda: ScheduleConfig(kind="linear", decay_start=5000))


@TASKS.register("pix2pix")
class Pix2Pix(Task):
    name = "pix2pix"
    config_class = Pix2PixConfig
    primary_metric = "psnr"
    sample_columns = 3  # a, G(a), b

    def __init__(self, config: Pix2PixConfig, device: torch.device) -> None:
        super().__init__(config, device)
        self.gan = GanObjective.from_config(config.gan, penalty_interval=config.engine.penalty_interval)
        self._train: Dataset | None = None
        self.vgg_distance = validation_distance(config, device)

    @classmethod
    def check_data(cls, config: Pix2PixConfig) -> None:
        if not config.data and not (config.data_a and config.data_b):
            raise ConfigError(
                "pix2pix needs paired data: --data DIR of A|B side-by-side images, "
                "or --data-a DIR and --data-b DIR with counterparts at the same relative paths"
            )

    # ----------------------------------------------------------------- nets and data
    def build_generator(self) -> nn.Module:
        return build_translation_generator(self.config)

    def build_discriminator(self) -> nn.Module:
        # Conditional: D sees the input and the (real or generated) output side by side.
        return build_translation_discriminator(self.config, 2 * self.config.channels)

    def _dataset(self, split: str, *, augment: bool) -> Dataset:
        config = self.config
        options = dict(
            load_size=config.load_size if augment else config.crop_size,
            crop_size=config.crop_size,
            channels=config.channels,
            background=parse_background(config.background),
            augment=augment,
        )
        if config.data_a:
            return PairedDataset(split_folder(config.data_a, split), split_folder(config.data_b, split), **options)
        return AlignedDataset(split_folder(config.data, split), direction=config.direction, **options)

    def train_dataset(self) -> Dataset:
        if self._train is None:
            self._train = self._dataset("train", augment=True)
        return self._train

    def _val_batches(self, count: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]] | None:
        config = self.config
        if config.data_a:
            roots = (
                existing(config.val_a) or existing(str(Path(config.data_a) / "val")),
                existing(config.val_b) or existing(str(Path(config.data_b) / "val")),
            )
            if not all(roots):
                return None
            limited = dataclasses.replace(config, val_max_images=count)
            return paired_batches(*roots, limited, config.engine.batch_size, self.device)
        if existing(str(Path(config.data) / "val")) is None:
            return None
        pairs = self._dataset("val", augment=False)
        subset = torch.utils.data.Subset(pairs, range(min(count, len(pairs))))
        loader = torch.utils.data.DataLoader(subset, batch_size=config.engine.batch_size)
        return ((batch["a"].to(self.device), batch["b"].to(self.device)) for batch in loader)

    def prepare_batch(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> Batch:
        return {
            "a": to_net(batch["a"].to(self.device, non_blocking=True)),
            "b": to_net(batch["b"].to(self.device, non_blocking=True)),
        }

    def generate(self, generator_net: nn.Module, batch: Batch) -> torch.Tensor:
        return generator_net(batch["a"])

    # ----------------------------------------------------------------- losses
    def generator_loss(self, batch: Batch, fake: torch.Tensor, discriminator: nn.Module) -> Batch:
        return {
            "l_g_gan": self.gan.generator_term(discriminator, torch.cat([batch["a"], fake], dim=1)),
            "l_g_l1": self.config.lambda_l1 * F.l1_loss(fake, batch["b"]),
        }

    def discriminator_loss(
        self, batch: Batch, fake: torch.Tensor, discriminator: nn.Module, *, regularize: bool
    ) -> Batch:
        real_pair = torch.cat([batch["a"], batch["b"]], dim=1)
        fake_pair = torch.cat([batch["a"], fake], dim=1)
        terms = self.gan.discriminator_terms(discriminator, real_pair, fake_pair, regularize=regularize)
        # Halved as in the reference: D learns at half G's pace.
        return {name: 0.5 * value for name, value in terms.items()}

    def after_discriminator_step(self, discriminator: nn.Module) -> None:
        self.gan.after_discriminator_step(discriminator)

    # ----------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self, generator_net: nn.Module) -> dict[str, float]:
        """PSNR/SSIM of G(a) against the true b on held-out pairs, beside identity (b = a)."""
        batches = self._val_batches(self.config.val_max_images)
        if batches is None:
            return {}
        return score_translation(lambda a: from_net(generator_net(to_net(a))), batches, distance=self.vgg_distance)

    @torch.no_grad()
    def distribution_samples(self, generator_net: nn.Module, count: int, direction: str = "") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = self._val_batches(count)
        if batches is None:
            raise ConfigError("FID during training needs held-out pairs: give a val/ split")
        for a, b in batches:
            yield as_rgb(from_net(generator_net(to_net(a)))), as_rgb(b)

    @torch.no_grad()
    def sample_images(self, generator_net: nn.Module) -> torch.Tensor:
        batches = self._val_batches(4)
        if batches is not None:
            a, b = next(batches)
            a, b = a[:4], b[:4]
        else:
            examples = [self.train_dataset()[index] for index in range(min(4, len(self.train_dataset())))]
            a = torch.stack([example["a"] for example in examples]).to(self.device)
            b = torch.stack([example["b"] for example in examples]).to(self.device)
        columns = [a, from_net(generator_net(to_net(a))), b]
        return torch.stack([as_rgb(column) for column in columns], dim=1).flatten(0, 1)

    # ----------------------------------------------------------------- export
    @classmethod
    def export_fields(cls, config: Pix2PixConfig, generator_net: nn.Module, direction: str = "") -> dict[str, Any]:
        source, target = (config.domain_a, config.domain_b)
        if not config.data_a and config.direction == "BtoA":
            source, target = target, source
        return {
            **translation_fields(cls.name, config, domains=f"{source}->{target}"),
            "data": config.data_name or Path(config.data or config.data_a).name,
        }
