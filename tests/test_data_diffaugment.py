"""DiffAugment and the ADA probability controller (img2img.data.diffaugment)."""

import pytest
import torch

from img2img.data.diffaugment import (
    AdaptiveProbability,
    DiffAugment,
    random_cutout,
    random_translation,
)
from img2img.errors import ConfigError


def draw(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_same_draws_give_real_and_fake_the_same_transforms():
    augment = DiffAugment("color,translation,cutout")
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    as_real = augment(images, draw(3))
    as_fake = augment(images.clone(), draw(3))
    assert torch.equal(as_real, as_fake)
    assert not torch.equal(as_real, images)


def test_augmentation_is_differentiable_twice_for_r1():
    augment = DiffAugment("color,translation,cutout")
    weight = torch.randn(3, requires_grad=True)
    images = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_(True)
    score = (augment(images, draw(0)) * weight[None, :, None, None]).square().sum()
    (grad,) = torch.autograd.grad(score, images, create_graph=True)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    grad.square().sum().backward()  # R1 trains D through the input gradient
    assert weight.grad is not None and torch.isfinite(weight.grad).all()


def test_translation_shifts_whole_pixels_and_fills_zeros():
    image = torch.arange(256.0).view(1, 1, 16, 16).expand(64, 1, 16, 16).contiguous() + 1
    shifted = random_translation(image, draw(1))
    for out in shifted:
        nonzero = (out != 0).nonzero()
        top, left = nonzero[0, 1:].tolist()
        # The kept pixels are one block of the original, moved by at most 16 / 8 = 2 pixels.
        value = int(out[0, top, left]) - 1
        dy, dx = value // 16 - top, value % 16 - left
        assert max(abs(dy), abs(dx)) <= 2
        assert torch.equal(out[out != 0], torch.roll(image[0], (-dy, -dx), (1, 2))[out != 0])
    assert (shifted == 0).any()  # some shift uncovered a border
    assert any(not torch.equal(out, image[0]) for out in shifted)


def test_cutout_zeroes_one_square_of_half_the_side():
    image = torch.ones(32, 3, 8, 8)
    out = random_cutout(image, draw(2))
    zeros = (out == 0).all(dim=1).sum(dim=(1, 2))
    assert (zeros <= 16).all() and (zeros >= 4).all()  # 4x4 square, clipped at the border
    assert (zeros == 16).any()


def test_probability_zero_is_the_identity_and_policy_names_are_checked():
    images = torch.rand(3, 3, 8, 8)
    assert torch.equal(DiffAugment("color,translation,cutout", 0.0)(images, draw(0)), images)
    assert torch.equal(DiffAugment("none")(images, draw(0)), images)
    with pytest.raises(ConfigError, match="unknown augmentation 'rotate'"):
        DiffAugment("color,rotate")


def test_partial_probability_leaves_some_images_untouched():
    images = torch.rand(64, 3, 8, 8)
    out = DiffAugment("color", 0.5)(images, draw(4))
    untouched = sum(torch.equal(a, b) for a, b in zip(out, images))
    assert 0 < untouched < 64


def test_ada_raises_p_while_d_is_overconfident_and_lowers_it_otherwise():
    ada = AdaptiveProbability(target=0.6, interval=2, speed_images=64, batch_size=8, probability=0.5)
    step = 8 * 2 / 64
    ada.observe(torch.ones(8, 1))
    assert ada.probability == 0.5  # adjusted every 2 updates only
    ada.observe(torch.ones(8, 1))
    assert ada.probability == pytest.approx(0.5 + step)
    for _ in range(20):
        ada.observe(-torch.ones(8, 1))
    assert ada.probability == 0.0  # clamped
    ada.observe(torch.ones(8, 1))
    saved = ada.state_dict()
    twin = AdaptiveProbability(target=0.6, interval=2, speed_images=64, batch_size=8)
    twin.load_state_dict(saved)
    assert twin.observe(torch.ones(8, 1)) == ada.observe(torch.ones(8, 1)) == pytest.approx(step)
