"""Noise-to-image generators and their discriminators (face generation).

- DCGAN: Radford et al., 2016, "Unsupervised Representation Learning with Deep Convolutional
  Generative Adversarial Networks". G: a 4x4 projection of z, then stride-2 transposed
  convolutions with BatchNorm and ReLU, tanh out; D: stride-2 convolutions with BatchNorm (not on
  the first) and LeakyReLU(0.2), a 4x4 convolution to one logit. The baseline.
- ResGAN: the residual nets of SNGAN (Miyato et al., 2018, "Spectral Normalization for Generative
  Adversarial Networks"), SAGAN (Zhang et al., 2019) and BigGAN (Brock et al., 2019). G:
  pre-activation residual blocks that upsample by nearest resize + 3x3 convolution (no
  checkerboard), class-conditional BatchNorm; D: residual blocks that downsample by average
  pooling, spectral norm on every layer, global sum pooling and a projection head (Miyato and
  Koyama, 2018, "cGANs with Projection Discriminator").

Both families take an optional SAGAN self-attention block at one resolution (`attention_at`,
e.g. 32 for 32x32 features; 0 for none) and optional spectral norm, so the ablations of the
modern recipe are options of one net rather than separate code.

Contract: G(z, labels) maps z (B, latent_dim) ~ N(0, I) and, when num_classes > 0, labels (B,)
int64 in [0, num_classes) to images (B, 3, R, R) in [-1, 1] (tanh); D(x, labels) maps images
(B, 3, R, R) in [-1, 1] to logits (B, 1). Unconditional nets ignore `labels`.

Example:
    >>> import torch
    >>> from img2img.nets import build_net
    >>> g = build_net("resgan_generator_tiny", num_classes=3)
    >>> g(torch.randn(2, g.latent_dim), torch.tensor([0, 2])).shape
    torch.Size([2, 3, 16, 16])
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from img2img.contract import LATENT, LATENT_LABEL
from img2img.nets.layers import SelfAttention, init_weights, spectral_norm_if
from img2img.nets.registry import NETS

# Widths stop doubling at 8 * base_channels, as in DCGAN and SNGAN.
MAX_WIDTH_FACTOR = 8


def _check_resolution(resolution: int, smallest: int) -> int:
    """The number of 2x steps between 4x4 and `resolution`; raises unless it is a power of 2."""
    steps = int(math.log2(resolution)) - 2 if resolution > 0 else 0
    if resolution < smallest or 2 ** (steps + 2) != resolution:
        raise ValueError(f"resolution must be a power of 2 of at least {smallest}, got {resolution}")
    return steps


def _check_attention(attention_at: int, resolution: int) -> None:
    if attention_at and not (8 <= attention_at <= resolution and attention_at & (attention_at - 1) == 0):
        raise ValueError(
            f"attention_at must be 0 (no self-attention) or a power of 2 from 8 to {resolution}, got {attention_at}"
        )


def _record(net: nn.Module, **hparams: Any) -> int:
    """Checks a net's resolution and attention side, records its hyperparameters (so a checkpoint
    rebuilds it) and the attributes every GAN net exposes; returns the number of 2x steps between
    4x4 and the resolution."""
    steps = _check_resolution(hparams["resolution"], 16)
    _check_attention(hparams["attention_at"], hparams["resolution"])
    net.hparams = hparams
    net.num_classes, net.resolution = hparams["num_classes"], hparams["resolution"]
    return steps


def _check_labels(net: nn.Module, count: int, labels: Tensor | None) -> None:
    """Conditional nets need one label per sample; checked outside tracing only."""
    if net.num_classes == 0 or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    if labels is None or labels.shape != (count,):
        got = "none" if labels is None else f"shape {tuple(labels.shape)}"
        raise ValueError(f"{type(net).__name__} is class-conditional: pass labels of shape ({count},), got {got}")


class LatentGenerator(nn.Module):
    """What the engine, the export and the tests read from a noise-to-image generator."""

    input_range = (-1.0, 1.0)  # of the output images; the export maps them to [0, 1]
    scale = 1
    multiple_of = 1
    min_size = 1
    latent_dim: int
    num_classes: int
    resolution: int

    @property
    def inputs(self) -> tuple[str, ...]:
        """The exported graph's inputs (img2img.contract): z, and the class label when conditional."""
        return LATENT_LABEL if self.num_classes else LATENT

    def _check_latent(self, z: Tensor) -> None:
        if not torch.jit.is_tracing() and (z.ndim != 2 or z.shape[1] != self.latent_dim):
            raise ValueError(f"{type(self).__name__} expects z of shape (B, {self.latent_dim}), got {tuple(z.shape)}")


# --- DCGAN ---------------------------------------------------------------------------------------


@NETS.register("DCGANGenerator")
class DCGANGenerator(LatentGenerator):
    """DCGAN generator: z -> 4x4 by a transposed convolution, then one stride-2 transposed
    convolution (BatchNorm, ReLU) per doubling, tanh out.

    Args:
        latent_dim: size of z.
        base_channels: width at the output resolution; doubled per step down to 4x4, up to 8x.
        resolution: output side, a power of 2 >= 16.
        num_classes: > 0 makes the net class-conditional: a learned class embedding of
            `latent_dim` values is concatenated to z (the conditional GAN of Mirza and Osindero).
        attention_at: side of the feature map after which a self-attention block sits; 0: none.
        spectral_norm: spectrally normalise every (transposed) convolution.

    Shape:
        z (B, latent_dim), labels (B,) -> (B, 3, resolution, resolution) in [-1, 1].
    """

    arch = "DCGANGenerator"

    def __init__(
        self,
        *,
        latent_dim: int = 128,
        base_channels: int = 64,
        resolution: int = 64,
        num_classes: int = 0,
        attention_at: int = 0,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        steps = _record(
            self,
            latent_dim=latent_dim,
            base_channels=base_channels,
            resolution=resolution,
            num_classes=num_classes,
            attention_at=attention_at,
            spectral_norm=spectral_norm,
        )
        self.latent_dim = latent_dim
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        # widths[i] is the width at side 4 * 2**i; the last layer gives the 3 colour channels.
        widths = [base_channels * min(2 ** (steps - 1 - index), MAX_WIDTH_FACTOR) for index in range(steps)]
        in_width = latent_dim * (2 if num_classes else 1)
        layers: list[nn.Module] = [
            spectral_norm_if(nn.ConvTranspose2d(in_width, widths[0], 4, 1, 0, bias=False), spectral_norm),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        ]
        side = 4
        for index in range(1, steps + 1):
            if side == attention_at:
                layers.append(SelfAttention(widths[index - 1], spectral_norm=spectral_norm))
            last = index == steps
            out_width = 3 if last else widths[index]
            layers.append(
                spectral_norm_if(nn.ConvTranspose2d(widths[index - 1], out_width, 4, 2, 1, bias=last), spectral_norm)
            )
            layers += [nn.Tanh()] if last else [nn.BatchNorm2d(out_width), nn.ReLU()]
            side *= 2
        self.body = nn.Sequential(*layers)
        init_weights(self, "normal", 0.02)
        if self.embed is not None:
            # The class code enters beside z, so it starts at z's scale, N(0, 1).
            nn.init.normal_(self.embed.weight)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        self._check_latent(z)
        _check_labels(self, z.shape[0], labels)
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.body(z[:, :, None, None])


@NETS.register("DCGANDiscriminator")
class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: stride-2 4x4 convolutions from the image down to 4x4 (BatchNorm on
    all but the first, LeakyReLU 0.2), then a 4x4 convolution to one logit.

    Args:
        base_channels: width of the first layer; doubled per layer up to 8x.
        resolution: input side, a power of 2 >= 16.
        num_classes: > 0 adds a projection term <embed(y), sum-pooled features> to the logit.
        attention_at: side of the feature map after which a self-attention block sits; 0: none.
        spectral_norm: spectrally normalise every layer (then BatchNorm is dropped, as in SNGAN).

    Shape:
        (B, 3, resolution, resolution), labels (B,) -> (B, 1) logits.
    """

    arch = "DCGANDiscriminator"

    def __init__(
        self,
        *,
        base_channels: int = 64,
        resolution: int = 64,
        num_classes: int = 0,
        attention_at: int = 0,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        steps = _record(
            self,
            base_channels=base_channels,
            resolution=resolution,
            num_classes=num_classes,
            attention_at=attention_at,
            spectral_norm=spectral_norm,
        )
        self.min_size = resolution  # the 4x4 head needs the full-size input
        widths = [base_channels * min(2**index, MAX_WIDTH_FACTOR) for index in range(steps)]
        layers: list[nn.Module] = []
        in_width, side = 3, resolution
        for index, width in enumerate(widths):
            layers.append(spectral_norm_if(nn.Conv2d(in_width, width, 4, 2, 1, bias=index == 0 or spectral_norm), spectral_norm))
            if index > 0 and not spectral_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.LeakyReLU(0.2))
            side //= 2
            if side == attention_at:
                layers.append(SelfAttention(width, spectral_norm=spectral_norm))
            in_width = width
        self.body = nn.Sequential(*layers)
        self.head = spectral_norm_if(nn.Conv2d(in_width, 1, 4, 1, 0), spectral_norm)
        self.embed = spectral_norm_if(nn.Embedding(num_classes, in_width), spectral_norm) if num_classes else None
        init_weights(self, "normal", 0.02)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        _check_labels(self, x.shape[0], labels)
        features = self.body(x)
        logits = self.head(features).flatten(1)
        if self.embed is not None:
            logits = logits + (self.embed(labels) * features.sum(dim=(2, 3))).sum(dim=1, keepdim=True)
        return logits


# --- ResGAN --------------------------------------------------------------------------------------


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose gain and bias come from the class (BigGAN): y = BN(x) * (1 + g[c]) + b[c].

    With num_classes = 0 it is a plain affine BatchNorm. The class tables start at zero, so every
    class starts from the same unconditional normalisation.
    """

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.norm = nn.BatchNorm2d(channels, affine=num_classes == 0)
        if num_classes:
            self.gain = nn.Embedding(num_classes, channels)
            self.bias = nn.Embedding(num_classes, channels)

    def reset_class_tables(self) -> None:
        if self.num_classes:
            nn.init.zeros_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, labels: Tensor | None) -> Tensor:
        out = self.norm(x)
        if self.num_classes:
            out = out * (1 + self.gain(labels)[:, :, None, None]) + self.bias(labels)[:, :, None, None]
        return out


class _GeneratorBlock(nn.Module):
    """BN-ReLU-up-conv3-BN-ReLU-conv3, plus up-conv1 on the shortcut: (B, C, H, W) -> (B, C', 2H, 2W)."""

    def __init__(self, in_width: int, out_width: int, num_classes: int, sn: bool) -> None:
        super().__init__()
        self.norm1 = ConditionalBatchNorm2d(in_width, num_classes)
        self.conv1 = spectral_norm_if(nn.Conv2d(in_width, out_width, 3, padding=1), sn)
        self.norm2 = ConditionalBatchNorm2d(out_width, num_classes)
        self.conv2 = spectral_norm_if(nn.Conv2d(out_width, out_width, 3, padding=1), sn)
        self.shortcut = spectral_norm_if(nn.Conv2d(in_width, out_width, 1), sn)

    def forward(self, x: Tensor, labels: Tensor | None) -> Tensor:
        h = F.interpolate(F.relu(self.norm1(x, labels)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.norm2(self.conv1(h), labels)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _DiscriminatorBlock(nn.Module):
    """(ReLU)-conv3-ReLU-conv3-avgpool, plus conv1-avgpool on the shortcut: (B, C, H, W) ->
    (B, C', H/2, W/2). The first block of the net skips the leading ReLU (it sees the image)."""

    def __init__(self, in_width: int, out_width: int, sn: bool, *, first: bool) -> None:
        super().__init__()
        self.first = first
        self.conv1 = spectral_norm_if(nn.Conv2d(in_width, out_width, 3, padding=1), sn)
        self.conv2 = spectral_norm_if(nn.Conv2d(out_width, out_width, 3, padding=1), sn)
        self.shortcut = spectral_norm_if(nn.Conv2d(in_width, out_width, 1), sn)

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else F.relu(x)
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(h))), 2)
        # The first block pools before its 1x1 shortcut conv (cheaper, same function); later
        # ones convolve first, as SNGAN does.
        shortcut = self.shortcut(F.avg_pool2d(x, 2)) if self.first else F.avg_pool2d(self.shortcut(x), 2)
        return h + shortcut


@NETS.register("ResGANGenerator")
class ResGANGenerator(LatentGenerator):
    """Residual generator: z -> a 4x4 map by a linear layer, one upsampling residual block per
    doubling, BN-ReLU-conv3 to RGB, tanh.

    Args:
        latent_dim: size of z.
        base_channels: width at the output resolution; doubled per step down to 4x4, up to 8x.
        resolution: output side, a power of 2 >= 16.
        num_classes: > 0 makes every BatchNorm class-conditional.
        attention_at: side of the feature map after which a self-attention block sits (SAGAN
            puts it at 32 for 64x64 output); 0: none.
        spectral_norm: spectrally normalise G's layers too (SAGAN, BigGAN).

    Shape:
        z (B, latent_dim), labels (B,) -> (B, 3, resolution, resolution) in [-1, 1].
    """

    arch = "ResGANGenerator"

    def __init__(
        self,
        *,
        latent_dim: int = 128,
        base_channels: int = 64,
        resolution: int = 64,
        num_classes: int = 0,
        attention_at: int = 32,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        steps = _record(
            self,
            latent_dim=latent_dim,
            base_channels=base_channels,
            resolution=resolution,
            num_classes=num_classes,
            attention_at=attention_at,
            spectral_norm=spectral_norm,
        )
        self.latent_dim = latent_dim
        widths = [base_channels * min(2 ** (steps - index), MAX_WIDTH_FACTOR) for index in range(steps + 1)]
        self.widths = widths
        self.project = spectral_norm_if(nn.Linear(latent_dim, 4 * 4 * widths[0]), spectral_norm)
        self.blocks = nn.ModuleList(
            _GeneratorBlock(widths[index], widths[index + 1], num_classes, spectral_norm) for index in range(steps)
        )
        # Self-attention after the block whose output has side `attention_at`; nn.Identity keeps
        # the module list aligned with the blocks either way.
        self.attention = nn.ModuleList(
            SelfAttention(widths[index + 1], spectral_norm=spectral_norm) if 2 ** (index + 3) == attention_at else nn.Identity()
            for index in range(steps)
        )
        self.to_rgb = nn.Sequential(
            nn.BatchNorm2d(widths[-1]),
            nn.ReLU(),
            spectral_norm_if(nn.Conv2d(widths[-1], 3, 3, padding=1), spectral_norm),
            nn.Tanh(),
        )
        init_weights(self, "xavier", 1.0)
        for module in self.modules():
            if isinstance(module, ConditionalBatchNorm2d):
                module.reset_class_tables()

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        self._check_latent(z)
        _check_labels(self, z.shape[0], labels)
        h = self.project(z).view(z.shape[0], self.widths[0], 4, 4)
        for block, attention in zip(self.blocks, self.attention):
            h = attention(block(h, labels))
        return self.to_rgb(h)


@NETS.register("ResGANDiscriminator")
class ResGANDiscriminator(nn.Module):
    """Residual discriminator: one downsampling residual block per halving down to 4x4, ReLU,
    global sum pooling, a linear logit plus the projection <embed(y), features>.

    Args:
        base_channels: width of the first block; doubled per block up to 8x.
        resolution: input side, a power of 2 >= 16.
        num_classes: > 0 adds the projection term (Miyato and Koyama, 2018).
        attention_at: side of the feature map after which a self-attention block sits; 0: none.
        spectral_norm: spectrally normalise every layer (the SNGAN discriminator).

    Shape:
        (B, 3, resolution, resolution), labels (B,) -> (B, 1) logits.
    """

    arch = "ResGANDiscriminator"

    def __init__(
        self,
        *,
        base_channels: int = 64,
        resolution: int = 64,
        num_classes: int = 0,
        attention_at: int = 32,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        steps = _record(
            self,
            base_channels=base_channels,
            resolution=resolution,
            num_classes=num_classes,
            attention_at=attention_at,
            spectral_norm=spectral_norm,
        )
        self.min_size = resolution  # trained at one size; sum pooling would take larger ones
        widths = [base_channels * min(2**index, MAX_WIDTH_FACTOR) for index in range(steps)]
        self.blocks = nn.ModuleList(
            _DiscriminatorBlock(3 if index == 0 else widths[index - 1], width, spectral_norm, first=index == 0)
            for index, width in enumerate(widths)
        )
        self.attention = nn.ModuleList(
            SelfAttention(width, spectral_norm=spectral_norm) if resolution // 2 ** (index + 1) == attention_at else nn.Identity()
            for index, width in enumerate(widths)
        )
        self.head = spectral_norm_if(nn.Linear(widths[-1], 1), spectral_norm)
        self.embed = spectral_norm_if(nn.Embedding(num_classes, widths[-1]), spectral_norm) if num_classes else None
        init_weights(self, "xavier", 1.0)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        _check_labels(self, x.shape[0], labels)
        h = x
        for block, attention in zip(self.blocks, self.attention):
            h = attention(block(h))
        features = F.relu(h).sum(dim=(2, 3))  # (B, C)
        logits = self.head(features)
        if self.embed is not None:
            logits = logits + (self.embed(labels) * features).sum(dim=1, keepdim=True)
        return logits


# --- presets -------------------------------------------------------------------------------------


@NETS.register("dcgan_generator")
def dcgan_generator(**overrides: Any) -> DCGANGenerator:
    """The DCGAN paper's 64x64 generator (z of 100 in the paper, 128 here to match ResGAN)."""
    return DCGANGenerator(**{"base_channels": 64, "resolution": 64, **overrides})


@NETS.register("dcgan_discriminator")
def dcgan_discriminator(**overrides: Any) -> DCGANDiscriminator:
    return DCGANDiscriminator(**{"base_channels": 64, "resolution": 64, **overrides})


@NETS.register("resgan_generator")
def resgan_generator(**overrides: Any) -> ResGANGenerator:
    """SNGAN/SAGAN-style 64x64 generator with self-attention at 32x32."""
    return ResGANGenerator(**{"base_channels": 64, "resolution": 64, "attention_at": 32, **overrides})


@NETS.register("resgan_discriminator")
def resgan_discriminator(**overrides: Any) -> ResGANDiscriminator:
    return ResGANDiscriminator(**{"base_channels": 64, "resolution": 64, "attention_at": 32, **overrides})


@NETS.register("dcgan_generator_tiny")
def dcgan_generator_tiny(**overrides: Any) -> DCGANGenerator:
    """16x16, 8 channels: for tests."""
    return DCGANGenerator(**{"latent_dim": 16, "base_channels": 8, "resolution": 16, **overrides})


@NETS.register("dcgan_discriminator_tiny")
def dcgan_discriminator_tiny(**overrides: Any) -> DCGANDiscriminator:
    return DCGANDiscriminator(**{"base_channels": 8, "resolution": 16, **overrides})


@NETS.register("resgan_generator_tiny")
def resgan_generator_tiny(**overrides: Any) -> ResGANGenerator:
    """16x16, 8 channels, self-attention at 8x8: for tests."""
    return ResGANGenerator(**{"latent_dim": 16, "base_channels": 8, "resolution": 16, "attention_at": 8, **overrides})


@NETS.register("resgan_discriminator_tiny")
def resgan_discriminator_tiny(**overrides: Any) -> ResGANDiscriminator:
    return ResGANDiscriminator(**{"base_channels": 8, "resolution": 16, "attention_at": 8, **overrides})
