"""ONNX export: the file follows the runtime contract and matches PyTorch."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from img2img.engine.checkpoint import load_generator, load_safetensors_generator, save_safetensors_generator
from img2img.errors import ModelError, OutputError
from img2img.contract import IMAGE
from img2img.export import ExportWrapper, describe_net, export_command, export_onnx
from img2img.nets import build_net
from img2img.runtime import OnnxModel

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A 2-step tiny x2 super-resolution run on generated images."""
    from test_engine_training import textured_image, tiny_config

    from img2img.engine.trainer import Trainer
    from img2img.tasks.superres import SuperResolution

    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        (root / "photos" / split).mkdir(parents=True)
        textured_image(rng, (40, 44)).save(root / "photos" / split / "a.png")
    config = tiny_config(root / "photos", "engine.steps=2", "data_license=CC0-1.0")
    Trainer(SuperResolution(config, torch.device("cpu")), root / "run", show_progress=False).fit()
    return root / "run"


def test_exported_model_follows_the_runtime_contract(trained_run, tmp_path):
    output = tmp_path / "superres-x2.onnx"
    errors = export_command(run=trained_run, output=output, opset=17)
    assert errors["fp32"] < 1e-4

    model = onnx.load(output)
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
    (graph_input,) = model.graph.input
    (graph_output,) = model.graph.output
    assert (graph_input.name, graph_output.name) == ("input", "output")
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[1].dim_value == 3 and all(d.dim_param for d in (dims[0], dims[2], dims[3]))
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["task"] == "superres" and metadata["scale"] == "2" and metadata["name"] == "superres-x2"
    assert metadata["range"] == "0,1" and metadata["multiple_of"] == "1" and metadata["channels"] == "3"
    assert "CC0-1.0" in metadata["license"]
    assert json.loads(metadata["config"])["net"] == "srvgg_tiny"

    # The runtime runs it on any size, and agrees with the PyTorch EMA generator.
    net = load_generator(trained_run).net
    image = np.random.default_rng(0).random((13, 9, 3), dtype=np.float32)
    result = OnnxModel(output, device="cpu").run(image)
    with torch.no_grad():
        expected = net(torch.from_numpy(image).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    assert result.shape == (26, 18, 3)
    assert np.abs(result - expected).max() < 1e-4


def test_fp16_variant_runs_beside_the_fp32_model(trained_run, tmp_path):
    output = tmp_path / "superres-x2.onnx"
    errors = export_command(run=trained_run, output=output, opset=17, fp16=True)
    assert errors["fp32"] < 1e-4 and errors["fp16"] < 1e-2
    variant = tmp_path / "superres-x2.fp16.onnx"
    metadata = {p.key: p.value for p in onnx.load(variant).metadata_props}
    assert metadata["precision"] == "fp16" and metadata["scale"] == "2"
    assert variant.stat().st_size < output.stat().st_size

    image = np.random.default_rng(0).random((13, 9, 3), dtype=np.float32)
    half = OnnxModel(output, device="cpu", precision="fp16")
    assert half.info.precision == "fp16"
    full = OnnxModel(output, device="cpu").run(image)
    assert np.abs(half.run(image) - full).max() < 1e-2


def test_fp16_overflow_comes_out_as_nan_not_as_a_valid_pixel():
    class Overflow(torch.nn.Module):
        input_range, multiple_of, inputs = (0.0, 1.0), 1, IMAGE

        def __init__(self):
            super().__init__()
            self.gain = torch.nn.Parameter(torch.tensor(1e5))

        def forward(self, image):
            return image * self.gain * self.gain  # finite in float32, inf in float16

    wrapper = ExportWrapper(Overflow().half())
    result = wrapper(torch.full((1, 3, 4, 4), 0.5))
    assert torch.isnan(result).all()
    assert (ExportWrapper(Overflow())(torch.full((1, 3, 4, 4), 0.5)) == 1.0).all()


def test_tanh_generators_are_mapped_to_unit_range_inside_the_graph(tmp_path):
    torch.manual_seed(0)
    net = build_net("unet_tiny").eval()
    assert net.input_range == (-1.0, 1.0)
    output = tmp_path / "unet.onnx"
    export_onnx(net, output, info=describe_net(net, task="test"), opset=17)
    image = torch.rand(1, 3, 16, 24)
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    (actual,) = session.run(["output"], {"input": image.numpy()})
    with torch.no_grad():
        expected = ((net(image * 2 - 1) + 1) / 2).clamp(0, 1).numpy()
    assert actual.shape == (1, 3, 16, 24)
    assert np.abs(actual - expected).max() < 1e-4
    assert actual.min() >= 0.0 and actual.max() <= 1.0


def test_export_refuses_old_opsets_and_other_suffixes(tmp_path):
    net = build_net("srvgg_tiny", scale=2)
    with pytest.raises(ModelError, match="opset 16 is too old"):
        export_onnx(net, tmp_path / "a.onnx", info=describe_net(net), opset=16)
    with pytest.raises(OutputError, match="must end in .onnx"):
        export_onnx(net, tmp_path / "a.pt", info=describe_net(net))
    with pytest.raises(OutputError, match="named as the fp16 variant"):
        export_onnx(net, tmp_path / "a.fp16.onnx", info=describe_net(net))
    with pytest.raises(OutputError, match="named as the fp32 variant"):
        export_onnx(net, tmp_path / "a.onnx", info=describe_net(net), precision="fp16")
    with pytest.raises(ModelError, match="no checkpoint at"):
        export_command(run=tmp_path, output=tmp_path / "a.onnx")
    assert not list(tmp_path.iterdir())


def test_safetensors_round_trip_rebuilds_the_same_generator(tmp_path):
    torch.manual_seed(0)
    net = build_net("srvgg_tiny", scale=4).eval()
    path = tmp_path / "g.safetensors"
    save_safetensors_generator(net, path, task="superres", config={"scale": 4})
    loaded = load_safetensors_generator(path)
    assert loaded.task == "superres" and loaded.config == {"scale": 4}
    image = torch.rand(1, 3, 7, 5)
    with torch.no_grad():
        assert torch.equal(loaded.net(image), net(image))


def test_cli_export_and_dry_run(trained_run, tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    output = tmp_path / "model.onnx"
    done = subprocess.run(
        [sys.executable, "-m", "cli", "export", str(trained_run), "-o", str(output)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert output.is_file() and "parity max abs error" in done.stdout

    done = subprocess.run(
        [sys.executable, "-m", "cli", "train", "superres", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
         "--set", "engine.steps=3", "--dry-run"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["engine"]["steps"] == 3
    assert not (tmp_path / "r").exists()

    done = subprocess.run(
        [sys.executable, "-m", "cli", "train", "superres", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
         "--set", "engine.stepz=3"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: unknown config key engine.stepz")
