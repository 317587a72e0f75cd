"""ResNet generator of CycleGAN.

Zhu et al., 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
Networks", after Johnson et al., 2016, "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution". A 7x7 stem, stride-2 downsamplings, residual blocks at the low resolution,
upsamplings back and a 7x7 output convolution with tanh. Reflection padding keeps image borders
free of the dark seams zero padding leaves.

Paper-to-code map (CycleGAN Appendix 7.2, 9 blocks): c7s1-64 is the stem, d128 and d256 the
downsamplings, R256 x 9 the residual blocks, u128 and u64 the upsamplings, c7s1-3 the head. The
upsamplings use kernel 4 (not 3 with output padding), which doubles the size exactly.
"""

from __future__ import annotations

from typing import Any

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
from img2img.registry import Registry

# `padding` option -> `nn.Conv2d(padding_mode=...)`.
PADDINGS: Registry[str] = Registry("padding")
PADDINGS.register("reflect")("reflect")
PADDINGS.register("replicate")("replicate")
PADDINGS.register("zero")("zeros")


class ResnetBlock(nn.Module):
    """conv3x3-norm-ReLU-(dropout)-conv3x3-norm plus the identity.

    Shape: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, *, padding_mode: str, norm: str, use_dropout: bool) -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode=padding_mode, bias=bias),
            get_norm_layer(norm, channels),
            nn.ReLU(),
        ]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode=padding_mode, bias=bias),
            get_norm_layer(norm, channels),
        ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


@NETS.register("ResnetGenerator")
class ResnetGenerator(nn.Module):
    """CycleGAN ResNet generator.

    Args:
        in_channels: channels of the input image.
        out_channels: channels of the output image.
        base_channels: width of the stem; doubled at each downsampling.
        num_blocks: residual blocks at the lowest resolution (6 for 128x128, 9 for 256x256 in
            the paper).
        num_downsampling: stride-2 convolutions; H and W must be multiples of
            2**num_downsampling.
        norm: "instance" (as in the paper), "batch" or "none".
        use_dropout: dropout 0.5 inside each residual block.
        padding: padding of the residual blocks: "reflect", "replicate" or "zero".
        upsample: "transpose" (transposed convolutions) or "resize" (nearest upsampling + 3x3
            conv, free of checkerboard artefacts).
        self_attention: add a SAGAN self-attention block halfway through the residual blocks.
        residual: predict a change to the input instead of the output, x + G(x), with no tanh
            and the last convolution zero-initialised, so the untrained net returns its input
            (the mapping CycleGAN's identity loss asks for on the target domain). Needs
            in_channels == out_channels.

    Shape:
        (B, in_channels, H, W) in [-1, 1] -> (B, out_channels, H, W) in [-1, 1] (tanh); with
        `residual`, nominally in [-1, 1] but not clamped, so a pixel pushed past the range still
        gets a gradient back (the exported graph and the metrics clamp). H and W
        at least `min_size`: reflection padding needs 2 pixels at the lowest resolution.
    """

    arch = "ResnetGenerator"
    inputs = IMAGE  # the exported graph's inputs (img2img.contract)
    scale = 1
    input_range = (-1.0, 1.0)

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        base_channels: int = 64,
        num_blocks: int = 9,
        num_downsampling: int = 2,
        norm: str = "instance",
        use_dropout: bool = False,
        padding: str = "reflect",
        upsample: str = "transpose",
        self_attention: bool = False,
        residual: bool = False,
    ) -> None:
        super().__init__()
        padding_mode = PADDINGS.get(padding)
        check_residual(residual, in_channels, out_channels)
        self.hparams: dict[str, Any] = dict(
            in_channels=in_channels,
            out_channels=out_channels,
            base_channels=base_channels,
            num_blocks=num_blocks,
            num_downsampling=num_downsampling,
            norm=norm,
            use_dropout=use_dropout,
            padding=padding,
            upsample=upsample,
            self_attention=self_attention,
        )
        if residual:  # recorded only when set, so the nets saved before it existed still match
            self.hparams["residual"] = True
        self.residual = residual
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.multiple_of = 2**num_downsampling
        # The 7x7 convolutions reflect 3 pixels at full resolution; reflecting residual blocks
        # need 2 pixels at the lowest one.
        smallest = max(4, 2 * self.multiple_of if padding == "reflect" else self.multiple_of)
        self.min_size = -(-smallest // self.multiple_of) * self.multiple_of
        bias = conv_bias(norm)

        encoder: list[nn.Module] = [
            nn.Conv2d(in_channels, base_channels, 7, padding=3, padding_mode="reflect", bias=bias),
            get_norm_layer(norm, base_channels),
            nn.ReLU(),
        ]
        width = base_channels
        for _ in range(num_downsampling):
            encoder += [
                nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=bias),
                get_norm_layer(norm, 2 * width),
                nn.ReLU(),
            ]
            width *= 2
        self.encoder = nn.Sequential(*encoder)

        blocks = [
            ResnetBlock(width, padding_mode=padding_mode, norm=norm, use_dropout=use_dropout)
            for _ in range(num_blocks)
        ]
        # nn.Identity keeps the block indices (and so the state-dict keys) the same either way.
        attention = SelfAttention(width) if self_attention else nn.Identity()
        half = num_blocks // 2
        self.bottleneck = nn.Sequential(*blocks[:half], attention, *blocks[half:])

        decoder: list[nn.Module] = []
        for _ in range(num_downsampling):
            decoder += [
                get_upsample_layer(upsample, width, width // 2, bias=bias),
                get_norm_layer(norm, width // 2),
                nn.ReLU(),
            ]
            width //= 2
        head = nn.Conv2d(width, out_channels, 7, padding=3, padding_mode="reflect")
        decoder += [head] if residual else [head, nn.Tanh()]
        self.decoder = nn.Sequential(*decoder)

        init_weights(self, "normal", 0.02)
        if residual:
            zero_init(head)

    def forward(self, x: Tensor) -> Tensor:
        check_image_size(
            self, x, channels=self.in_channels, multiple_of=self.multiple_of, min_size=self.min_size
        )
        change_or_output = self.decoder(self.bottleneck(self.encoder(x)))
        return x + change_or_output if self.residual else change_or_output


@NETS.register("resnet_6blocks")
def resnet_6blocks(**overrides: Any) -> ResnetGenerator:
    """CycleGAN generator for 128x128 images: 6 residual blocks, 64 base channels."""
    return ResnetGenerator(**(dict(base_channels=64, num_blocks=6) | overrides))


@NETS.register("resnet_9blocks")
def resnet_9blocks(**overrides: Any) -> ResnetGenerator:
    """CycleGAN generator for 256x256 images: 9 residual blocks, 64 base channels."""
    return ResnetGenerator(**(dict(base_channels=64, num_blocks=9) | overrides))


@NETS.register("resnet_style")
def resnet_style(**overrides: Any) -> ResnetGenerator:
    """Johnson et al.'s fast style-transfer network: 32 base channels, 5 residual blocks at 1/4
    resolution, instance norm, and resize+conv upsampling (transposed convolutions leave a
    checkerboard in painted textures): 1.7 M parameters."""
    return ResnetGenerator(**(dict(base_channels=32, num_blocks=5, upsample="resize") | overrides))


@NETS.register("resnet_style_small")
def resnet_style_small(**overrides: Any) -> ResnetGenerator:
    """A slim fast style-transfer network for CPU inference: 16 base channels, 3 residual blocks
    (0.27 M parameters, about 1/5 of `resnet_style`'s multiply-adds per pixel)."""
    return ResnetGenerator(**(dict(base_channels=16, num_blocks=3, upsample="resize") | overrides))


@NETS.register("resnet_tiny")
def resnet_tiny(**overrides: Any) -> ResnetGenerator:
    """8 base channels, 2 residual blocks: for tests only."""
    return ResnetGenerator(**(dict(base_channels=8, num_blocks=2) | overrides))
