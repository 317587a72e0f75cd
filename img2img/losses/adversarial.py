"""Adversarial objectives on raw discriminator logits, and feature matching.

Discriminators return logits with no sigmoid: a Tensor of any shape (one score, or a patch
map (B, 1, h, w)), or a list of Tensors from a multi-scale discriminator. Every objective
averages over the elements of each scale and then over scales, so each scale counts equally
whatever its resolution.

The objectives, with D the logit and sigma the sigmoid (softplus(x) = log(1 + e^x)):

| name          | D minimises                                   | G minimises             |
|---------------|-----------------------------------------------|-------------------------|
| minimax       | softplus(-real) + softplus(fake)              | -softplus(fake)         |
| nonsaturating | softplus(-real) + softplus(fake)              | softplus(-fake)         |
| lsgan         | (real - 1)^2 + fake^2                         | (fake - 1)^2            |
| wgan          | fake - real                                   | -fake                   |
| hinge         | relu(1 - real) + relu(1 + fake)               | -fake                   |

`minimax` is Goodfellow et al. (2014)'s saturating game (G minimises log(1 - sigma(fake)) =
-softplus(fake)); `nonsaturating` is the same paper's practical variant (G maximises
log sigma(fake)); `lsgan` is Mao et al. (2017) with targets a=0, b=c=1; `wgan` is Arjovsky et
al. (2017), used with weight clipping or a gradient penalty from `regularizers`; `hinge` is the
SAGAN / BigGAN form. Sigmoid and log are always fused into softplus
(`binary_cross_entropy_with_logits`), which stays finite for logits of any size. The D loss is
the plain sum of its real and fake terms; factors such as pix2pix's 1/2 belong in the weights.

Example:
    >>> import torch
    >>> loss = build_adversarial_loss("hinge")
    >>> float(loss.d_loss(torch.tensor([2.0]), torch.tensor([-2.0])))  # relu(-1) + relu(-1)
    0.0
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from img2img.registry import Registry

Logits = Tensor | Sequence[Tensor]


def _scales(logits: Logits, what: str) -> list[Tensor]:
    if isinstance(logits, Tensor):
        return [logits]
    scales = list(logits)
    if not scales or not all(isinstance(t, Tensor) for t in scales):
        raise TypeError(f"{what} must be a Tensor or a non-empty list of Tensors (one per scale)")
    return scales


def _mean_over_scales(terms: list[Tensor]) -> Tensor:
    return torch.stack(terms).mean()


class AdversarialLoss(ABC):
    """Base class: a GAN objective with a discriminator side and a generator side.

    Subclasses define the per-scale terms `_d_real`, `_d_fake` and `_g`, each returning a
    scalar. `real_label` < 1 is one-sided label smoothing (Salimans et al., 2016): only the
    target of real samples in the discriminator loss moves, fakes keep target 0 and the
    generator keeps target 1.
    """

    name: str
    # Whether the objective has a probability-like target for real samples that
    # label smoothing can soften.
    smoothable: bool = True

    def __init__(self, *, real_label: float = 1.0) -> None:
        if not 0.0 < real_label <= 1.0:
            raise ValueError(f"real_label must be in (0, 1], got {real_label}")
        if real_label != 1.0 and not self.smoothable:
            raise ValueError(
                f"real_label={real_label} (one-sided label smoothing) needs a target for real "
                f"samples, and the {self.name!r} objective has none: leave real_label at 1.0, "
                f"or use minimax, nonsaturating or lsgan"
            )
        self.real_label = float(real_label)
        self.hparams = {"name": self.name, "real_label": self.real_label}

    def d_loss(self, real_logits: Logits, fake_logits: Logits) -> Tensor:
        """Discriminator loss (scalar) from D's logits on real and on (detached) fake images."""
        real = _scales(real_logits, "real_logits")
        fake = _scales(fake_logits, "fake_logits")
        if len(real) != len(fake):
            raise ValueError(
                f"real_logits has {len(real)} scales but fake_logits has {len(fake)}; pass the "
                f"outputs of the same discriminator"
            )
        return _mean_over_scales([self._d_real(r) + self._d_fake(f) for r, f in zip(real, fake)])

    def g_loss(self, fake_logits: Logits) -> Tensor:
        """Generator loss (scalar) from D's logits on fake images (not detached)."""
        return _mean_over_scales([self._g(f) for f in _scales(fake_logits, "fake_logits")])

    @abstractmethod
    def _d_real(self, real: Tensor) -> Tensor: ...

    @abstractmethod
    def _d_fake(self, fake: Tensor) -> Tensor: ...

    @abstractmethod
    def _g(self, fake: Tensor) -> Tensor: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(real_label={self.real_label})"


ADVERSARIAL_LOSSES: Registry[type[AdversarialLoss]] = Registry("adversarial loss")


class _CrossEntropyGAN(AdversarialLoss):
    """Shared discriminator side of the minimax and non-saturating games."""

    def _d_real(self, real: Tensor) -> Tensor:
        # With target y: y * softplus(-x) + (1 - y) * softplus(x); y = 1 gives softplus(-x).
        return F.binary_cross_entropy_with_logits(real, torch.full_like(real, self.real_label))

    def _d_fake(self, fake: Tensor) -> Tensor:
        return F.softplus(fake).mean()


@ADVERSARIAL_LOSSES.register("minimax")
class MinimaxLoss(_CrossEntropyGAN):
    """The original saturating game: G minimises log(1 - sigma(fake)) = -softplus(fake).

    Its gradient vanishes when D confidently rejects fakes (early training); prefer
    `nonsaturating` unless reproducing the paper's game.
    """

    name = "minimax"

    def _g(self, fake: Tensor) -> Tensor:
        return -F.softplus(fake).mean()


@ADVERSARIAL_LOSSES.register("nonsaturating")
class NonSaturatingLoss(_CrossEntropyGAN):
    """G maximises log sigma(fake), i.e. minimises softplus(-fake) (BCE of fakes against 1)."""

    name = "nonsaturating"

    def _g(self, fake: Tensor) -> Tensor:
        return F.softplus(-fake).mean()


@ADVERSARIAL_LOSSES.register("lsgan")
class LSGANLoss(AdversarialLoss):
    """Least squares GAN: D regresses real to `real_label` and fake to 0, G regresses fake to 1."""

    name = "lsgan"

    def _d_real(self, real: Tensor) -> Tensor:
        return F.mse_loss(real, torch.full_like(real, self.real_label))

    def _d_fake(self, fake: Tensor) -> Tensor:
        return fake.pow(2).mean()

    def _g(self, fake: Tensor) -> Tensor:
        return F.mse_loss(fake, torch.ones_like(fake))


@ADVERSARIAL_LOSSES.register("wgan")
class WassersteinLoss(AdversarialLoss):
    """Wasserstein critic: D minimises mean(fake) - mean(real), G minimises -mean(fake).

    The critic must be kept Lipschitz by `clip_weights` or a "wgan-gp" penalty.
    """

    name = "wgan"
    smoothable = False

    def _d_real(self, real: Tensor) -> Tensor:
        return -real.mean()

    def _d_fake(self, fake: Tensor) -> Tensor:
        return fake.mean()

    def _g(self, fake: Tensor) -> Tensor:
        return -fake.mean()


@ADVERSARIAL_LOSSES.register("hinge")
class HingeLoss(AdversarialLoss):
    """Hinge GAN: D minimises relu(1 - real) + relu(1 + fake), G minimises -mean(fake)."""

    name = "hinge"
    smoothable = False

    def _d_real(self, real: Tensor) -> Tensor:
        return F.relu(1.0 - real).mean()

    def _d_fake(self, fake: Tensor) -> Tensor:
        return F.relu(1.0 + fake).mean()

    def _g(self, fake: Tensor) -> Tensor:
        return -fake.mean()


def build_adversarial_loss(name: str, *, real_label: float = 1.0) -> AdversarialLoss:
    """The objective registered as `name` (see `ADVERSARIAL_LOSSES.names()`).

    `real_label` < 1 is one-sided label smoothing, valid for minimax, nonsaturating and lsgan.
    """
    return ADVERSARIAL_LOSSES.get(name)(real_label=real_label)


def feature_matching_loss(
    real_features: Sequence[Tensor], fake_features: Sequence[Tensor]
) -> Tensor:
    """Feature matching (pix2pixHD): mean over layers of L1(fake feature, real feature).

    `real_features` and `fake_features` are the flat lists a discriminator returns with
    `return_features=True` for real and fake images. Real features are detached: this term
    trains the generator only, towards what D sees in real images.
    """
    if len(real_features) != len(fake_features) or not real_features:
        raise ValueError(
            f"feature lists must be non-empty and of equal length, got {len(real_features)} "
            f"and {len(fake_features)}; pass features from the same discriminator"
        )
    terms = []
    for i, (real, fake) in enumerate(zip(real_features, fake_features)):
        if real.shape != fake.shape:
            raise ValueError(
                f"feature {i} has shape {tuple(real.shape)} for real and {tuple(fake.shape)} for "
                f"fake images; real and fake batches must have the same size"
            )
        terms.append(F.l1_loss(fake, real.detach()))
    return torch.stack(terms).mean()
