"""Arbitrary style transfer: train the decoder of `AdaINNet` (Huang & Belongie, 2017).

The VGG19 encoder f is frozen; only the decoder g learns. Per step, with a photo crop c and a
style crop s (a painting from the style folder, or with probability `photo_style_fraction`
another photo, so plain photographic statistics are covered too):

    t = AdaIN(f(c), f(s));  y = g(t)
    content: MSE(f(y), t) / mean(t^2) at relu4_1   (the decoder must reproduce the target features)
    style:   sum over relu1_1 ... relu4_1 of [MSE(mean(f_l(y)), mean(f_l(s)))
                 + MSE(std(f_l(y)), std(f_l(s)))] / mean(mean(f_l(s))^2 + std(f_l(s))^2)
    identity: mean |g(f(c)) - c|                    (the decoder's reconstruction of the photo)
    G: content_weight * content + style_weight * style + identity_weight * identity
       (the paper's lambda = style_weight = 10; it has no identity term)

The identity term (the pixel part of SANet's identity loss, Park & Lee, 2019) trains g to invert
f: the content term alone only asks g(f(c)) to share c's relu4_1 features, which leaves its
colours free (measured: 0.26 mean absolute error after 1,500 steps without it). The net gives
the photo back exactly at `alpha` 0 whatever the decoder (`AdaINNet.decode_towards` adds back
what it loses), but between 0 and 1 it blends decoded features, so the better g inverts f, the
more faithful the intermediate strengths. Its decoding of f(c) runs in the same decoder call as
g(t), on a batch twice the size. Validation reports the reconstruction error it trains down.

Each content and style term is divided by the size of its target features (not differentiated). The paper's VGG19
was rescaled so every layer's mean activation is about 1; the default weights here are the
original ones, whose activations grow from tens at relu1_1 to hundreds at relu4_1, so without
this the colour statistics of relu1_1 would count for almost nothing (measured: a decoder trained
1,000 steps that way still turned every photo dark blue, whatever the style).

The loss is computed by a second copy of the same frozen encoder, which the net's is loaded from.
Validation stylises every held-out photo (centre squares of `resolution`) with every held-out
style (the style folder's val/ subfolder, else its images) and reports the same loss and the
`img2img.metrics.style` content and style distances the comparison script uses.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from img2img.data import HRCropDataset
from img2img.engine.config import OptimizerConfig, RunConfig, require
from img2img.engine.task import Batch, Task
from img2img.errors import ConfigError
from img2img.losses import VGG19Features
from img2img.metrics.style import STYLE_DISTANCE_LAYERS, StyleDistance
from img2img.nets import NETS, build_net
from img2img.nets.adain import CONVENTIONS, ENCODER_LAYERS, AdaINNet, channel_mean_std
from img2img.tasks import TASKS
from img2img.tasks.base import held_out_folder, train_folder, training_provenance
from img2img.tasks.style import held_out_squares


@dataclasses.dataclass
class AdaINConfig(RunConfig):
    """Options of `img2img train adain` (fill with --config FILE.toml or --set key=value)."""

    data: str = ""  # folder of content photos; with train/ and val/ subfolders those are used
    val_data: str = ""  # held-out photos; empty = <data>/val when it exists
    style_data: str = ""  # folder of style images (paintings); with train/ and val/ subfolders those are used
    photo_style_fraction: float = 0.2  # share of training styles that are other photos
    patch_size: int = 256  # side of the content and style crops
    scale_range: tuple[float, float] = (0.4, 1.0)  # images are shrunk by a factor in this range first
    resolution: int = 256  # side of the held-out squares
    style_size: int = 256  # side the runtime scales a style image to (recorded in the export)
    net: str = "adain"
    net_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    vgg_weights: str = ""  # a torchvision vgg19 state dict; empty = the default ImageNet VGG19
    content_weight: float = 1.0
    style_weight: float = 10.0
    identity_weight: float = 0.0  # L1 of the photo decoded back from its own features
    data_name: str = ""  # recorded in the exported model's metadata
    data_license: str = ""
    style_data_license: str = ""
    optim_g: OptimizerConfig = dataclasses.field(default_factory=lambda: OptimizerConfig(lr=1e-4))

    def __post_init__(self) -> None:
        require(
            min(self.patch_size, self.resolution, self.style_size) >= 16,
            f"patch_size, resolution and style_size must be at least 16 pixels, got "
            f"{self.patch_size}, {self.resolution} and {self.style_size}",
        )
        require(
            0.0 <= self.photo_style_fraction <= 1.0,
            f"photo_style_fraction must be between 0 and 1, got {self.photo_style_fraction}",
        )
        require(self.identity_weight >= 0.0, f"identity_weight must be at least 0, got {self.identity_weight}")
        NETS.require(self.net, key="net")


class ContentStylePairs(Dataset):
    """A random content crop with a random style crop.

    Item i is {"content": crop of photo i, "style": crop of a random painting, or with
    probability `photo_style_fraction` of a random photo}, each (3, S, S) float32 in [0, 1];
    the draws follow torch's global generator.
    """

    def __init__(self, photos: HRCropDataset, paintings: HRCropDataset, photo_style_fraction: float) -> None:
        self.photos = photos
        self.paintings = paintings
        self.photo_style_fraction = photo_style_fraction

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        source = self.photos if float(torch.rand(())) < self.photo_style_fraction else self.paintings
        style = source[int(torch.randint(0, len(source), ()))]
        return {"content": self.photos[index], "style": style}


def style_statistics_loss(output_features: dict[str, torch.Tensor], style_features: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over the encoder's layers of MSE between channel means plus MSE between channel
    standard deviations of the output's and the style's features (each (B, C, H, W)), each
    layer's term divided by the mean square of the style's statistics there (no gradient)."""
    total = 0.0
    for name in ENCODER_LAYERS:
        output_mean, output_std = channel_mean_std(output_features[name])
        style_mean, style_std = channel_mean_std(style_features[name])
        scale = (style_mean.pow(2) + style_std.pow(2)).mean().detach()
        error = nn.functional.mse_loss(output_mean, style_mean) + nn.functional.mse_loss(output_std, style_std)
        total = total + error / scale
    return total


def content_feature_loss(output_features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE between the output's relu4_1 features and the AdaIN target, divided by the target's
    mean square (no gradient)."""
    target = target.detach()
    return nn.functional.mse_loss(output_features, target) / target.pow(2).mean()


@TASKS.register("adain")
class AdaINStyle(Task):
    name = "adain"
    config_class = AdaINConfig
    primary_metric = "neg_loss"
    sample_columns = 3  # photo, style, stylised

    def __init__(self, config: AdaINConfig, device: torch.device) -> None:
        super().__init__(config, device)
        weights = config.vgg_weights or None
        # The loss's encoder: the same frozen VGG19 as the net's, also the source of its weights.
        self.encoder = VGG19Features(layers=ENCODER_LAYERS, weights=weights).to(device)
        self.distance = StyleDistance(VGG19Features(layers=STYLE_DISTANCE_LAYERS, weights=weights).to(device))
        self._train: ContentStylePairs | None = None
        self._validation: tuple[list[tuple[str, torch.Tensor]], list[tuple[str, torch.Tensor]]] | None = None

    @classmethod
    def check_data(cls, config: AdaINConfig) -> None:
        super().check_data(config)
        if not config.style_data:
            raise ConfigError("no style images: pass --set style_data=DIR (a folder of paintings)")

    # ----------------------------------------------------------------- nets and data
    def build_generator(self) -> AdaINNet:
        if not isinstance(build_net(self.config.net, **self.config.net_options), AdaINNet):
            raise ConfigError(f"{self.config.net} is not an AdaIN net; choose adain or adain_tiny")
        # Built for the input convention of the loaded VGG19 weights, then given them.
        convention = next(name for name, rules in CONVENTIONS.items() if rules == self.encoder.convention)
        net = build_net(self.config.net, **({"vgg_convention": convention} | self.config.net_options))
        net.encoder.load_state_dict(self.encoder.state_dict())
        for side in (self.config.patch_size, self.config.resolution, self.config.style_size):
            if side % net.multiple_of:
                raise ConfigError(
                    f"{self.config.net} needs sizes that are multiples of {net.multiple_of}; patch_size, "
                    f"resolution and style_size must be (got {self.config.patch_size}, "
                    f"{self.config.resolution}, {self.config.style_size})"
                )
        return net

    def _crops(self, root: Path) -> HRCropDataset:
        return HRCropDataset(
            root=root, patch_size=self.config.patch_size, scale_range=tuple(self.config.scale_range), upright=True
        )

    def train_dataset(self) -> ContentStylePairs:
        if self._train is None:  # decoding every image takes seconds: do it once
            photos = self._crops(train_folder(self.config.data))
            paintings = self._crops(train_folder(self.config.style_data))
            self._train = ContentStylePairs(photos, paintings, self.config.photo_style_fraction)
        return self._train

    def validation_items(self) -> tuple[list[tuple[str, torch.Tensor]], list[tuple[str, torch.Tensor]]]:
        """(held-out photos, held-out styles), each a list of (name, (3, S, S) in [0, 1])."""
        if self._validation is None:
            photos_root = held_out_folder(self.config.data, self.config.val_data)
            styles_root = held_out_folder(self.config.style_data) or Path(self.config.style_data)
            self._validation = (
                held_out_squares(photos_root, self.config.resolution),
                held_out_squares(styles_root, self.config.resolution),
            )
        return self._validation

    def prepare_batch(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> Batch:
        return {name: images.to(self.device, non_blocking=True) for name, images in batch.items()}

    def generate(self, generator_net: AdaINNet, batch: Batch) -> Batch:
        """{"target": AdaIN features t (B, 512, S/8, S/8), "image": g(t) (B, 3, S, S)}, plus
        "restored": g(f(content)) (B, 3, S, S), nominally in [0, 1], when the identity term is on."""
        if not self.config.identity_weight:
            target, image = generator_net.stylise(batch["content"], batch["style"])
            return {"target": target, "image": image}
        content_features = generator_net.encode(batch["content"])["relu4_1"]
        target = generator_net.adain(content_features, generator_net.encode(batch["style"])["relu4_1"])
        image, restored = generator_net.decode(torch.cat([target, content_features])).chunk(2)
        return {"target": target, "image": image, "restored": restored}

    # ----------------------------------------------------------------- losses
    def _losses(self, style: torch.Tensor, target: torch.Tensor, image: torch.Tensor) -> Batch:
        with torch.no_grad():
            style_features = self.encoder(style)
        output_features = self.encoder(image)
        return {
            "l_g_content": self.config.content_weight * content_feature_loss(output_features["relu4_1"], target),
            "l_g_style": self.config.style_weight * style_statistics_loss(output_features, style_features),
        }

    def generator_loss(self, batch: Batch, fake: Batch, discriminator: nn.Module | None) -> Batch:
        losses = self._losses(batch["style"], fake["target"], fake["image"])
        if "restored" in fake:
            losses["l_g_identity"] = self.config.identity_weight * nn.functional.l1_loss(
                fake["restored"].float(), batch["content"]
            )
        return losses

    # ----------------------------------------------------------------- validation
    def _pairs(self):
        """(photos (B, 3, S, S), styles (B, 3, S, S), style indices (B,)) batches: every held-out
        photo with every held-out style."""
        photos, styles = self.validation_items()
        pairs = [(photo, index) for _, photo in photos for index in range(len(styles))]
        batch_size = max(1, self.config.engine.batch_size)
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            indices = torch.tensor([index for _, index in chunk])
            yield (
                torch.stack([photo for photo, _ in chunk]).to(self.device),
                torch.stack([styles[index][1] for index in indices.tolist()]).to(self.device),
                indices.to(self.device),
            )

    @torch.no_grad()
    def validate(self, generator_net: AdaINNet) -> dict[str, float]:
        photos, styles = self.validation_items()
        if not photos or not styles:
            return {}
        # Each held-out style's Gram matrices, once: (S, C, C) per layer.
        style_grams = self.distance.style_grams(torch.stack([style for _, style in styles]).to(self.device))
        sums = {"content_distance": 0.0, "style_distance": 0.0, "loss": 0.0}
        count = 0
        for content, style, indices in self._pairs():
            target, image = generator_net.stylise(content, style)
            terms = self._losses(style, target, image)
            sums["loss"] += float(sum(terms.values())) * content.shape[0]
            grams = {name: gram[indices] for name, gram in style_grams.items()}
            for name, values in self.distance(image.clamp(0.0, 1.0), content, grams).items():
                sums[name] += float(values.sum())
            count += content.shape[0]
        metrics = {name: total / count for name, total in sums.items()}
        metrics["neg_loss"] = -metrics["loss"]
        metrics["pairs"] = float(count)
        metrics["reconstruction_error"] = self.reconstruction_error(generator_net, [photo for _, photo in photos])
        return metrics

    @torch.no_grad()
    def reconstruction_error(self, generator_net: AdaINNet, photos: list[torch.Tensor]) -> float:
        """Mean absolute error in [0, 1] of the decoder's reconstruction g(f(c)) of each photo:
        what the net adds back below alpha 1 (`AdaINNet.decode_towards`), so the smaller it is,
        the less the intermediate strengths lean on that correction.

        Args:
            photos: held-out (3, S, S) images in [0, 1].
        """
        total = 0.0
        for start in range(0, len(photos), max(1, self.config.engine.batch_size)):
            content = torch.stack(photos[start : start + self.config.engine.batch_size]).to(self.device)
            restored = generator_net.decode(generator_net.encode(content)["relu4_1"]).clamp(0.0, 1.0)
            total += float((restored - content).abs().mean(dim=(1, 2, 3)).sum())
        return total / len(photos)

    @torch.no_grad()
    def sample_images(self, generator_net: AdaINNet) -> torch.Tensor:
        photos, styles = self.validation_items()
        if photos and styles:
            # Four photos, each with a different style where there are several.
            chosen = [(photos[i % len(photos)][1], styles[i % len(styles)][1]) for i in range(4)]
            content = torch.stack([photo for photo, _ in chosen]).to(self.device)
            style = torch.stack([style for _, style in chosen]).to(self.device)
        else:
            examples = [self.train_dataset()[index] for index in range(min(4, len(self.train_dataset())))]
            content = torch.stack([example["content"] for example in examples]).to(self.device)
            style = torch.stack([example["style"] for example in examples]).to(self.device)
        stylised = generator_net(content, style).clamp(0.0, 1.0)
        return torch.stack([content, style, stylised], dim=1).flatten(0, 1)

    # ----------------------------------------------------------------- export
    @classmethod
    def export_fields(cls, config: AdaINConfig, generator_net: nn.Module, direction: str = "") -> dict[str, Any]:
        return {
            "task": "style",
            # AdaIN takes the content's statistics over the whole image.
            "whole_image": True,
            "style_size": config.style_size,
            **training_provenance(config),
            "license": (
                f"weights Apache-2.0 (decoder; encoder: ImageNet VGG19); training photos "
                f"{config.data_license or 'unrecorded'}; style images {config.style_data_license or 'unrecorded'}"
            ),
        }
