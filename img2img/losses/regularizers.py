"""Discriminator regularisers: gradient penalties and WGAN weight clipping.

A penalty is `fn(discriminator, real, fake) -> Tensor`: images (B, C, H, W) in the
discriminator's input range in, an unweighted scalar out. The graph is built with
`create_graph=True`, so `penalty.backward()` trains the discriminator's parameters; add it to
the D loss times its weight. `real` and `fake` are detached inside: a penalty never trains G.

D's score of one sample is the mean of its logits (a patch map counts as one score), summed
over scales for multi-scale discriminators. Gradients are taken per sample (the scores are
summed over the batch, not averaged), so the penalty does not depend on the batch size.
The discriminator is called as `discriminator(x)`, which by the nets contract returns logits
only, also for discriminators that can return features.

Example:
    >>> import torch
    >>> from torch import nn
    >>> d = nn.Sequential(nn.Flatten(), nn.Linear(12, 1))
    >>> gp = PENALTIES.get("wgan-gp")(d, torch.rand(2, 3, 2, 2), torch.rand(2, 3, 2, 2))
    >>> gp.shape
    torch.Size([])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from img2img.registry import Registry

Penalty = Callable[[nn.Module, Tensor, Tensor], Tensor]

PENALTIES: Registry[Penalty] = Registry("gradient penalty")


def _score(discriminator: nn.Module, x: Tensor) -> Tensor:
    """Sum over the batch of each sample's score (mean logit, summed over scales)."""
    out = discriminator(x)
    scales = [out] if isinstance(out, Tensor) else list(out)
    return sum(s.reshape(s.shape[0], -1).mean(dim=1).sum() for s in scales)


def _input_gradients(discriminator: nn.Module, x: Tensor) -> Tensor:
    """d score / d x per sample, flattened to (B, C*H*W), differentiable w.r.t. D's weights."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(_score(discriminator, x), x, create_graph=True)
    return grad.reshape(grad.shape[0], -1)


def _distance_from_unit_norm(discriminator: nn.Module, x: Tensor) -> Tensor:
    # vector_norm rather than sqrt(sum of squares): its backward is 0, not NaN, where a
    # sample's gradient is exactly zero (a dead ReLU region, say).
    norms = torch.linalg.vector_norm(_input_gradients(discriminator, x), dim=1)
    return (norms - 1.0).pow(2).mean()


def _per_sample_uniform(x: Tensor) -> Tensor:
    """U[0, 1) of shape (B, 1, 1, ...) that broadcasts over x's non-batch dims."""
    return torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device, dtype=x.dtype)


@PENALTIES.register("wgan-gp")
def wgan_gp_penalty(discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """WGAN-GP (Gulrajani et al., 2017): E[(||grad_x D(x)|| - 1)^2] on random interpolates.

    x = a * real + (1 - a) * fake with a ~ U[0, 1) drawn per sample. Usual weight: 10.
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"wgan-gp interpolates real and fake, so they need the same shape; got "
            f"{tuple(real.shape)} and {tuple(fake.shape)}"
        )
    alpha = _per_sample_uniform(real)
    x = alpha * real.detach() + (1.0 - alpha) * fake.detach()
    return _distance_from_unit_norm(discriminator, x)


@PENALTIES.register("dragan")
def dragan_penalty(discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """DRAGAN (Kodali et al., 2017): E[(||grad_x D(x)|| - 1)^2] around the real data.

    x = real + 0.5 * std(real) * u with u ~ U[0, 1) per element and std over the whole batch.
    `fake` is unused (the argument keeps one signature for all penalties). Usual weight: 10.
    """
    del fake
    real = real.detach()
    x = real + 0.5 * real.std() * torch.rand_like(real)
    return _distance_from_unit_norm(discriminator, x)


@PENALTIES.register("r1")
def r1_penalty(discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """R1 (Mescheder et al., 2018): E[||grad_x D(x)||^2] on real samples, without the 1/2.

    The paper's regulariser is gamma/2 * E[||grad||^2]; this returns E[||grad||^2], so weight
    it by gamma / 2 (StyleGAN2's convention; gamma = 10 for FFHQ at 1024 px, smaller for
    smaller images). `fake` is unused.
    """
    del fake
    return _input_gradients(discriminator, real).pow(2).sum(dim=1).mean()


@torch.no_grad()
def clip_weights(module: nn.Module, limit: float) -> None:
    """Clamp every parameter of `module` to [-limit, limit] in place (WGAN, Arjovsky et al.).

    Call after each discriminator optimiser step; the paper uses limit = 0.01.
    """
    if limit <= 0:
        raise ValueError(f"clip limit must be > 0, got {limit}")
    for p in module.parameters():
        p.clamp_(-limit, limit)
