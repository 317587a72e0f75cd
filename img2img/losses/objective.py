"""The GAN objective that tasks share: an adversarial loss, an optional gradient penalty and
WGAN weight clipping, returned as named loss terms (`l_d_adv`, `l_d_penalty`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from img2img.losses.adversarial import build_adversarial_loss
from img2img.losses.regularizers import PENALTIES, clip_weights


class GanObjective:
    """An adversarial loss plus optional gradient penalty and WGAN clipping, as named terms.

    Args:
        loss: name in ADVERSARIAL_LOSSES (minimax, nonsaturating, lsgan, wgan, hinge).
        weight: weight of G's adversarial term.
        real_label: target for real samples in D's loss; < 1 is one-sided label smoothing.
        penalty: "none" or a name in PENALTIES (wgan-gp, dragan, r1).
        penalty_weight: weight of the penalty. R1 is returned as E||grad||^2, so pass gamma / 2.
        penalty_interval: the penalty runs every k-th D update and is scaled by k (lazy
            regularisation, StyleGAN2) so its average strength does not change.
        clip: WGAN weight clipping limit applied after each D step; 0 disables.
    """

    def __init__(
        self,
        *,
        loss: str,
        weight: float,
        real_label: float = 1.0,
        penalty: str = "none",
        penalty_weight: float = 10.0,
        penalty_interval: int = 1,
        clip: float = 0.0,
    ) -> None:
        self.adversarial = build_adversarial_loss(loss, real_label=real_label)
        self.weight = weight
        self.penalty = None if penalty == "none" else PENALTIES.get(penalty)
        self.penalty_weight = penalty_weight
        self.penalty_interval = penalty_interval
        self.clip = clip

    @classmethod
    def from_config(cls, gan: Any, *, penalty_interval: int = 1) -> GanObjective:
        """From a task config's [gan] section (an `img2img.engine.config.GanConfig`, read by its
        fields) and its engine.penalty_interval."""
        return cls(
            loss=gan.loss,
            weight=gan.weight,
            real_label=gan.real_label,
            penalty=gan.penalty,
            penalty_weight=gan.penalty_weight,
            penalty_interval=penalty_interval,
            clip=gan.clip,
        )

    def generator_term(self, discriminator: nn.Module, fake: torch.Tensor) -> torch.Tensor:
        return self.weight * self.adversarial.g_loss(discriminator(fake))

    def discriminator_terms(
        self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, *, regularize: bool
    ) -> dict[str, torch.Tensor]:
        terms = {}
        real_logits = discriminator(real)
        fake_logits = discriminator(fake)
        terms["l_d_adv"] = self.adversarial.d_loss(real_logits, fake_logits)
        if self.penalty is not None and regularize:
            terms["l_d_penalty"] = self.penalty_term(discriminator, real, fake)
        return terms

    def penalty_term(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The weighted gradient penalty (scaled by the lazy-regularisation interval)."""
        # Double backward is unstable in bf16; the penalty always runs in float32.
        with torch.autocast(real.device.type, enabled=False):
            penalty = self.penalty(discriminator, real.float(), fake.float())
        return self.penalty_weight * self.penalty_interval * penalty

    def after_discriminator_step(self, discriminator: nn.Module) -> None:
        if self.clip > 0:
            clip_weights(discriminator, self.clip)
