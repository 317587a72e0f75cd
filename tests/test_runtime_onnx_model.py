import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from img2img.errors import ModelError
from img2img.contract import ModelInfo
from img2img.runtime.onnx_model import OnnxModel, select_providers
from img2img.runtime.shipped import load_manifest, resolve_model, weights_dir


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)


def nearest_upscale(image: np.ndarray, scale: int) -> np.ndarray:
    return image.repeat(scale, axis=0).repeat(scale, axis=1)


def test_metadata_is_parsed_into_typed_fields(tiny_x2: Path) -> None:
    info = OnnxModel(tiny_x2, device="cpu").info
    assert info.task == "superres" and info.name == "superres-x2"
    assert (info.scale, info.channels, info.multiple_of, info.min_size) == (2, 3, 4, 1)
    assert info.range == (0.0, 1.0)
    assert info.license == "Apache-2.0" and info.version == "0.1.0"
    assert info.config == {"task": "superres", "net": {"scale": 2}}


@pytest.mark.parametrize(("height", "width"), [(7, 13), (8, 8), (1, 1), (2, 3), (5, 16)])
def test_odd_sizes_are_padded_then_cropped(tiny_x2: Path, height: int, width: int) -> None:
    # The graph rejects sizes that are not multiples of 4, so this only runs if padding happened.
    image = random_image(height, width)
    result = OnnxModel(tiny_x2, device="cpu").run(image)
    assert result.shape == (2 * height, 2 * width, 3) and result.dtype == np.float32
    np.testing.assert_array_equal(result, nearest_upscale(image, 2))


def test_padding_matches_an_aligned_image_where_they_overlap(tiny_x2: Path) -> None:
    model = OnnxModel(tiny_x2, device="cpu")
    aligned = random_image(16, 8, seed=3)
    full = model.run(aligned)
    cropped = model.run(aligned[:13, :7])
    np.testing.assert_array_equal(cropped, full[:26, :14])


def test_a_model_with_a_background_is_padded_with_it(make_translator: Callable[..., Path]) -> None:
    """The drawings it learned from lie on that background: a mirrored copy of the image in the
    pad would be made-up content. A model without one is padded by reflection. The translator
    whose every output pixel shifts by the mean of its whole (padded) input shows what the pad held."""
    image = random_image(5, 6, seed=4)  # padded to 8x8 (multiple_of 4)
    reflected = np.pad(image, ((0, 3), (0, 2), (0, 0)), mode="reflect")
    white, black = np.ones((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.float32)
    white[:5, :6], black[:5, :6] = image, image
    for background, padded in (("255,255,255", white), ("0,0,0", black), (None, reflected)):
        path = make_translator(name="mean", global_mean=True, metadata={"background": background})
        expected = np.clip(1 - image + (padded.mean(axis=(0, 1)) - 0.5), 0, 1)
        np.testing.assert_allclose(OnnxModel(path, device="cpu").run(image), expected, atol=1e-6)


def test_padded_size_honours_multiple_and_minimum() -> None:
    info = ModelInfo(task="superres", name="t", scale=4, multiple_of=4, min_size=8)
    assert info.padded_size(13, 7) == (16, 8)
    assert info.padded_size(3, 5) == (8, 8)
    assert info.padded_size(16, 9) == (16, 12)
    assert ModelInfo(task="superres", name="t", scale=4).padded_size(13, 7) == (13, 7)


def test_min_size_pads_tiny_images(make_upscaler: Callable[..., Path]) -> None:
    model = OnnxModel(make_upscaler(scale=2, metadata={"min_size": "12"}), device="cpu")
    image = random_image(3, 5)
    np.testing.assert_array_equal(model.run(image), nearest_upscale(image, 2))


def test_run_batch_matches_single_runs(tiny_x2: Path) -> None:
    model = OnnxModel(tiny_x2, device="cpu", threads=1)
    batch = np.stack([random_image(6, 5, seed=seed) for seed in range(3)])
    result = model.run_batch(batch)
    assert result.shape == (3, 12, 10, 3)
    for index in range(3):
        np.testing.assert_array_equal(result[index], model.run(batch[index]))


def test_run_rejects_wrong_shapes_and_integer_images(tiny_x2: Path) -> None:
    model = OnnxModel(tiny_x2, device="cpu")
    with pytest.raises(ValueError, match="run_batch"):
        model.run(np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        model.run(np.zeros((4, 4, 4), np.float32))
    with pytest.raises(ValueError, match="divide uint8"):
        model.run(np.zeros((4, 4, 3), np.uint8))


def test_missing_and_non_onnx_files_raise_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        OnnxModel(tmp_path / "missing.onnx")
    fake = tmp_path / "fake.onnx"
    fake.write_text("definitely not protobuf")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        OnnxModel(fake)


@pytest.mark.parametrize(
    ("metadata", "says"),
    [
        ({"scale": "two"}, "whole number"),
        ({"multiple_of": "0"}, "expected 1 to 1,024"),
        ({"multiple_of": "1000000"}, "expected 1 to 1,024"),
        ({"min_size": "99999999"}, "expected 1 to 4,096"),
        ({"scale": "1000"}, "expected 1 to 16"),
        ({"range": "-1,1"}, "range"),
        ({"config": "{not json"}, "JSON"),
    ],
)
def test_invalid_metadata_raises_model_error(
    make_upscaler: Callable[..., Path], metadata: dict[str, str], says: str
) -> None:
    with pytest.raises(ModelError, match=says):
        OnnxModel(make_upscaler(metadata=metadata), device="cpu")


def test_missing_scale_metadata_is_refused() -> None:
    with pytest.raises(ModelError, match="scale"):
        ModelInfo.from_metadata({"task": "superres"}, source="foreign.onnx")


def test_require_checks_task_and_scale() -> None:
    info = ModelInfo(task="superres", name="superres-x4", scale=4)
    info.require(task="superres", scale=4)
    with pytest.raises(ModelError, match="--scale 2"):
        info.require(task="superres", scale=2)
    with pytest.raises(ModelError, match="inpaint"):
        ModelInfo(task="inpaint", name="inpaint", scale=1).require(task="superres")


def test_provider_selection() -> None:
    assert select_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with_cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert select_providers("auto", with_cuda) == with_cuda
    assert select_providers("cpu", with_cuda) == ["CPUExecutionProvider"]
    with pytest.raises(ModelError, match=r"img2img\[gpu\]"):
        select_providers("cuda", ["CPUExecutionProvider"])
    with pytest.raises(ModelError, match="auto, cpu, cuda"):
        select_providers("gpu", with_cuda)


def test_weights_dir_follows_the_environment(weights: Path) -> None:
    assert weights_dir() == weights
    assert [entry.name for entry in load_manifest()] == ["superres-x4", "superres-x2"]


@pytest.mark.parametrize(
    ("scale", "expected"), [(None, "superres-x4"), (4, "superres-x4"), (2, "superres-x2")]
)
def test_default_model_per_scale(weights: Path, scale: int | None, expected: str) -> None:
    assert resolve_model(None, task="superres", scale=scale) == weights / f"{expected}.onnx"


def test_names_and_paths_resolve(weights: Path, tiny_x2: Path) -> None:
    assert resolve_model("superres-x2", task="superres", scale=None) == weights / "superres-x2.onnx"
    assert resolve_model(str(tiny_x2), task="superres", scale=None) == tiny_x2


def test_unknown_name_lists_the_shipped_models(weights: Path) -> None:
    with pytest.raises(ModelError, match="superres-x2, superres-x4"):
        resolve_model("superres-x8", task="superres", scale=None)


def test_unavailable_scale_lists_what_exists(weights: Path) -> None:
    with pytest.raises(ModelError, match=r"x3.*superres-x4 \(x4\)"):
        resolve_model(None, task="superres", scale=3)


def test_checksum_mismatch_is_detected(weights: Path) -> None:
    with (weights / "superres-x2.onnx").open("ab") as stream:
        stream.write(b"\0")
    with pytest.raises(ModelError, match="checksum"):
        resolve_model("superres-x2", task="superres", scale=None)
    assert resolve_model("superres-x2", task="superres", scale=None, verify=False).is_file()


def test_missing_or_malformed_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMG2IMG_WEIGHTS", str(tmp_path))
    with pytest.raises(ModelError, match="IMG2IMG_WEIGHTS"):
        load_manifest()
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [{"name": "x"}]}))
    with pytest.raises(ModelError, match="malformed"):
        load_manifest()
