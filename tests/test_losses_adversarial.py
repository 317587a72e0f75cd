import math

import pytest
import torch

from img2img.losses import ADVERSARIAL_LOSSES, build_adversarial_loss, feature_matching_loss

# Logits used throughout: real = [0, 2], fake = [0, -2].
# softplus(x) = ln(1 + e^x): softplus(0) = ln 2, softplus(2) = ln(1 + e^2),
# softplus(-2) = ln(1 + e^-2).
SP0 = math.log(2.0)
SP2 = math.log(1.0 + math.e**2)
SPM2 = math.log(1.0 + math.e**-2)
REAL = torch.tensor([0.0, 2.0])
FAKE = torch.tensor([0.0, -2.0])

# name -> (D loss, G loss) for REAL and FAKE, worked out by hand.
EXPECTED = {
    # D: mean softplus(-real) + mean softplus(fake) = (ln2 + sp(-2)) / 2 + (ln2 + sp(-2)) / 2.
    # G (saturating): -mean softplus(fake) = -(ln2 + sp(-2)) / 2.
    "minimax": (SP0 + SPM2, -(SP0 + SPM2) / 2),
    # G: mean softplus(-fake) = (ln2 + sp(2)) / 2.
    "nonsaturating": (SP0 + SPM2, (SP0 + SP2) / 2),
    # D: mean (real - 1)^2 = (1 + 1) / 2 = 1, mean fake^2 = (0 + 4) / 2 = 2 -> 3.
    # G: mean (fake - 1)^2 = (1 + 9) / 2 = 5.
    "lsgan": (3.0, 5.0),
    # D: mean(fake) - mean(real) = -1 - 1 = -2. G: -mean(fake) = 1.
    "wgan": (-2.0, 1.0),
    # D: mean relu(1 - real) = mean [1, 0] = 0.5, mean relu(1 + fake) = mean [1, 0] = 0.5 -> 1.
    # G: -mean(fake) = 1.
    "hinge": (1.0, 1.0),
}


def test_registry_names():
    assert ADVERSARIAL_LOSSES.names() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_losses_by_hand(name):
    loss = build_adversarial_loss(name)
    d_expected, g_expected = EXPECTED[name]
    assert float(loss.d_loss(REAL, FAKE)) == pytest.approx(d_expected, rel=1e-6)
    assert float(loss.g_loss(FAKE)) == pytest.approx(g_expected, rel=1e-6)


def test_label_smoothing_moves_only_the_real_target():
    loss = build_adversarial_loss("nonsaturating", real_label=0.9)
    # Real term with target 0.9: 0.9 * softplus(-r) + 0.1 * softplus(r)
    #   r = 0: ln 2;  r = 2: 0.9 * sp(-2) + 0.1 * sp(2).  Fake term unchanged: (ln2 + sp(-2)) / 2.
    real_term = (SP0 + 0.9 * SPM2 + 0.1 * SP2) / 2
    assert float(loss.d_loss(REAL, FAKE)) == pytest.approx(real_term + (SP0 + SPM2) / 2, rel=1e-6)
    assert float(loss.g_loss(FAKE)) == pytest.approx(EXPECTED["nonsaturating"][1], rel=1e-6)

    lsgan = build_adversarial_loss("lsgan", real_label=0.9)
    # Real term: mean((0 - 0.9)^2, (2 - 0.9)^2) = (0.81 + 1.21) / 2 = 1.01; fake term 2.
    assert float(lsgan.d_loss(REAL, FAKE)) == pytest.approx(3.01, rel=1e-6)
    assert float(lsgan.g_loss(FAKE)) == pytest.approx(5.0)


@pytest.mark.parametrize("name", ["wgan", "hinge"])
def test_label_smoothing_rejected_without_probability_target(name):
    with pytest.raises(ValueError, match="label smoothing"):
        build_adversarial_loss(name, real_label=0.9)
    build_adversarial_loss(name, real_label=1.0)


@pytest.mark.parametrize("real_label", [0.0, -0.1, 1.5])
def test_real_label_out_of_range(real_label):
    with pytest.raises(ValueError, match="real_label"):
        build_adversarial_loss("lsgan", real_label=real_label)


def test_unknown_name_lists_choices():
    with pytest.raises(KeyError, match="hinge"):
        build_adversarial_loss("vanilla")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_multiscale_is_mean_of_scales(name):
    torch.manual_seed(0)
    loss = build_adversarial_loss(name)
    # Two scales of different sizes, as a multi-scale PatchGAN gives.
    real = [torch.randn(2, 1, 8, 8), torch.randn(2, 1, 4, 4)]
    fake = [torch.randn(2, 1, 8, 8), torch.randn(2, 1, 4, 4)]
    d_each = [loss.d_loss(r, f) for r, f in zip(real, fake)]
    g_each = [loss.g_loss(f) for f in fake]
    assert float(loss.d_loss(real, fake)) == pytest.approx(float(sum(d_each)) / 2, rel=1e-6)
    assert float(loss.g_loss(fake)) == pytest.approx(float(sum(g_each)) / 2, rel=1e-6)


def test_scale_count_mismatch_raises():
    loss = build_adversarial_loss("hinge")
    with pytest.raises(ValueError, match="scales"):
        loss.d_loss([REAL, REAL], [FAKE])
    with pytest.raises(TypeError, match="list of Tensors"):
        loss.g_loss([])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_stable_for_huge_logits(name):
    loss = build_adversarial_loss(name)
    real = torch.tensor([1e4, -1e4], requires_grad=True)
    fake = torch.tensor([1e4, -1e4], requires_grad=True)
    total = loss.d_loss(real, fake) + loss.g_loss(fake)
    total.backward()
    assert torch.isfinite(total)
    assert torch.isfinite(real.grad).all() and torch.isfinite(fake.grad).all()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_gradients_point_the_right_way(name):
    # G gains by raising D's score of fakes; D gains by raising real scores and lowering fake
    # ones. 0.3 lies between lsgan's targets 0 and 1, so the claim holds for every objective.
    loss = build_adversarial_loss(name)
    real = torch.tensor([0.3], requires_grad=True)
    fake = torch.tensor([0.3], requires_grad=True)
    (g_grad,) = torch.autograd.grad(loss.g_loss(fake), fake)
    assert g_grad.item() < 0
    real_grad, fake_grad = torch.autograd.grad(loss.d_loss(real, fake), (real, fake))
    assert real_grad.item() < 0 < fake_grad.item()


def test_feature_matching_by_hand():
    real = [torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0]])]
    fake = [torch.zeros(1, 2, requires_grad=True), torch.ones(1, 1, requires_grad=True)]
    # Layer 1: L1 = (1 + 2) / 2 = 1.5; layer 2: L1 = 1; mean over layers 1.25.
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(1.25)
    loss.backward()
    assert fake[0].grad is not None


def test_feature_matching_does_not_train_through_real_features():
    real = torch.ones(1, 2, requires_grad=True)
    fake = torch.zeros(1, 2, requires_grad=True)
    loss = feature_matching_loss([real * 2], [fake])
    loss.backward()
    assert real.grad is None
    assert fake.grad is not None


def test_feature_matching_rejects_mismatches():
    with pytest.raises(ValueError, match="equal length"):
        feature_matching_loss([torch.zeros(1)], [])
    with pytest.raises(ValueError, match="same size"):
        feature_matching_loss([torch.zeros(2, 3)], [torch.zeros(1, 3)])
