"""ncnn graphs of the two families, checked and rebuilt as project nets.

An ncnn graph is accepted only when it computes exactly the architecture its convolutions
describe (`_Structure`), so every weight lands where ncnn uses it; the `ncnn` package, when
installed, then runs the original files to compare with the imported ONNX model.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from img2img.errors import ModelError
from img2img.importing.ncnn_files import (
    MAX_PARAM_BYTES,
    NcnnLayer,
    check_ncnn_layers,
    parse_ncnn_param,
    read_ncnn_weights,
)
from img2img.importing.nets import (
    BORDER,
    DENSE_BLOCKS,
    DENSE_CONVS,
    SUPPORTED,
    ImportedNet,
    NcnnFiles,
    ResizedUpscaler,
    build_sized_net,
    check_channels,
    describe_rrdb,
    describe_srvgg,
    file_records,
    rrdb_hparams,
)
from img2img.nets.rrdb import RESIDUAL_SCALE, RRDBNet
from img2img.nets.srvgg import SCALES as SRVGG_SCALES
from img2img.nets.srvgg import SRVGGNet

# Largest difference between the imported ONNX model and ncnn running the original files, both in
# float32: they sum the same products in another order, which over RRDBNet's 350 convolutions
# stays far below one 8-bit level (1/255 = 3.9e-3).
NCNN_PARITY_TOLERANCE = 1e-3
# Interp's resize_type values and the torch interpolation modes that compute the same thing.
NCNN_RESIZE_MODES = {1: "nearest", 2: "bilinear", 3: "bicubic"}
# A 3x3 convolution, stride 1, padding 1 on every side, dilation 1, with bias, as
# (kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right, dilation_h,
# dilation_w, bias): the only kind both families use.
CONV_3X3 = (3, 3, 1, 1, 1, 1, 1, 1, 1, 1, True)
# ESRGAN's LeakyReLU slope.
LEAKY_SLOPE = 0.2


class _Structure:
    """Layer graphs as hash-consed nodes: each distinct (operation, attributes, inputs) gets one
    id, so two graphs compute the same function of their input exactly when their outputs get the
    same id, however their files name, order or split their blobs."""

    def __init__(self) -> None:
        self._ids: dict[tuple[Any, ...], int] = {}

    def node(self, operation: str, attributes: tuple[Any, ...], inputs: tuple[Any, ...]) -> int:
        return self._ids.setdefault((operation, attributes, inputs), len(self._ids))

    def weighted_sum(self, terms: Iterable[tuple[float, int]]) -> int:
        """coefficient_1 * input_1 + ...; order-free, as addition is."""
        return self.node("sum", (), tuple(sorted(((_rounded(c), node) for c, node in terms), key=repr)))

    def conv(self, x: int, out: int, into: int, geometry: tuple[Any, ...] = CONV_3X3) -> int:
        return self.node("conv", (out, into, *geometry), (x,))

    def leaky_relu(self, x: int, slope: float = LEAKY_SLOPE) -> int:
        return self.node("leaky_relu", (_rounded(slope),), (x,))

    def resize(self, x: int, mode: str, height: float, width: float) -> int:
        """A resize by height and width factors."""
        return self.node("resize", (mode, _rounded(height), _rounded(width)), (x,))


def _rounded(value: float) -> float:
    """A number as graphs compare it: 2.000000e-01 from a .param equals 0.2 written here."""
    return round(float(value), 6)


@dataclass
class _Expected:
    """The graph an architecture computes: its output node, and per weighted node (a conv or a
    PReLU) the key prefix of the project net's parameter it fills."""

    output: int
    parameters: dict[int, str]


def _expected_rrdb(s: _Structure, hparams: Mapping[str, Any]) -> _Expected:
    """RRDBNet's forward pass as a graph of `s` nodes."""
    features, growth = hparams["num_features"], hparams["growth_channels"]
    channels, unshuffle = hparams["in_channels"], hparams.get("pixel_unshuffle", 1)
    parameters = {}

    def conv(x: int, out: int, into: int, prefix: str) -> int:
        node = s.conv(x, out, into)
        parameters[node] = prefix
        return node

    x = s.node("input", (), ())
    if unshuffle > 1:
        x = s.node("pixel_unshuffle", (unshuffle,), (x,))
    first = conv(x, features, channels * unshuffle**2, "conv_first")
    trunk = first
    for block in range(hparams["num_blocks"]):
        dense_input = trunk
        for dense in range(DENSE_BLOCKS):
            outputs = [dense_input]
            prefix = f"trunk.{block}.blocks.{dense}"
            for index in range(DENSE_CONVS - 1):
                joined = dense_input if index == 0 else s.node("concat", (), tuple(outputs))
                into = features + index * growth
                outputs.append(s.leaky_relu(conv(joined, growth, into, f"{prefix}.convs.{index}")))
            fused = conv(s.node("concat", (), tuple(outputs)), features, features + 4 * growth, f"{prefix}.fuse")
            dense_input = s.weighted_sum([(RESIDUAL_SCALE, fused), (1.0, dense_input)])
        trunk = s.weighted_sum([(RESIDUAL_SCALE, dense_input), (1.0, trunk)])
    x = s.weighted_sum([(1.0, first), (1.0, conv(trunk, features, features, "conv_trunk"))])
    for step in range(round(math.log2(hparams["scale"] * unshuffle))):
        x = s.leaky_relu(conv(s.resize(x, "nearest", 2, 2), features, features, f"upsample_convs.{step}"))
    x = s.leaky_relu(conv(x, features, features, "conv_hr"))
    return _Expected(conv(x, channels, features, "conv_last"), parameters)


def _expected_srvgg(s: _Structure, hparams: Mapping[str, Any], resize: tuple[str, float] | None) -> _Expected:
    """SRVGGNet's forward pass (with an output resize, for `resize` (mode, factor)) as a graph."""
    features, channels, scale = hparams["num_features"], hparams["in_channels"], hparams["scale"]
    parameters = {}
    x = s.node("input", (), ())
    body, into = x, channels
    for index in range(hparams["num_conv"] + 1):
        body = s.conv(body, features, into)
        parameters[body] = f"body.{2 * index}"
        body = s.node("prelu", (features,), (body,))
        parameters[body] = f"body.{2 * index + 1}"
        into = features
    body = s.conv(body, channels * scale * scale, features)
    parameters[body] = f"body.{2 * hparams['num_conv'] + 2}"
    body = s.node("pixel_shuffle", (scale,), (body,))
    output = s.weighted_sum([(1.0, body), (1.0, s.resize(x, "nearest", scale, scale) if scale > 1 else x)])
    if resize is not None:
        output = s.resize(output, resize[0], resize[1], resize[1])
    return _Expected(output, parameters)


def _ncnn_structure(
    s: _Structure, layers: list[NcnnLayer], weights: Mapping[int, Mapping[str, np.ndarray]], source: str
) -> tuple[int, dict[int, int], str, str]:
    """An ncnn graph (checked by `check_ncnn_layers`) as `s` nodes: the output node, the index
    in `layers` of the weighted layer behind each conv and PReLU node, and the names of the input
    and output blobs.

    Raises:
        ModelError: a blob is read before it is written or written twice, two weighted layers
            compute the same thing, or there is not one input and one output.
    """
    blobs: dict[str, int] = {}
    weighted: dict[int, int] = {}
    input_blob = ""

    def claim(node: int, index: int) -> int:
        """Records that weighted layer `index` computes `node`; two layers may not."""
        if node in weighted:
            raise ModelError(
                f"{source}: layers {layers[weighted[node]].name} and {layers[index].name} compute the same thing"
            )
        weighted[node] = index
        return node

    for index, layer in enumerate(layers):
        try:
            inputs = tuple(blobs[name] for name in layer.inputs)
        except KeyError as missing:
            raise ModelError(f"{source}: layer {layer.name} reads blob {missing} before any layer writes it") from None
        if layer.kind == "Input":
            if input_blob or inputs:
                raise ModelError(f"{source}: Input layer {layer.name} is not the one input of an upscaler")
            input_blob = layer.outputs[0] if layer.outputs else ""
            outputs = [s.node("input", (), ())]
        elif layer.kind == "Split":
            outputs = [inputs[0]] * len(layer.outputs)
        elif layer.kind == "Convolution":
            into = weights[index]["weight"].shape[1]
            node = claim(s.conv(inputs[0], layer.get(0, 0), into, _ncnn_conv_geometry(layer)), index)
            outputs = [_ncnn_fused_activation(s, node, layer)]
        elif layer.kind == "PReLU":
            outputs = [claim(s.node("prelu", (layer.get(0, 0),), inputs), index)]
        elif layer.kind == "ReLU":
            outputs = [s.leaky_relu(inputs[0], layer.get(0, 0.0))]
        elif layer.kind == "Concat":
            # Axis 0 of ncnn's (C, H, W) blobs: the channels, as the expected graphs concatenate.
            outputs = [s.node("concat", () if layer.get(0, 0) == 0 else (layer.get(0, 0),), inputs)]
        elif layer.kind == "Eltwise" and layer.get(0, 0) == 1:  # op_type 1: sum
            coefficients = layer.get(1, ()) or (1.0,) * len(inputs)
            if len(coefficients) != len(inputs):
                raise ModelError(
                    f"{source}: Eltwise {layer.name} has {len(coefficients)} coefficients for {len(inputs)} inputs"
                )
            outputs = [s.weighted_sum(zip(coefficients, inputs, strict=True))]
        elif layer.kind == "BinaryOp" and layer.get(0, 0) == 0 and not layer.get(1, 0) and len(inputs) == 2:
            outputs = [s.weighted_sum([(1.0, inputs[0]), (1.0, inputs[1])])]  # op_type 0: add
        elif layer.kind == "Interp":
            mode = NCNN_RESIZE_MODES.get(layer.get(0, 0), f"resize_type {layer.get(0, 0)}")
            outputs = [s.resize(inputs[0], mode, layer.get(1, 1.0), layer.get(2, 1.0))]
        elif layer.kind == "PixelShuffle" and layer.get(1, 0) == 0:  # mode 0: PyTorch's channel order
            outputs = [s.node("pixel_shuffle", (layer.get(0, 1),), inputs)]
        elif layer.kind == "Reorg" and layer.get(1, 0) == 0:  # mode 0: PyTorch's pixel_unshuffle order
            outputs = [s.node("pixel_unshuffle", (layer.get(0, 1),), inputs)]
        else:
            # A variant the families do not use (a product, a subtraction, DCR order, ...): a
            # node of its own, which no expected graph contains.
            outputs = [s.node(layer.kind, tuple(sorted(layer.params.items())), inputs)] * len(layer.outputs)
        if len(outputs) != len(layer.outputs):
            raise ModelError(
                f"{source}: layer {layer.name} ({layer.kind}) has {len(layer.outputs)} outputs, not {len(outputs)}"
            )
        for name, output in zip(layer.outputs, outputs, strict=True):
            if name in blobs:
                raise ModelError(f"{source}: blob {name} is written twice (again by layer {layer.name})")
            blobs[name] = output
    read = {name for layer in layers for name in layer.inputs}
    ends = [name for name in blobs if name not in read]
    if not input_blob or len(ends) != 1:
        raise ModelError(
            f"{source}: an upscaler graph has one Input layer and one output blob; this one has "
            f"{'an' if input_blob else 'no'} Input and {len(ends)} unread blobs ({', '.join(ends[:4])})"
        )
    return blobs[ends[0]], weighted, input_blob, ends[0]


def _ncnn_conv_geometry(layer: NcnnLayer) -> tuple[Any, ...]:
    """A Convolution's geometry in CONV_3X3's order, from ncnn's ids and defaults (an _h or
    bottom/right id defaults to its _w or top/left one)."""
    kernel_w, dilation_w, stride_w, pad_left = layer.get(1, 0), layer.get(2, 1), layer.get(3, 1), layer.get(4, 0)
    pad_top = layer.get(14, pad_left)
    return (
        layer.get(11, kernel_w), kernel_w, layer.get(13, stride_w), stride_w,
        pad_top, layer.get(16, pad_top), pad_left, layer.get(15, pad_left),
        layer.get(12, dilation_w), dilation_w, bool(layer.get(5, 0)),
    )


def _ncnn_fused_activation(s: _Structure, node: int, layer: NcnnLayer) -> int:
    """The node after a Convolution's fused activation (id 9: 0 none, 1 ReLU, 2 LeakyReLU with
    the slope in array 10); other kinds become nodes no expected graph has."""
    kind, parameters = layer.get(9, 0), layer.get(10, ())
    if kind == 0:
        return node
    if kind == 1:
        return s.leaky_relu(node, 0.0)
    if kind == 2 and len(parameters) == 1:
        return s.leaky_relu(node, parameters[0])
    return s.node("activation", (kind, parameters), (node,))


def read_ncnn(param: Path, weights: Path) -> ImportedNet:
    """An ncnn .param/.bin pair of either family, rebuilt as a project net.

    The family is told by the layer types (concatenations: RRDBNet; a PixelShuffle without them:
    SRVGGNetCompact), the sizes by the convolutions, and then the whole graph must be exactly the
    one that architecture computes; the weights are read in the file's layer order and assigned
    by their place in that graph.

    Raises:
        ModelError: the files are not such a pair, or damaged.
    """
    if param.stat().st_size > MAX_PARAM_BYTES:
        raise ModelError(f"{param} is {param.stat().st_size:,} bytes, far more than an upscaler's .param")
    try:
        text = param.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{param} is not a text .param; img2img reads ncnn's text .param with its .bin") from None
    layers = parse_ncnn_param(text, str(param))
    check_ncnn_layers(layers, str(param))
    arrays = read_ncnn_weights(layers, weights)
    convs = [arrays[index]["weight"] for index, layer in enumerate(layers) if layer.kind == "Convolution"]
    kinds = Counter(layer.kind for layer in layers)
    if len(convs) < 2:
        raise ModelError(f"{param}: a graph of {len(convs)} convolutions; {SUPPORTED}")
    s = _Structure()
    if kinds["Concat"]:
        hparams = _ncnn_rrdb_hparams(convs, upsamples=kinds["Interp"], source=str(param))
        net_class, expected, resize = RRDBNet, _expected_rrdb(s, hparams), None
        description = describe_rrdb(hparams, "ncnn")
    elif kinds["PixelShuffle"] == 1:
        hparams, resize = _ncnn_srvgg_hparams(layers, convs, str(param))
        net_class, expected = SRVGGNet, _expected_srvgg(s, hparams, resize)
        description = f"ncnn {describe_srvgg(hparams)}"
    else:
        raise ModelError(
            f"{param}: neither concatenations (ESRGAN) nor one PixelShuffle (SRVGGNetCompact); {SUPPORTED}"
        )
    output, weighted, input_blob, output_blob = _ncnn_structure(s, layers, arrays, str(param))
    if output != expected.output:
        raise ModelError(
            f"{param}: its layers do not form the graph of the {description} its convolutions describe; "
            "img2img imports these nets as Real-ESRGAN's ncnn releases lay them out"
        )
    state = {
        f"{prefix}.{kind}": torch.from_numpy(array)
        for node, prefix in expected.parameters.items()
        for kind, array in arrays[weighted[node]].items()
    }
    net = build_sized_net(net_class, hparams, state, str(param))
    scale = hparams["scale"]
    if resize is not None:
        scale = round(hparams["scale"] * resize[1])
        net = ResizedUpscaler(net, scale=scale, mode=resize[0]).eval()
        description += f", then {resize[0]} to x{scale}"
    return ImportedNet(
        net=net,
        scale=scale,
        description=description,
        provenance={"format": "ncnn", "files": file_records(param, weights)},
        ncnn=NcnnFiles(param, weights, input_blob, output_blob),
    )


def _ncnn_rrdb_hparams(convs: list[np.ndarray], *, upsamples: int, source: str) -> dict[str, Any]:
    """RRDBNet's arguments from the weights of an ncnn graph's convolutions, (out, in, kh, kw)
    each in file order: 1 first conv, 15 per block, the trunk conv, one per nearest x2 step (an
    Interp each), the HR and the last conv."""
    blocks, remainder = divmod(len(convs) - 4 - upsamples, DENSE_BLOCKS * DENSE_CONVS)
    if remainder or blocks < 1:
        raise ModelError(
            f"{source}: {len(convs)} convolutions and {upsamples} resizes do not make an ESRGAN of whole "
            f"RRDB blocks ({DENSE_BLOCKS * DENSE_CONVS} convolutions each)"
        )
    return rrdb_hparams(
        features=convs[0].shape[0], folded_channels=convs[0].shape[1], channels=convs[-1].shape[0],
        blocks=blocks, growth=convs[1].shape[0], upsamples=upsamples, source=source,
    )


def _ncnn_srvgg_hparams(
    layers: list[NcnnLayer], convs: list[np.ndarray], source: str
) -> tuple[dict[str, Any], tuple[str, float] | None]:
    """SRVGGNet's arguments from an ncnn graph and its convolutions' weights (out, in, kh, kw),
    and the (mode, factor) of a resize after the net, if the graph has one besides the nearest
    upsampling of its input."""
    scale = next(layer for layer in layers if layer.kind == "PixelShuffle").get(0, 1)
    channels, features = convs[0].shape[1], convs[0].shape[0]
    check_channels(channels, source)
    if scale not in SRVGG_SCALES:
        raise ModelError(
            f"{source}: a PixelShuffle by {scale}; img2img's SRVGGNet scales x{', x'.join(map(str, SRVGG_SCALES))}"
        )
    if sum(1 for layer in layers if layer.kind == "PReLU") != len(convs) - 1:
        raise ModelError(
            f"{source}: an SRVGGNetCompact whose activations are not PReLU layers; img2img imports the PReLU "
            "variants, as Real-ESRGAN publishes them"
        )
    hparams = dict(
        in_channels=channels, out_channels=channels, num_features=features, num_conv=len(convs) - 2,
        scale=scale, act="prelu",
    )
    interps = [layer for layer in layers if layer.kind == "Interp"]
    # The input's nearest upsampling is the first resize; a second one resizes the sum.
    extra = interps[1:] if scale > 1 else interps
    if not extra:
        return hparams, None
    factor = extra[0].get(1, 1.0)
    final = scale * factor
    mode = NCNN_RESIZE_MODES.get(extra[0].get(0, 0))
    if len(extra) > 1 or mode is None or abs(final - round(final)) > 1e-6 or round(final) < 1:
        raise ModelError(
            f"{source}: after the x{scale} net the graph resizes by {factor} (x{final:g}); img2img imports "
            "one nearest, bilinear or bicubic resize there, to a whole scale"
        )
    return hparams, (mode, factor)


def ncnn_parity_error(files: NcnnFiles, onnx_path: Path, size: tuple[int, int], scale: int) -> float | None:
    """Max abs difference between the ONNX model of an x`scale` net behind a `MirroredBorder`
    and the `ncnn` package running the original files in float32 on the CPU, given the same
    border, on one random (size) RGB image in [0, 1]; both clamped to [0, 1]. None when the ncnn
    package is not installed.

    Raises:
        ModelError: ncnn cannot load or run the files.
    """
    try:
        import ncnn
    except ImportError:
        return None
    from img2img.runtime.onnx_model import import_onnxruntime

    image = np.random.default_rng(0).random((3, *size), dtype=np.float32)
    net = ncnn.Net()
    # float32 everywhere, so the comparison measures the conversion, not ncnn's reduced precisions.
    options = ("use_vulkan_compute", "use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage")
    for option in options:
        setattr(net.opt, option, False)
    if net.load_param(str(files.param)) or net.load_model(str(files.weights)):
        raise ModelError(f"the ncnn package cannot load {files.param} with {files.weights}")
    extractor = net.create_extractor()
    bordered = np.pad(image, ((0, 0), (BORDER, BORDER), (BORDER, BORDER)), mode="reflect")
    extractor.input(files.input_blob, ncnn.Mat(bordered))
    status, result = extractor.extract(files.output_blob)
    if status:
        raise ModelError(f"the ncnn package failed to run {files.param} (status {status})")
    cut = BORDER * scale
    expected = np.clip(np.array(result)[:, cut:-cut, cut:-cut], 0.0, 1.0)
    session = import_onnxruntime().InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (actual,) = session.run(["output"], {"input": image[None]})
    if actual[0].shape != expected.shape:
        raise ModelError(f"the ONNX output's shape {actual[0].shape} differs from ncnn's {expected.shape}")
    return float(np.abs(actual[0] - expected).max())
