"""How far a stylised image is from its content and from its style, in VGG19 feature space.

The two numbers style-transfer papers trade against each other, measured with one frozen
ImageNet VGG19 (`img2img.losses.VGG19Features`) for every model compared:

- content distance: mean squared difference of relu4_1 features of the output and of the
  content photo (the layer AdaIN's content loss uses; deep enough to ignore texture);
- style distance: over relu1_1 ... relu5_1, the sum of the mean squared differences between the
  Gram matrices (normalised by C * H * W) of the output and of the style image (Gatys et al.).

Lower is better for both; a model that returns the photo unchanged scores content 0 and one that
pastes the style image scores style 0, so the pair is read together.

Example:
    >>> import torch
    >>> from img2img.losses import VGG19Features
    >>> metric = StyleDistance(VGG19Features(layers=STYLE_DISTANCE_LAYERS))  # doctest: +SKIP
    >>> grams = metric.style_grams(torch.rand(1, 3, 64, 64))  # doctest: +SKIP
    >>> metric(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64), grams)  # doctest: +SKIP
    {'content_distance': tensor([...]), 'style_distance': tensor([...])}
"""

from __future__ import annotations

import torch
from torch import Tensor

from img2img.losses.perceptual import STYLE_LAYERS, VGG19Features, gram_matrix

CONTENT_LAYER = "relu4_1"
# The content layer is one of the style layers, so one VGG pass serves both distances.
STYLE_DISTANCE_LAYERS = STYLE_LAYERS


class StyleDistance:
    """Per-image content and style distances through a shared VGG19.

    Args:
        features: a `VGG19Features` returning relu1_1 ... relu5_1 (`STYLE_DISTANCE_LAYERS`).
    """

    def __init__(self, features: VGG19Features) -> None:
        missing = [name for name in STYLE_DISTANCE_LAYERS if name not in features.layers]
        if missing:
            raise ValueError(f"the VGG19 features must return {missing}; build them with layers=STYLE_DISTANCE_LAYERS")
        self.features = features

    @torch.no_grad()
    def style_grams(self, style: Tensor) -> dict[str, Tensor]:
        """Gram matrices (B, C, C) of style images (B, 3, h, w) in [0, 1] at each style layer."""
        features = self.features(style)
        return {name: gram_matrix(features[name]) for name in STYLE_LAYERS}

    @torch.no_grad()
    def __call__(self, output: Tensor, content: Tensor, style_grams: dict[str, Tensor]) -> dict[str, Tensor]:
        """Distances of stylised images (B, 3, H, W) from their content photos (B, 3, H, W), both
        in [0, 1], and from Gram matrices (1 or B, C, C) of their styles:
        {"content_distance": (B,), "style_distance": (B,)}."""
        if output.shape != content.shape:
            raise ValueError(f"output {tuple(output.shape)} and content {tuple(content.shape)} must have the same shape")
        return self.from_features(self.features(output), self.features(content), style_grams)

    @torch.no_grad()
    def from_features(
        self, output_features: dict[str, Tensor], content_features: dict[str, Tensor], style_grams: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """The same distances from feature dicts already computed by `self.features`."""
        output_content = output_features[CONTENT_LAYER]
        content_distance = (output_content - content_features[CONTENT_LAYER]).pow(2).flatten(1).mean(1)
        style_distance = torch.zeros(output_content.shape[0], device=output_content.device)
        for name in STYLE_LAYERS:
            difference = gram_matrix(output_features[name]) - style_grams[name]
            style_distance += difference.pow(2).flatten(1).mean(1)
        return {"content_distance": content_distance, "style_distance": style_distance}
