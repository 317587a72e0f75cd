"""ESRGAN generator built from Residual-in-Residual Dense Blocks.

Wang et al., 2018, "ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks". The
paper's changes over SRGAN live in the blocks: no batch normalisation, dense connections inside a
block, residuals scaled by 0.2 and a small initialisation, which together keep a deep net stable
under the adversarial loss. Upsampling is nearest-neighbour x2 followed by a convolution,
repeated, which avoids the checkerboard artefacts of transposed convolutions.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from img2img.contract import IMAGE
from img2img.nets.layers import check_image_size
from img2img.nets.registry import NETS

SCALES = (1, 2, 4)
UNSHUFFLE_FACTORS = (1, 2, 4)
# What the nearest-x2-and-convolve steps can reach: scale times the unshuffle factor.
TRUNK_SCALES = (1, 2, 4, 8)

# Residual branches are scaled down before being added, as in the paper.
RESIDUAL_SCALE = 0.2


def _lrelu() -> nn.Module:
    return nn.LeakyReLU(0.2)


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convolutions, each seeing the block input and every earlier output.

    Shape: (B, C, H, W) -> (B, C, H, W), with C = `num_features`.
    """

    def __init__(self, num_features: int, growth_channels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(num_features + i * growth_channels, growth_channels, 3, padding=1) for i in range(4)
        )
        self.fuse = nn.Conv2d(num_features + 4 * growth_channels, num_features, 3, padding=1)
        self.act = _lrelu()
        # "Smaller initialization" (ESRGAN, Sec. 3.3): Kaiming init scaled by 0.1, so each block
        # starts close to the identity.
        for conv in [*self.convs, self.fuse]:
            nn.init.kaiming_normal_(conv.weight)
            with torch.no_grad():
                conv.weight.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for conv in self.convs:
            features.append(self.act(conv(torch.cat(features, dim=1))))
        return x + RESIDUAL_SCALE * self.fuse(torch.cat(features, dim=1))


class RRDB(nn.Module):
    """Residual-in-Residual Dense Block: three dense blocks inside one scaled residual.

    Shape: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, num_features: int, growth_channels: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(ResidualDenseBlock(num_features, growth_channels) for _ in range(3)))

    def forward(self, x: Tensor) -> Tensor:
        return x + RESIDUAL_SCALE * self.blocks(x)


@NETS.register("RRDBNet")
class RRDBNet(nn.Module):
    """ESRGAN generator.

    Args:
        in_channels: channels of the input image.
        out_channels: channels of the output image.
        num_features: width of the trunk.
        num_blocks: number of RRDBs in the trunk.
        growth_channels: channels each dense-block convolution adds.
        scale: upscaling factor, one of 1, 2, 4.
        pixel_unshuffle: 1, 2 or 4. Above 1, the input is first folded into r*r times the channels
            at 1/r of the size (PixelUnshuffle(r)), and the trunk upsamples by scale*r: Real-ESRGAN's
            x2 and x1 models work this way, so their trunk runs at a quarter or a sixteenth of the
            pixels.

    Shape:
        (B, in_channels, H, W) in [0, 1] -> (B, out_channels, H*scale, W*scale), approximately in
        [0, 1] (not clamped). Any H, W >= 1; multiples of `pixel_unshuffle`.
    """

    arch = "RRDBNet"
    inputs = IMAGE  # the exported graph's inputs (img2img.contract)
    multiple_of = 1
    min_size = 1
    input_range = (0.0, 1.0)

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 64,
        num_blocks: int = 23,
        growth_channels: int = 32,
        scale: int = 4,
        pixel_unshuffle: int = 1,
    ) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"RRDBNet scale must be one of {SCALES}, got {scale}")
        if pixel_unshuffle not in UNSHUFFLE_FACTORS:
            raise ValueError(f"RRDBNet pixel_unshuffle must be one of {UNSHUFFLE_FACTORS}, got {pixel_unshuffle}")
        trunk_scale = scale * pixel_unshuffle
        if trunk_scale not in TRUNK_SCALES:
            raise ValueError(
                f"RRDBNet upsamples by scale * pixel_unshuffle = {trunk_scale}, which must be one of {TRUNK_SCALES}"
            )
        self.hparams: dict[str, Any] = dict(
            in_channels=in_channels,
            out_channels=out_channels,
            num_features=num_features,
            num_blocks=num_blocks,
            growth_channels=growth_channels,
            scale=scale,
        )
        # Recorded only when used, so the records of nets without it stay as they were.
        if pixel_unshuffle != 1:
            self.hparams["pixel_unshuffle"] = pixel_unshuffle
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale = scale
        self.pixel_unshuffle = pixel_unshuffle
        self.multiple_of = pixel_unshuffle

        self.conv_first = nn.Conv2d(in_channels * pixel_unshuffle**2, num_features, 3, padding=1)
        self.trunk = nn.Sequential(*(RRDB(num_features, growth_channels) for _ in range(num_blocks)))
        self.conv_trunk = nn.Conv2d(num_features, num_features, 3, padding=1)
        self.upsample_convs = nn.ModuleList(
            nn.Conv2d(num_features, num_features, 3, padding=1) for _ in range(int(math.log2(trunk_scale)))
        )
        self.conv_hr = nn.Conv2d(num_features, num_features, 3, padding=1)
        self.conv_last = nn.Conv2d(num_features, out_channels, 3, padding=1)
        self.act = _lrelu()

    def forward(self, x: Tensor) -> Tensor:
        check_image_size(self, x, channels=self.in_channels, multiple_of=self.multiple_of)
        if self.pixel_unshuffle > 1:
            x = F.pixel_unshuffle(x, self.pixel_unshuffle)
        features = self.conv_first(x)
        features = features + self.conv_trunk(self.trunk(features))
        for conv in self.upsample_convs:
            features = self.act(conv(F.interpolate(features, scale_factor=2, mode="nearest")))
        return self.conv_last(self.act(self.conv_hr(features)))


@NETS.register("rrdb_esrgan")
def rrdb_esrgan(**overrides: Any) -> RRDBNet:
    """The ESRGAN paper's size: 64 features, 23 RRDBs, growth 32 (about 16.7 M parameters at x4)."""
    return RRDBNet(**(dict(num_features=64, num_blocks=23, growth_channels=32) | overrides))


@NETS.register("rrdb_small")
def rrdb_small(**overrides: Any) -> RRDBNet:
    """32 features, 6 RRDBs, growth 16."""
    return RRDBNet(**(dict(num_features=32, num_blocks=6, growth_channels=16) | overrides))


@NETS.register("rrdb_tiny")
def rrdb_tiny(**overrides: Any) -> RRDBNet:
    """8 features, 1 RRDB, growth 4: for tests only."""
    return RRDBNet(**(dict(num_features=8, num_blocks=1, growth_channels=4) | overrides))
