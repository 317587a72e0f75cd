import math

import pytest
import torch
from torch import nn

from img2img.losses import PENALTIES, clip_weights, dragan_penalty, r1_penalty, wgan_gp_penalty


class LinearD(nn.Module):
    """D(x) = sum(w * x) per sample: its input gradient is w everywhere, so ||grad|| = ||w||."""

    def __init__(self, value: float = 0.5):
        super().__init__()
        self.w = nn.Parameter(torch.full((3, 2, 2), value))

    def forward(self, x, return_features=False):
        logits = (x * self.w).sum(dim=(1, 2, 3)).unsqueeze(1)
        return (logits, [x * self.w]) if return_features else logits


class QuadraticD(nn.Module):
    """D(x) = sum(x^2) / 2 per sample: its input gradient is x itself."""

    def forward(self, x):
        return x.pow(2).sum(dim=(1, 2, 3)) / 2


def _images(batch=4):
    return torch.rand(batch, 3, 2, 2), torch.rand(batch, 3, 2, 2)


def test_registry_names():
    assert PENALTIES.names() == ["dragan", "r1", "wgan-gp"]


def test_linear_discriminator_by_hand():
    torch.manual_seed(0)
    d = LinearD(0.5)
    real, fake = _images()
    # w has 12 entries of 0.5: ||w|| = sqrt(12 * 0.25) = sqrt(3).
    norm = math.sqrt(3.0)
    assert wgan_gp_penalty(d, real, fake).item() == pytest.approx((norm - 1) ** 2, rel=1e-5)
    assert dragan_penalty(d, real, fake).item() == pytest.approx((norm - 1) ** 2, rel=1e-5)
    # r1 is E||grad||^2 with no 1/2: ||w||^2 = 3. A batch mean instead of a per-sample
    # gradient would give 3 / 16 here (batch 4).
    assert r1_penalty(d, real, fake).item() == pytest.approx(3.0, rel=1e-5)


@pytest.mark.parametrize(
    "name, expected_grad",
    [
        # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w|| = 2 (sqrt3 - 1) 0.5 / sqrt3 per entry.
        ("wgan-gp", 2 * (math.sqrt(3) - 1) * 0.5 / math.sqrt(3)),
        ("dragan", 2 * (math.sqrt(3) - 1) * 0.5 / math.sqrt(3)),
        # d/dw ||w||^2 = 2 w = 1 per entry.
        ("r1", 1.0),
    ],
)
def test_penalty_trains_discriminator(name, expected_grad):
    torch.manual_seed(0)
    d = LinearD(0.5)
    real, fake = _images()
    PENALTIES.get(name)(d, real, fake).backward()
    assert torch.allclose(d.w.grad, torch.full_like(d.w, expected_grad), rtol=1e-5)


def test_penalty_does_not_train_generator():
    torch.manual_seed(0)
    g = nn.Conv2d(3, 3, 1)
    real, noise = _images()
    fake = g(noise)
    for name in PENALTIES.names():
        PENALTIES.get(name)(LinearD(), real, fake).backward()
        assert g.weight.grad is None


def test_multiscale_scores_are_summed_and_patches_averaged():
    torch.manual_seed(0)
    w = torch.randn(3, 2, 2)
    v = torch.randn(3, 1, 1)

    class TwoScaleD(nn.Module):
        def forward(self, x):
            # Scale 1: one score sum(w * x). Scale 2: a 2x2 patch map sum_c(v_c * x_c), whose
            # mean over the 4 patches has input gradient v / 4 at every pixel.
            return [(x * w).sum(dim=(1, 2, 3)), (x * v).sum(dim=1, keepdim=True)]

    real, fake = _images()
    grad = w + v / 4
    expected = float(grad.pow(2).sum())
    assert r1_penalty(TwoScaleD(), real, fake).item() == pytest.approx(expected, rel=1e-5)


def test_wgan_gp_interpolates_between_real_and_fake():
    torch.manual_seed(0)
    real = torch.zeros(64, 3, 2, 2)
    fake = torch.full((64, 3, 2, 2), 0.5)
    # Quadratic D: grad = x = (1 - a) * 0.5 per pixel, so ||grad|| = (1 - a) * 0.5 * sqrt(12) with
    # a ~ U[0, 1); the penalty (||grad|| - 1)^2 averages over a to about
    # E[(sqrt3 * u - 1)^2] = 3/3 - sqrt3 + 1 = 2 - sqrt3 for u ~ U[0, 1].
    value = wgan_gp_penalty(QuadraticD(), real, fake).item()
    assert value == pytest.approx(2 - math.sqrt(3), abs=0.1)
    # With real == fake the interpolate is that image whatever a is.
    x = torch.rand(2, 3, 2, 2)
    norms = x.reshape(2, -1).norm(dim=1)
    expected = float((norms - 1).pow(2).mean())
    assert wgan_gp_penalty(QuadraticD(), x, x).item() == pytest.approx(expected, rel=1e-5)


def test_dragan_perturbs_real_by_half_std_upwards():
    torch.manual_seed(0)
    real = torch.rand(8, 3, 2, 2) + 1.0  # ||x|| > 1 so the penalty grows with the perturbation
    std = float(real.std())
    low = (real.reshape(8, -1).norm(dim=1) - 1).pow(2).mean()
    high = ((real + 0.5 * std).reshape(8, -1).norm(dim=1) - 1).pow(2).mean()
    value = dragan_penalty(QuadraticD(), real, torch.zeros(1)).item()
    assert float(low) < value < float(high)


def test_zero_gradient_gives_finite_penalty_gradient():
    d = LinearD(0.0)
    real, fake = _images()
    penalty = wgan_gp_penalty(d, real, fake)
    penalty.backward()
    assert penalty.item() == pytest.approx(1.0)
    assert torch.isfinite(d.w.grad).all()


def test_wgan_gp_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        wgan_gp_penalty(LinearD(), torch.rand(2, 3, 2, 2), torch.rand(1, 3, 2, 2))


def test_clip_weights():
    torch.manual_seed(0)
    d = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 1, 3))
    with torch.no_grad():
        d[0].weight.mul_(10)
    clip_weights(d, 0.01)
    for p in d.parameters():
        assert p.abs().max() <= 0.01
        assert p.requires_grad
    assert (d[0].weight.abs() == 0.01).any()
    with pytest.raises(ValueError, match="> 0"):
        clip_weights(d, 0.0)
