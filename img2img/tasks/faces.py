"""Face generation: noise (and optionally a class label) to a face image.

Paper-to-code map: G maps z ~ N(0, I) (`latent_dim` values) and a label y to an image x = G(z, y);
D(x, y) is one logit. Per step, with a batch of real images (and their labels):

    z ~ N(0, I); fake = G(z, y) with y the real batch's labels (so classes follow the data)
    G: adversarial term through D(T(fake), y)
    D: adversarial terms on D(T(real), y) and D(T(fake), y) (+ R1 on real every k-th update)

where T is DiffAugment: the same random colour/translation/cutout policy for real and fake, in
both updates, differentiable so G learns through it (`img2img.data.diffaugment`). With
`ada_target` > 0 each transform is applied with an adaptive probability (ADA).

The default config is the modern small-data recipe: the residual SNGAN/SAGAN nets (spectral norm
in D, self-attention), hinge loss, lazy R1, DiffAugment, the EMA generator, TTUR (D learns 4x
faster than G, Adam betas (0, 0.999)). `scripts/recipes/faces-dcgan-cpu.toml` is the DCGAN
baseline (transposed convolutions, BatchNorm, the non-saturating loss, no regulariser, no
augmentation, no EMA). Every ingredient is an option, so the ablations are config overrides.

No held-out split: the generator is scored by FID/KID of its samples against the training images
every `engine.fid_every` steps, and `best.pt` keeps the lowest FID, which guards the exported
weights against a late collapse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from img2img.data.diffaugment import AdaptiveProbability, DiffAugment
from img2img.engine import distributed
from img2img.data.labelled import LabelledImages, class_names
from img2img.data.two_domain import parse_background
from img2img.engine.config import EngineConfig, GanConfig, OptimizerConfig, RunConfig
from img2img.engine.task import Batch, Task
from img2img.errors import ConfigError
from img2img.losses.objective import GanObjective
from img2img.nets import build_net
from img2img.nets.gan import LatentGenerator
from img2img.tasks import TASKS
from img2img.tasks.base import train_folder, training_provenance

# Offsets of the fixed seeds of the sample grid and of the FID samples from engine.seed, so they
# never coincide with the training stream.
SAMPLE_SEED = 1_000_003
FID_SEED = 2_000_003
GRID_SIDE = 8


@dataclasses.dataclass
class FacesConfig(RunConfig):
    """Options of `img2img train faces` (--data DIR, --conditional, --config FILE.toml, --set key=value)."""

    data: str = ""  # folder of aligned face crops, searched recursively; with --conditional, one subfolder per label
    data_name: str = ""  # recorded in the exported model's metadata
    data_license: str = ""
    conditional: bool = False
    labels: str = ""  # comma-separated class names; filled from the data's subfolders when conditional
    resolution: int = 64
    latent_dim: int = 128
    net_g: str = "resgan_generator"
    net_d: str = "resgan_discriminator"
    # None keeps the preset's value.
    g_channels: int | None = None
    d_channels: int | None = None
    attention_at: int | None = None  # side of the self-attention block in G and D; 0: none
    g_spectral_norm: bool | None = None
    d_spectral_norm: bool | None = None
    # R1 at gamma 0.2 (penalty_weight is gamma / 2).
    gan: GanConfig = dataclasses.field(
        default_factory=lambda: GanConfig(loss="hinge", weight=1.0, penalty="r1", penalty_weight=0.1)
    )
    augment: str = "color,translation,cutout"  # DiffAugment policy; "none" disables
    augment_p: float = 1.0  # probability of each transform (the start value under ADA)
    ada_target: float = 0.0  # > 0 (ADA: 0.6) adapts augment_p to keep E[sign D(real)] at this
    ada_interval: int = 4  # D updates between adjustments of p
    ada_speed_images: int = 100_000  # images over which p can move from 0 to 1
    flip: bool = True
    background: str = "white"  # for transparent pixels
    engine: EngineConfig = dataclasses.field(
        default_factory=lambda: EngineConfig(
            batch_size=32, penalty_interval=4, validate_every=1000, fid_every=1000, fid_samples=1000
        )
    )
    optim_g: OptimizerConfig = dataclasses.field(default_factory=lambda: OptimizerConfig(lr=1e-4, betas=(0.0, 0.999)))
    optim_d: OptimizerConfig = dataclasses.field(default_factory=lambda: OptimizerConfig(lr=4e-4, betas=(0.0, 0.999)))


def label_list(config: FacesConfig) -> list[str]:
    """The class names of a conditional config, in label order; [] when unconditional."""
    return [name for name in config.labels.split(",") if name] if config.conditional else []


@TASKS.register("faces")
class Faces(Task):
    name = "faces"
    config_class = FacesConfig
    primary_metric = "fid"
    primary_goal = "min"
    sample_columns = GRID_SIDE

    def __init__(self, config: FacesConfig, device: torch.device) -> None:
        super().__init__(config, device)
        if config.conditional and not config.labels:
            # Recorded in the config, so the checkpoint, a resumed run and the export agree.
            config.labels = ",".join(class_names(train_folder(config.data)))
        self.labels = label_list(config)
        self.num_classes = len(self.labels)
        self.background = parse_background(config.background)
        self.gan = GanObjective.from_config(config.gan, penalty_interval=config.engine.penalty_interval)
        self.augment = DiffAugment(config.augment, config.augment_p)
        self.ada = None
        if config.ada_target > 0:
            self.ada = AdaptiveProbability(
                target=config.ada_target,
                interval=config.ada_interval,
                speed_images=config.ada_speed_images,
                # images behind one observation: a micro-batch on every rank
                batch_size=config.engine.batch_size * distributed.world_size(),
                probability=config.augment_p,
                reduce=distributed.mean_across_ranks,
            )
        self._step_rng: torch.Generator | None = None
        self._real_sign: float | None = None  # E[sign D(T(real))] of the last D update
        self._train: LabelledImages | None = None

    # ----------------------------------------------------------------- nets and data
    def _net_options(self, channels: int | None, spectral_norm: bool | None) -> dict[str, Any]:
        config = self.config
        return dict(
            resolution=config.resolution,
            num_classes=self.num_classes,
            base_channels=channels,
            attention_at=config.attention_at,
            spectral_norm=spectral_norm,
        )

    def build_generator(self) -> nn.Module:
        config = self.config
        net = build_net(config.net_g, latent_dim=config.latent_dim, **self._net_options(config.g_channels, config.g_spectral_norm))
        if not isinstance(net, LatentGenerator):
            raise ConfigError(f"net_g {config.net_g!r} is not a noise-to-image generator; use resgan_generator or dcgan_generator")
        return net

    def build_discriminator(self) -> nn.Module:
        config = self.config
        return build_net(config.net_d, **self._net_options(config.d_channels, config.d_spectral_norm))

    def train_dataset(self) -> LabelledImages:
        if self._train is None:
            self._train = self._images(flip=self.config.flip)
        return self._train

    def _images(self, *, flip: bool) -> LabelledImages:
        return LabelledImages(
            train_folder(self.config.data),
            resolution=self.config.resolution,
            labels=self.labels or None,
            flip=flip,
            background=self.background,
        )

    def prepare_batch(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> Batch:
        # The augmentations of this step draw from the step's generator: exact resume.
        self._step_rng = generator
        real = batch["image"].to(self.device, non_blocking=True) * 2 - 1
        z = torch.randn(real.shape[0], self.config.latent_dim, generator=generator, device=generator.device)
        return {"real": real, "labels": batch["label"].to(self.device), "z": z.to(self.device)}

    def _conditioning(self, labels: torch.Tensor) -> torch.Tensor | None:
        return labels if self.num_classes else None

    def generate(self, generator_net: nn.Module, batch: Batch) -> torch.Tensor:
        return generator_net(batch["z"], self._conditioning(batch["labels"]))

    def _judge(self, discriminator: nn.Module, labels: torch.Tensor):
        """D as a function of images only, seeing them through the augmentation: what the losses
        and the penalty call, so real and fake get the same treatment."""
        conditioning = self._conditioning(labels)
        return lambda images: discriminator(self.augment(images, self._step_rng), conditioning)

    # ----------------------------------------------------------------- losses
    def generator_loss(self, batch: Batch, fake: torch.Tensor, discriminator: nn.Module) -> Batch:
        return {"l_g_adv": self.gan.generator_term(self._judge(discriminator, batch["labels"]), fake)}

    def discriminator_loss(self, batch: Batch, fake: torch.Tensor, discriminator: nn.Module, *, regularize: bool) -> Batch:
        judge = self._judge(discriminator, batch["labels"])
        real_logits = judge(batch["real"])
        terms = {"l_d_adv": self.gan.adversarial.d_loss(real_logits, judge(fake))}
        if self.gan.penalty is not None and regularize:
            terms["l_d_penalty"] = self.gan.penalty_term(judge, batch["real"], fake)
        self._real_sign = float(torch.sign(real_logits.detach().float()).mean())
        if self.ada is not None:
            self.augment.probability = self.ada.observe(real_logits)
        return terms

    def after_discriminator_step(self, discriminator: nn.Module) -> None:
        self.gan.after_discriminator_step(discriminator)

    def train_scalars(self) -> dict[str, float]:
        """E[sign D(T(real))] of the last D update (ADA's overfitting signal) and p."""
        scalars = {"augment_p": self.augment.probability if self.augment else 0.0}
        if self._real_sign is not None:
            scalars["d_real_sign"] = self._real_sign
        return scalars

    def state_dict(self) -> dict[str, Any]:
        return {"ada": self.ada.state_dict()} if self.ada is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.ada is not None and state.get("ada"):
            self.ada.load_state_dict(state["ada"])
            self.augment.probability = self.ada.probability

    # ----------------------------------------------------------------- samples and scores
    def fixed_latents(self, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`count` latents (count, latent_dim) and labels (count,) drawn from `seed`: labels follow
        the training set's class frequencies (None when unconditional)."""
        z = torch.randn(count, self.config.latent_dim, generator=torch.Generator().manual_seed(seed))
        if not self.num_classes:
            return z, None
        frequencies = self.train_dataset().label_counts().astype(np.float64)
        labels = np.random.default_rng(seed).choice(self.num_classes, size=count, p=frequencies / frequencies.sum())
        return z, torch.from_numpy(labels)

    @torch.no_grad()
    def _images_from(self, generator_net: nn.Module, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """G's images for latents (and labels) on the CPU, (N, 3, R, R) in [0, 1], batch by batch."""
        size = self.config.engine.batch_size
        out = []
        for start in range(0, z.shape[0], size):
            chunk = labels[start : start + size].to(self.device) if labels is not None else None
            out.append((generator_net(z[start : start + size].to(self.device), chunk).float() + 1) / 2)
        return torch.cat(out).clamp(0, 1)

    def validate(self, generator_net: nn.Module) -> dict[str, float]:
        """No held-out set: the generator is scored by FID/KID (`engine.fid_every`)."""
        return {}

    @torch.no_grad()
    def distribution_samples(self, generator_net: nn.Module, count: int, direction: str = "") -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """`count` samples from fixed latents (labels in the data's proportions) against up to
        `count` training images in a fixed random order (unflipped)."""
        seed = self.config.engine.seed + FID_SEED
        z, labels = self.fixed_latents(count, seed)
        real_images = self._images(flip=False)
        order = np.random.default_rng(seed).permutation(len(real_images))[:count]
        size = self.config.engine.batch_size
        for start in range(0, count, size):
            fake = self._images_from(generator_net, z[start : start + size], None if labels is None else labels[start : start + size])
            picked = order[start : start + size]
            real = torch.stack([real_images[int(i)]["image"] for i in picked]).to(self.device) if len(picked) else None
            yield fake, real

    @torch.no_grad()
    def sample_images(self, generator_net: nn.Module) -> torch.Tensor:
        """An 8x8 grid from fixed latents; a conditional model gets one label per row, in turn."""
        count = GRID_SIDE * GRID_SIDE
        z = torch.randn(count, self.config.latent_dim, generator=torch.Generator().manual_seed(self.config.engine.seed + SAMPLE_SEED))
        labels = torch.arange(count) // GRID_SIDE % self.num_classes if self.num_classes else None
        return self._images_from(generator_net, z, labels)

    # ----------------------------------------------------------------- export
    @classmethod
    def export_fields(cls, config: FacesConfig, generator_net: nn.Module, direction: str = "") -> dict[str, Any]:
        return {
            "task": cls.name,
            "latent_dim": config.latent_dim,
            "resolution": config.resolution,
            "labels": tuple(label_list(config)),
            **training_provenance(config),
        }
