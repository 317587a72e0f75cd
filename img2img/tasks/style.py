"""Fast style transfer: one feed-forward network per style image (Johnson et al., 2016).

G is the shared ResNet generator (`resnet_style`: instance norm, resize+conv upsampling) that
turns a photo into a painting of one fixed style. It is trained on photo crops x against one
style image s through a frozen VGG19 phi, with y = G(x) in [0, 1]:

    G: content_weight * sum_l w_l * MSE(phi_l(y), phi_l(x))           (content layers)
       + style_weight * sum_l w_l * MSE(Gram(phi_l(y)), Gram(phi_l(s)))  (style layers)
       + tv_weight * TV(y)
       + gan.weight * adversarial term of D on crops of y
    D (only when gan.weight > 0): spectral-norm PatchGAN, crops of the style image (at random
       scales) real against crops of y fake, so brush-stroke texture is judged locally rather
       than only through global Gram statistics.

The style's Gram matrices are taken once, from the style image scaled so its shorter side is
`style_size`. Validation stylises the held-out photos (centre squares of `resolution` pixels)
and reports `img2img.metrics.style` content and style distances, the measures the comparison
script uses as well.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from img2img.data import HRCropDataset
from img2img.data.folder import list_images, read_rgb, to_tensor
from img2img.data.masks import square_crop
from img2img.engine.config import GanConfig, OptimizerConfig, RunConfig, require
from img2img.engine.task import Batch, Task
from img2img.errors import ConfigError, TrainingError
from img2img.losses import PerceptualLoss, StyleLoss, VGG19Features, total_variation
from img2img.losses.objective import GanObjective
from img2img.metrics.style import STYLE_DISTANCE_LAYERS, StyleDistance
from img2img.nets import NETS, build_net
from img2img.tasks import TASKS
from img2img.tasks.base import held_out_folder, train_folder, training_provenance


@dataclasses.dataclass
class FastStyleConfig(RunConfig):
    """Options of `img2img train style` (fill with --config FILE.toml or --set key=value)."""

    data: str = ""  # folder of content photos; with train/ and val/ subfolders those are used
    val_data: str = ""  # held-out photos; empty = <data>/val when it exists
    style_image: str = ""  # the painting this network learns
    style_name: str = ""  # recorded in the exported model's metadata (default: the file's stem)
    style_license: str = ""
    style_size: int = 256  # the style image's shorter side when its Gram matrices are taken
    patch_size: int = 256  # training crop side
    scale_range: tuple[float, float] = (0.3, 0.7)  # photos are shrunk by a factor in this range first
    resolution: int = 256  # side of the held-out squares
    net: str = "resnet_style"
    net_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    # The default VGG19 takes 0..255 input, so its features and Gram matrices are large; these
    # weights make content and style terms about equal on the first steps.
    content_weight: float = 1.0
    content_layers: dict[str, float] = dataclasses.field(default_factory=lambda: {"relu2_2": 1.0, "relu4_1": 1.0})
    style_weight: float = 1.0
    style_layers: dict[str, float] = dataclasses.field(
        default_factory=lambda: {name: 1.0 for name in STYLE_DISTANCE_LAYERS}
    )
    tv_weight: float = 0.0
    # gan.weight > 0 adds the PatchGAN on style patches.
    gan: GanConfig = dataclasses.field(default_factory=lambda: GanConfig(loss="hinge", weight=0.0, penalty_weight=1.0))
    gan_patch: int = 64  # side of the crops D compares
    discriminator: str = "patchgan_70"
    discriminator_options: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"base_channels": 32, "spectral_norm": True, "norm": "none"}
    )
    data_name: str = ""  # recorded in the exported model's metadata
    data_license: str = ""
    optim_g: OptimizerConfig = dataclasses.field(default_factory=lambda: OptimizerConfig(lr=1e-3))
    optim_d: OptimizerConfig = dataclasses.field(default_factory=lambda: OptimizerConfig(lr=2e-4))

    def __post_init__(self) -> None:
        require(
            self.patch_size >= 16 and self.resolution >= 16,
            f"patch_size and resolution must be at least 16 pixels, got {self.patch_size} and {self.resolution}",
        )
        require(
            self.gan.weight <= 0 or 8 <= self.gan_patch <= self.patch_size,
            f"gan_patch must be between 8 and patch_size ({self.patch_size}), got {self.gan_patch}",
        )
        NETS.require(self.net, key="net")
        NETS.require(self.discriminator, key="discriminator")


def load_style_image(path: str | Path, shorter_side: int) -> torch.Tensor:
    """A style image as (1, 3, h, w) float32 in [0, 1], scaled (Lanczos) so min(h, w) is
    `shorter_side`; raises ConfigError when the file is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"style image {path} does not exist; pass style_image=PATH of a painting")
    try:
        array = read_rgb(path)
    except TrainingError as error:
        raise ConfigError(str(error)) from None
    height, width = array.shape[:2]
    factor = shorter_side / min(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    array = np.array(Image.fromarray(array).resize(size, Image.Resampling.LANCZOS))
    return to_tensor(array)[None]


def held_out_squares(root: Path | None, side: int) -> list[tuple[str, torch.Tensor]]:
    """(relative name, (3, side, side) float32 in [0, 1]) centre squares of a folder's photos;
    empty without a folder."""
    if root is None:
        return []
    return [
        (path.relative_to(root).as_posix(), to_tensor(square_crop(read_rgb(path), side)))
        for path in list_images(root)
    ]


def random_crops(images: torch.Tensor, side: int, generator: torch.Generator) -> torch.Tensor:
    """One random (side x side) crop per image of (B, C, H, W) -> (B, C, side, side)."""
    height, width = images.shape[-2:]
    crops = []
    for image in images:
        top = int(torch.randint(0, height - side + 1, (), generator=generator, device=generator.device))
        left = int(torch.randint(0, width - side + 1, (), generator=generator, device=generator.device))
        crops.append(image[:, top : top + side, left : left + side])
    return torch.stack(crops)


def _to_net(images: torch.Tensor) -> torch.Tensor:
    return images * 2.0 - 1.0


def _from_net(images: torch.Tensor) -> torch.Tensor:
    # No clamp: tanh already bounds the output, and a clamp would stop gradients at the ends.
    return (images + 1.0) / 2.0


@TASKS.register("style")
class FastStyle(Task):
    name = "style"
    config_class = FastStyleConfig
    primary_metric = "neg_loss"
    sample_columns = 2  # photo, stylised

    def __init__(self, config: FastStyleConfig, device: torch.device) -> None:
        super().__init__(config, device)
        self.style = load_style_image(config.style_image, config.style_size).to(device)
        if config.gan.weight > 0 and min(self.style.shape[-2:]) < config.gan_patch:
            raise ConfigError(f"style_size {config.style_size} is smaller than gan_patch {config.gan_patch}")
        layers = list(dict.fromkeys([*config.content_layers, *config.style_layers, *STYLE_DISTANCE_LAYERS]))
        # One VGG pass per batch serves the content loss, the style loss and the metrics.
        self.features = VGG19Features(layers=layers).to(device)
        self.content_loss = PerceptualLoss(layer_weights=config.content_layers, criterion="l2", features=self.features)
        self.style_loss = StyleLoss(layer_weights=config.style_layers, features=self.features)
        self.style_grams = self.style_loss.grams(self.style)
        self.distance = StyleDistance(self.features)
        self.distance_grams = self.distance.style_grams(self.style)
        self.gan = GanObjective.from_config(config.gan, penalty_interval=config.engine.penalty_interval)
        self._train: HRCropDataset | None = None
        self._validation: list[tuple[str, torch.Tensor]] | None = None

    @classmethod
    def check_data(cls, config: FastStyleConfig) -> None:
        super().check_data(config)
        if not config.style_image:
            raise ConfigError("no style image: pass --set style_image=PATH (the painting to learn)")

    # ----------------------------------------------------------------- nets and data
    def build_generator(self) -> nn.Module:
        net = build_net(self.config.net, **self.config.net_options)
        if net.in_channels != 3 or net.out_channels != 3:
            raise ConfigError(f"style transfer maps colour to colour: {self.config.net} must have 3 channels in and out")
        for side in (self.config.patch_size, self.config.resolution):
            if side % net.multiple_of:
                raise ConfigError(
                    f"{self.config.net} needs sizes that are multiples of {net.multiple_of}; "
                    f"patch_size {self.config.patch_size} and resolution {self.config.resolution} must be"
                )
        return net

    def build_discriminator(self) -> nn.Module | None:
        if self.config.gan.weight <= 0:
            return None
        return build_net(self.config.discriminator, **self.config.discriminator_options)

    def train_dataset(self) -> Dataset:
        if self._train is None:  # decoding every photo takes seconds: do it once
            self._train = HRCropDataset(
                root=train_folder(self.config.data),
                patch_size=self.config.patch_size,
                scale_range=tuple(self.config.scale_range),
                upright=True,
            )
        return self._train

    def validation_items(self) -> list[tuple[str, torch.Tensor]]:
        """The held-out photos as (name, (3, S, S) in [0, 1]) centre squares."""
        if self._validation is None:
            self._validation = held_out_squares(held_out_folder(self.config.data, self.config.val_data), self.config.resolution)
        return self._validation

    def prepare_batch(self, batch: torch.Tensor, generator: torch.Generator) -> Batch:
        content = batch.to(self.device, non_blocking=True)
        prepared = {"content": content}
        if self.config.gan.weight > 0:
            # Style patches from the painting at a random scale between half and full style_size,
            # so D learns strokes, not the size of one rendering.
            factor = 0.5 + 0.5 * float(torch.rand((), generator=generator, device=generator.device))
            height, width = self.style.shape[-2:]
            factor = max(factor, self.config.gan_patch / min(height, width))
            size = (max(self.config.gan_patch, round(height * factor)), max(self.config.gan_patch, round(width * factor)))
            scaled = nn.functional.interpolate(self.style, size=size, mode="bilinear", antialias=True)
            patches = random_crops(scaled.expand(content.shape[0], -1, -1, -1), self.config.gan_patch, generator)
            prepared["style_patches"] = _to_net(patches)
            prepared["crop_seed"] = torch.randint(0, 2**31 - 1, (), generator=generator, device=generator.device)
        return prepared

    def generate(self, generator_net: nn.Module, batch: Batch) -> torch.Tensor:
        return generator_net(_to_net(batch["content"]))

    def _fake_patches(self, batch: Batch, fake: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(int(batch["crop_seed"]))
        return random_crops(fake, self.config.gan_patch, generator)

    # ----------------------------------------------------------------- losses
    def generator_loss(self, batch: Batch, fake: torch.Tensor, discriminator: nn.Module | None) -> Batch:
        config = self.config
        stylised = _from_net(fake)
        with torch.no_grad():
            content_features = self.features(batch["content"])
        features = self.features(stylised)
        terms = {
            "l_g_content": config.content_weight * self.content_loss.compare(features, content_features),
            "l_g_style": config.style_weight * self.style_loss.compare(features, self.style_grams),
        }
        if config.tv_weight > 0:
            terms["l_g_tv"] = config.tv_weight * total_variation(stylised)
        if discriminator is not None:
            terms["l_g_gan"] = self.gan.generator_term(discriminator, self._fake_patches(batch, fake))
        return terms

    def discriminator_loss(
        self, batch: Batch, fake: torch.Tensor, discriminator: nn.Module, *, regularize: bool
    ) -> Batch:
        return self.gan.discriminator_terms(
            discriminator, batch["style_patches"], self._fake_patches(batch, fake), regularize=regularize
        )

    def after_discriminator_step(self, discriminator: nn.Module) -> None:
        self.gan.after_discriminator_step(discriminator)

    # ----------------------------------------------------------------- validation
    def _validation_batches(self, limit: int | None = None):
        items = self.validation_items()[:limit]
        batch_size = max(1, self.config.engine.batch_size)
        for start in range(0, len(items), batch_size):
            yield torch.stack([image for _, image in items[start : start + batch_size]]).to(self.device)

    def stylise(self, generator_net: nn.Module, photos: torch.Tensor) -> torch.Tensor:
        """Stylised (B, 3, H, W) in [0, 1] of photos (B, 3, H, W) in [0, 1]."""
        return _from_net(generator_net(_to_net(photos))).clamp(0.0, 1.0)

    @torch.no_grad()
    def validate(self, generator_net: nn.Module) -> dict[str, float]:
        if not self.validation_items():
            return {}
        config = self.config
        sums = {"content_distance": 0.0, "style_distance": 0.0, "loss": 0.0}
        for photos in self._validation_batches():
            stylised = self.stylise(generator_net, photos)
            # One VGG pass per batch serves the distances and the loss.
            features, content_features = self.features(stylised), self.features(photos)
            for name, values in self.distance.from_features(features, content_features, self.distance_grams).items():
                sums[name] += float(values.sum())
            # The training objective without the adversarial term, per image.
            loss = config.content_weight * self.content_loss.compare(features, content_features)
            loss = loss + config.style_weight * self.style_loss.compare(features, self.style_grams)
            if config.tv_weight > 0:
                loss = loss + config.tv_weight * total_variation(stylised)
            sums["loss"] += float(loss) * photos.shape[0]
        count = len(self.validation_items())
        metrics = {name: total / count for name, total in sums.items()}
        metrics["neg_loss"] = -metrics["loss"]
        metrics["images"] = float(count)
        return metrics

    @torch.no_grad()
    def sample_images(self, generator_net: nn.Module) -> torch.Tensor:
        if self.validation_items():
            photos = next(self._validation_batches(limit=4))[:4]
        else:
            examples = [self.train_dataset()[index] for index in range(min(4, len(self.train_dataset())))]
            photos = torch.stack(examples).to(self.device)
        return torch.stack([photos, self.stylise(generator_net, photos)], dim=1).flatten(0, 1)

    # ----------------------------------------------------------------- export
    @classmethod
    def export_fields(cls, config: FastStyleConfig, generator_net: nn.Module, direction: str = "") -> dict[str, Any]:
        return {
            "task": cls.name,
            # Instance norm takes statistics over the whole image: tiles would each get their own.
            "whole_image": True,
            "style": config.style_name or Path(config.style_image).stem,
            **training_provenance(config),
            "license": (
                f"weights Apache-2.0; training photos {config.data_license or 'unrecorded'}; "
                f"style image {config.style_license or 'unrecorded'}"
            ),
        }
