import math

import pytest
import torch
from torch import nn

from img2img.losses import VGG19Features
from img2img.metrics import VGGFeatureDistance


@pytest.fixture(scope="module", autouse=True)
def vgg_cache(tmp_path_factory):
    """One converted VGG19 cache for the module, outside the user's home."""
    path = tmp_path_factory.mktemp("img2img-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMG2IMG_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def distance():
    return VGGFeatureDistance()


def smooth_scene(size=32, seed=0):
    """(1, 3, size, size) in [0, 1]: soft colour gradients and a disk, like a photo's content."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    a, b, c = torch.rand(3, generator=g)
    disk = ((x - a) ** 2 + (y - b) ** 2 < 0.05 + 0.1 * c).float()
    image = torch.stack([0.2 + 0.6 * x * a, 0.3 + 0.5 * y, 0.1 + 0.7 * disk * c])
    return image.unsqueeze(0).clamp(0, 1)


class PixelsAsFeatures(nn.Module):
    """Stands in for VGG19: relu1_2 is the image itself, relu2_2 its first two channels at
    every second pixel, so the distance can be worked out by hand."""

    layers = ("relu1_2", "relu2_2")

    def forward(self, x):
        return {"relu1_2": x, "relu2_2": x[:, :2, ::2, ::2]}


def test_distance_follows_its_definition_on_known_features():
    distance = VGGFeatureDistance(layers=PixelsAsFeatures.layers, features=PixelsAsFeatures())
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    green = torch.zeros(1, 3, 4, 4)
    green[:, 1] = 1.0
    # Orthogonal unit vectors everywhere: |(1, 0) - (0, 1)|^2 = 2 on both layers.
    assert distance(red, green).item() == pytest.approx(2.0)
    # Length does not count, only direction.
    assert distance(3.0 * red, red).item() == pytest.approx(0.0, abs=1e-6)
    # Right half yellow: (1, 1, 0) / sqrt(2) against (1, 0, 0) gives (1 - 1/sqrt(2))^2 + 1/2
    # = 2 - sqrt(2) on half of the positions of each layer (relu2_2 keeps columns 0 and 2).
    half = red.clone()
    half[:, 1, :, 2:] = 1.0
    assert distance(half, red).item() == pytest.approx((2 - math.sqrt(2)) / 2, rel=1e-5)


def test_identical_images_score_zero(distance):
    images = torch.cat([smooth_scene(seed=1), torch.rand(1, 3, 32, 32)])
    values = distance(images, images.clone())
    assert values.shape == (2,) and values.dtype == torch.float32
    assert values.abs().max().item() < 1e-6


def test_distance_is_symmetric(distance):
    a, b = smooth_scene(seed=2), smooth_scene(seed=3)
    forward, backward = distance(a, b).item(), distance(b, a).item()
    assert forward > 0.01
    assert forward == pytest.approx(backward, rel=1e-5)


def test_more_noise_gives_a_larger_distance(distance):
    clean = smooth_scene(seed=4)
    noise = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    values = [
        distance((clean + sigma * noise).clamp(0, 1), clean).item() for sigma in (0.02, 0.08, 0.3)
    ]
    assert 0 < values[0] < values[1] < values[2] <= 2.0  # ReLU features: at most 2


def test_a_batch_of_b_gives_b_values_in_order(distance):
    clean = torch.cat([smooth_scene(seed=s) for s in range(3)])
    noisy = clean.clone()
    noise = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(1))
    noisy[1] = (noisy[1] + 0.3 * noise).clamp(0, 1)
    values = distance(noisy, clean)
    assert values.shape == (3,)
    assert values[0].item() < 1e-6 and values[2].item() < 1e-6 and values[1].item() > 0.05
    # Each value is that of the image scored alone.
    assert values[1].item() == pytest.approx(distance(noisy[1:2], clean[1:2]).item(), rel=1e-4)


def test_shares_a_features_module_and_checks_inputs(distance):
    shared = VGG19Features(layers=("relu1_2", "relu2_2", "relu3_1"))
    small = VGGFeatureDistance(layers=("relu1_2", "relu2_2"), features=shared)
    assert small.min_size == 2
    image = smooth_scene(size=8, seed=5)
    assert small(image, image).item() < 1e-6
    with pytest.raises(ValueError, match="does not return layers"):
        VGGFeatureDistance(layers=("relu5_4",), features=shared)
    with pytest.raises(ValueError, match="same shape"):
        distance(smooth_scene(32), smooth_scene(16))
    with pytest.raises(ValueError, match=">= 16"):
        distance(image, image)


def test_names_itself_for_tables():
    assert VGGFeatureDistance.NAME == "vgg_distance"
    assert "not LPIPS" in VGGFeatureDistance.DESCRIPTION
