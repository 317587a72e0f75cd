import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from img2img.data.degradations import (
    DEGRADATIONS,
    RealWorldDegradation,
    bicubic_downscale,
    bicubic_upscale,
    build_degradation,
)
from img2img.metrics import psnr

NO_STEPS = dict(
    blur_prob=0.0,
    noise_prob=0.0,
    jpeg_prob=0.0,
    intermediate_prob=0.0,
    resize_modes=("area",),
)


def textured_batch(batch=4, size=64, seed=0):
    """Photo-like test images: smooth gradients, edges at several orientations and fine detail."""
    generator = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    images = []
    for _ in range(batch):
        freq, angle, phase = torch.rand(3, generator=generator) * torch.tensor([20.0, math.pi, 6.0])
        along = x * torch.cos(angle) + y * torch.sin(angle)
        stripes = torch.sin(2 * math.pi * freq * along + phase)
        detail = F.avg_pool2d(torch.rand(1, 3, size, size, generator=generator), 3, 1, 1)[0]
        gradient = torch.stack([x, y, 1 - x])
        images.append((0.35 * gradient + 0.25 * stripes + 0.4 * detail).clamp(0, 1))
    return torch.stack(images)


def test_bicubic_downscale_shape_and_range():
    hr = torch.rand(2, 3, 32, 48)
    lr = bicubic_downscale(hr, 4)
    assert lr.shape == (2, 3, 8, 12)
    assert 0.0 <= lr.min() and lr.max() <= 1.0


def test_bicubic_keeps_a_constant_image_constant():
    hr = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(bicubic_downscale(hr, 2), torch.full((1, 3, 8, 8), 0.3), atol=1e-6)
    assert torch.allclose(bicubic_upscale(hr, 3), torch.full((1, 3, 48, 48), 0.3), atol=1e-6)


def test_bicubic_matches_pillow_on_a_smooth_image():
    # The documented contract: the same kernel as Pillow's BICUBIC (and MATLAB imresize).
    y, x = np.mgrid[0:64, 0:48]
    array = np.stack(
        [
            128 + 100 * np.sin(x / 3.0) * np.cos(y / 4.0),
            128 + 60 * np.sin(y / 2.5),
            128 + 90 * np.cos((x + y) / 3.5),
        ],
        axis=-1,
    ).round().astype(np.uint8)
    image = Image.fromarray(array)
    tensor = torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255
    down = np.asarray(image.resize((12, 16), Image.Resampling.BICUBIC)) / 255
    up = np.asarray(image.resize((96, 128), Image.Resampling.BICUBIC)) / 255
    ours_down = bicubic_downscale(tensor, 4)[0].permute(1, 2, 0).numpy()
    ours_up = bicubic_upscale(tensor, 2)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours_down - down).max() <= 1.5 / 255
    assert np.abs(ours_up - up).max() <= 1.5 / 255


def test_bicubic_rejects_sizes_not_divisible_by_scale():
    with pytest.raises(ValueError, match="multiple of the scale 4"):
        bicubic_downscale(torch.rand(1, 3, 30, 32), 4)


def test_realworld_shape_range_and_8bit_levels():
    degrade = RealWorldDegradation(scale=4)
    lr = degrade(textured_batch(batch=6), torch.Generator().manual_seed(0))
    assert lr.shape == (6, 3, 16, 16)
    assert 0.0 <= lr.min() and lr.max() <= 1.0
    assert torch.allclose(lr * 255, (lr * 255).round(), atol=1e-4)


def test_realworld_is_deterministic_under_a_seeded_generator():
    degrade = RealWorldDegradation(scale=2, blur_prob=0.5, noise_prob=0.5, jpeg_prob=0.5)
    hr = textured_batch(batch=8, size=32)
    a = degrade(hr, torch.Generator().manual_seed(7))
    b = degrade(hr, torch.Generator().manual_seed(7))
    c = degrade(hr, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # Without a generator it follows torch's global seed.
    torch.manual_seed(3)
    d = degrade(hr)
    torch.manual_seed(3)
    assert torch.equal(d, degrade(hr))


def test_realworld_degrades_more_than_bicubic():
    hr = textured_batch(batch=8)
    baseline = psnr(bicubic_upscale(bicubic_downscale(hr, 4), 4), hr).mean()
    lr = RealWorldDegradation(scale=4)(hr, torch.Generator().manual_seed(0))
    assert psnr(bicubic_upscale(lr, 4), hr).mean() < baseline - 1.0


def test_second_order_degrades_further_keeps_the_size_and_is_seeded():
    # A re-saved, re-shared photo: the second pass must cost detail on top of the first.
    hr = textured_batch(batch=6)
    first = RealWorldDegradation(scale=4)
    both = RealWorldDegradation(scale=4, second_order_prob=1.0)
    once = first(hr, torch.Generator().manual_seed(0))
    twice = both(hr, torch.Generator().manual_seed(0))
    assert twice.shape == once.shape == (6, 3, 16, 16)
    assert torch.allclose(twice * 255, (twice * 255).round(), atol=1e-4) and 0 <= twice.min() and twice.max() <= 1
    assert psnr(bicubic_upscale(twice, 4), hr).mean() < psnr(bicubic_upscale(once, 4), hr).mean()
    assert torch.equal(twice, both(hr, torch.Generator().manual_seed(0)))


def test_clean_share_is_the_bicubic_lr_and_leaves_the_others_as_they_were():
    # clean_prob keeps clean LR in a real-world model's diet; the other samples and every
    # earlier recipe (clean_prob 0) must see exactly the LR they saw before.
    hr = textured_batch(batch=8)
    plain = RealWorldDegradation(scale=4, second_order_prob=0.5)(hr, torch.Generator().manual_seed(5))
    mixed = RealWorldDegradation(scale=4, second_order_prob=0.5, clean_prob=0.5)(hr, torch.Generator().manual_seed(5))
    clean = (bicubic_downscale(hr, 4).clamp(0, 1) * 255).round() / 255
    is_clean = torch.tensor([torch.equal(mixed[i], clean[i]) for i in range(8)])
    assert 0 < is_clean.sum() < 8
    assert torch.equal(mixed[~is_clean], plain[~is_clean])
    everything_clean = RealWorldDegradation(scale=4, clean_prob=1.0)(hr, torch.Generator().manual_seed(5))
    assert torch.equal(everything_clean, clean)


def test_realworld_with_every_step_off_is_an_area_downscale():
    hr = textured_batch(batch=2, size=32)
    lr = RealWorldDegradation(scale=2, **NO_STEPS)(hr, torch.Generator().manual_seed(0))
    expected = (F.interpolate(hr, size=(16, 16), mode="area") * 255).round() / 255
    assert torch.allclose(lr, expected, atol=1e-6)


@pytest.mark.parametrize(
    "step",
    [
        {"blur_prob": 1.0},
        {"noise_prob": 1.0, "poisson_prob": 0.0},
        {"noise_prob": 1.0, "poisson_prob": 1.0},
        {"jpeg_prob": 1.0, "jpeg_quality": (30.0, 40.0)},
        {"intermediate_prob": 1.0, "intermediate_range": (0.5, 0.6)},
        {"second_order_prob": 1.0, "second_resize_range": (0.3, 0.4)},
    ],
    ids=["blur", "gaussian-noise", "poisson-noise", "jpeg", "intermediate-resize", "second-order"],
)
def test_each_step_moves_the_output_away_from_the_clean_one(step):
    hr = textured_batch(batch=4)
    clean = RealWorldDegradation(scale=2, **NO_STEPS)(hr, torch.Generator().manual_seed(0))
    options = {**NO_STEPS, **step}
    degraded = RealWorldDegradation(scale=2, **options)(hr, torch.Generator().manual_seed(0))
    assert (psnr(degraded, clean) < 40.0).all()


@pytest.mark.parametrize("poisson_prob", [0.0, 1.0])
def test_gray_noise_is_shared_by_the_channels_and_colour_noise_is_not(poisson_prob):
    grey = torch.rand(2, 1, 32, 32).expand(2, 3, 32, 32).clone()
    noisy = dict(NO_STEPS, noise_prob=1.0, poisson_prob=poisson_prob)
    generator = torch.Generator().manual_seed(0)
    lr_gray = RealWorldDegradation(scale=2, gray_noise_prob=1.0, **noisy)(grey, generator)
    lr_colour = RealWorldDegradation(scale=2, gray_noise_prob=0.0, **noisy)(grey, generator)
    assert torch.equal(lr_gray[:, 0], lr_gray[:, 1]) and torch.equal(lr_gray[:, 1], lr_gray[:, 2])
    assert not torch.equal(lr_colour[:, 0], lr_colour[:, 1])


@pytest.mark.parametrize(
    "bad",
    [
        {"blur_prob": 1.5},
        {"resize_modes": ("lanczos",)},
        {"kernel_size": 20},
        {"jpeg_quality": (50.0, 30.0)},
        {"second_order_prob": -0.1},
        {"clean_prob": 1.5},
        {"second_resize_range": (0.0, 1.2)},
    ],
)
def test_realworld_rejects_bad_options(bad):
    with pytest.raises(ValueError):
        RealWorldDegradation(scale=4, **bad)


def test_registry_builds_both_degradations():
    assert DEGRADATIONS.names() == ["bicubic", "realworld"]
    hr = textured_batch(batch=2, size=16)
    assert torch.equal(build_degradation("bicubic", scale=2)(hr, None), bicubic_downscale(hr, 2))
    realworld = build_degradation("realworld", scale=2, jpeg_prob=0.0)
    assert isinstance(realworld, RealWorldDegradation) and realworld.jpeg_prob == 0.0
    assert RealWorldDegradation(**realworld.hparams).hparams == realworld.hparams
    assert realworld(hr, torch.Generator().manual_seed(0)).shape == (2, 3, 8, 8)
    with pytest.raises(KeyError, match="bicubic, realworld"):
        build_degradation("blurry", scale=2)
