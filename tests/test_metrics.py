import math

import cv2
import numpy as np
import pytest
import torch

from img2img.metrics import psnr, rgb_to_y, ssim


def reference_ssim(a, b):
    """Wang et al. 2004 SSIM of two 2-D arrays in [0, 255], written out with OpenCV."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    window = cv2.getGaussianKernel(11, 1.5)
    window = window @ window.T

    def blur(x):
        return cv2.filter2D(x, -1, window)[5:-5, 5:-5]

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / den).mean()


def test_psnr_of_a_uniform_offset_is_known_by_hand():
    target = torch.full((2, 3, 8, 8), 0.25)
    # MSE = 0.01 -> 10 log10(1 / 0.01) = 20 dB.
    values = psnr(target + 0.1, target, quantize=False)
    assert torch.allclose(values, torch.tensor([20.0, 20.0]), atol=1e-4)
    # With 8-bit quantisation an offset of exactly 26 levels gives 20 log10(255 / 26).
    levels = torch.full((1, 3, 8, 8), 100 / 255)
    expected = 20 * math.log10(255 / 26)
    assert psnr(levels + 26 / 255, levels).item() == pytest.approx(expected, abs=1e-4)


def test_psnr_is_per_image():
    target = torch.full((2, 3, 8, 8), 0.5)
    pred = target.clone()
    pred[0] += 0.1
    pred[1] += 0.01
    values = psnr(pred, target, quantize=False)
    assert values.shape == (2,)
    assert values[0].item() == pytest.approx(20.0, abs=1e-3)
    assert values[1].item() == pytest.approx(40.0, abs=1e-3)


def test_psnr_of_identical_images_is_inf():
    image = torch.rand(1, 3, 16, 16)
    assert torch.isinf(psnr(image, image)).all()


def test_quantize_rounds_to_8bit_levels_and_clamps():
    target = torch.full((1, 3, 8, 8), 100 / 255)
    nudged = target + 0.001  # a quarter of a level
    assert torch.isinf(psnr(nudged, target))
    assert torch.isfinite(psnr(nudged, target, quantize=False))
    white = torch.ones(1, 3, 8, 8)
    assert torch.isinf(psnr(white + 0.5, white))


def test_crop_border_ignores_the_borders():
    target = torch.rand(1, 3, 20, 20)
    pred = target.clone()
    pred[..., :3, :] = 0.0
    pred[..., :, -3:] = 1.0
    assert torch.isfinite(psnr(pred, target))
    assert torch.isinf(psnr(pred, target, crop_border=3))
    assert ssim(pred, target, crop_border=3).item() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="crop_border"):
        psnr(pred, target, crop_border=10)


def test_rgb_to_y_studio_range():
    white, black = torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    assert torch.allclose(rgb_to_y(white), torch.full((1, 1, 2, 2), 235 / 255))
    assert torch.allclose(rgb_to_y(black), torch.full((1, 1, 2, 2), 16 / 255))
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert rgb_to_y(red).item() == pytest.approx((16 + 65.481) / 255)


def test_y_channel_psnr_of_grey_images():
    # For grey images Y = (16 + 219 v) / 255, so errors shrink by 219/255 on the Y channel.
    target = torch.full((1, 3, 8, 8), 0.4)
    pred = target + 0.1
    rgb = psnr(pred, target, quantize=False)
    y = psnr(pred, target, y_channel=True, quantize=False)
    assert (y - rgb).item() == pytest.approx(-20 * math.log10(219 / 255), abs=1e-3)


def test_ssim_of_identical_images_is_one():
    image = torch.rand(2, 3, 24, 24)
    assert torch.allclose(ssim(image, image), torch.ones(2), atol=1e-6)


def test_ssim_falls_as_noise_grows():
    torch.manual_seed(0)
    target = torch.rand(1, 3, 32, 32)
    noise = torch.randn(1, 3, 32, 32)
    values = [ssim(target + sigma * noise, target).item() for sigma in (0.02, 0.1, 0.3)]
    assert 1.0 > values[0] > values[1] > values[2]


def test_ssim_matches_the_reference_formula_per_image():
    torch.manual_seed(1)
    target = torch.rand(2, 3, 24, 20)
    pred = (target + 0.1 * torch.randn_like(target)).clamp(0, 1)
    a = (target * 255).round().double().numpy()
    b = (pred * 255).round().double().numpy()
    expected = [np.mean([reference_ssim(b[i, c], a[i, c]) for c in range(3)]) for i in range(2)]
    assert torch.allclose(ssim(pred, target), torch.tensor(expected).float(), atol=1e-5)
    y_pred = (16 + 65.481 * b[:, 0] / 255 + 128.553 * b[:, 1] / 255 + 24.966 * b[:, 2] / 255)
    y_target = (16 + 65.481 * a[:, 0] / 255 + 128.553 * a[:, 1] / 255 + 24.966 * a[:, 2] / 255)
    expected_y = [reference_ssim(y_pred[i], y_target[i]) for i in range(2)]
    ours_y = ssim(pred, target, y_channel=True)
    assert torch.allclose(ours_y, torch.tensor(expected_y).float(), atol=1e-5)


def test_metrics_reject_mismatched_or_tiny_inputs():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 12))
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
