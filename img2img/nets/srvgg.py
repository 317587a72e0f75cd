"""Compact VGG-style super-resolution net.

The compact design of Real-ESRGAN (Wang et al., 2021, "Real-ESRGAN: Training Real-World Blind
Super-Resolution with Pure Synthetic Data"): a plain stack of 3x3 convolutions at the input
resolution, a sub-pixel (PixelShuffle) upsampling at the end (Shi et al., 2016, "Real-Time Single
Image and Video Super-Resolution Using an Efficient Sub-Pixel Convolutional Neural Network"), and
the nearest-upsampled input added back, so the convolutions only learn the missing detail. All work
happens at low resolution, which makes it fast enough to train on a CPU.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from img2img.contract import IMAGE
from img2img.nets.layers import check_image_size, get_act_layer
from img2img.nets.registry import NETS

SCALES = (1, 2, 3, 4)


@NETS.register("SRVGGNet")
class SRVGGNet(nn.Module):
    """Compact super-resolution generator.

    Args:
        in_channels: channels of the input image.
        out_channels: channels of the output; equal to `in_channels`, because the upsampled
            input is added to the output.
        num_features: width of every body convolution.
        num_conv: number of 3x3 body convolutions after the first one.
        scale: upscaling factor, one of 1, 2, 3, 4.
        act: activation after each convolution (see `get_act_layer`).

    Shape:
        (B, in_channels, H, W) in [0, 1] -> (B, out_channels, H*scale, W*scale), approximately in
        [0, 1] (not clamped). Any H, W >= 1.
    """

    arch = "SRVGGNet"
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
        num_conv: int = 16,
        scale: int = 4,
        act: str = "prelu",
    ) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"SRVGGNet scale must be one of {SCALES}, got {scale}")
        if in_channels != out_channels:
            raise ValueError(
                "SRVGGNet adds the upsampled input to its output, so out_channels must equal "
                f"in_channels; got in_channels={in_channels}, out_channels={out_channels}"
            )
        self.hparams: dict[str, Any] = dict(
            in_channels=in_channels,
            out_channels=out_channels,
            num_features=num_features,
            num_conv=num_conv,
            scale=scale,
            act=act,
        )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale = scale

        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, num_features, 3, padding=1),
            get_act_layer(act, num_features),
        ]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_features, num_features, 3, padding=1), get_act_layer(act, num_features)]
        # One group of scale*scale sub-pixels per output channel, rearranged by PixelShuffle.
        layers += [
            nn.Conv2d(num_features, out_channels * scale * scale, 3, padding=1),
            nn.PixelShuffle(scale),
        ]
        self.body = nn.Sequential(*layers)

    @torch.no_grad()
    def widen_from(self, narrower: SRVGGNet) -> None:
        """Loads a trained net of fewer `num_features` so that this net computes the same function,
        its extra channels ready to learn what the narrower net could not hold.

        Every convolution keeps its trained weights in the leading channels; the extra output
        channels keep this net's fresh initialisation, and the weights that read the extra
        channels into the trained ones start at zero, so the output is unchanged until training
        moves them. Everything but `num_features` must match.
        """
        if not isinstance(narrower, SRVGGNet):
            raise ValueError(f"an SRVGGNet can only be widened from an SRVGGNet, not a {type(narrower).__name__}")
        mine = {key: value for key, value in self.hparams.items() if key != "num_features"}
        theirs = {key: value for key, value in narrower.hparams.items() if key != "num_features"}
        if mine != theirs or narrower.hparams["num_features"] > self.hparams["num_features"]:
            raise ValueError(
                f"an SRVGGNet {self.hparams} can be widened from one that differs only in fewer "
                f"num_features, not from {narrower.hparams}"
            )
        trained = narrower.state_dict()
        for name, tensor in self.state_dict().items():
            source = trained[name]
            leading = tuple(slice(0, size) for size in source.shape)
            if tensor.ndim == 4:  # (out, in, 3, 3): nothing trained reads the new input channels
                tensor[: source.shape[0], source.shape[1] :] = 0
            tensor[leading] = source

    def forward(self, x: Tensor) -> Tensor:
        check_image_size(self, x, channels=self.in_channels)
        base = x if self.scale == 1 else F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return self.body(x) + base


@NETS.register("srvgg_compact")
def srvgg_compact(**overrides: Any) -> SRVGGNet:
    """Real-ESRGAN's compact size: 64 features, 16 body convolutions (about 0.6 M parameters at x4)."""
    return SRVGGNet(**(dict(num_features=64, num_conv=16) | overrides))


@NETS.register("srvgg_small")
def srvgg_small(**overrides: Any) -> SRVGGNet:
    """32 features, 12 body convolutions: sized to train on a CPU (32 channels also run
    about twice as fast per FLOP as 48 in oneDNN's convolution kernels)."""
    return SRVGGNet(**(dict(num_features=32, num_conv=12) | overrides))


@NETS.register("srvgg_medium")
def srvgg_medium(**overrides: Any) -> SRVGGNet:
    """48 features, 16 body convolutions, LeakyReLU (about 0.36 M parameters at x4): ONNX Runtime
    fuses LeakyReLU into the convolution but not PReLU, so this net runs about as fast on a CPU
    as `srvgg_small` with PReLU while holding nearly three times the weights."""
    return SRVGGNet(**(dict(num_features=48, num_conv=16, act="leaky_relu") | overrides))


@NETS.register("srvgg_tiny")
def srvgg_tiny(**overrides: Any) -> SRVGGNet:
    """8 features, 2 body convolutions: for tests only."""
    return SRVGGNet(**(dict(num_features=8, num_conv=2) | overrides))
