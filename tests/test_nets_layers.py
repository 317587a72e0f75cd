import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from img2img.nets.layers import (
    SelfAttention,
    check_image_size,
    get_act_layer,
    get_norm_layer,
    get_upsample_layer,
    init_weights,
    spectral_norm_if,
)


def test_norm_layers():
    batch = get_norm_layer("batch", 6)
    assert isinstance(batch, nn.BatchNorm2d) and batch.num_features == 6
    instance = get_norm_layer("instance", 6)
    assert isinstance(instance, nn.InstanceNorm2d)
    assert not instance.affine and not instance.track_running_stats
    assert isinstance(get_norm_layer("none", 6), nn.Identity)
    assert isinstance(get_norm_layer(None, 6), nn.Identity)
    with pytest.raises(KeyError, match="batch, instance, none"):
        get_norm_layer("group", 6)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("relu", nn.ReLU),
        ("leaky_relu", nn.LeakyReLU),
        ("prelu", nn.PReLU),
        ("gelu", nn.GELU),
        ("silu", nn.SiLU),
        ("tanh", nn.Tanh),
        ("none", nn.Identity),
        (None, nn.Identity),
        (nn.Hardswish, nn.Hardswish),
    ],
)
def test_act_layers(name, expected):
    assert type(get_act_layer(name, 4)) is expected


def test_act_layer_details():
    assert get_act_layer("leaky_relu").negative_slope == 0.2
    assert get_act_layer("prelu", 16).num_parameters == 16
    # A fresh module each call: PReLU slopes must not be shared between layers.
    assert get_act_layer("prelu", 4) is not get_act_layer("prelu", 4)
    with pytest.raises(KeyError, match="leaky_relu"):
        get_act_layer("swish")


@pytest.mark.parametrize("name", ["transpose", "resize"])
def test_upsample_layers_double_the_size(name):
    layer = get_upsample_layer(name, 4, 6)
    assert layer(torch.rand(2, 4, 5, 3)).shape == (2, 6, 10, 6)


def _std(tensor):
    return tensor.float().std().item()


@pytest.mark.parametrize(
    "kind, gain, expected_std",
    [
        ("normal", 0.02, 0.02),
        ("xavier", 1.0, math.sqrt(2.0 / (2 * 128 * 9))),
        ("xavier", 0.5, 0.5 * math.sqrt(2.0 / (2 * 128 * 9))),
        ("kaiming", 0.02, math.sqrt(2.0 / (128 * 9))),
    ],
)
def test_init_weights_statistics(kind, gain, expected_std):
    torch.manual_seed(0)
    conv = nn.Conv2d(128, 128, 3)
    nn.init.ones_(conv.bias)
    init_weights(conv, kind, gain)
    assert _std(conv.weight) == pytest.approx(expected_std, rel=0.05)
    assert conv.weight.mean().abs().item() < 0.1 * expected_std
    assert torch.all(conv.bias == 0)


def test_init_weights_orthogonal():
    torch.manual_seed(0)
    linear = nn.Linear(128, 64)
    init_weights(linear, "orthogonal", 0.5)
    gram = linear.weight @ linear.weight.T
    torch.testing.assert_close(gram, 0.25 * torch.eye(64), atol=1e-5, rtol=0)


def test_init_weights_norm_layers_and_nesting():
    torch.manual_seed(0)
    net = nn.Sequential(nn.ConvTranspose2d(8, 8, 4), nn.Sequential(nn.BatchNorm2d(8192)))
    init_weights(net, "normal", 0.1)
    norm = net[1][0]
    assert norm.weight.mean().item() == pytest.approx(1.0, abs=0.01)
    assert _std(norm.weight) == pytest.approx(0.1, rel=0.1)
    assert torch.all(norm.bias == 0)
    assert _std(net[0].weight) == pytest.approx(0.1, rel=0.1)


def test_init_weights_unknown_kind_lists_valid_ones():
    with pytest.raises(KeyError, match="kaiming, normal, orthogonal, xavier"):
        init_weights(nn.Conv2d(3, 3, 3), "uniform")


def _top_singular_value(weight):
    return torch.linalg.matrix_norm(weight.flatten(1), ord=2).item()


def test_init_weights_keeps_spectral_norm_exact():
    torch.manual_seed(0)
    conv = spectral_norm_if(nn.Conv2d(16, 32, 3), True)
    # A much larger raw weight than the one the singular vectors were estimated from.
    init_weights(conv, "normal", 1.0)
    assert _std(conv.parametrizations.weight.original) == pytest.approx(1.0, rel=0.1)
    conv.eval()
    assert _top_singular_value(conv.weight.detach()) == pytest.approx(1.0, abs=0.05)


def test_spectral_norm_if():
    plain = nn.Conv2d(3, 4, 3)
    assert spectral_norm_if(plain, False) is plain
    assert not parametrize.is_parametrized(plain)
    normed = spectral_norm_if(nn.Conv2d(3, 4, 3), True)
    assert parametrize.is_parametrized(normed, "weight")


def test_self_attention_starts_as_identity_and_can_learn():
    torch.manual_seed(0)
    attention = SelfAttention(16)
    x = torch.randn(2, 16, 5, 7)
    out = attention(x)
    assert torch.equal(out, x)
    # gamma receives a gradient at 0, so training can switch the attention on.
    out.square().sum().backward()
    assert attention.gamma.grad.abs().item() > 0
    with torch.no_grad():
        attention.gamma.fill_(1.0)
    changed = attention(x)
    assert changed.shape == x.shape
    assert not torch.allclose(changed, x)


def test_self_attention_mixes_positions():
    torch.manual_seed(0)
    attention = SelfAttention(4)
    assert attention.query.out_channels == 1
    with torch.no_grad():
        attention.gamma.fill_(1.0)
    x = torch.randn(1, 4, 6, 6, requires_grad=True)
    attention(x)[0, :, 0, 0].sum().backward()
    # One output position depends on the far corner: attention is global.
    assert x.grad[0, :, 5, 5].abs().sum().item() > 0


def test_self_attention_spectral_norm():
    attention = SelfAttention(16, spectral_norm=True)
    convs = [attention.query, attention.key, attention.value]
    assert all(parametrize.is_parametrized(conv, "weight") for conv in convs)


def test_check_image_size_messages():
    net = nn.Identity()
    check_image_size(net, torch.rand(1, 3, 16, 8), channels=3, multiple_of=8, min_size=8)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        check_image_size(net, torch.rand(1, 1, 16, 16), channels=3)
    with pytest.raises(ValueError, match="multiples of 8"):
        check_image_size(net, torch.rand(1, 3, 16, 12), channels=3, multiple_of=8)
    with pytest.raises(ValueError, match="at least 16x16"):
        check_image_size(net, torch.rand(1, 3, 8, 16), channels=3, min_size=16)
