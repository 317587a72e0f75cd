"""Discriminators: PatchGAN, PixelGAN, multi-scale PatchGAN and the U-Net discriminator.

- PatchGAN and PixelGAN: Isola et al., 2017, "Image-to-Image Translation with Conditional
  Adversarial Networks" (pix2pix). A fully convolutional net whose output is a map of logits, one
  per overlapping patch; with 3 layers each logit sees a 70x70 patch.
- Multi-scale PatchGAN: Wang et al., 2018, "High-Resolution Image Synthesis and Semantic
  Manipulation with Conditional GANs" (pix2pixHD). Identical PatchGANs look at the image at
  successively halved resolutions, so the coarse ones judge global structure.
- U-Net discriminator: Schonfeld et al., 2020, "A U-Net Based Discriminator for Generative
  Adversarial Networks", in the spectrally normalised form of Real-ESRGAN (Wang et al., 2021),
  which gives one logit per pixel.

Every discriminator returns raw logits (no sigmoid). `forward(x, return_features=True)` returns
`(logits, features)`, where `features` is a flat list of intermediate activations for feature
matching.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from img2img.nets.layers import (
    SelfAttention,
    check_image_size,
    conv_bias,
    get_norm_layer,
    init_weights,
    spectral_norm_if,
)
from img2img.nets.registry import NETS

# Channel widths stop doubling at 8 * base_channels, as in pix2pix.
MAX_WIDTH_FACTOR = 8


def _conv(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, *, bias: bool = True, sn: bool
) -> nn.Module:
    # pix2pix pads 4x4 kernels by 1 as well as 3x3 ones; 1x1 kernels need none.
    padding = 1 if kernel_size > 1 else 0
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
    return spectral_norm_if(conv, sn)


class _StackedDiscriminator(nn.Module):
    """Blocks in sequence, then a convolution to one logit channel; the block outputs are the
    features."""

    in_channels: int
    min_size: int
    blocks: nn.ModuleList
    head: nn.Module

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        check_image_size(self, x, channels=self.in_channels, min_size=self.min_size)
        features = []
        h = x
        for block in self.blocks:
            h = block(h)
            features.append(h)
        logits = self.head(h)
        return (logits, features) if return_features else logits


@NETS.register("PatchGAN")
class PatchGAN(_StackedDiscriminator):
    """pix2pix N-layer PatchGAN discriminator.

    Kernel-4 convolutions with LeakyReLU(0.2): `num_layers` with stride 2 (the first without
    normalisation), one more with stride 1, then a stride-1 convolution to the logit map. The
    receptive field is 16, 34, 70, 142 pixels for 1, 2, 3, 4 layers.

    Args:
        in_channels: channels of the judged image (for conditional GANs: image and condition
            concatenated).
        base_channels: width of the first layer; doubled per layer up to 8x.
        num_layers: stride-2 layers; 3 gives the 70x70 PatchGAN.
        norm: "batch", "instance" or "none".
        spectral_norm: spectrally normalise every convolution.
        self_attention: add a SAGAN self-attention block after the last stride-2 layer.

    Shape:
        (B, in_channels, H, W) -> (B, 1, H', W') logits, H' = H // 2**num_layers - 2 for H a
        multiple of 2**num_layers. H and W at least `min_size` = 3 * 2**num_layers.
    """

    arch = "PatchGAN"

    def __init__(
        self,
        *,
        in_channels: int = 3,
        base_channels: int = 64,
        num_layers: int = 3,
        norm: str = "batch",
        spectral_norm: bool = False,
        self_attention: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"PatchGAN needs num_layers >= 1, got {num_layers}")
        self.hparams: dict[str, Any] = dict(
            in_channels=in_channels,
            base_channels=base_channels,
            num_layers=num_layers,
            norm=norm,
            spectral_norm=spectral_norm,
            self_attention=self_attention,
        )
        self.in_channels = in_channels
        # Each stride-2 layer floors the size to half; the two stride-1 kernel-4 layers then take
        # 1 pixel each, so 3 pixels must be left after the last stride-2 layer.
        self.min_size = 3 * 2**num_layers
        widths = [base_channels * min(2**layer, MAX_WIDTH_FACTOR) for layer in range(num_layers + 1)]
        bias = conv_bias(norm)

        blocks = [[_conv(in_channels, widths[0], 4, 2, sn=spectral_norm), nn.LeakyReLU(0.2)]]
        for layer in range(1, num_layers + 1):
            stride = 2 if layer < num_layers else 1
            blocks.append(
                [
                    _conv(widths[layer - 1], widths[layer], 4, stride, bias=bias, sn=spectral_norm),
                    get_norm_layer(norm, widths[layer]),
                    nn.LeakyReLU(0.2),
                ]
            )
        # nn.Identity keeps the state-dict keys the same with and without attention.
        last_strided = blocks[num_layers - 1]
        channels = widths[num_layers - 1]
        last_strided.append(
            SelfAttention(channels, spectral_norm=spectral_norm) if self_attention else nn.Identity()
        )
        self.blocks = nn.ModuleList(nn.Sequential(*block) for block in blocks)
        self.head = _conv(widths[num_layers], 1, 4, sn=spectral_norm)

        init_weights(self, "normal", 0.02)


@NETS.register("PixelGAN")
class PixelGAN(_StackedDiscriminator):
    """pix2pix PixelGAN: 1x1 convolutions only, so each logit judges one pixel (its colour).

    Args:
        in_channels: channels of the judged image.
        base_channels: width of the first layer (the second has twice as many).
        norm: "batch", "instance" or "none".
        spectral_norm: spectrally normalise every convolution.

    Shape:
        (B, in_channels, H, W) -> (B, 1, H, W) logits.
    """

    arch = "PixelGAN"
    min_size = 1

    def __init__(
        self,
        *,
        in_channels: int = 3,
        base_channels: int = 64,
        norm: str = "batch",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.hparams: dict[str, Any] = dict(
            in_channels=in_channels, base_channels=base_channels, norm=norm, spectral_norm=spectral_norm
        )
        self.in_channels = in_channels
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(_conv(in_channels, base_channels, 1, sn=spectral_norm), nn.LeakyReLU(0.2)),
                nn.Sequential(
                    _conv(base_channels, 2 * base_channels, 1, bias=conv_bias(norm), sn=spectral_norm),
                    get_norm_layer(norm, 2 * base_channels),
                    nn.LeakyReLU(0.2),
                ),
            ]
        )
        self.head = _conv(2 * base_channels, 1, 1, sn=spectral_norm)

        init_weights(self, "normal", 0.02)


@NETS.register("MultiScalePatchGAN")
class MultiScalePatchGAN(nn.Module):
    """pix2pixHD multi-scale discriminator: `num_scales` independent PatchGANs, the k-th seeing the
    input average-pooled (3x3, stride 2) k times.

    Args:
        num_scales: number of PatchGANs / resolutions.
        in_channels, base_channels, num_layers, norm, spectral_norm, self_attention: passed to
            each `PatchGAN`.

    Shape:
        (B, in_channels, H, W) -> list of `num_scales` logit maps (B, 1, H_k, W_k), finest first.
        With return_features, the features of all scales in the same order, concatenated.
    """

    arch = "MultiScalePatchGAN"

    def __init__(
        self,
        *,
        num_scales: int = 3,
        in_channels: int = 3,
        base_channels: int = 64,
        num_layers: int = 3,
        norm: str = "batch",
        spectral_norm: bool = False,
        self_attention: bool = False,
    ) -> None:
        super().__init__()
        if num_scales < 1:
            raise ValueError(f"MultiScalePatchGAN needs num_scales >= 1, got {num_scales}")
        patch_hparams = dict(
            in_channels=in_channels,
            base_channels=base_channels,
            num_layers=num_layers,
            norm=norm,
            spectral_norm=spectral_norm,
            self_attention=self_attention,
        )
        self.hparams: dict[str, Any] = dict(num_scales=num_scales, **patch_hparams)
        self.in_channels = in_channels
        self.scales = nn.ModuleList(PatchGAN(**patch_hparams) for _ in range(num_scales))
        # count_include_pad=False: border pixels are averages of real pixels, not darkened by zeros.
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        # Each pooling maps H to ceil(H / 2); the coarsest PatchGAN needs its own min_size.
        self.min_size = (self.scales[0].min_size - 1) * 2 ** (num_scales - 1) + 1

    def forward(
        self, x: Tensor, return_features: bool = False
    ) -> list[Tensor] | tuple[list[Tensor], list[Tensor]]:
        check_image_size(self, x, channels=self.in_channels, min_size=self.min_size)
        logits: list[Tensor] = []
        features: list[Tensor] = []
        for index, discriminator in enumerate(self.scales):
            if index:
                x = self.downsample(x)
            scale_logits, scale_features = discriminator(x, return_features=True)
            logits.append(scale_logits)
            features += scale_features
        return (logits, features) if return_features else logits


@NETS.register("UNetDiscriminator")
class UNetDiscriminator(nn.Module):
    """U-Net discriminator with spectral normalisation (Real-ESRGAN style): one logit per pixel.

    An encoder of three stride-2 convolutions, a decoder that upsamples bilinearly to each skip's
    size and adds the skip, two refining convolutions and a logit convolution; LeakyReLU(0.2)
    throughout. The stride-2 convolutions use kernel 3 (Real-ESRGAN: 4), so any size down to 1x1
    goes through.

    Args:
        in_channels: channels of the judged image.
        base_channels: width at full resolution; doubled at each downsampling.
        spectral_norm: spectrally normalise every convolution.

    Shape:
        (B, in_channels, H, W) -> (B, 1, H, W) logits, any H, W >= 1.
    """

    arch = "UNetDiscriminator"
    min_size = 1
    num_downs = 3

    def __init__(self, *, in_channels: int = 3, base_channels: int = 64, spectral_norm: bool = True) -> None:
        super().__init__()
        self.hparams: dict[str, Any] = dict(
            in_channels=in_channels, base_channels=base_channels, spectral_norm=spectral_norm
        )
        self.in_channels = in_channels
        widths = [base_channels * 2**level for level in range(self.num_downs + 1)]
        self.conv_in = _conv(in_channels, widths[0], 3, sn=spectral_norm)
        self.downs = nn.ModuleList(
            _conv(widths[level], widths[level + 1], 3, 2, sn=spectral_norm) for level in range(self.num_downs)
        )
        self.ups = nn.ModuleList(
            _conv(widths[level + 1], widths[level], 3, sn=spectral_norm)
            for level in reversed(range(self.num_downs))
        )
        self.refine = nn.ModuleList(_conv(widths[0], widths[0], 3, sn=spectral_norm) for _ in range(2))
        self.head = _conv(widths[0], 1, 3, sn=spectral_norm)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        check_image_size(self, x, channels=self.in_channels, min_size=self.min_size)
        h = self.act(self.conv_in(x))
        skips = [h]
        for down in self.downs:
            h = self.act(down(h))
            skips.append(h)
        features = list(skips)
        for up, skip in zip(self.ups, reversed(skips[:-1]), strict=True):
            # Interpolating to the skip's size (not x2) handles odd sizes, where stride 2 rounded up.
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = self.act(up(h)) + skip
            features.append(h)
        for conv in self.refine:
            h = self.act(conv(h))
            features.append(h)
        logits = self.head(h)
        return (logits, features) if return_features else logits


@NETS.register("patchgan_70")
def patchgan_70(**overrides: Any) -> PatchGAN:
    """The 70x70 PatchGAN of pix2pix and CycleGAN: 3 layers, 64 base channels."""
    return PatchGAN(**(dict(base_channels=64, num_layers=3) | overrides))


@NETS.register("patchgan_tiny")
def patchgan_tiny(**overrides: Any) -> PatchGAN:
    """2 layers, 8 base channels: for tests only."""
    return PatchGAN(**(dict(base_channels=8, num_layers=2) | overrides))


@NETS.register("pixelgan")
def pixelgan(**overrides: Any) -> PixelGAN:
    """pix2pix PixelGAN: 64 base channels."""
    return PixelGAN(**(dict(base_channels=64) | overrides))


@NETS.register("multiscale_patchgan")
def multiscale_patchgan(**overrides: Any) -> MultiScalePatchGAN:
    """pix2pixHD: three 70x70 PatchGANs at full, half and quarter resolution."""
    return MultiScalePatchGAN(**(dict(num_scales=3, base_channels=64, num_layers=3) | overrides))


@NETS.register("multiscale_patchgan_tiny")
def multiscale_patchgan_tiny(**overrides: Any) -> MultiScalePatchGAN:
    """Two 2-layer PatchGANs with 8 base channels: for tests only."""
    return MultiScalePatchGAN(**(dict(num_scales=2, base_channels=8, num_layers=2) | overrides))


@NETS.register("unet_discriminator")
def unet_discriminator(**overrides: Any) -> UNetDiscriminator:
    """Real-ESRGAN's U-Net discriminator: 64 base channels, spectral normalisation."""
    return UNetDiscriminator(**(dict(base_channels=64, spectral_norm=True) | overrides))


@NETS.register("unet_discriminator_small")
def unet_discriminator_small(**overrides: Any) -> UNetDiscriminator:
    """32 base channels, spectral normalisation: a quarter of the full one's work per pixel, for
    GAN stages trained on a CPU, where the 64-channel one costs as much as the VGG19 loss."""
    return UNetDiscriminator(**(dict(base_channels=32, spectral_norm=True) | overrides))


@NETS.register("unet_discriminator_tiny")
def unet_discriminator_tiny(**overrides: Any) -> UNetDiscriminator:
    """8 base channels: for tests only."""
    return UNetDiscriminator(**(dict(base_channels=8, spectral_norm=True) | overrides))
