"""CycleGAN (Zhu et al., 2017): unpaired translation between domains A and B.

Paper-to-code map: A is X, B is Y; G: A -> B, F: B -> A (`CycleGenerators`); D_Y judges B, D_X
judges A (`CycleDiscriminators`). Per step, with a from A and b from B:

    fake_b = G(a), rec_a = F(fake_b)      fake_a = F(b), rec_b = G(fake_a)
    G and F: adversarial terms through D_Y(fake_b) and D_X(fake_a)
             + lambda_cycle * (|rec_a - a| + |rec_b - b|)
             + lambda_identity * lambda_cycle * (|G(b) - b| + |F(a) - a|)
    D_Y: real b against fake_b drawn from a pool of 50 earlier fakes; D_X likewise with fake_a;
         each D loss is halved, as in the reference, so D learns more slowly than G.

Defaults follow the paper and pytorch-CycleGAN-and-pix2pix: ResNet generators, 70x70 PatchGANs,
LSGAN, lambda_cycle 10, identity 0.5, pool 50, Adam(2e-4, betas 0.5/0.999), constant rate then a
linear decay to 0. On top of the reference: any GAN loss or penalty of the shared menu, bf16,
EMA generators, exact resume (the image pools are checkpointed), gray domains, held-out paired
validation when the two domains have counterparts (same relative paths).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from img2img.data.two_domain import UnalignedDataset, parse_background
from img2img.engine.config import OptimizerConfig, ScheduleConfig
from img2img.engine.image_pool import ImagePool
from img2img.engine.task import Batch, Task
from img2img.errors import ConfigError
from img2img.losses.objective import GanObjective
from img2img.nets.cycle import CycleDiscriminators, CycleGenerators
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

DIRECTIONS = ("a2b", "b2a")


@dataclasses.dataclass
class CycleGANConfig(TranslationConfig):
    """Options of `img2img train cyclegan` (--data-a, --data-b, --config FILE.toml, --set key=value)."""

    data_a: str = ""  # folder of domain A images; with train/ and val/ subfolders those are used
    data_b: str = ""
    val_a: str = ""  # held-out images; empty = <data_a>/val when it exists
    val_b: str = ""
    net: str = "resnet_9blocks"
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5  # times lambda_cycle; 0 disables the identity terms
    pool_size: int = 50
    optim_g: OptimizerConfig = dataclasses.field(default_factory=lambda: OptimizerConfig(lr=2e-4, betas=(0.5, 0.999)))
    optim_d: OptimizerConfig = dataclasses.field(default_factory=lambda: OptimizerConfig(lr=2e-4, betas=(0.5, 0.999)))
    # Constant for the first half of the default 10,000 steps, then linearly to 0.
    schedule: ScheduleConfig = dataclasses.field(default_factory=lambda: ScheduleConfig(kind="linear", decay_start=5000))


@TASKS.register("cyclegan")
class CycleGAN(Task):
    name = "cyclegan"
    config_class = CycleGANConfig
    primary_metric = "psnr_mean"
    sample_columns = 6  # a, G(a), F(G(a)), b, F(b), G(F(b))
    distribution_directions = DIRECTIONS  # FID/KID of G and of F, and their mean (fid_mean)

    def __init__(self, config: CycleGANConfig, device: torch.device) -> None:
        super().__init__(config, device)
        self.gan = GanObjective.from_config(config.gan, penalty_interval=config.engine.penalty_interval)
        self.pool_a = ImagePool(config.pool_size, seed=config.engine.seed)  # fakes of A, for D_X
        self.pool_b = ImagePool(config.pool_size, seed=config.engine.seed + 1)  # fakes of B, for D_Y
        self._train: UnalignedDataset | None = None
        self.vgg_distance = validation_distance(config, device)

    @classmethod
    def check_data(cls, config: CycleGANConfig) -> None:
        if not (config.data_a and config.data_b):
            raise ConfigError("CycleGAN needs two image folders: pass --data-a DIR and --data-b DIR")

    # ----------------------------------------------------------------- nets and data
    def build_generator(self) -> CycleGenerators:
        return CycleGenerators.from_nets(
            build_translation_generator(self.config), build_translation_generator(self.config)
        )

    def build_discriminator(self) -> CycleDiscriminators:
        channels = self.config.channels
        return CycleDiscriminators.from_nets(
            build_translation_discriminator(self.config, channels),
            build_translation_discriminator(self.config, channels),
        )

    def train_dataset(self) -> UnalignedDataset:
        if self._train is None:
            config = self.config
            self._train = UnalignedDataset(
                split_folder(config.data_a, "train"),
                split_folder(config.data_b, "train"),
                load_size=config.load_size,
                crop_size=config.crop_size,
                channels=config.channels,
                background=parse_background(config.background),
                augment=config.flip or config.load_size != config.crop_size,
            )
        return self._train

    def _val_roots(self) -> tuple[Path, Path] | None:
        config = self.config
        roots = (
            existing(config.val_a) or existing(str(Path(config.data_a) / "val")),
            existing(config.val_b) or existing(str(Path(config.data_b) / "val")),
        )
        return roots if all(roots) else None

    def prepare_batch(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> Batch:
        return {
            "a": to_net(batch["a"].to(self.device, non_blocking=True)),
            "b": to_net(batch["b"].to(self.device, non_blocking=True)),
        }

    def generate(self, generator_net: CycleGenerators, batch: Batch) -> Batch:
        a, b = batch["a"], batch["b"]
        fake_b = generator_net.G(a)
        fake_a = generator_net.F(b)
        out = {"fake_b": fake_b, "rec_a": generator_net.F(fake_b), "fake_a": fake_a, "rec_b": generator_net.G(fake_a)}
        if self.config.lambda_identity > 0:
            out["idt_b"] = generator_net.G(b)  # G should leave B images alone
            out["idt_a"] = generator_net.F(a)
        return out

    # ----------------------------------------------------------------- losses
    def generator_loss(self, batch: Batch, fake: Batch, discriminator: CycleDiscriminators) -> Batch:
        config = self.config
        terms = {
            "l_g_gan_G": self.gan.generator_term(discriminator.D_Y, fake["fake_b"]),
            "l_g_gan_F": self.gan.generator_term(discriminator.D_X, fake["fake_a"]),
            "l_g_cycle_a": config.lambda_cycle * F.l1_loss(fake["rec_a"], batch["a"]),
            "l_g_cycle_b": config.lambda_cycle * F.l1_loss(fake["rec_b"], batch["b"]),
        }
        if config.lambda_identity > 0:
            weight = config.lambda_identity * config.lambda_cycle
            terms["l_g_idt_b"] = weight * F.l1_loss(fake["idt_b"], batch["b"])
            terms["l_g_idt_a"] = weight * F.l1_loss(fake["idt_a"], batch["a"])
        return terms

    def discriminator_loss(
        self, batch: Batch, fake: Batch, discriminator: CycleDiscriminators, *, regularize: bool
    ) -> Batch:
        terms = {}
        judged = (
            ("Y", discriminator.D_Y, batch["b"], self.pool_b.query(fake["fake_b"])),
            ("X", discriminator.D_X, batch["a"], self.pool_a.query(fake["fake_a"])),
        )
        for name, net, real, pooled in judged:
            for term, value in self.gan.discriminator_terms(net, real, pooled, regularize=regularize).items():
                # Halved as in the reference: D learns at half G's pace.
                terms[f"{term}_{name}"] = 0.5 * value
        return terms

    def after_discriminator_step(self, discriminator: CycleDiscriminators) -> None:
        self.gan.after_discriminator_step(discriminator)

    def state_dict(self) -> dict[str, Any]:
        return {"pool_a": self.pool_a.state_dict(), "pool_b": self.pool_b.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.pool_a.load_state_dict(state["pool_a"], self.device)
            self.pool_b.load_state_dict(state["pool_b"], self.device)

    # ----------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self, generator_net: CycleGenerators) -> dict[str, float]:
        """PSNR/SSIM (and with `val_vgg` the VGG19 distance) of G(a) against the true b and of
        F(b) against the true a on held-out pairs (files of the same relative path in the two val
        folders), each beside identity."""
        roots = self._val_roots()
        if roots is None:
            return {}
        pairs = list(paired_batches(*roots, self.config, self.config.engine.batch_size, self.device))
        metrics = score_translation(
            lambda a: from_net(generator_net.G(to_net(a))), iter(pairs), "_a2b", self.vgg_distance
        )
        metrics |= score_translation(
            lambda b: from_net(generator_net.F(to_net(b))), ((b, a) for a, b in pairs), "_b2a", self.vgg_distance
        )
        if metrics:
            metrics["psnr_mean"] = (metrics["psnr_a2b"] + metrics["psnr_b2a"]) / 2
        return metrics

    @torch.no_grad()
    def distribution_samples(
        self, generator_net: CycleGenerators, count: int, direction: str = "a2b"
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """G(a) against the real b ("a2b"), or F(b) against the real a ("b2a"), on the held-out
        pairs."""
        roots = self._val_roots()
        if roots is None:
            raise ConfigError("FID during training needs held-out images: give val_a and val_b folders")
        config = dataclasses.replace(self.config, val_max_images=count)
        translate = generator_net.direction(direction)
        for a, b in paired_batches(*roots, config, config.engine.batch_size, self.device):
            source, target = (a, b) if direction == "a2b" else (b, a)
            yield as_rgb(from_net(translate(to_net(source)))), as_rgb(target)

    @torch.no_grad()
    def sample_images(self, generator_net: CycleGenerators) -> torch.Tensor:
        roots = self._val_roots()
        if roots is not None:
            a, b = next(paired_batches(*roots, self.config, 4, self.device))
            a, b = to_net(a), to_net(b)
        else:
            examples = [self.train_dataset()[index] for index in range(min(4, len(self.train_dataset())))]
            a = to_net(torch.stack([example["a"] for example in examples]).to(self.device))
            b = to_net(torch.stack([example["b"] for example in examples]).to(self.device))
        fake_b, fake_a = generator_net.G(a), generator_net.F(b)
        columns = [a, fake_b, generator_net.F(fake_b), b, fake_a, generator_net.G(fake_a)]
        rows = torch.stack([as_rgb(from_net(column)) for column in columns], dim=1)
        return rows.flatten(0, 1)

    # ----------------------------------------------------------------- export
    @classmethod
    def export_nets(cls, generator_net: CycleGenerators) -> dict[str, nn.Module]:
        return {direction: generator_net.direction(direction) for direction in DIRECTIONS}

    @classmethod
    def export_fields(cls, config: CycleGANConfig, generator_net: nn.Module, direction: str = "a2b") -> dict[str, Any]:
        if direction not in DIRECTIONS:
            raise ConfigError(f"a CycleGAN run exports direction a2b or b2a, not {direction!r}")
        source, target = (config.domain_a, config.domain_b) if direction == "a2b" else (config.domain_b, config.domain_a)
        return {
            **translation_fields(cls.name, config, domains=f"{source}->{target}"),
            "direction": direction,
            "data": config.data_name or f"{Path(config.data_a).name} / {Path(config.data_b).name}",
        }
