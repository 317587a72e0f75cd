"""What CycleGAN and pix2pix share: the config fields of two-domain data, the [-1, 1] net
range, paired validation against the identity baseline, samples and export metadata fields.

Images enter the tasks as (B, C, H, W) in [0, 1] (C = 3, or 1 for gray domains) and the
ResNet/U-Net generators work in [-1, 1] with a tanh output, as in the reference implementation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader

from img2img.data.two_domain import PairedDataset, parse_background
from img2img.engine.config import GanConfig, RunConfig, require
from img2img.errors import ConfigError
from img2img.metrics import VGGFeatureDistance, psnr, ssim
from img2img.nets import NETS, build_net


@dataclasses.dataclass
class TranslationConfig(RunConfig):
    """Fields of every translation task (see `CycleGANConfig`, `Pix2PixConfig`)."""

    channels: Literal[1, 3] = 3  # 3: RGB domains; 1: gray domains (the exported model still takes RGB)
    # Transparent pixels are composited onto this colour when images are read (white, black,
    # gray, #rrggbb or r,g,b); the exported model records it and the runtime does the same.
    background: str = "white"
    load_size: int = 286  # images are resized to load_size x load_size...
    crop_size: int = 256  # ...then randomly cropped to crop_size and flipped (reference: 286/256)
    flip: bool = True
    domain_a: str = "A"  # domain names, recorded in the exported models ("google", "twitter")
    domain_b: str = "B"
    net: str = "resnet_9blocks"
    net_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. {base_channels = 32}
    discriminator: str = "patchgan_70"
    discriminator_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    gan: GanConfig = dataclasses.field(default_factory=lambda: GanConfig(loss="lsgan", weight=1.0))
    val_max_images: int = 400  # validation scores at most this many held-out pairs
    # Validation also scores the VGG19 feature distance of scripts/evaluate_translation.py
    # (vgg_distance, identity_vgg_distance, and vgg_gain: identity's less the model's, above 0
    # when an output is nearer its true target than its input was), a few seconds more each.
    val_vgg: bool = False
    data_name: str = ""  # recorded in the exported model's metadata
    data_license: str = ""
    # The exported weights' license; share-alike training data may bind it (OpenMoji's CC-BY-SA).
    weights_license: str = "Apache-2.0"
    # The model fills what its input leaves transparent (colouring line art): the runtime writes
    # its outputs opaque instead of keeping the input's transparency (metadata "opaque_output").
    opaque_output: bool = False

    def __post_init__(self) -> None:
        require(self.crop_size <= self.load_size, f"crop_size {self.crop_size} must not exceed load_size {self.load_size}")
        parse_background(self.background)
        NETS.require(self.net, key="net")
        NETS.require(self.discriminator, key="discriminator")


def to_net(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> the generators' [-1, 1]."""
    return images * 2.0 - 1.0


def from_net(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return ((images + 1.0) / 2.0).clamp(0.0, 1.0)


def as_rgb(images: torch.Tensor) -> torch.Tensor:
    """(B, 1 or 3, H, W) -> (B, 3, H, W): gray repeated, so metrics and grids take it."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def build_translation_generator(config: TranslationConfig) -> nn.Module:
    channels = {"in_channels": config.channels, "out_channels": config.channels}
    net = build_net(config.net, **(channels | config.net_options))
    if config.crop_size % net.multiple_of:
        raise ConfigError(
            f"crop_size {config.crop_size} must be a multiple of {net.multiple_of} for {config.net}; "
            "change crop_size or the net's depth (net_options)"
        )
    return net


def build_translation_discriminator(config: TranslationConfig, in_channels: int) -> nn.Module:
    return build_net(config.discriminator, **({"in_channels": in_channels} | config.discriminator_options))


def split_folder(root: str, split: str) -> Path:
    """`root/split` ("train", "val") when that folder exists, else `root` itself."""
    path = Path(root)
    return path / split if (path / split).is_dir() else path


def existing(path: str) -> Path | None:
    return Path(path) if path and Path(path).is_dir() else None


def paired_batches(
    root_a: Path, root_b: Path, config: TranslationConfig, batch_size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(a, b) batches of the held-out pairs, at most `val_max_images`, in [0, 1], on `device`."""
    pairs = PairedDataset(
        root_a,
        root_b,
        load_size=config.crop_size,
        crop_size=config.crop_size,
        channels=config.channels,
        background=parse_background(config.background),
        augment=False,
    )
    count = min(len(pairs), config.val_max_images)
    subset = torch.utils.data.Subset(pairs, range(count))
    for batch in DataLoader(subset, batch_size=batch_size, shuffle=False):
        yield batch["a"].to(device), batch["b"].to(device)


@torch.no_grad()
def score_translation(
    translate: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    suffix: str = "",
    distance: VGGFeatureDistance | None = None,
) -> dict[str, float]:
    """Mean PSNR/SSIM (RGB, 8-bit rounded) of translate(source) against the true target, and of
    the identity baseline (the source itself), over the batches of (source, target) in [0, 1];
    with `distance`, the VGG19 feature distance of both too, and vgg_gain (identity's less the
    output's)."""
    metrics: list[tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = [("psnr", psnr), ("ssim", ssim)]
    if distance is not None:
        # On 8-bit levels, as the evaluation script scores the saved images.
        metrics.append(("vgg_distance", lambda image, target: distance((image * 255).round() / 255, target)))
    sums: dict[str, float] = {}
    count = 0
    for source, target in batches:
        output = translate(source)
        for prefix, image in (("", output), ("identity_", source)):
            for name, metric in metrics:
                key = f"{prefix}{name}{suffix}"
                sums[key] = sums.get(key, 0.0) + float(metric(as_rgb(image), as_rgb(target)).sum())
        count += source.shape[0]
    if not count:
        return {}
    scores = {name: total / count for name, total in sums.items()}
    if distance is not None:
        scores[f"vgg_gain{suffix}"] = scores[f"identity_vgg_distance{suffix}"] - scores[f"vgg_distance{suffix}"]
    return scores


def validation_distance(config: TranslationConfig, device: torch.device) -> VGGFeatureDistance | None:
    """The VGG19 feature distance validation scores with where `config.val_vgg` asks for it."""
    return VGGFeatureDistance().to(device) if config.val_vgg else None


def translation_fields(task: str, config: TranslationConfig, *, domains: str) -> dict[str, Any]:
    """The `ModelInfo` fields every translation model exports (the runtime reads task,
    background, whole_image, opaque_output and domains); the task adds "data"."""
    return {
        "task": "translate",
        "trained_as": task,
        "domains": domains,
        "background": parse_background(config.background),
        # Instance-normalised nets depend on whole-image statistics: tiles would change them.
        "whole_image": True,
        "opaque_output": config.opaque_output,
        "size": f"trained on {config.crop_size}x{config.crop_size} crops",
        "license": f"weights {config.weights_license}; training data {config.data_license or 'unrecorded'}",
    }
