import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from img2img.nets import build_net, rebuild_net

# (preset, overrides, (H, W) of the judged image, expected logit shapes for a batch of 2).
DISCRIMINATOR_CASES = [
    ("patchgan_tiny", {}, (32, 48), [(2, 1, 6, 10)]),
    (
        "patchgan_tiny",
        {"norm": "instance", "spectral_norm": True, "self_attention": True},
        (24, 16),
        [(2, 1, 4, 2)],
    ),
    ("patchgan_70", {"base_channels": 4, "in_channels": 6}, (24, 40), [(2, 1, 1, 3)]),
    ("pixelgan", {"base_channels": 8}, (7, 5), [(2, 1, 7, 5)]),
    ("multiscale_patchgan_tiny", {}, (48, 64), [(2, 1, 10, 14), (2, 1, 4, 6)]),
    ("unet_discriminator_tiny", {}, (13, 7), [(2, 1, 13, 7)]),
    ("unet_discriminator_tiny", {"spectral_norm": False}, (1, 2), [(2, 1, 1, 2)]),
]
CASE_IDS = [f"{name}-{i}" for i, (name, *_) in enumerate(DISCRIMINATOR_CASES)]


def _as_list(logits):
    return logits if isinstance(logits, list) else [logits]


@pytest.mark.parametrize("name, overrides, size, shapes", DISCRIMINATOR_CASES, ids=CASE_IDS)
def test_logit_shapes(name, overrides, size, shapes):
    torch.manual_seed(0)
    net = build_net(name, **overrides)
    logits = _as_list(net(torch.rand(2, net.in_channels, *size)))
    assert [tuple(map.shape) for map in logits] == shapes
    assert all(torch.isfinite(map).all() for map in logits)


@pytest.mark.parametrize("name, overrides, size, shapes", DISCRIMINATOR_CASES, ids=CASE_IDS)
def test_return_features(name, overrides, size, shapes):
    torch.manual_seed(0)
    net = build_net(name, **overrides).eval()
    x = torch.rand(2, net.in_channels, *size, requires_grad=True)
    logits, features = net(x, return_features=True)
    assert [tuple(map.shape) for map in _as_list(logits)] == shapes
    for with_features, plain in zip(_as_list(logits), _as_list(net(x)), strict=True):
        assert torch.equal(with_features, plain)
    assert isinstance(features, list) and len(features) >= 2
    assert all(f.ndim == 4 and f.shape[0] == 2 for f in features)
    # Feature matching trains the generator through these: they must stay connected to the input.
    features[-1].sum().backward()
    assert x.grad.abs().sum() > 0


def test_feature_counts():
    assert len(build_net("patchgan_tiny")(torch.rand(1, 3, 16, 16), return_features=True)[1]) == 3
    multi = build_net("multiscale_patchgan_tiny", num_scales=3)
    assert len(multi(torch.rand(1, 3, 48, 48), return_features=True)[1]) == 3 * 3
    assert len(build_net("unet_discriminator_tiny")(torch.rand(1, 3, 8, 8), return_features=True)[1]) == 9


@pytest.mark.parametrize("name, overrides, size, shapes", DISCRIMINATOR_CASES, ids=CASE_IDS)
def test_backward_gives_finite_grads(name, overrides, size, shapes):
    torch.manual_seed(0)
    net = build_net(name, **overrides).train()
    sum(map.mean() for map in _as_list(net(torch.rand(2, net.in_channels, *size)))).backward()
    for param_name, param in net.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name


@pytest.mark.parametrize("name, overrides, size, shapes", DISCRIMINATOR_CASES, ids=CASE_IDS)
def test_state_dict_round_trip(name, overrides, size, shapes):
    torch.manual_seed(0)
    net = build_net(name, **overrides)
    # Training-mode passes move BatchNorm statistics and spectral-norm vectors: both must travel.
    net.train()(torch.rand(2, net.in_channels, *size))
    twin = rebuild_net(net.arch, net.hparams)
    twin.load_state_dict(net.state_dict())
    x = torch.rand(2, net.in_channels, *size)
    for a, b in zip(_as_list(net.eval()(x)), _as_list(twin.eval()(x)), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("num_scales", [1, 2, 3])
def test_multiscale_judges_successively_pooled_images(num_scales):
    torch.manual_seed(0)
    net = build_net("multiscale_patchgan_tiny", num_scales=num_scales).eval()
    x = torch.rand(1, 3, 48, 48)
    logits = net(x)
    assert len(logits) == num_scales == len(net.scales)
    pooled = x
    for index, (scale_logits, patchgan) in enumerate(zip(logits, net.scales, strict=True)):
        if index:
            pooled = nn.functional.avg_pool2d(pooled, 3, stride=2, padding=1, count_include_pad=False)
        assert torch.equal(scale_logits, patchgan(pooled))


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("patchgan_tiny", {}),
        ("patchgan_tiny", {"self_attention": True}),
        ("pixelgan", {"base_channels": 4}),
        ("multiscale_patchgan_tiny", {}),
        ("unet_discriminator_tiny", {}),
    ],
)
def test_spectral_norm_switch(name, overrides):
    torch.manual_seed(0)
    on = build_net(name, spectral_norm=True, **overrides)
    off = build_net(name, spectral_norm=False, **overrides)
    on_convs = [m for m in on.modules() if isinstance(m, nn.Conv2d)]
    assert on_convs and all(parametrize.is_parametrized(m, "weight") for m in on_convs)
    assert not any(parametrize.is_parametrized(m) for m in off.modules())
    # The normalised weights have a top singular value of about 1 from the start.
    on.eval()
    for conv in on_convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2).item()
        assert sigma == pytest.approx(1.0, abs=0.1)


def _receptive_field(net, size):
    net.eval()
    x = torch.rand(1, net.in_channels, size, size, requires_grad=True)
    logits = net(x)
    h, w = logits.shape[-2:]
    logits[0, 0, h // 2, w // 2].backward()
    touched = x.grad[0].abs().sum(0) > 0
    rows = touched.any(1).nonzero()
    cols = touched.any(0).nonzero()
    return (rows.max() - rows.min() + 1).item(), (cols.max() - cols.min() + 1).item()


@pytest.mark.parametrize("num_layers, field", [(1, 16), (2, 34), (3, 70)])
def test_patchgan_receptive_field(num_layers, field):
    torch.manual_seed(0)
    net = build_net("patchgan_70", base_channels=4, num_layers=num_layers)
    assert _receptive_field(net, 160) == (field, field)


def test_pixelgan_judges_single_pixels():
    torch.manual_seed(0)
    assert _receptive_field(build_net("pixelgan", base_channels=4), 9) == (1, 1)


def test_unet_discriminator_sees_the_whole_image():
    torch.manual_seed(0)
    net = build_net("unet_discriminator_tiny")
    # Three stride-2 levels give each logit a wide context, unlike a PatchGAN's 70 pixels.
    assert min(_receptive_field(net, 48)) >= 40


def test_self_attention_starts_as_identity():
    torch.manual_seed(0)
    with_attention = build_net("patchgan_tiny", self_attention=True).eval()
    plain = build_net("patchgan_tiny").eval()
    plain_keys = plain.state_dict().keys()
    plain.load_state_dict({k: v for k, v in with_attention.state_dict().items() if k in plain_keys})
    x = torch.rand(1, 3, 24, 24)
    assert torch.equal(with_attention(x), plain(x))
    (gamma,) = [p for n, p in with_attention.named_parameters() if n.endswith("gamma")]
    with torch.no_grad():
        gamma.fill_(1.0)
    assert not torch.allclose(with_attention(x), plain(x))


@pytest.mark.parametrize(
    "name, size, minimum",
    [("patchgan_tiny", 11, 12), ("patchgan_70", 23, 24), ("multiscale_patchgan_tiny", 22, 23)],
)
def test_too_small_inputs_raise(name, size, minimum):
    net = build_net(name, base_channels=2)
    assert net.min_size == minimum
    net(torch.rand(1, 3, minimum, minimum))
    with pytest.raises(ValueError, match=f"at least {minimum}x{minimum}"):
        net(torch.rand(1, 3, size, minimum))


def test_invalid_hparams_raise():
    with pytest.raises(ValueError, match="num_layers"):
        build_net("patchgan_tiny", num_layers=0)
    with pytest.raises(ValueError, match="num_scales"):
        build_net("multiscale_patchgan_tiny", num_scales=0)
    with pytest.raises(KeyError, match="batch, instance, none"):
        build_net("patchgan_tiny", norm="layer")
