"""The noise-to-image generators and their discriminators (img2img.nets.gan)."""

import pytest
import torch

from img2img.nets import build_net, rebuild_net
from img2img.nets.gan import ConditionalBatchNorm2d
from img2img.nets.layers import SelfAttention

PAIRS = [("dcgan_generator_tiny", "dcgan_discriminator_tiny"), ("resgan_generator_tiny", "resgan_discriminator_tiny")]


@pytest.mark.parametrize("generator_name, discriminator_name", PAIRS)
@pytest.mark.parametrize("num_classes", [0, 3])
def test_shapes_ranges_and_gradients(generator_name, discriminator_name, num_classes):
    torch.manual_seed(0)
    G = build_net(generator_name, num_classes=num_classes)
    D = build_net(discriminator_name, num_classes=num_classes)
    z = torch.randn(4, G.latent_dim)
    labels = torch.tensor([0, 1, 2, 0]) if num_classes else None
    fake = G(z, labels)
    assert fake.shape == (4, 3, 16, 16)
    assert fake.min() >= -1 and fake.max() <= 1
    logits = D(fake, labels)
    assert logits.shape == (4, 1)
    logits.mean().backward()
    for net in (G, D):
        grads = [p.grad for p in net.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", [name for pair in PAIRS for name in pair])
def test_state_dict_round_trip_rebuilds_the_same_net(name):
    net = build_net(name, num_classes=2).eval()
    twin = rebuild_net(net.arch, net.hparams).eval()
    twin.load_state_dict(net.state_dict())
    labels = torch.tensor([1, 0])
    if hasattr(net, "latent_dim"):
        x = torch.randn(2, net.latent_dim)
    else:
        x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(net(x, labels), twin(x, labels))


def test_conditional_generator_draws_each_class_differently_from_one_latent():
    torch.manual_seed(0)
    G = build_net("dcgan_generator_tiny", num_classes=2).eval()
    z = torch.randn(1, G.latent_dim).repeat(2, 1)
    first, second = G(z, torch.tensor([0, 1]))
    # Relative: at initialisation DCGAN's outputs are small (weights N(0, 0.02)).
    assert (first - second).abs().max() > 0.05 * first.abs().max()


def test_class_conditional_batch_norm_starts_unconditional():
    norm = ConditionalBatchNorm2d(4, num_classes=3)
    norm.reset_class_tables()
    x = torch.randn(3, 4, 5, 5)
    out = norm(x, torch.tensor([0, 1, 2]))
    assert torch.allclose(out, norm.norm(x))


@pytest.mark.parametrize("name", ["resgan_generator_tiny", "resgan_discriminator_tiny", "dcgan_discriminator_tiny"])
def test_self_attention_is_where_attention_at_says(name):
    with_attention = build_net(name, attention_at=8)
    without = build_net(name, attention_at=0)
    assert sum(isinstance(m, SelfAttention) for m in with_attention.modules()) == 1
    assert not any(isinstance(m, SelfAttention) for m in without.modules())


def test_spectral_norm_switch():
    plain = build_net("resgan_discriminator_tiny", spectral_norm=False)
    normalised = build_net("resgan_discriminator_tiny", spectral_norm=True)
    assert not any("parametrizations" in key for key in plain.state_dict())
    assert any("parametrizations" in key for key in normalised.state_dict())


def test_bad_inputs_say_what_the_net_expects():
    G = build_net("resgan_generator_tiny", num_classes=2)
    with pytest.raises(ValueError, match=r"pass labels of shape \(2,\)"):
        G(torch.randn(2, G.latent_dim))
    with pytest.raises(ValueError, match=r"expects z of shape \(B, 16\)"):
        G(torch.randn(2, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="power of 2"):
        build_net("resgan_generator", resolution=48)
    with pytest.raises(ValueError, match="attention_at"):
        build_net("resgan_generator_tiny", attention_at=12)
