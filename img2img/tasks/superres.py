"""Super-resolution: a generator learns HR from LR made by a degradation of HR crops.

Recipe (ESRGAN / Real-ESRGAN):
- stage "psnr": pixel loss only (L1 by default); the stage that PSNR/SSIM reward.
- stage "perceptual": pixel loss plus a VGG19 perceptual loss, no discriminator; for a target
  that is a function of the input (a teacher's outputs, `lr_data`), where a discriminator has
  nothing to add but the feature loss still rewards the teacher's textures over their average.
- stage "gan": starts from the PSNR weights (`engine.init_generator`) and adds a VGG19
  perceptual loss and an adversarial loss from a spectral-norm discriminator.
Validation compares the EMA generator with bicubic upscaling on held-out images, PSNR/SSIM on
Y (border cropped by the scale, as SR papers report) and on RGB; optionally also the VGG19
feature distance, and the same on the real-world protocol's LR (`data.protocol_lr`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from img2img.data import (
    DEGRADATIONS,
    HRCropDataset,
    ScaledPairDataset,
    ValidationImages,
    bicubic_downscale,
    bicubic_upscale,
    protocol_lr,
)
from img2img.engine.batches import seeded_example
from img2img.engine.config import GanConfig, OptimizerConfig, RunConfig, require
from img2img.engine.task import Batch, Task
from img2img.errors import ConfigError
from img2img.losses import FEATURE_CRITERIA, PIXEL_LOSSES, PerceptualLoss, grid_loss
from img2img.losses.objective import GanObjective
from img2img.metrics import VGGFeatureDistance, grid_amplitude, psnr, ssim
from img2img.nets import NETS, build_net
from img2img.tasks import TASKS
from img2img.tasks.base import held_out_folder, train_folder, training_provenance


@dataclasses.dataclass
class DegradationConfig:
    """How HR crops become the LR inputs of training (the [degradation] section)."""

    kind: Literal["bicubic", "realworld"] = "bicubic"
    # Arguments of the kind's builder in img2img.data.DEGRADATIONS, e.g. {second_order_prob = 0.5}
    # for realworld (RealWorldDegradation's keyword arguments).
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class SuperResConfig(RunConfig):
    """Options of `img2img train superres` (fill with --config FILE.toml or --set key=value)."""

    data: str = ""  # folder of HR images; with train/ and val/ subfolders those are used
    val_data: str = ""  # held-out HR images; empty = <data>/val when it exists
    # Folder of LR images paired by file stem with the HR training images (HR exactly `scale`
    # times larger): training crops the given pairs instead of degrading HR crops, e.g. a
    # teacher model's outputs for degraded photos (scripts/build_sr_teacher.py). Empty: degrade.
    lr_data: str = ""
    renamed_keys: ClassVar[dict[str, str]] = RunConfig.renamed_keys | {
        "degradation": "degradation.kind",
        "degradation_options": "degradation.options",
    }

    scale: Literal[2, 3, 4] = 4
    patch_size: int = 128  # HR crop side; the LR side is patch_size / scale
    # (low, high): each HR training crop is cut as from the photo shrunk by a random factor in
    # this range (area interpolation; `HRCropDataset`'s zoom_out_range), as multi-scale training
    # sets are made (BasicSR's multiscale DF2K): a crop then holds more of a scene, and a small
    # photo set offers more distinct patches. None: the photos' own pixels only. Not with
    # lr_data, whose pairs must keep their pixels.
    hr_scale_range: tuple[float, float] | None = None
    degradation: DegradationConfig = dataclasses.field(default_factory=DegradationConfig)
    net: str = "srvgg_compact"
    # Overrides of the preset's hyperparameters, e.g. {num_features = 64}; a run may start from
    # a narrower trained net of the same preset (engine.init_generator), which it widens.
    net_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    stage: Literal["psnr", "perceptual", "gan"] = "psnr"
    pixel_loss: str = "l1"
    pixel_weight: float = 1.0
    # Perceptual and GAN stages. The default VGG19 (Caffe weights, 0..255 input) gives large
    # features: the weighted feature L1 of a bicubic x4 upscale measured ~580 against a pixel L1
    # of ~0.017, so 0.005 brings the term to ~3, where it leads without drowning the pixel and
    # GAN terms.
    perceptual_weight: float = 0.005
    perceptual_layers: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
    )
    # How the perceptual loss compares features (`losses.FEATURE_CRITERIA`): "l1" on their values
    # (Real-ESRGAN), or "direction" on unit-normalised vectors, the form of the VGG distance that
    # validation scores (weights of about 1 then: the term is at most 4 per layer).
    perceptual_criterion: str = "l1"
    # A perceptual loss teaches a pixel-shuffle net to draw a fixed pattern with the period of the
    # scale (measured at x4 from L1 weights: grid_amplitude 0.0007 -> 0.013 after 11,684 steps,
    # and 0.006 after 1,000 with the loss's inputs cropped at a random phase each step).
    # This term penalises that pattern alone: the mean error at each sub-pixel phase
    # (`losses.grid_loss`), which the target never has; 0 leaves it out.
    grid_weight: float = 0.0
    discriminator: str = "unet_discriminator"
    gan: GanConfig = dataclasses.field(default_factory=GanConfig)
    val_max_size: int = 256  # validation uses centre crops of at most this HR size
    # Validation also scores the real-world protocol (`data.protocol_lr`: degraded_* metrics)
    # and the VGG19 feature distance of `img2img eval` (vgg_distance), both slower.
    val_degraded: bool = False
    val_vgg: bool = False
    data_name: str = ""  # recorded in the exported model's metadata
    data_license: str = ""
    optim_g: OptimizerConfig = dataclasses.field(default_factory=lambda: OptimizerConfig(lr=5e-4))
    optim_d: OptimizerConfig = dataclasses.field(default_factory=lambda: OptimizerConfig(lr=1e-4))

    def __post_init__(self) -> None:
        require(self.patch_size % self.scale == 0, f"patch_size {self.patch_size} must be a multiple of scale {self.scale}")
        if self.hr_scale_range is not None:
            low, high = self.hr_scale_range
            require(0 < low <= high <= 1, f"hr_scale_range must be [low, high] with 0 < low <= high <= 1, got {list(self.hr_scale_range)}")
            require(not self.lr_data, "hr_scale_range resizes HR photos, which would break the given lr_data pairs: set one of them")
        NETS.require(self.net, key="net")
        NETS.require(self.discriminator, key="discriminator")
        PIXEL_LOSSES.require(self.pixel_loss, key="pixel_loss")
        FEATURE_CRITERIA.require(self.perceptual_criterion, key="perceptual_criterion")
        build_degradation(self.degradation, self.scale)


def build_degradation(config: DegradationConfig, scale: int) -> Any:
    """The degradation a [degradation] section names, mapping (hr, generator=None) -> lr."""
    try:
        return DEGRADATIONS.get(config.kind)(scale=scale, **config.options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"degradation.options for {config.kind}: {error}") from None


@TASKS.register("superres")
class SuperResolution(Task):
    name = "superres"
    config_class = SuperResConfig
    primary_metric = "psnr_y"
    sample_columns = 3  # bicubic, model, ground truth

    def __init__(self, config: SuperResConfig, device: torch.device) -> None:
        super().__init__(config, device)
        self.degrade = build_degradation(config.degradation, config.scale)
        self.pixel_loss = PIXEL_LOSSES.get(config.pixel_loss)
        self.vgg_distance = VGGFeatureDistance().to(device) if config.val_vgg else None
        self.perceptual = self.gan = None
        if config.stage != "psnr" and config.perceptual_weight > 0:
            self.perceptual = PerceptualLoss(
                layer_weights=config.perceptual_layers, criterion=config.perceptual_criterion
            ).to(device)
        if config.stage == "gan":
            self.gan = GanObjective.from_config(config.gan, penalty_interval=config.engine.penalty_interval)
        self._train: HRCropDataset | None = None
        self._validation: ValidationImages | None = None
        self._fid_crops: HRCropDataset | None = None

    # ----------------------------------------------------------------- nets and data
    def build_generator(self) -> nn.Module:
        config = self.config
        try:
            return build_net(config.net, **(config.net_options | {"scale": config.scale}))
        except (TypeError, ValueError) as error:
            raise ConfigError(f"net_options {config.net_options} for {config.net}: {error}") from None

    def build_discriminator(self) -> nn.Module | None:
        return build_net(self.config.discriminator) if self.config.stage == "gan" else None

    def train_dataset(self) -> HRCropDataset | ScaledPairDataset:
        if self._train is None:  # decoding every photo takes seconds: do it once
            config = self.config
            if config.lr_data:
                self._train = ScaledPairDataset(
                    lr_root=train_folder(config.lr_data),
                    hr_root=train_folder(config.data),
                    scale=config.scale,
                    patch_size=config.patch_size,
                )
            else:
                self._train = HRCropDataset(
                    root=train_folder(config.data),
                    patch_size=config.patch_size,
                    zoom_out_range=tuple(config.hr_scale_range) if config.hr_scale_range else None,
                )
        return self._train

    def validation_images(self) -> ValidationImages | None:
        root = held_out_folder(self.config.data, self.config.val_data)
        if root is None:
            return None
        if self._validation is None:
            self._validation = ValidationImages(root=root, scale=self.config.scale, max_size=self.config.val_max_size)
        return self._validation

    def prepare_batch(self, batch: torch.Tensor | list[torch.Tensor], generator: torch.Generator) -> Batch:
        """HR crops (N, 3, p, p) get their LR from the degradation; with `lr_data` the batch is
        [lr (N, 3, p/scale, p/scale), hr (N, 3, p, p)] as given. All in [0, 1]."""
        if isinstance(batch, (list, tuple)):
            lr, hr = (part.to(self.device, non_blocking=True) for part in batch)
            return {"hr": hr, "lr": lr}
        hr = batch.to(self.device, non_blocking=True)
        return {"hr": hr, "lr": self.degrade(hr, generator)}

    def generate(self, generator_net: nn.Module, batch: Batch) -> torch.Tensor:
        return generator_net(batch["lr"])

    # ----------------------------------------------------------------- losses
    def generator_loss(self, batch: Batch, fake: torch.Tensor, discriminator: nn.Module | None) -> Batch:
        config = self.config
        terms = {"l_g_pix": config.pixel_weight * self.pixel_loss(fake, batch["hr"])}
        if self.perceptual is not None:
            terms["l_g_percep"] = config.perceptual_weight * self.perceptual(fake, batch["hr"])
        if config.grid_weight > 0:
            terms["l_g_grid"] = config.grid_weight * grid_loss(fake, batch["hr"], config.scale)
        if self.gan is not None:
            terms["l_g_gan"] = self.gan.generator_term(discriminator, fake)
        return terms

    def discriminator_loss(
        self, batch: Batch, fake: torch.Tensor, discriminator: nn.Module, *, regularize: bool
    ) -> Batch:
        return self.gan.discriminator_terms(discriminator, batch["hr"], fake, regularize=regularize)

    def after_discriminator_step(self, discriminator: nn.Module) -> None:
        self.gan.after_discriminator_step(discriminator)

    # ----------------------------------------------------------------- validation
    def _validation_pairs(self, *, degraded: bool = False):
        """(lr, hr) pairs of the held-out images; LR by bicubic downscaling, or with `degraded`
        by the real-world protocol (`data.protocol_lr`, seeded by each image's name)."""
        images = self.validation_images()
        for index in range(len(images) if images is not None else 0):
            hr = images[index].unsqueeze(0).to(self.device)
            if degraded:
                yield protocol_lr(hr, self.config.scale, images.names[index]), hr
            else:
                yield bicubic_downscale(hr, self.config.scale), hr

    @torch.no_grad()
    def validate(self, generator_net: nn.Module) -> dict[str, float]:
        """Means over the held-out images of PSNR/SSIM on Y and RGB (and with `val_vgg` the VGG19
        feature distance) of the net and of bicubic (`bicubic_*`); with `val_degraded` the
        same again on the real-world protocol's LR (`degraded_*`, `degraded_bicubic_*`)."""
        protocols = {"": False, "degraded_": True} if self.config.val_degraded else {"": False}
        metrics: dict[str, float] = {}
        for protocol, degraded in protocols.items():
            scores = self._validation_scores(generator_net, degraded=degraded)
            if not scores:
                return {}
            scores["psnr_y_gain"] = scores["psnr_y"] - scores["bicubic_psnr_y"]
            metrics |= {protocol + name: value for name, value in scores.items()}
        metrics["images"] = float(len(self.validation_images()))
        return metrics

    def _validation_scores(self, generator_net: nn.Module, *, degraded: bool) -> dict[str, float]:
        scale = self.config.scale
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for lr, hr in self._validation_pairs(degraded=degraded):
            candidates = {"": generator_net(lr).clamp(0, 1), "bicubic_": bicubic_upscale(lr, scale).clamp(0, 1)}
            for prefix, sr in candidates.items():
                scores = {
                    "psnr_y": psnr(sr, hr, crop_border=scale, y_channel=True),
                    "ssim_y": ssim(sr, hr, crop_border=scale, y_channel=True),
                    "psnr_rgb": psnr(sr, hr, crop_border=scale),
                    "ssim_rgb": ssim(sr, hr, crop_border=scale),
                }
                if self.vgg_distance is not None:
                    # On 8-bit levels, as `img2img eval` scores the saved images.
                    scores["vgg_distance"] = self.vgg_distance((sr * 255).round() / 255, hr)
                if min(sr.shape[-2:]) >= 2 * scale:
                    scores["grid_amplitude"] = grid_amplitude(sr, scale)
                for name, value in scores.items():
                    sums[prefix + name] = sums.get(prefix + name, 0.0) + float(value.mean())
                    counts[prefix + name] = counts.get(prefix + name, 0) + 1
        return {name: total / counts[name] for name, total in sums.items()}

    @torch.no_grad()
    def distribution_samples(self, generator_net: nn.Module, count: int, direction: str = "") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`count` fixed `patch_size` crops of the held-out images (of the training images when
        there are none): the net's upscale of each crop's bicubic LR against the crop itself."""
        if self._fid_crops is None:
            root = held_out_folder(self.config.data, self.config.val_data) or train_folder(self.config.data)
            self._fid_crops = HRCropDataset(root=root, patch_size=self.config.patch_size, augment=False)
        batch_size = self.config.engine.batch_size
        for start in range(0, count, batch_size):
            # Crop i is image i mod N at a position seeded by i: the same crops at every call.
            hr = torch.stack(
                [
                    seeded_example(self._fid_crops, index % len(self._fid_crops), seed=index)
                    for index in range(start, min(start + batch_size, count))
                ]
            ).to(self.device)
            yield generator_net(bicubic_downscale(hr, self.config.scale)).clamp(0, 1), hr

    @torch.no_grad()
    def sample_images(self, generator_net: nn.Module) -> torch.Tensor:
        scale = self.config.scale
        pairs = [pair for _, pair in zip(range(4), self._validation_pairs())]
        images = []
        if pairs:
            # Same-size centre crops so the grid lines up: at most 96 HR pixels a side.
            side = min(96, *(min(hr.shape[-2:]) for _, hr in pairs)) // scale * scale
            for lr, hr in pairs:
                top = (hr.shape[-2] - side) // 2 // scale * scale
                left = (hr.shape[-1] - side) // 2 // scale * scale
                hr_crop = hr[..., top : top + side, left : left + side]
                lr_crop = lr[..., top // scale : (top + side) // scale, left // scale : (left + side) // scale]
                images += [bicubic_upscale(lr_crop, scale), generator_net(lr_crop).clamp(0, 1), hr_crop]
        if not images:
            # No held-out images: show the first training crop instead.
            example = seeded_example(self.train_dataset(), 0, seed=0)
            if isinstance(example, tuple):  # a given (lr, hr) pair
                lr, hr = (part.unsqueeze(0).to(self.device) for part in example)
            else:
                hr = example.unsqueeze(0).to(self.device)
                lr = bicubic_downscale(hr, scale)
            images = [bicubic_upscale(lr, scale), generator_net(lr).clamp(0, 1), hr]
        return torch.cat(images)

    # ----------------------------------------------------------------- export
    @classmethod
    def export_fields(cls, config: SuperResConfig, generator_net: nn.Module, direction: str = "") -> dict[str, Any]:
        return {"task": cls.name, **training_provenance(config)}
