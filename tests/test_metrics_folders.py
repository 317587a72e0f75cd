import os

import numpy as np
import pytest
import torch
from PIL import Image
from test_metrics_inception import write_probe

from img2img.errors import Img2ImgError
from img2img.metrics import (
    INCEPTION_RESIZE,
    FeatureSet,
    InceptionFeatures,
    LogitsHead,
    folder_features,
    load_rgb,
)
from img2img.metrics.folders import CACHE_FOLDER

# Gray levels of the test images: the probe reports (v - 128) / 128 as feature 0 for a flat image.
LEVELS = (10, 50, 90, 130, 170, 210)


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("IMG2IMG_CACHE", str(root))
    return root / CACHE_FOLDER


@pytest.fixture
def probe(tmp_path):
    """An InceptionFeatures on a tiny TorchScript net, counting its runs in `probe.runs`."""
    extractor = InceptionFeatures(write_probe(tmp_path / "probe.pt"))
    extractor.runs = 0

    def count(module, inputs, output):
        module.runs += 1

    extractor.register_forward_hook(count)
    return extractor


def flat(level, size=(32, 32)):
    return Image.fromarray(np.full((size[1], size[0], 3), level, np.uint8))


@pytest.fixture
def folder(tmp_path):
    """Six flat gray images (one in a subfolder, one of another size), plus files to ignore."""
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    for index, level in enumerate(LEVELS[:-1]):
        flat(level).save(root / f"img_{index}.png")
    flat(LEVELS[-1], size=(48, 20)).save(root / "sub" / "img_5.jpg", quality=100)
    (root / "notes.txt").write_text("not an image")
    flat(255).save(root / ".hidden.png")
    return root


def expected_first_feature(levels):
    return (np.asarray(levels, float) - 128) / 128


def test_load_rgb_decodes_like_the_runtime(tmp_path):
    gray16 = tmp_path / "gray16.png"
    Image.fromarray(np.full((4, 6), 1000, np.uint16)).save(gray16)
    image = load_rgb(gray16)
    assert image.shape == (1, 3, 4, 6) and image.dtype == torch.float32
    torch.testing.assert_close(image, torch.full((1, 3, 4, 6), 1000 / 65535))

    rgba = tmp_path / "rgba.png"
    transparent = np.dstack([np.full((5, 3, 3), 200, np.uint8), np.zeros((5, 3), np.uint8)])
    Image.fromarray(transparent).save(rgba)
    torch.testing.assert_close(load_rgb(rgba), torch.full((1, 3, 5, 3), 200 / 255))

    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 8 wide and 4 high, shown rotated by 90 degrees
    flat(128, size=(8, 4)).save(rotated, exif=exif)
    assert load_rgb(rotated).shape == (1, 3, 8, 4)


def test_features_of_a_folder_in_path_order(folder, probe):
    progress = []
    result = folder_features(
        folder, probe, batch_size=4, progress=lambda done, total: progress.append((done, total))
    )
    assert not result.cached and result.logits is None
    features = result.features
    assert features.features.shape == (6, 7) and features.features.dtype == np.float32
    # Flat images of any size: feature 0 is the level the network received, in sorted path order.
    np.testing.assert_allclose(
        features.features[:, 0], expected_first_feature(LEVELS), atol=2 / 128
    )
    assert (features.features[:, 3] == 299).all()
    assert progress == [(4, 6), (6, 6)]
    assert probe.runs == 2
    assert features.settings["images"] == 6
    assert features.settings["resize"] == INCEPTION_RESIZE
    assert features.settings["extractor"] == probe.identity


def test_a_second_call_reads_the_cache_without_running_the_network(folder, probe, cache_root):
    first = folder_features(folder, probe)
    assert len(list(cache_root.glob("*.npz"))) == 1
    runs = probe.runs
    second = folder_features(folder, probe, progress=lambda done, total: pytest.fail("network ran"))
    assert second.cached and probe.runs == runs
    np.testing.assert_array_equal(second.features.features, first.features.features)
    np.testing.assert_array_equal(second.features.covariance, first.features.covariance)


def test_cache_false_neither_reads_nor_writes(folder, probe, cache_root):
    folder_features(folder, probe)
    runs = probe.runs
    result = folder_features(folder, probe, cache=False)
    assert not result.cached and probe.runs > runs
    other = folder.parent / "other"
    other.mkdir()
    flat(1).save(other / "a.png")
    flat(2).save(other / "b.png")
    folder_features(other, probe, cache=False)
    assert len(list(cache_root.glob("*.npz"))) == 1


def test_a_changed_or_added_file_invalidates_the_cache(folder, probe):
    folder_features(folder, probe)
    path = folder / "img_0.png"
    stat = path.stat()
    flat(250).save(path)
    # A rewrite moves the modification time on; set it explicitly, since a coarse file system
    # clock could give the rewrite the old time.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    changed = folder_features(folder, probe)
    assert not changed.cached
    assert changed.features.features[0, 0] == pytest.approx((250 - 128) / 128, abs=2 / 128)

    flat(30).save(folder / "sub" / "new.png")
    added = folder_features(folder, probe)
    assert not added.cached and added.features.count == 7


def test_another_network_does_not_reuse_the_cache(folder, probe, tmp_path):
    folder_features(folder, probe)
    other = InceptionFeatures(write_probe(tmp_path / "other.pt", gain=2.0))
    result = folder_features(folder, other)
    assert not result.cached
    np.testing.assert_allclose(
        result.features.features[:, 0], 2 * expected_first_feature(LEVELS), atol=4 / 128
    )


def test_a_damaged_cache_file_is_recomputed(folder, probe, cache_root):
    first = folder_features(folder, probe)
    (cached_file,) = cache_root.glob("*.npz")
    cached_file.write_bytes(b"half a file")
    again = folder_features(folder, probe)
    assert not again.cached
    np.testing.assert_array_equal(again.features.features, first.features.features)
    assert folder_features(folder, probe).cached  # and written back whole


def test_a_cache_file_made_with_other_settings_is_recomputed(folder, probe, cache_root):
    first = folder_features(folder, probe)
    (cached_file,) = cache_root.glob("*.npz")
    settings = dict(first.features.settings, resize="nearest, to 299x299")
    FeatureSet.from_features(np.zeros((6, 7)) + np.arange(6)[:, None], settings).save(cached_file)
    again = folder_features(folder, probe)
    assert not again.cached
    np.testing.assert_array_equal(again.features.features, first.features.features)


def test_logits_come_from_the_head_on_the_features(folder, probe, tmp_path):
    weight = torch.randn(3, 7, generator=torch.Generator().manual_seed(0))
    bias = torch.tensor([0.5, -1.0, 2.0])
    torch.save({"fc.weight": weight, "fc.bias": bias}, tmp_path / "head.pth")
    head = LogitsHead.from_file(tmp_path / "head.pth")
    for _ in range(2):  # computed, then cached
        result = folder_features(folder, probe, head=head)
        assert result.logits.shape == (6, 3)
        expected = result.features.features @ weight.numpy().T + bias.numpy()
        np.testing.assert_allclose(result.logits, expected, rtol=1e-5, atol=1e-5)
    assert result.cached


def test_a_saved_feature_set_is_taken_as_it_is(folder, probe, tmp_path):
    reference = folder_features(folder, probe).features.save(tmp_path / "reference.npz")
    runs = probe.runs
    loaded = folder_features(reference, probe)
    assert loaded.cached and probe.runs == runs
    np.testing.assert_array_equal(loaded.features.features, FeatureSet.load(reference).features)

    foreign = FeatureSet.from_features(np.arange(21.0).reshape(3, 7), {"extractor": "another net"})
    with pytest.raises(Img2ImgError, match="another net"):
        folder_features(foreign.save(tmp_path / "foreign.npz"), probe)
    with pytest.raises(Img2ImgError, match="not found"):
        folder_features(tmp_path / "missing.npz", probe)


def test_folders_without_enough_images_are_refused(tmp_path, probe):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(Img2ImgError, match="no images in"):
        folder_features(empty, probe)
    flat(5).save(empty / "only.png")
    with pytest.raises(Img2ImgError, match="at least 2"):
        folder_features(empty, probe)
    with pytest.raises(Img2ImgError, match="no such folder"):
        folder_features(tmp_path / "missing", probe)


def test_an_unreadable_image_is_named(folder, probe):
    (folder / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(Img2ImgError, match="broken.png"):
        folder_features(folder, probe)
