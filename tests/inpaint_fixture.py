"""A tiny handmade inpainting ONNX model that follows the export contract, and images to fill.

The model fills the hole with the mean colour of the pixels it keeps:
    output = input * (1 - mask) + mask * mean(input over mask = 0)
so a hole in a flat image comes back as that flat colour, and pixels outside the mask are the
input's. Its input goes through SpaceToDepth/DepthToSpace(8), an identity that onnxruntime runs
only on heights and widths that are multiples of 8, so the runtime's padding is exercised as with
a real net that downsamples three times.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

BLOCK = 8


def build_inpainter(
    path: Path, *, name: str = "inpaint-test", resolution: int | None = 256, metadata: dict[str, str] | None = None
) -> Path:
    """Write the mean-colour inpainter to `path` with the inpainting metadata_props.

    `resolution` None leaves "resolution" out of the metadata; `metadata` replaces entries.
    """
    nodes = [
        helper.make_node("SpaceToDepth", ["input"], ["packed"], blocksize=BLOCK),
        helper.make_node("DepthToSpace", ["packed"], ["aligned"], blocksize=BLOCK, mode="DCR"),
        helper.make_node("Sub", ["one", "mask"], ["keep"]),
        helper.make_node("Mul", ["aligned", "keep"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "spatial"], ["kept_sum"], keepdims=1),
        helper.make_node("ReduceSum", ["keep", "spatial"], ["kept_count"], keepdims=1),
        # An image that is all hole has nothing to average: its fill is black, not NaN.
        helper.make_node("Max", ["kept_count", "tiny"], ["divisor"]),
        helper.make_node("Div", ["kept_sum", "divisor"], ["mean"]),
        helper.make_node("Mul", ["mask", "mean"], ["fill"]),
        helper.make_node("Add", ["kept", "fill"], ["filled"]),
        helper.make_node("Clip", ["filled", "low", "high"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_inpainter",
        [
            helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", 1, "height", "width"]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        initializer=[
            helper.make_tensor("spatial", TensorProto.INT64, [2], [2, 3]),
            *(
                helper.make_tensor(constant, TensorProto.FLOAT, [], [value])
                for constant, value in {"one": 1.0, "tiny": 1e-6, "low": 0.0, "high": 1.0}.items()
            ),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    props = {
        "task": "inpaint",
        "name": name,
        "scale": "1",
        "inputs": "image,mask",
        "channels": "3",
        "multiple_of": str(BLOCK),
        "min_size": str(BLOCK),
        "range": "0,1",
        "data": "none (test fixture)",
        "license": "Apache-2.0",
        "version": "0.1.0",
        "config": json.dumps({"task": "inpaint"}),
    }
    if resolution is not None:
        props["resolution"] = str(resolution)
    props.update(metadata or {})
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def ship_inpainter(weights: Path, name: str = "inpaint") -> Path:
    """Add the inpainter to the manifest of a test weights folder as the shipped model `name`."""
    path = build_inpainter(weights / f"{name}.onnx", name=name)
    manifest_path = weights / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["models"].append(
        {
            "name": name,
            "task": "inpaint",
            "scale": 1,
            "file": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
    )
    manifest_path.write_text(json.dumps(manifest))
    return path


def blob_image(height: int, width: int, *, background: int = 90, top: int = 0, left: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 noise-free scene: a flat `background` with a 6x6 red blob at (top, left)."""
    image = np.full((height, width, 3), background, np.uint8)
    image[top : top + 6, left : left + 6] = (230, 20, 20)
    return image


def blob_mask(height: int, width: int, *, top: int = 0, left: int = 0, grow: int = 1) -> np.ndarray:
    """(H, W) uint8 mask, 255 over the blob of `blob_image` and `grow` pixels around it, else 0."""
    mask = np.zeros((height, width), np.uint8)
    mask[max(top - grow, 0) : top + 6 + grow, max(left - grow, 0) : left + 6 + grow] = 255
    return mask
