"""Inpainting generator: a U-Net that takes the image with its hole and the hole mask.

The encoder sees the masked image (hole pixels zeroed, so nothing of what was under the hole can
leak in) and the mask as a fourth channel, halves the resolution `num_downs` times, and runs
residual blocks with dilated convolutions at the bottom. Dilation is what gives a small net the
receptive field a large hole needs: with num_downs=3 and dilations 2-4-8, one bottleneck pixel
sees about 180 input pixels in each direction, so the middle of a 128-pixel hole still reaches
its borders (LaMa reaches the same with Fourier convolutions, which ONNX cannot express). The
decoder upsamples by nearest-neighbour resize + 3x3 convolution (no checkerboard in flat fills)
and sees the encoder features of each resolution through skip connections.

`gated=True` turns every encoder and bottleneck convolution into a gated convolution (Yu et al.,
2019, "Free-Form Image Inpainting with Gated Convolution"): a second convolution learns a soft
per-pixel, per-channel gate, so features computed from hole pixels can be switched off.

The net returns its raw prediction everywhere; the task and the export paste it into the hole
only (`composite`), so kept pixels stay exactly as they were.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from img2img.contract import IMAGE_MASK
from img2img.nets.layers import check_image_size, conv_bias, get_norm_layer, init_weights
from img2img.nets.registry import NETS


class GatedConv2d(nn.Module):
    """feature * sigmoid(gate), both from one convolution with twice the output channels.

    Shape: (B, in_channels, H, W) -> (B, out_channels, H', W') as nn.Conv2d with the same
    arguments.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, **conv_options: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 2 * out_channels, kernel_size, **conv_options)

    def forward(self, x: Tensor) -> Tensor:
        feature, gate = self.conv(x).chunk(2, dim=1)
        return feature * torch.sigmoid(gate)


def _conv(gated: bool, in_channels: int, out_channels: int, kernel_size: int, **options: Any) -> nn.Module:
    conv_class = GatedConv2d if gated else nn.Conv2d
    return conv_class(in_channels, out_channels, kernel_size, padding_mode="reflect", **options)


class DilatedResidualBlock(nn.Module):
    """conv3x3(dilation d)-norm-LeakyReLU-conv3x3-norm plus the identity.

    Shape: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, *, dilation: int, norm: str, gated: bool) -> None:
        super().__init__()
        bias = conv_bias(norm)
        self.body = nn.Sequential(
            _conv(gated, channels, channels, 3, padding=dilation, dilation=dilation, bias=bias),
            get_norm_layer(norm, channels),
            nn.LeakyReLU(0.2),
            _conv(gated, channels, channels, 3, padding=1, bias=bias),
            get_norm_layer(norm, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


@NETS.register("InpaintUNet")
class InpaintUNet(nn.Module):
    """U-Net inpainting generator with a dilated residual bottleneck.

    Args:
        base_channels: width of the full-resolution level; doubled per level down, up to 8x.
        num_downs: stride-2 levels; H and W must be multiples of 2**num_downs.
        bottleneck_blocks: dilated residual blocks at the bottom.
        dilations: dilation of each bottleneck block, cycled when there are more blocks. The
            blocks pad by reflection, so H and W must be at least 2**num_downs * (max + 1)
            (`min_size`, 72 for the defaults; the runtime pads smaller images up to it).
        norm: "batch", "instance" or "none". Batch norm keeps the output of a pixel independent
            of far-away image content at inference, so tiles give the same fill as a whole run.
        gated: gated convolutions in the encoder and bottleneck.
        in_channels, out_channels: 3 for colour, 1 for grayscale; the fill has the image's
            channels, so the two must be equal.

    Shape:
        image (B, C, H, W) in [-1, 1] and mask (B, 1, H, W) in {0, 1} (1 = hole) ->
        (B, C, H, W) in [-1, 1] (tanh), the prediction at every pixel; hole pixels of `image`
        are ignored.
    """

    arch = "InpaintUNet"
    inputs = IMAGE_MASK  # the exported graph's inputs (img2img.contract)
    scale = 1
    input_range = (-1.0, 1.0)

    def __init__(
        self,
        *,
        base_channels: int = 32,
        num_downs: int = 3,
        bottleneck_blocks: int = 6,
        dilations: tuple[int, ...] | list[int] = (2, 4, 8),
        norm: str = "batch",
        gated: bool = False,
        in_channels: int = 3,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3) or out_channels != in_channels:
            raise ValueError(
                "InpaintUNet fills the image it is given: in_channels and out_channels must both be 1 "
                f"(grayscale) or 3 (colour), got {in_channels} and {out_channels}"
            )
        if num_downs < 1 or bottleneck_blocks < 0 or not dilations or min(dilations) < 1:
            raise ValueError(
                f"InpaintUNet needs num_downs >= 1, bottleneck_blocks >= 0 and dilations >= 1, got "
                f"{num_downs}, {bottleneck_blocks}, {tuple(dilations)}"
            )
        self.hparams: dict[str, Any] = dict(
            base_channels=base_channels,
            num_downs=num_downs,
            bottleneck_blocks=bottleneck_blocks,
            dilations=list(dilations),
            norm=norm,
            gated=gated,
            in_channels=in_channels,
            out_channels=out_channels,
        )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.multiple_of = 2**num_downs
        # Reflection padding needs more bottleneck pixels than the largest dilation pads.
        self.min_size = self.multiple_of * (max(dilations) + 1 if bottleneck_blocks else 1)
        widths = [base_channels * min(2**level, 8) for level in range(num_downs + 1)]
        bias = conv_bias(norm)

        # The mask is one more input channel after the masked image's.
        self.stem = nn.Sequential(_conv(gated, in_channels + 1, widths[0], 5, padding=2), nn.LeakyReLU(0.2))
        self.downs = nn.ModuleList(
            nn.Sequential(
                _conv(gated, widths[level], widths[level + 1], 3, stride=2, padding=1, bias=bias),
                get_norm_layer(norm, widths[level + 1]),
                nn.LeakyReLU(0.2),
            )
            for level in range(num_downs)
        )
        self.bottleneck = nn.Sequential(
            *(
                DilatedResidualBlock(
                    widths[-1], dilation=dilations[block % len(dilations)], norm=norm, gated=gated
                )
                for block in range(bottleneck_blocks)
            )
        )
        # Up level i takes level i+1's output, doubles it and concatenates level i's features.
        self.ups = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(
                    widths[level + 1] + widths[level], widths[level], 3, padding=1, padding_mode="reflect", bias=bias
                ),
                get_norm_layer(norm, widths[level]),
                nn.LeakyReLU(0.2),
            )
            for level in range(num_downs)
        )
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = nn.Sequential(nn.Conv2d(widths[0], out_channels, 3, padding=1, padding_mode="reflect"), nn.Tanh())
        init_weights(self, "normal", 0.02)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        check_image_size(self, image, channels=self.in_channels, multiple_of=self.multiple_of, min_size=self.min_size)
        if not torch.jit.is_tracing() and mask.shape != (image.shape[0], 1, *image.shape[2:]):
            raise ValueError(
                f"mask must be (B, 1, H, W) matching the image {tuple(image.shape)}, got {tuple(mask.shape)}"
            )
        h = self.stem(torch.cat([image * (1.0 - mask), mask], dim=1))
        skips = [h]
        for down in self.downs:
            h = down(h)
            skips.append(h)
        h = self.bottleneck(h)
        for level in range(len(self.ups) - 1, -1, -1):
            h = self.ups[level](torch.cat([self.upsample(h), skips[level]], dim=1))
        return self.head(h)


def composite(prediction: Tensor, image: Tensor, mask: Tensor) -> Tensor:
    """The prediction inside the hole, the image outside it: (B, C, H, W) from same-range
    prediction and image and a (B, 1, H, W) {0, 1} mask."""
    return prediction * mask + image * (1.0 - mask)


@NETS.register("inpaint_unet")
def inpaint_unet(**overrides: Any) -> InpaintUNet:
    """32 base channels, 3 levels, 6 dilated blocks: 8.1 M parameters (2.0 M with the
    `base_channels=16` of the CPU recipe)."""
    return InpaintUNet(**overrides)


@NETS.register("inpaint_unet_tiny")
def inpaint_unet_tiny(**overrides: Any) -> InpaintUNet:
    """8 base channels, 2 levels, 2 blocks: for tests only."""
    return InpaintUNet(**(dict(base_channels=8, num_downs=2, bottleneck_blocks=2, dilations=(2,)) | overrides))
