"""`img2img quantize` and `--precision int8`: an 8-bit variant of a shipped upscaler, calibrated on
photos, that the runtime runs in place of the float32 model, and every way of asking for one
wrongly."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

import img2img
from img2img.contract import precision_variant, variant_precision
from img2img.errors import ModelError
from tests.conftest import build_upscaler
from tests.test_cli_superres import assert_one_line_error
from tests.test_cli_superres import img2img as run_img2img

REPO = Path(__file__).resolve().parents[1]


def photo(seed: int, size: int = 256) -> Image.Image:
    """Smooth colour waves with edges: photo-like ranges for calibration, `size` pixels a side."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    planes = [0.5 + 0.4 * np.sin(2 * np.pi * (rng.uniform(1, 6) * x + rng.uniform(1, 6) * y)) for _ in range(3)]
    pixels = np.stack(planes, axis=-1)
    pixels[(x * 9).astype(int) % 2 == 1] *= 0.6
    return Image.fromarray((pixels.clip(0, 1) * 255).astype(np.uint8))


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(5):
        photo(seed).save(folder / f"{seed}.png")
    photo(9, size=64).save(folder / "too-small.png")  # skipped: under one 256x256 crop
    (folder / "notes.png").write_text("not an image")  # skipped too
    return folder


@pytest.fixture
def shipped_x2(tmp_path: Path) -> Path:
    """A copy of the shipped superres-x2 (a real srvgg net of 16 convolutions)."""
    return Path(shutil.copy(REPO / "weights" / "superres-x2.onnx", tmp_path / "sr.onnx"))


def test_variant_names():
    assert precision_variant("w/sr.onnx", "int8") == Path("w/sr.int8.onnx")
    assert precision_variant("w/sr.int8.onnx", "fp16") == Path("w/sr.fp16.onnx")
    assert precision_variant("w/sr.int8.onnx", "fp32") == Path("w/sr.onnx")
    assert [variant_precision(name) for name in ("sr.onnx", "sr.fp16.onnx", "sr.int8.onnx")] == ["fp32", "fp16", "int8"]


def test_quantize_writes_an_int8_variant_that_upscales_like_the_float32_model(weights, photos, shipped_x2, tmp_path):
    result = run_img2img("quantize", shipped_x2, "--calibration", photos, "--count", "4", weights=weights)
    assert result.returncode == 0, result.stderr
    variant = tmp_path / "sr.int8.onnx"
    assert result.stdout.startswith(f"wrote {variant}") and len(result.stdout.splitlines()) == 1
    graph = onnx.load(str(variant))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in graph.graph.node}
    # The body runs in 8 bits; the convolution that reads the image and the one that writes the
    # output keep float32 weights.
    producers = {output: node.op_type for node in graph.graph.node for output in node.output}
    int8_weights = [producers.get(node.input[1]) == "DequantizeLinear" for node in graph.graph.node if node.op_type == "Conv"]
    assert len(int8_weights) == 18 and not int8_weights[0] and not int8_weights[-1] and all(int8_weights[1:-1])
    metadata = {prop.key: prop.value for prop in graph.metadata_props}
    original = {prop.key: prop.value for prop in onnx.load(str(shipped_x2)).metadata_props}
    assert metadata == original | {"precision": "int8"}

    photo(7, size=48).save(tmp_path / "in.png")
    for precision in ("fp32", "int8"):
        done = run_img2img(
            "superres", tmp_path / "in.png", "--model", shipped_x2, "--precision", precision,
            "-o", tmp_path / f"{precision}.png", weights=weights,
        )
        assert done.returncode == 0, done.stderr
    fp32, int8 = (np.asarray(Image.open(tmp_path / f"{p}.png"), dtype=np.float64) for p in ("fp32", "int8"))
    assert int8.shape == fp32.shape == (96, 96, 3)
    assert 10 * np.log10(255**2 / np.mean((int8 - fp32) ** 2)) > 35
    # With the variant beside the model, the default (--precision auto) on the CPU runs it.
    done = run_img2img("superres", tmp_path / "in.png", "--model", shipped_x2, "-o", tmp_path / "auto.png", weights=weights)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {tmp_path / 'auto.png'} (96x96, x2, int8, ")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "auto.png")), int8.astype(np.uint8))
    described = run_img2img("info", variant, weights=weights).stdout
    assert any(line.split() == ["precision", "int8"] for line in described.splitlines())


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        (["--count", "3"], ["--count 3 is too few"]),
        (["--min-psnr", "200"], ["under the 200 dB asked for", "nothing was written"]),
        (["-o", "{tmp}/other.onnx"], ["must end in .int8.onnx"]),
        (["--calibration", "{tmp}/missing"], ["is not a folder"]),
    ],
    ids=["too-few", "too-far-from-fp32", "misnamed-output", "no-calibration-folder"],
)
def test_refusals_are_one_line_and_write_nothing(weights, photos, shipped_x2, tmp_path, arguments, fragments):
    arguments = [argument.format(tmp=tmp_path) for argument in arguments]
    if "--calibration" not in arguments:
        arguments += ["--calibration", str(photos)]
    before = sorted(path.name for path in tmp_path.iterdir())
    result = run_img2img("quantize", shipped_x2, *arguments, weights=weights)
    assert_one_line_error(result, *fragments)
    assert sorted(path.name for path in tmp_path.iterdir()) == before


def test_calibration_needs_four_usable_photos(weights, photos, shipped_x2):
    for name in ("0.png", "1.png"):
        (photos / name).unlink()
    assert_one_line_error(
        run_img2img("quantize", shipped_x2, "--calibration", photos, weights=weights),
        "3 image(s) of at least 256x256 pixels", "needs 4 or more",
    )


def test_only_float32_models_of_one_image_input_are_quantized(weights, photos, tmp_path):
    half = build_upscaler(tmp_path / "sr.fp16.onnx", scale=2, name="sr", metadata={"precision": "fp16"})
    assert_one_line_error(
        run_img2img("quantize", half, "--calibration", photos, weights=weights),
        "is a fp16 model", "quantize its float32 variant sr.onnx",
    )
    inpainter = REPO / "weights" / "inpaint.onnx"
    assert_one_line_error(
        run_img2img("quantize", inpainter, "--calibration", photos, "-o", tmp_path / "i.int8.onnx", weights=weights),
        "takes image, mask", "one image input",
    )
    assert not (tmp_path / "i.int8.onnx").exists()


def test_missing_int8_variant_says_how_to_make_one(weights):
    with pytest.raises(ModelError, match="img2img quantize"):
        img2img.load(weights / "superres-x4.onnx", precision="int8")
    with pytest.raises(ModelError, match="no int8 variant; use --precision fp32"):
        img2img.load("superres-x4", precision="int8")


def test_shipped_int8_variant_is_checked_against_its_own_checksum(weights):
    build_upscaler(weights / "superres-x4.int8.onnx", scale=4, name="superres-x4", metadata={"precision": "int8"})
    manifest = json.loads((weights / "manifest.json").read_text())
    manifest["models"][0]["int8_sha256"] = hashlib.sha256((weights / "superres-x4.int8.onnx").read_bytes()).hexdigest()
    (weights / "manifest.json").write_text(json.dumps(manifest))
    model = img2img.load("superres-x4", precision="int8")
    assert model.path.name == "superres-x4.int8.onnx" and model.info.precision == "int8"
    with (weights / "superres-x4.int8.onnx").open("ab") as stream:
        stream.write(b"\0")
    with pytest.raises(ModelError, match="checksum"):
        img2img.load("superres-x4", precision="int8")


def test_auto_precision_takes_the_int8_variant_on_the_cpu_where_one_ships(weights):
    assert img2img.load("superres-x4", device="cpu").info.precision == "fp32"  # none ships yet
    build_upscaler(weights / "superres-x4.int8.onnx", scale=4, name="superres-x4", metadata={"precision": "int8"})
    manifest = json.loads((weights / "manifest.json").read_text())
    manifest["models"][0]["int8_sha256"] = hashlib.sha256((weights / "superres-x4.int8.onnx").read_bytes()).hexdigest()
    (weights / "manifest.json").write_text(json.dumps(manifest))
    chosen = {precision: img2img.load("superres-x4", device="cpu", precision=precision) for precision in ("auto", "fp32")}
    assert chosen["auto"].path.name == "superres-x4.int8.onnx" and chosen["auto"].info.precision == "int8"
    assert chosen["fp32"].path.name == "superres-x4.onnx" and chosen["fp32"].info.precision == "fp32"
    assert img2img.load(weights / "superres-x4.onnx", device="cpu").info.precision == "int8"
    with pytest.raises(ModelError, match="choose one of: auto, fp32, fp16, int8"):
        img2img.load("superres-x4", precision="int4")
    # A damaged variant is refused, not silently replaced by the float32 model.
    with (weights / "superres-x4.int8.onnx").open("ab") as stream:
        stream.write(b"\0")
    with pytest.raises(ModelError, match="checksum"):
        img2img.load("superres-x4", device="cpu")


def test_auto_precision_keeps_float32_on_a_gpu_and_a_variant_file_its_own(weights, monkeypatch):
    from img2img.runtime import onnx_model

    build_upscaler(weights / "superres-x4.int8.onnx", scale=4, name="superres-x4", metadata={"precision": "int8"})
    model = weights / "superres-x4.onnx"
    assert onnx_model.automatic_precision(model, "cpu") == "int8"
    assert onnx_model.automatic_precision(weights / "superres-x4.fp16.onnx", "cpu") == "fp16"

    class WithCuda:
        @staticmethod
        def get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    monkeypatch.setattr(onnx_model, "import_onnxruntime", lambda: WithCuda)
    assert onnx_model.automatic_precision(model, "auto") == "fp32"  # a GPU runs the float32 model
    assert onnx_model.automatic_precision(model, "cpu") == "int8"
