"""U-Net generator of pix2pix.

Isola et al., 2017, "Image-to-Image Translation with Conditional Adversarial Networks", after
Ronneberger et al., 2015, "U-Net: Convolutional Networks for Biomedical Image Segmentation". An
encoder halves the resolution `num_downs` times down to a bottleneck; the decoder doubles it back,
and each decoder level also sees the encoder features of its resolution (skip connections), so
low-level structure such as edges passes straight from input to output.

Paper-to-code map (pix2pix Appendix 6.1.1, with k = `base_channels`): encoder C64-C128-C256-C512-
C512-C512-C512-C512 is `widths`; the first encoder level has no normalisation, the innermost none
either; decoder levels with dropout are the full-width ones below the innermost (CD512 in the
paper); LeakyReLU(0.2) down, ReLU up, tanh out.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from img2img.contract import IMAGE
from img2img.nets.layers import (
    SelfAttention,
    check_image_size,
    check_residual,
    conv_bias,
    get_norm_layer,
    get_upsample_layer,
    init_weights,
    zero_init,
)
from img2img.nets.registry import NETS

# Channel widths stop doubling at 8 * base_channels, as in pix2pix.
MAX_WIDTH_FACTOR = 8


@NETS.register("UNetGenerator")
class UNetGenerator(nn.Module):
    """pix2pix U-Net generator.

    Args:
        in_channels: channels of the input image.
        out_channels: channels of the output image.
        num_downs: number of stride-2 encoder levels; H and W must be multiples of 2**num_downs
            (8 for 256x256 images: the bottleneck is 1x1).
        base_channels: width of the first encoder level.
        norm: "batch", "instance" or "none".
        use_dropout: dropout 0.5 in the full-width decoder levels below the bottleneck, as in
            pix2pix (none exist when num_downs <= 5).
        upsample: "transpose" (transposed convolutions, as in the paper) or "resize" (nearest
            upsampling + 3x3 conv, free of checkerboard artefacts).
        self_attention: add a SAGAN self-attention block after the encoder level halfway down.
        residual: predict a change to the input instead of the output, x + U(x), with no
            tanh and the last layer zero-initialised, so the untrained net returns its input.
            For domains that mostly agree pixel for pixel (two vendors' drawings of one emoji),
            where identity is already a strong baseline. Needs in_channels == out_channels.

    Shape:
        (B, in_channels, H, W) in [-1, 1] -> (B, out_channels, H, W) in [-1, 1] (tanh); with
        `residual`, nominally in [-1, 1] but not clamped, so a pixel pushed past the range still
        gets a gradient back (the exported graph and the metrics clamp).
    """

    arch = "UNetGenerator"
    inputs = IMAGE  # the exported graph's inputs (img2img.contract)
    scale = 1
    input_range = (-1.0, 1.0)

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        num_downs: int = 8,
        base_channels: int = 64,
        norm: str = "batch",
        use_dropout: bool = False,
        upsample: str = "transpose",
        self_attention: bool = False,
        residual: bool = False,
    ) -> None:
        super().__init__()
        if num_downs < 1:
            raise ValueError(f"UNetGenerator needs num_downs >= 1, got {num_downs}")
        check_residual(residual, in_channels, out_channels)
        self.hparams: dict[str, Any] = dict(
            in_channels=in_channels,
            out_channels=out_channels,
            num_downs=num_downs,
            base_channels=base_channels,
            norm=norm,
            use_dropout=use_dropout,
            upsample=upsample,
            self_attention=self_attention,
        )
        if residual:  # recorded only when set, so the nets saved before it existed still match
            self.hparams["residual"] = True
        self.residual = residual
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.multiple_of = 2**num_downs
        self.min_size = self.multiple_of
        widths = [base_channels * min(2**level, MAX_WIDTH_FACTOR) for level in range(num_downs)]
        innermost = num_downs - 1
        bias = conv_bias(norm)

        self.downs = nn.ModuleList()
        for level, width in enumerate(widths):
            if level == 0:
                # The input image goes straight into the first convolution.
                layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1)]
            else:
                layers = [nn.LeakyReLU(0.2)]
                if level == innermost:
                    # The bottleneck is 1x1 for square inputs: nothing to normalise over.
                    layers.append(nn.Conv2d(widths[level - 1], width, 4, stride=2, padding=1))
                else:
                    layers += [
                        nn.Conv2d(widths[level - 1], width, 4, stride=2, padding=1, bias=bias),
                        get_norm_layer(norm, width),
                    ]
            self.downs.append(nn.Sequential(*layers))

        self.attention_level = innermost // 2
        self.attention = SelfAttention(widths[self.attention_level]) if self_attention else nn.Identity()

        self.ups = nn.ModuleList()
        for level, width in enumerate(widths):
            # Every level but the innermost receives its skip concatenated to the level below.
            up_in = width if level == innermost else 2 * width
            if level == 0:
                layers = [nn.ReLU(), get_upsample_layer(upsample, up_in, out_channels)]
                if not residual:
                    layers.append(nn.Tanh())
            else:
                layers = [
                    nn.ReLU(),
                    get_upsample_layer(upsample, up_in, widths[level - 1], bias=bias),
                    get_norm_layer(norm, widths[level - 1]),
                ]
                full_width = widths[level - 1] == width == base_channels * MAX_WIDTH_FACTOR
                if use_dropout and full_width and level != innermost:
                    layers.append(nn.Dropout(0.5))
            self.ups.append(nn.Sequential(*layers))

        init_weights(self, "normal", 0.02)
        if residual:
            zero_init(self.ups[0][1])

    def forward(self, x: Tensor) -> Tensor:
        check_image_size(self, x, channels=self.in_channels, multiple_of=self.multiple_of)
        skips = []
        h = x
        for level, down in enumerate(self.downs):
            h = down(h)
            if level == self.attention_level:
                h = self.attention(h)
            skips.append(h)
        innermost = len(self.ups) - 1
        for level in range(innermost, -1, -1):
            h = self.ups[level](h if level == innermost else torch.cat([skips[level], h], dim=1))
        return x + h if self.residual else h


@NETS.register("unet_128")
def unet_128(**overrides: Any) -> UNetGenerator:
    """pix2pix U-Net for 128x128 images: 7 levels, 64 base channels."""
    return UNetGenerator(**(dict(num_downs=7, base_channels=64) | overrides))


@NETS.register("unet_256")
def unet_256(**overrides: Any) -> UNetGenerator:
    """pix2pix U-Net for 256x256 images: 8 levels, 64 base channels (about 54 M parameters)."""
    return UNetGenerator(**(dict(num_downs=8, base_channels=64) | overrides))


@NETS.register("unet_tiny")
def unet_tiny(**overrides: Any) -> UNetGenerator:
    """3 levels, 8 base channels: for tests only."""
    return UNetGenerator(**(dict(num_downs=3, base_channels=8) | overrides))
