"""Shared fixtures: tiny ONNX upscalers and translators that follow the export contract, and
tiny images.

The upscaler is nearest-neighbour Resize wrapped in SpaceToDepth/DepthToSpace(4): the pair is an
identity, but onnxruntime rejects any height or width that is not a multiple of 4, like a real
net with downsampling, so the runtime's padding is exercised rather than assumed. The translator
inverts colours (1 - x) behind the same pair, so its output is known exactly.
"""

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

BLOCK = 4


def build_upscaler(
    path: Path,
    *,
    scale: int,
    name: str,
    metadata: dict[str, str] | None = None,
    nan_above: float | None = None,
) -> Path:
    """Write an x`scale` nearest-neighbour upscaler honouring the RUNTIME/ONNX CONTRACT.

    `metadata` replaces entries of the metadata_props the contract prescribes. With `nan_above`,
    every image holding a value above it comes out all NaN, like a float16 net that overflowed.
    """
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, float(scale), float(scale)])
    nodes = []
    source = "input"
    if nan_above is not None:
        # sqrt(limit - x) is NaN where x > limit; ReduceSum spreads it over the image, * 0 keeps
        # the finite case exact.
        nodes += [
            helper.make_node("Sub", ["limit", "input"], ["headroom"]),
            helper.make_node("Sqrt", ["headroom"], ["root"]),
            helper.make_node("ReduceSum", ["root"], ["worst"], keepdims=1),
            helper.make_node("Mul", ["worst", "zero"], ["poison"]),
            helper.make_node("Add", ["input", "poison"], ["poisoned"]),
        ]
        source = "poisoned"
    nodes += [
        helper.make_node("SpaceToDepth", [source], ["packed"], blocksize=BLOCK),
        helper.make_node("DepthToSpace", ["packed"], ["aligned"], blocksize=BLOCK, mode="DCR"),
        helper.make_node(
            "Resize",
            ["aligned", "", "scales"],
            ["resized"],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        ),
        helper.make_node("Clip", ["resized", "low", "high"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_upscaler",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, "out_height", "out_width"])],
        initializer=[
            scales,
            helper.make_tensor("low", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("high", TensorProto.FLOAT, [], [1.0]),
        ],
    )
    if nan_above is not None:
        graph.initializer.extend(
            [
                helper.make_tensor("limit", TensorProto.FLOAT, [], [nan_above]),
                helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            ]
        )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    props = {
        "task": "superres",
        "name": name,
        "scale": str(scale),
        "channels": "3",
        "multiple_of": str(BLOCK),
        "min_size": "1",
        "range": "0,1",
        "data": "none (test fixture)",
        "license": "Apache-2.0",
        "version": "0.1.0",
        "config": json.dumps({"task": "superres", "net": {"scale": scale}}),
    }
    props.update(metadata or {})
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def build_translator(
    path: Path,
    *,
    name: str,
    metadata: dict[str, str | None] | None = None,
    global_mean: bool = False,
) -> Path:
    """Write a same-size "invert" translator (output = 1 - input) with translation metadata:
    task=translate, domains, background=255,255,255, whole_image=1, multiple_of 4.

    `metadata` replaces entries of the metadata_props; a None value removes the entry. With
    `global_mean`, the output is 1 - x + (mean of x over the image - 0.5): like an instance-
    normalised net, every output pixel depends on the whole input, so tiles change the result.
    """
    nodes = [
        helper.make_node("SpaceToDepth", ["input"], ["packed"], blocksize=BLOCK),
        helper.make_node("DepthToSpace", ["packed"], ["aligned"], blocksize=BLOCK, mode="DCR"),
        helper.make_node("Sub", ["one", "aligned"], ["inverted"]),
    ]
    result, constants = "inverted", {"one": 1.0, "low": 0.0, "high": 1.0}
    if global_mean:
        constants["half"] = 0.5
        nodes += [
            helper.make_node("ReduceMean", ["aligned"], ["mean"], axes=[2, 3], keepdims=1),
            helper.make_node("Sub", ["mean", "half"], ["shift"]),
            helper.make_node("Add", ["inverted", "shift"], ["shifted"]),
        ]
        result = "shifted"
    nodes.append(helper.make_node("Clip", [result, "low", "high"], ["output"]))
    graph = helper.make_graph(
        nodes,
        "tiny_translator",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        initializer=[
            helper.make_tensor(constant, TensorProto.FLOAT, [], [value]) for constant, value in constants.items()
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    props: dict[str, str | None] = {
        "task": "translate",
        "name": name,
        "scale": "1",
        "channels": "3",
        "multiple_of": str(BLOCK),
        "min_size": "1",
        "range": "0,1",
        "domains": "positive->negative",
        "background": "255,255,255",
        "whole_image": "1",
        "data": "none (test fixture)",
        "license": "Apache-2.0",
        "version": "0.1.0",
        "config": json.dumps({"task": "cyclegan"}),
    }
    props.update(metadata or {})
    helper.set_model_props(model, {key: value for key, value in props.items() if value is not None})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def build_colour_mixer(path: Path, *, style_size: int = 8) -> Path:
    """An arbitrary-style graph with the export contract's four inputs: every output pixel is
    (1 - alpha) * input + alpha * sum_k w_k * (mean colour of style k)."""
    nodes = [
        helper.make_node("ReduceMean", ["style"], ["style_mean"], axes=[2, 3], keepdims=1),
        helper.make_node("Reshape", ["style_weights", "weight_shape"], ["weights"]),
        helper.make_node("Mul", ["style_mean", "weights"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "zero_axis"], ["colour"], keepdims=1),
        helper.make_node("Reshape", ["alpha", "alpha_shape"], ["strength"]),
        helper.make_node("Sub", ["colour", "input"], ["towards"]),
        helper.make_node("Mul", ["towards", "strength"], ["step"]),
        helper.make_node("Add", ["input", "step"], ["mixed"]),
        helper.make_node("Clip", ["mixed", "low", "high"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_colour_mixer",
        [
            helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"]),
            helper.make_tensor_value_info("style", TensorProto.FLOAT, ["styles", 3, "style_height", "style_width"]),
            helper.make_tensor_value_info("style_weights", TensorProto.FLOAT, ["styles"]),
            helper.make_tensor_value_info("alpha", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        initializer=[
            helper.make_tensor("weight_shape", TensorProto.INT64, [4], [-1, 1, 1, 1]),
            helper.make_tensor("alpha_shape", TensorProto.INT64, [4], [1, 1, 1, 1]),
            helper.make_tensor("zero_axis", TensorProto.INT64, [1], [0]),
            helper.make_tensor("low", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("high", TensorProto.FLOAT, [], [1.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(
        model,
        {
            "task": "style",
            "name": "mixer",
            "scale": "1",
            "channels": "3",
            "inputs": "image,style,style_weights,alpha",
            "multiple_of": "1",
            "min_size": "1",
            "range": "0,1",
            "whole_image": "1",
            "style_size": str(style_size),
        },
    )
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture
def make_translator(tmp_path: Path) -> Callable[..., Path]:
    """`make_translator(name=..., metadata={...}, global_mean=False)` -> path of a fresh tiny
    invert translator in tmp_path."""

    def make(
        *, name: str = "invert", metadata: dict[str, str | None] | None = None, global_mean: bool = False
    ) -> Path:
        return build_translator(tmp_path / f"{name}.onnx", name=name, metadata=metadata, global_mean=global_mean)

    return make


@pytest.fixture
def make_upscaler(tmp_path: Path) -> Callable[..., Path]:
    """`make_upscaler(scale=2, name=..., metadata={...})` -> path of a fresh tiny model in tmp_path."""

    def make(*, scale: int = 2, name: str | None = None, metadata: dict[str, str] | None = None) -> Path:
        name = name or f"superres-x{scale}"
        return build_upscaler(tmp_path / f"{name}.onnx", scale=scale, name=name, metadata=metadata)

    return make


@pytest.fixture
def tiny_x2(make_upscaler: Callable[..., Path]) -> Path:
    return make_upscaler(scale=2)


@pytest.fixture
def weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A weights folder with tiny "superres-x4" and "superres-x2" and their manifest.json.

    IMG2IMG_WEIGHTS points at it, so no test depends on the real shipped weights.
    """
    folder = tmp_path / "weights"
    folder.mkdir()
    entries = []
    for scale in (4, 2):
        name = f"superres-x{scale}"
        path = build_upscaler(folder / f"{name}.onnx", scale=scale, name=name)
        entries.append(
            {
                "name": name,
                "task": "superres",
                "scale": scale,
                "file": path.name,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "checkpoint": f"{name}.safetensors",
                "card": f"{name}.md",
                "use_for": f"clean photos, x{scale}",
                "metrics": {"div2k-val": {"psnr": 20.0 + scale, "ssim": 0.5}},
            }
        )
    (folder / "manifest.json").write_text(json.dumps({"models": entries}))
    monkeypatch.setenv("IMG2IMG_WEIGHTS", str(folder))
    return folder


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 noise."""
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.fixture
def rgb_png(tmp_path: Path) -> Path:
    """A 13x7 (width x height) RGB PNG: odd sizes, so padding to multiples of 4 is needed."""
    path = tmp_path / "photo.png"
    Image.fromarray(random_rgb(7, 13)).save(path)
    return path


@pytest.fixture
def rgba_png(tmp_path: Path) -> Path:
    """A 10x6 RGBA PNG with a horizontal opacity ramp."""
    path = tmp_path / "sprite.png"
    alpha = np.tile(np.linspace(0, 255, 10).astype(np.uint8), (6, 1))
    Image.fromarray(np.concatenate([random_rgb(6, 10, seed=1), alpha[:, :, None]], axis=2)).save(path)
    return path


@pytest.fixture
def truncated_png(tmp_path: Path) -> Path:
    """A PNG whose header is intact but whose pixel data stops halfway."""
    path = tmp_path / "truncated.png"
    Image.fromarray(random_rgb(64, 64)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# A Chromium binary for the browser tests: Debian's package, or the one IMG2IMG_CHROMIUM names.
CHROMIUM = os.environ.get("IMG2IMG_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Playwright (the test extra); skips without either."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="no playwright: pip install playwright (the test extra)")
    if CHROMIUM is None:
        pytest.skip("no Chromium: apt-get install chromium, or set IMG2IMG_CHROMIUM")
    with sync_api.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()
