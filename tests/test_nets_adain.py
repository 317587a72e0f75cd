import pytest
import torch

from img2img.losses.perceptual import VGG19Features
from img2img.losses.vgg import CAFFE_CONVENTION
from img2img.nets import build_net
from img2img.nets.adain import AdaINNet, adaptive_instance_norm, channel_mean_std


def test_adain_by_hand():
    # Content (1, 3): mean 2, std 1 -> normalised (-1, 1); style (10, 14): mean 12, std 2.
    content = torch.tensor([1.0, 3.0]).view(1, 1, 1, 2)
    style = torch.tensor([10.0, 14.0]).view(1, 1, 2, 1)
    out = adaptive_instance_norm(content, style, eps=0.0)
    assert torch.allclose(out, torch.tensor([10.0, 14.0]).view(1, 1, 1, 2))


def test_adain_output_has_the_style_channel_statistics_per_image():
    generator = torch.Generator().manual_seed(0)
    content = torch.randn(2, 5, 12, 9, generator=generator) * 4 - 2
    style = torch.randn(2, 5, 6, 7, generator=generator) * torch.arange(1, 6).view(1, 5, 1, 1) + 3
    out = adaptive_instance_norm(content, style)
    out_mean, out_std = channel_mean_std(out)
    style_mean, style_std = channel_mean_std(style)
    assert out.shape == content.shape
    assert torch.allclose(out_mean, style_mean, atol=1e-4)
    assert torch.allclose(out_std, style_std, atol=1e-3)
    with pytest.raises(ValueError, match="same batch and channels"):
        adaptive_instance_norm(content, style[:, :4])


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return AdaINNet.from_vgg19(decoder_width=16).eval()


def test_encoder_is_the_real_vgg19_to_relu4_1(net):
    image = torch.rand(1, 3, 32, 24)
    reference = VGG19Features(layers=("relu1_1", "relu4_1"))(image)
    with torch.no_grad():
        taps = net.encode(image)
    assert set(taps) == {"relu1_1", "relu2_1", "relu3_1", "relu4_1"}
    assert taps["relu4_1"].shape == (1, 512, 4, 3)
    assert torch.allclose(taps["relu4_1"], reference["relu4_1"], rtol=1e-4, atol=1e-3)
    assert torch.allclose(taps["relu1_1"], reference["relu1_1"], rtol=1e-4, atol=1e-3)


def test_alpha_zero_gives_the_content_back_whatever_the_style_and_the_decoder(net):
    # An untrained decoder is far from inverting the encoder: alpha 0 must not depend on it.
    content = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        reconstruction = net.decode(net.encode(content)["relu4_1"])
        first = net(content, torch.rand(1, 3, 16, 16), alpha=0.0)
        second = net(content, torch.rand(1, 3, 40, 24), alpha=torch.tensor([0.0]))
        stylised = net(content, torch.rand(1, 3, 40, 24), alpha=1.0)
    assert (reconstruction - content).abs().mean() > 0.05
    assert first.shape == content.shape
    assert torch.allclose(first, content, atol=1e-6) and torch.allclose(second, content, atol=1e-6)
    assert not torch.allclose(stylised, content, atol=0.05)


def test_alpha_blends_the_features_and_adds_back_what_the_decoder_loses(net):
    content, style = torch.rand(2, 3, 24, 32), torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        content_features = net.encode(content)["relu4_1"]
        target = net.adain(content_features, net.encode(style)["relu4_1"])
        full = net(content, style, alpha=1.0)
        half = net(content, style, alpha=torch.tensor([0.5]))
        expected_half = net.decode(0.5 * target + 0.5 * content_features) + 0.5 * (content - net.decode(content_features))
    assert torch.allclose(full, net.decode(target), atol=1e-6)
    assert torch.allclose(half, expected_half, atol=1e-5)
    # A weighted mix of one style is that style.
    with torch.no_grad():
        blended = net.blend(content[:1], style[:1], torch.tensor([1.0]), torch.tensor([0.5]))
    assert torch.allclose(blended, half[:1], atol=1e-4)


def test_only_the_decoder_trains(net):
    net.train()
    content, style = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 24, 16)
    net(content, style).mean().backward()
    assert all(p.grad is None and not p.requires_grad for p in net.encoder.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.decoder.parameters())
    net.zero_grad(set_to_none=True)
    net.eval()


def test_sizes_and_presets():
    with torch.device("meta"):
        paper = build_net("adain")
    assert sum(p.numel() for p in paper.decoder.parameters()) == 3_505_219
    with pytest.raises(ValueError, match="multiples of 8"):
        build_net("adain_tiny").encode(torch.rand(1, 3, 20, 16))
    with pytest.raises(ValueError, match="convention"):
        build_net("adain_tiny", vgg_convention="keras")
    with pytest.raises(ValueError, match="not both"):
        VGG19Features(weights="vgg19.pth", convention=CAFFE_CONVENTION)
