"""The Python API: `img2img.load(...)` on PIL images and numpy arrays, task checks, no torch."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import img2img
from conftest import build_upscaler
from img2img.errors import ModelError
from img2img.runtime import load_image
from img2img.runtime.describe import describe

REPO = Path(__file__).resolve().parents[1]


def nearest(array: np.ndarray, scale: int) -> np.ndarray:
    return array.repeat(scale, axis=0).repeat(scale, axis=1)


@pytest.fixture
def rgb8() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (21, 34, 3), dtype=np.uint8)


def test_shipped_name_and_path_load_the_same_model(weights: Path) -> None:
    by_name = img2img.load("superres-x2")
    by_path = img2img.load(weights / "superres-x2.onnx")
    assert by_name.path == by_path.path and by_name.info.scale == 2
    assert img2img.load(task="superres").info.name == "superres-x4"  # the task's default


def test_pil_images_come_back_in_their_own_mode(weights: Path, rgb8: np.ndarray) -> None:
    upscale = img2img.load("superres-x2", tile=16, tile_overlap=4)
    rgb = upscale(Image.fromarray(rgb8))
    assert rgb.mode == "RGB" and rgb.size == (68, 42)
    np.testing.assert_array_equal(np.asarray(rgb), nearest(rgb8, 2))

    gray = upscale(Image.fromarray(rgb8[:, :, 0]))
    assert gray.mode == "L"
    np.testing.assert_array_equal(np.asarray(gray), nearest(rgb8[:, :, 0], 2))

    wide = (rgb8[:, :, 0].astype(np.uint16) * 257 + 3).astype(np.uint16)
    deep = upscale(Image.fromarray(wide))
    assert deep.mode.startswith("I") and np.asarray(deep).max() > 255  # 16 bits kept
    np.testing.assert_array_equal(np.asarray(deep).astype(np.uint16), nearest(wide, 2))

    rgba = np.concatenate([rgb8, np.full((21, 34, 1), 128, np.uint8)], axis=2)
    out = upscale(Image.fromarray(rgba))
    assert out.mode == "RGBA" and np.asarray(out)[:, :, 3].min() == 128


@pytest.mark.parametrize("kind", ["uint8", "uint16", "float32", "gray", "rgba"])
def test_numpy_arrays_keep_their_dtype_and_layout(weights: Path, rgb8: np.ndarray, kind: str) -> None:
    upscale = img2img.load("superres-x4")
    array = {
        "uint8": rgb8,
        "uint16": rgb8.astype(np.uint16) * 257,
        "float32": rgb8.astype(np.float32) / 255,
        "gray": rgb8[:, :, 1],
        "rgba": np.concatenate([rgb8, np.full((21, 34, 1), 255, np.uint8)], axis=2),
    }[kind]
    result = upscale(array)
    assert result.dtype == array.dtype and result.shape == (84, 136, *array.shape[2:])
    if kind != "float32":
        np.testing.assert_array_equal(result, nearest(array, 4))
    else:
        np.testing.assert_allclose(result, nearest(array, 4), atol=1e-6)


def test_bad_arrays_are_refused(weights: Path) -> None:
    upscale = img2img.load("superres-x2")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        upscale(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        upscale(np.zeros((4, 4, 3), np.int64))
    with pytest.raises(TypeError, match="PIL image or a numpy array"):
        upscale("photo.png")


def test_a_model_of_another_task_is_refused(weights: Path, tmp_path: Path) -> None:
    inpainter = build_upscaler(tmp_path / "inpaint.onnx", scale=1, name="inpaint", metadata={"task": "inpaint"})
    with pytest.raises(ModelError, match="inpaint model, not superres"):
        img2img.load(inpainter, task="superres")
    with pytest.raises(ModelError, match="superres model, not inpaint"):
        img2img.load("superres-x4", task="inpaint")
    assert img2img.load(inpainter).info.task == "inpaint"  # no task asked: any model runs


def test_tile_must_exceed_twice_the_overlap(weights: Path) -> None:
    with pytest.raises(ModelError, match="more than twice"):
        img2img.load("superres-x2", tile=32, tile_overlap=16)


def test_missing_fp16_variant_says_how_to_make_one(weights: Path) -> None:
    with pytest.raises(ModelError, match="export --fp16"):
        img2img.load(weights / "superres-x4.onnx", precision="fp16")
    with pytest.raises(ModelError, match="no fp16 variant; use --precision fp32"):
        img2img.load("superres-x4", precision="fp16")


def test_shipped_fp16_variant_is_checked_against_its_own_checksum(weights: Path) -> None:
    build_upscaler(weights / "superres-x4.fp16.onnx", scale=4, name="superres-x4", metadata={"precision": "fp16"})
    manifest = json.loads((weights / "manifest.json").read_text())
    entry = manifest["models"][0]
    entry["fp16_sha256"] = hashlib.sha256((weights / "superres-x4.fp16.onnx").read_bytes()).hexdigest()
    (weights / "manifest.json").write_text(json.dumps(manifest))
    model = img2img.load("superres-x4", precision="fp16")
    assert model.path.name == "superres-x4.fp16.onnx" and model.info.precision == "fp16"
    with (weights / "superres-x4.fp16.onnx").open("ab") as stream:
        stream.write(b"\0")
    with pytest.raises(ModelError, match="checksum"):
        img2img.load("superres-x4", precision="fp16")


def test_process_keeps_sixteen_bits_and_resizes_alpha(weights: Path, tmp_path: Path) -> None:
    values = np.random.default_rng(1).integers(0, 65536, (9, 11), dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    result = img2img.load("superres-x2").process(load_image(tmp_path / "deep.png"))
    assert result.pixels.dtype == np.uint16
    np.testing.assert_array_equal(result.pixels[:, :, 0], nearest(values, 2))

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, 4:, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "half.png")
    for mode in ("bicubic", "model"):
        alpha = img2img.load("superres-x2", alpha=mode).process(load_image(tmp_path / "half.png")).alpha
        assert alpha is not None and alpha.shape == (16, 16) and alpha.dtype == np.uint8
        assert alpha[:, :6].max() == 0 and alpha[:, 10:].min() == 255


def test_importing_and_running_the_api_never_imports_torch(weights: Path, tmp_path: Path) -> None:
    script = (
        "import sys, numpy as np, img2img\n"
        "out = img2img.load('superres-x2')(np.zeros((8, 8, 3), np.uint8))\n"
        "print(out.shape, 'torch' in sys.modules, 'onnx' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "IMG2IMG_WEIGHTS": str(weights), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["(16,", "16,", "3)", "False", "False"]


def test_info_describes_a_model(weights: Path) -> None:
    described = describe(weights / "superres-x4.onnx")
    assert described["task"] == "superres" and described["scale"] == 4 and described["inputs"] == "image"
    assert json.dumps(described)  # plain values only


# ----------------------------------------------------------------------------- saving, streamed


def stored_png(path: Path, kind: str, height: int, width: int) -> Path:
    """A noise PNG: 8-bit RGB ("rgb8") or 16-bit gray ("gray16")."""
    rng = np.random.default_rng(7)
    if kind == "rgb8":
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    else:
        Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16)).save(path)
    return path


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


@pytest.mark.parametrize("kind", ["rgb8", "gray16"])
def test_a_large_png_result_is_written_as_the_tiles_make_it_never_held_whole(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # A 12000x12000 photo at x4 is a 6.9 GB result: written to PNG band by band as tile rows are
    # final, it needs one row of tiles. numpy reports its buffers to tracemalloc, so the peak
    # shows whether the result ever existed whole.
    import tracemalloc

    from img2img.files import encode

    monkeypatch.setattr(encode, "STREAMED_PNG_PIXELS", 1)
    image = load_image(stored_png(tmp_path / "tall.png", kind, 4096, 128))
    net = img2img.load("superres-x2", tile=64, tile_overlap=8)
    expected = net.process(image).pixels  # (8192, 256, 3)
    result_bytes = expected.nbytes if kind == "rgb8" else expected.nbytes // 3

    tracemalloc.start()
    try:
        saved = net.save(image, tmp_path / "streamed.png")
        streamed_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        monkeypatch.setattr(encode, "STREAMED_PNG_PIXELS", 10**12)  # 8 bits: Pillow, from the whole result
        net.save(image, tmp_path / "whole.png")
        whole_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert (saved.width, saved.height) == (256, 8192)
    written = decoded(tmp_path / "streamed.png")
    np.testing.assert_array_equal(written, expected if kind == "rgb8" else expected[:, :, 0])
    assert streamed_peak < result_bytes / 2, (streamed_peak, result_bytes)
    if kind == "rgb8":
        assert whole_peak > result_bytes  # the measurement can tell the two apart
        np.testing.assert_array_equal(decoded(tmp_path / "whole.png"), written)


def test_running_out_of_memory_mid_stream_restarts_the_file_with_smaller_tiles(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from img2img.errors import InferenceMemoryError
    from img2img.files import encode

    monkeypatch.setattr(encode, "STREAMED_PNG_PIXELS", 1)
    image = load_image(stored_png(tmp_path / "in.png", "rgb8", 400, 140))
    net = img2img.load("superres-x2", tile=128, tile_overlap=8)
    expected = net.process(image).pixels
    out = tmp_path / "out"
    out.mkdir()
    run_batch, calls = net.onnx.run_batch, []

    def fails_once_mid_image(images, masks=None):
        calls.append(images.shape)
        if len(calls) == 4:  # the first row of tiles is already in the file by then
            raise InferenceMemoryError("out of memory")
        return run_batch(images, masks)

    monkeypatch.setattr(net.onnx, "run_batch", fails_once_mid_image)
    saved = net.save(image, out / "result.png")
    assert any("retrying with tile 64" in warning for warning in saved.warnings), saved.warnings
    np.testing.assert_array_equal(decoded(out / "result.png"), expected)
    assert sorted(path.name for path in out.iterdir()) == ["result.png"]  # no temporary file left


def test_a_failure_mid_stream_leaves_the_previous_file_untouched(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from img2img.files import encode

    monkeypatch.setattr(encode, "STREAMED_PNG_PIXELS", 1)
    image = load_image(stored_png(tmp_path / "in.png", "rgb8", 96, 40))
    net = img2img.load("superres-x2", tile=32, tile_overlap=4)
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.png").write_bytes(b"the previous result")
    run_batch, calls = net.onnx.run_batch, []

    def breaks_mid_image(images, masks=None):
        calls.append(1)
        if len(calls) == 4:
            raise ModelError("the model produced NaN")
        return run_batch(images, masks)

    monkeypatch.setattr(net.onnx, "run_batch", breaks_mid_image)
    with pytest.raises(ModelError, match="NaN"):
        net.save(image, out / "result.png")
    assert (out / "result.png").read_bytes() == b"the previous result"
    assert sorted(path.name for path in out.iterdir()) == ["result.png"]


def test_results_that_need_the_input_or_keep_opacity_are_saved_whole_and_alike(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kept opacity is a second plane the stream does not carry: the file must still hold it.
    from img2img.files import encode

    monkeypatch.setattr(encode, "STREAMED_PNG_PIXELS", 1)
    rgba = np.random.default_rng(2).integers(0, 256, (20, 24, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    saved = img2img.load("superres-x2", tile=16, tile_overlap=4).save(load_image(tmp_path / "rgba.png"), tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as written:
        assert written.mode == "RGBA" and written.size == (saved.width, saved.height) == (48, 40)
