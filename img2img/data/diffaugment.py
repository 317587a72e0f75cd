"""Differentiable augmentation of everything the discriminator sees, so small sets do not collapse.

DiffAugment (Zhao et al., 2020, "Differentiable Augmentation for Data-Efficient GAN Training"):
the same random colour, translation and cutout transforms are applied to real images and to
generated ones, in the D update and in the G update alike. Because they are differentiable, G
learns through them; because D only ever sees augmented images of both kinds, it cannot simply
memorise a small training set, and since the transforms do not depend on which kind an image
is, they do not leak into what G learns to make.

ADA (Karras et al., 2020, "Training Generative Adversarial Networks with Limited Data") makes the
strength adaptive: each transform is applied to each image with probability p, and p is raised
while D overfits (the sign of its logits on real images is mostly positive, above `target`) and
lowered otherwise. `AdaptiveProbability` is that controller.

Images are (B, C, H, W) in [-1, 1] (the generator's tanh range); every random draw comes from a
`torch.Generator` passed in, so a training step is reproducible and a resumed run continues
exactly.

Example:
    >>> import torch
    >>> augment = DiffAugment("color,translation,cutout")
    >>> x = torch.rand(4, 3, 16, 16, requires_grad=True) * 2 - 1
    >>> augment(x, torch.Generator().manual_seed(0)).shape
    torch.Size([4, 3, 16, 16])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from img2img.errors import ConfigError

# DiffAugment's defaults: shifts of up to 1/8 of the side, a cutout square of half the side.
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _uniform(x: Tensor, generator: torch.Generator, low: float = 0.0, high: float = 1.0) -> Tensor:
    """U[low, high) per sample, shaped (B, 1, 1, 1)."""
    u = torch.rand(x.shape[0], 1, 1, 1, generator=generator, device=generator.device)
    return (low + (high - low) * u).to(device=x.device, dtype=x.dtype)


def random_brightness(x: Tensor, generator: torch.Generator) -> Tensor:
    """Adds one offset in [-0.5, 0.5) per image."""
    return x + _uniform(x, generator, -0.5, 0.5)


def random_saturation(x: Tensor, generator: torch.Generator) -> Tensor:
    """Scales each pixel's distance from its channel mean by a factor in [0, 2) per image."""
    mean = x.mean(dim=1, keepdim=True)
    return mean + (x - mean) * _uniform(x, generator, 0.0, 2.0)


def random_contrast(x: Tensor, generator: torch.Generator) -> Tensor:
    """Scales the distance from the image mean by a factor in [0.5, 1.5) per image."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (x - mean) * _uniform(x, generator, 0.5, 1.5)


def random_translation(x: Tensor, generator: torch.Generator) -> Tensor:
    """Shifts each image by whole pixels, up to 1/8 of its side either way; uncovered pixels are 0."""
    batch, _, height, width = x.shape
    limit = torch.tensor([height, width], device=generator.device) * TRANSLATION_RATIO
    draw = torch.rand(batch, 2, generator=generator, device=generator.device)
    shift = torch.round((2 * draw - 1) * limit).long().to(x.device)  # (B, 2): rows, columns
    # Indexing a zero-padded copy rather than grid_sample: R1 differentiates D's input gradient
    # once more, and grid_sample has no second derivative.
    rows = (torch.arange(height, device=x.device)[None, :] + shift[:, :1] + 1).clamp(0, height + 1)  # (B, H)
    cols = (torch.arange(width, device=x.device)[None, :] + shift[:, 1:] + 1).clamp(0, width + 1)  # (B, W)
    padded = F.pad(x, [1, 1, 1, 1])
    index = torch.arange(batch, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_cutout(x: Tensor, generator: torch.Generator) -> Tensor:
    """Zeroes one square of half the image side per image, at a random place (it may overhang)."""
    batch, _, height, width = x.shape
    size_y, size_x = int(height * CUTOUT_RATIO + 0.5), int(width * CUTOUT_RATIO + 0.5)
    draw = torch.rand(batch, 2, generator=generator, device=generator.device).to(x.device)
    # Top-left corners such that the square's centre lies anywhere in the image.
    top = (draw[:, 0] * (height + 1 - size_y % 2)).long() - size_y // 2
    left = (draw[:, 1] * (width + 1 - size_x % 2)).long() - size_x // 2
    rows = torch.arange(height, device=x.device)[None, :]
    cols = torch.arange(width, device=x.device)[None, :]
    inside_y = (rows >= top[:, None]) & (rows < top[:, None] + size_y)  # (B, H)
    inside_x = (cols >= left[:, None]) & (cols < left[:, None] + size_x)  # (B, W)
    keep = ~(inside_y[:, :, None] & inside_x[:, None, :])  # (B, H, W)
    return x * keep[:, None].to(x.dtype)


Transform = Callable[[Tensor, torch.Generator], Tensor]

# Policy name -> transforms, in DiffAugment's order.
POLICIES: dict[str, tuple[Transform, ...]] = {
    "color": (random_brightness, random_saturation, random_contrast),
    "translation": (random_translation,),
    "cutout": (random_cutout,),
}


def parse_policy(policy: str) -> tuple[str, ...]:
    """"color,translation,cutout" -> its names; "" or "none" -> (). Unknown names raise ConfigError."""
    names = tuple(name.strip() for name in policy.split(",") if name.strip() and name.strip() != "none")
    unknown = [name for name in names if name not in POLICIES]
    if unknown:
        raise ConfigError(
            f"unknown augmentation {unknown[0]!r}; use a comma-separated list of {', '.join(POLICIES)} (or none)"
        )
    return names


class DiffAugment:
    """Applies a policy's transforms in order, each to each image with probability `probability`.

    Args:
        policy: comma-separated names of POLICIES ("color,translation,cutout" is DiffAugment's
            full policy); "" or "none" gives the identity.
        probability: chance that a transform is applied to an image; 1 is DiffAugment, an
            adaptive value is ADA (set `probability` between steps).

    Shape:
        (B, C, H, W) -> (B, C, H, W), differentiable with respect to the input.
    """

    def __init__(self, policy: str, probability: float = 1.0) -> None:
        self.names = parse_policy(policy)
        self.probability = probability

    def __bool__(self) -> bool:
        return bool(self.names) and self.probability > 0

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if not self:
            return x
        for name in self.names:
            for transform in POLICIES[name]:
                out = transform(x, generator)
                if self.probability < 1:
                    chosen = _uniform(x, generator) < self.probability
                    out = torch.where(chosen, out, x)
                x = out
        return x


class AdaptiveProbability:
    """ADA's controller of the augmentation probability p.

    Every `interval` discriminator updates, r_t = E[sign(D(real))] over them is compared with
    `target` (0.6 in the paper) and p moves by batch * interval / `speed_images` towards more
    augmentation when r_t is above it (D is overconfident on real images: overfitting), towards
    less when below; p stays in [0, 1].

    `reduce` averages each update's sign over the processes of a distributed run (the engine's
    `distributed.mean_across_ranks`); by default this process's sign is used alone.
    """

    def __init__(
        self,
        *,
        target: float,
        interval: int,
        speed_images: int,
        batch_size: int,
        probability: float = 0.0,
        reduce: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self._reduce = reduce if reduce is not None else (lambda values: values)
        if not 0 < target < 1:
            raise ConfigError(f"ada_target must be between 0 and 1 (0.6 in the ADA paper), got {target}")
        self.target = target
        self.interval = interval
        self.step_size = batch_size * interval / speed_images
        self.probability = probability
        self._signs: list[float] = []

    def observe(self, real_logits: Tensor) -> float:
        """Records one D update's logits on real images; returns p, adjusted when due. Under
        torchrun the sign is averaged over the ranks, so every rank holds the same p."""
        self._signs.append(float(self._reduce(torch.sign(real_logits.detach().float()).mean())))
        if len(self._signs) >= self.interval:
            overfitting = sum(self._signs) / len(self._signs)
            direction = 1.0 if overfitting > self.target else -1.0
            self.probability = min(1.0, max(0.0, self.probability + direction * self.step_size))
            self._signs.clear()
        return self.probability

    def state_dict(self) -> dict[str, object]:
        return {"probability": self.probability, "signs": list(self._signs)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.probability = float(state["probability"])
        self._signs = [float(sign) for sign in state["signs"]]
