"""Inpainting: fill a masked hole in a photo with plausible content.

G (`InpaintUNet`) sees the photo with the hole zeroed plus the mask and predicts every pixel;
its prediction is pasted into the hole only (`composite`), so what the user kept is kept. D is a
spectral-norm PatchGAN that sees the (real or composited) image with the mask as a fourth
channel, so it knows where to look for the seam. Per step, with crops x and masks m drawn on the
fly (LaMa-style strokes and boxes covering 10-60% of the crop):

    raw = G(x * (1 - m), m);  comp = raw * m + x * (1 - m)
    G: hole_weight * |raw - x| * m + valid_weight * |raw - x| * (1 - m)   (means over all pixels,
       as in Liu et al. 2018, so a small hole weighs less than a large one)
       + perceptual_weight * VGG19 feature L1(comp, x) + style_weight * Gram L1(comp, x)
       + adversarial term of D(comp, m)
    D: (x, m) real against (comp, m) fake, non-saturating loss with lazy R1 by default

Crops are taken from photos shrunk by a random factor first (`scale_range`), so a crop holds a
good part of a scene. Validation fills the fixed held-out set (`img2img.data.masks.validation_set`:
each photo shrunk and centre-cropped to `resolution`, with a seeded mask) and reports PSNR/SSIM
over the image and inside the hole, next to OpenCV's Telea inpainting of the same holes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from img2img.data import HRCropDataset
from img2img.data.masks import MaskSettings, random_mask, validation_set
from img2img.engine.config import GanConfig, OptimizerConfig, RunConfig, require
from img2img.engine.task import Batch, Task
from img2img.errors import ConfigError
from img2img.losses import PerceptualLoss, StyleLoss
from img2img.losses.objective import GanObjective
from img2img.metrics import VGGFeatureDistance
from img2img.metrics.masked import hole_metrics
from img2img.nets import NETS, build_net
from img2img.nets.inpaint import composite
from img2img.tasks import TASKS
from img2img.tasks.base import held_out_folder, train_folder, training_provenance


@dataclasses.dataclass
class InpaintConfig(RunConfig):
    """Options of `img2img train inpaint` (fill with --config FILE.toml or --set key=value)."""

    data: str = ""  # folder of photos; with train/ and val/ subfolders those are used
    val_data: str = ""  # held-out photos; empty = <data>/val when it exists
    patch_size: int = 256  # training crop side
    scale_range: tuple[float, float] = (0.5, 1.0)  # photos are shrunk by a factor in this range first
    # Instead of scale_range, each photo is resized so its shorter side is a random number of
    # pixels in this range (at least patch_size): with patch_size = resolution = the range's low
    # end, a training crop shows as much of a scene, and a hole as large in pixels, as the
    # held-out crops and the runtime's (a photo shrunk to `resolution` on its shorter side).
    short_side_range: tuple[int, int] | None = None
    resolution: int = 256  # validation size, and the side the runtime scales hole crops to
    min_coverage: float = 0.10  # fraction of a training crop the hole covers
    max_coverage: float = 0.60
    mask_seed: int = 0  # seeds the held-out masks
    # Validation also scores the whole image's VGG19 feature distance (vgg_distance, and Telea's
    # as telea_vgg_distance), as `scripts/evaluate_inpainting.py` does: a few seconds more each.
    val_vgg: bool = False
    net: str = "inpaint_unet"
    net_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. {gated = true}
    discriminator: str = "patchgan_70"
    discriminator_options: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"spectral_norm": True, "norm": "none"}
    )
    hole_weight: float = 6.0
    valid_weight: float = 1.0
    # The default VGG19 (Caffe weights, 0..255 input) gives large features: on held-out 256x256
    # photos with 10-60% holes filled by an untrained G the feature L1 measured ~840 and the Gram
    # L1 ~1.7e5 against a weighted hole L1 of ~1.1, so these weights bring each to about the
    # size of the hole term at the start.
    perceptual_weight: float = 0.001
    perceptual_layers: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
    )
    style_weight: float = 5e-6
    # R1 at gamma 2 (penalty_weight is gamma / 2).
    gan: GanConfig = dataclasses.field(default_factory=lambda: GanConfig(penalty="r1", penalty_weight=1.0))
    data_name: str = ""  # recorded in the exported model's metadata
    data_license: str = ""
    # LaMa's rates: G learns ten times faster than D.
    optim_g: OptimizerConfig = dataclasses.field(default_factory=lambda: OptimizerConfig(lr=1e-3))
    optim_d: OptimizerConfig = dataclasses.field(default_factory=lambda: OptimizerConfig(lr=1e-4))

    def __post_init__(self) -> None:
        require(
            self.patch_size >= 16 and self.resolution >= 16,
            f"patch_size and resolution must be at least 16 pixels, got {self.patch_size} and {self.resolution}",
        )
        if self.short_side_range is not None:
            low, high = self.short_side_range
            require(
                self.patch_size <= low <= high,
                f"short_side_range must be [low, high] with patch_size ({self.patch_size}) <= low <= high, "
                f"got {list(self.short_side_range)}",
            )
        mask_settings(self)
        NETS.require(self.net, key="net")
        NETS.require(self.discriminator, key="discriminator")


def mask_settings(config: InpaintConfig) -> MaskSettings:
    """The training masks' settings of a config (coverage between min_ and max_coverage)."""
    try:
        return MaskSettings(min_coverage=config.min_coverage, max_coverage=config.max_coverage)
    except ValueError as error:
        raise ConfigError(f"{error}; set min_coverage and max_coverage between 0 and 1") from None


class HoleCrops(Dataset):
    """Random crops of photos, each with a freshly drawn hole mask.

    Item i is {"image": (3, S, S) float32 in [0, 1], "mask": (1, S, S) float32 in {0, 1}}, a
    random crop of photo i and a random mask; both follow torch's global generator (the mask's
    numpy generator is seeded from it), so `torch.manual_seed` fixes them.
    """

    def __init__(self, crops: HRCropDataset, settings: MaskSettings) -> None:
        self.crops = crops
        self.settings = settings

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.crops[index]
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        mask = random_mask(image.shape[1], image.shape[2], rng, self.settings)
        return {"image": image, "mask": torch.from_numpy(mask)[None]}


def _to_net(images: torch.Tensor) -> torch.Tensor:
    return images * 2.0 - 1.0


def _from_net(images: torch.Tensor) -> torch.Tensor:
    return ((images + 1.0) / 2.0).clamp(0.0, 1.0)


@TASKS.register("inpaint")
class Inpainting(Task):
    name = "inpaint"
    config_class = InpaintConfig
    primary_metric = "psnr_hole"
    sample_columns = 3  # input with the hole, filled, truth

    def __init__(self, config: InpaintConfig, device: torch.device) -> None:
        super().__init__(config, device)
        self.mask_settings = mask_settings(config)
        self.gan = GanObjective.from_config(config.gan, penalty_interval=config.engine.penalty_interval)
        self.perceptual = self.style = None
        if config.perceptual_weight > 0:
            self.perceptual = PerceptualLoss(layer_weights=config.perceptual_layers).to(device)
        if config.style_weight > 0:
            self.style = StyleLoss().to(device)
        self._train: HoleCrops | None = None
        self._validation: list[tuple[str, np.ndarray, np.ndarray]] | None = None
        self._telea: dict[str, float] | None = None
        self.vgg_distance = VGGFeatureDistance().to(device) if config.val_vgg else None

    # ----------------------------------------------------------------- nets and data
    def build_generator(self) -> nn.Module:
        net = build_net(self.config.net, **self.config.net_options)
        if net.in_channels != 3:
            raise ConfigError(
                f"inpainting trains on colour photos: {self.config.net} needs in_channels 3, not {net.in_channels}"
            )
        for side in (self.config.patch_size, self.config.resolution):
            if side % net.multiple_of:
                raise ConfigError(
                    f"{self.config.net} needs sizes that are multiples of {net.multiple_of}; "
                    f"patch_size {self.config.patch_size} and resolution {self.config.resolution} must be"
                )
        return net

    def build_discriminator(self) -> nn.Module:
        # Mask-aware: the mask is a fourth channel beside the (real or composited) image.
        return build_net(self.config.discriminator, **({"in_channels": 4} | self.config.discriminator_options))

    def train_dataset(self) -> HoleCrops:
        if self._train is None:  # decoding every photo takes seconds: do it once
            if self.config.short_side_range is None:
                resize = {"scale_range": tuple(self.config.scale_range)}
            else:
                resize = {"short_side_range": tuple(self.config.short_side_range)}
            crops = HRCropDataset(
                root=train_folder(self.config.data),
                patch_size=self.config.patch_size,
                **resize,
                upright=True,
            )
            self._train = HoleCrops(crops, self.mask_settings)
        return self._train

    def validation_items(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """The fixed held-out set: (name, (S, S, 3) uint8 photo, (S, S) float32 mask); empty
        without held-out photos."""
        if self._validation is None:
            root = held_out_folder(self.config.data, self.config.val_data)
            self._validation = (
                []
                if root is None
                else validation_set(
                    root, self.config.resolution, seed=self.config.mask_seed, settings=self.mask_settings
                )
            )
        return self._validation

    def prepare_batch(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> Batch:
        return {
            "image": _to_net(batch["image"].to(self.device, non_blocking=True)),
            "mask": batch["mask"].to(self.device, non_blocking=True),
        }

    def generate(self, generator_net: nn.Module, batch: Batch) -> Batch:
        raw = generator_net(batch["image"], batch["mask"])
        return {"raw": raw, "composite": composite(raw, batch["image"], batch["mask"])}

    # ----------------------------------------------------------------- losses
    def generator_loss(self, batch: Batch, fake: Batch, discriminator: nn.Module) -> Batch:
        config = self.config
        image, mask = batch["image"], batch["mask"]
        error = (fake["raw"] - image).abs()
        terms = {
            "l_g_hole": config.hole_weight * (error * mask).mean(),
            "l_g_valid": config.valid_weight * (error * (1.0 - mask)).mean(),
        }
        if self.perceptual is not None or self.style is not None:
            filled, real = _from_net(fake["composite"]), _from_net(image)
            if self.perceptual is not None:
                terms["l_g_percep"] = config.perceptual_weight * self.perceptual(filled, real)
            if self.style is not None:
                terms["l_g_style"] = config.style_weight * self.style(filled, real)
        terms["l_g_gan"] = self.gan.generator_term(discriminator, torch.cat([fake["composite"], mask], dim=1))
        return terms

    def discriminator_loss(self, batch: Batch, fake: Batch, discriminator: nn.Module, *, regularize: bool) -> Batch:
        mask = batch["mask"]
        return self.gan.discriminator_terms(
            discriminator,
            torch.cat([batch["image"], mask], dim=1),
            torch.cat([fake["composite"], mask], dim=1),
            regularize=regularize,
        )

    def after_discriminator_step(self, discriminator: nn.Module) -> None:
        self.gan.after_discriminator_step(discriminator)

    # ----------------------------------------------------------------- validation
    def _validation_batches(self, limit: int | None = None):
        """(images (B, 3, S, S) in [0, 1], masks (B, 1, S, S)) batches of the held-out set."""
        items = self.validation_items()[:limit]
        batch_size = max(1, self.config.engine.batch_size)
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            images = torch.stack([torch.tensor(image).permute(2, 0, 1) for _, image, _ in chunk]).float() / 255.0
            masks = torch.stack([torch.tensor(mask)[None] for _, _, mask in chunk])
            yield images.to(self.device), masks.to(self.device)

    def fill(self, generator_net: nn.Module, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Composited fills (B, 3, H, W) in [0, 1] of [0, 1] images with (B, 1, H, W) holes."""
        prediction = _from_net(generator_net(_to_net(images), masks))
        return composite(prediction, images, masks)

    def _scores(self, filled: torch.Tensor, truth: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
        """`hole_metrics` of (B, 3, H, W) fills in [0, 1], with `vgg_distance` where `val_vgg` is
        set (on 8-bit levels, as the evaluation script scores saved images); (B,) each."""
        scores = hole_metrics(filled, truth, masks)
        if self.vgg_distance is not None:
            scores["vgg_distance"] = self.vgg_distance((filled * 255).round() / 255, truth)
        return scores

    def _telea_metrics(self) -> dict[str, float]:
        """The same metrics for OpenCV's Telea inpainting of the held-out holes (computed once)."""
        if self._telea is None:
            from img2img.metrics.inpaint_baseline import opencv_inpaint

            sums: dict[str, float] = {}
            for _, image, mask in self.validation_items():
                filled = torch.tensor(opencv_inpaint(image, mask, "telea")).permute(2, 0, 1)[None].float() / 255.0
                truth = torch.tensor(image).permute(2, 0, 1)[None].float() / 255.0
                hole = torch.tensor(mask)[None, None]
                scores = self._scores(filled.to(self.device), truth.to(self.device), hole.to(self.device))
                for name, value in scores.items():
                    sums[name] = sums.get(name, 0.0) + float(value.sum())
            self._telea = {f"telea_{name}": total / len(self.validation_items()) for name, total in sums.items()}
        return self._telea

    @torch.no_grad()
    def validate(self, generator_net: nn.Module) -> dict[str, float]:
        if not self.validation_items():
            return {}
        sums: dict[str, float] = {}
        for images, masks in self._validation_batches():
            for name, value in self._scores(self.fill(generator_net, images, masks), images, masks).items():
                sums[name] = sums.get(name, 0.0) + float(value.sum())
        count = len(self.validation_items())
        metrics = {name: total / count for name, total in sums.items()}
        metrics.update(self._telea_metrics())
        metrics["psnr_hole_gain"] = metrics["psnr_hole"] - metrics["telea_psnr_hole"]
        metrics["images"] = float(count)
        return metrics

    @torch.no_grad()
    def sample_images(self, generator_net: nn.Module) -> torch.Tensor:
        if self.validation_items():
            images, masks = next(self._validation_batches(limit=4))
            images, masks = images[:4], masks[:4]
        else:
            examples = [self.train_dataset()[index] for index in range(min(4, len(self.train_dataset())))]
            images = torch.stack([example["image"] for example in examples]).to(self.device)
            masks = torch.stack([example["mask"] for example in examples]).to(self.device)
        # The hole is shown white in the input column.
        columns = [composite(torch.ones_like(images), images, masks), self.fill(generator_net, images, masks), images]
        return torch.stack(columns, dim=1).flatten(0, 1)

    # ----------------------------------------------------------------- export
    @classmethod
    def export_fields(cls, config: InpaintConfig, generator_net: nn.Module, direction: str = "") -> dict[str, Any]:
        return {"task": cls.name, "resolution": config.resolution, **training_provenance(config)}
