"""ncnn model files: the text .param (layers, blobs and parameters) and the .bin of weights.

Both are parsed here, never run: every size a .bin is read with is checked against the bytes it
holds, and a .param is accepted only with the layer types and parameters the two imported
families use.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from img2img.errors import ModelError
from img2img.importing.nets import SUPPORTED

NCNN_MAGIC = "7767517"
# ncnn's binary .param starts with the same magic number as a little-endian int32.
NCNN_BINARY_PARAM_MAGIC = (7767517).to_bytes(4, "little")
# A text .param is one short line a layer (realesrgan-x4plus's 999 layers take 116 KB).
MAX_PARAM_BYTES = 16 * 2**20
# The 4-byte tags ncnn reads before a convolution's weights in the .bin, saying how they are
# stored (ncnn's ModelBinFromDataReader::load): float32 after either of two tags, float16 padded
# to a multiple of 4 bytes, int8, and any other non-zero tag a 256-entry quantisation table.
NCNN_FP32_TAGS = (0x00000000, 0x0002C056)
NCNN_FP16_TAG = 0x01306B47
NCNN_INT8_TAG = 0x000D4B38
# The ncnn layer types the two families are made of, and the parameters of each that the graphs
# of `ncnn_graph` model, by id, with the kind of value ncnn reads there: a whole number, a float or an
# array of floats. A .param must write each so (ncnn reinterprets the bits of a value of the
# other kind), and every other id must be 0, ncnn's default for the options the families leave
# unset (a dynamic weight, int8 scales, a pad value, a fixed output size, ...).
NCNN_PARAMS: dict[str, dict[int, str]] = {
    "Input": {0: "int", 1: "int", 2: "int", 11: "int"},  # a shape hint, which ncnn ignores
    "Split": {},
    "Convolution": {
        # outputs, kernel, dilation, stride, pad left, bias, weight count, activation type, its
        # parameters, and the _h / right / top / bottom ids defaulting to those
        **{key: "int" for key in (0, 1, 2, 3, 4, 5, 6, 9, 11, 12, 13, 14, 15, 16)},
        10: "floats",
    },
    "PReLU": {0: "int"},  # slopes
    "ReLU": {0: "float"},  # negative slope
    "Concat": {0: "int"},  # axis
    "Eltwise": {0: "int", 1: "floats"},  # operation, coefficients
    "BinaryOp": {0: "int", 1: "int", 2: "float"},  # operation, with a scalar, the scalar
    "Interp": {0: "int", 1: "float", 2: "float"},  # resize type, height and width factors
    "PixelShuffle": {0: "int", 1: "int"},  # factor, channel order
    "Reorg": {0: "int", 1: "int"},  # factor, channel order
}
# Layer types that read exactly one blob.
NCNN_ONE_INPUT = frozenset({"Split", "Convolution", "PReLU", "ReLU", "Interp", "PixelShuffle", "Reorg"})


@dataclass(frozen=True)
class NcnnLayer:
    """One line of an ncnn .param: layer type, name, input and output blob names, its parameters
    by id (int, float, or a tuple for an array) and its line number."""

    kind: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, Any] = field(default_factory=dict)
    line: int = 0

    def get(self, key: int, default: Any) -> Any:
        return self.params.get(key, default)


def parse_ncnn_param(text: str, source: str) -> list[NcnnLayer]:
    """The layers of an ncnn text .param, in file order (which ncnn keeps topological).

    The format: a magic line 7767517, a line "layer_count blob_count", then one layer a line:
    "Type name inputs outputs in_blob... out_blob... id=value...", where an id of -23300 - k holds
    the array k as "count,v1,v2,...", and a value with '.', 'e' or 'E' is a float.

    Raises:
        ModelError: the text is not such a file.
    """
    lines = [(number, line.split()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines or lines[0][1] != [NCNN_MAGIC]:
        raise ModelError(f"{source} does not start with the ncnn magic number {NCNN_MAGIC}; pass an ncnn text .param")
    layers = []
    for number, tokens in lines[2:]:
        try:
            kind, name, input_count, output_count = tokens[0], tokens[1], int(tokens[2]), int(tokens[3])
            if input_count < 0 or output_count < 0:
                raise ValueError("a negative blob count")
            blobs = tokens[4 : 4 + input_count + output_count]
            if len(blobs) != input_count + output_count:
                raise ValueError("fewer blob names than counted")
            params = dict(_ncnn_param(token) for token in tokens[4 + input_count + output_count :])
        except (IndexError, ValueError) as error:
            raise ModelError(f"{source}, line {number}: not an ncnn layer line ({error})") from None
        layers.append(NcnnLayer(kind, name, tuple(blobs[:input_count]), tuple(blobs[input_count:]), params, number))
    try:
        layer_count = int(lines[1][1][0]) if len(lines) > 1 else -1
    except ValueError:
        layer_count = -1
    if layer_count != len(layers):
        raise ModelError(
            f"{source}: its header counts {layer_count} layers, but it lists {len(layers)}; the file is damaged"
        )
    return layers


def _ncnn_param(token: str) -> tuple[int, Any]:
    """'0=64' -> (0, 64); '1=2.5e-01' -> (1, 0.25); '-23310=2,1,0.5' -> (10, (1, 0.5))."""
    key, separator, value = token.partition("=")
    if not separator:
        raise ValueError(f"parameter {token!r} is not id=value")
    identifier = int(key)

    def number(text: str) -> int | float:
        if not any(mark in text for mark in ".eE"):
            return int(text)
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"parameter {token!r} is not a finite number")
        return value

    if identifier <= -23300:
        count, *values = value.split(",")
        if int(count) != len(values):
            raise ValueError(f"array {token!r} counts {count} values but holds {len(values)}")
        return -identifier - 23300, tuple(number(item) for item in values)
    return identifier, number(value)


def check_ncnn_layers(layers: list[NcnnLayer], source: str) -> None:
    """Every layer is of a type the two families use, with its parameters of the kinds ncnn reads
    (NCNN_PARAMS) and the right number of inputs.

    Raises:
        ModelError: naming the first layer that is not.
    """
    foreign = sorted({layer.kind for layer in layers} - set(NCNN_PARAMS))
    if foreign:
        raise ModelError(
            f"{source}: layer types {', '.join(foreign)} are not part of an ESRGAN or SRVGGNetCompact graph; "
            f"{SUPPORTED}"
        )
    kinds = {"int": "a whole number", "float": "a float", "floats": "an array of floats"}
    for layer in layers:
        where = f"{source}, line {layer.line}: {layer.kind} {layer.name}"
        modelled = NCNN_PARAMS[layer.kind]
        for key, value in layer.params.items():
            wanted = modelled.get(key)
            if wanted is None and value != 0:
                raise ModelError(
                    f"{where} sets parameter {key}, which the families img2img imports leave unset "
                    f"(it reads {', '.join(map(str, modelled)) or 'none'} of a {layer.kind})"
                )
            if wanted is not None and not _is_kind(value, wanted):
                raise ModelError(f"{where}: parameter {key} is {value!r}, where ncnn reads {kinds[wanted]}")
        if layer.kind in NCNN_ONE_INPUT and len(layer.inputs) != 1:
            raise ModelError(f"{where} reads {len(layer.inputs)} blobs, not one")


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "floats":
        return isinstance(value, tuple) and all(isinstance(item, float) for item in value)
    return type(value) is {"int": int, "float": float}[kind]


class _NcnnWeightReader:
    """Reads an ncnn .bin front to back as ncnn loads it, layer by layer: a convolution's weights
    after a 4-byte storage tag (NCNN_FP32_TAGS, NCNN_FP16_TAG, ...), its bias and PReLU slopes as
    raw little-endian float32. Every size is checked against the bytes left in the file before
    anything is read or allocated."""

    def __init__(self, file: BinaryIO, source: str) -> None:
        self.file, self.source = file, source
        self.size = os.fstat(file.fileno()).st_size
        self.offset = 0

    def _take(self, size: int, what: str) -> bytes:
        end = self.offset + size
        chunk = self.file.read(size) if end <= self.size else b""
        if len(chunk) != size:
            raise ModelError(
                f"{self.source} ends at byte {self.size:,}, but {what} needs bytes {self.offset:,} to {end:,}; "
                "the .bin is cut short or belongs to another .param"
            )
        self.offset = end
        return chunk

    def raw(self, count: int, what: str) -> np.ndarray:
        """`count` float32 values with no tag (biases, PReLU slopes): (count,) float32."""
        return np.frombuffer(self._take(4 * count, what), dtype="<f4").astype(np.float32)

    def tagged(self, count: int, what: str) -> np.ndarray:
        """`count` values after a storage tag (convolution weights): (count,) float32.

        Raises:
            ModelError: the values are stored as int8 or quantised, or the file is too short.
        """
        tag = int.from_bytes(self._take(4, what), "little")
        if tag in NCNN_FP32_TAGS:
            return self.raw(count, what)
        if tag == NCNN_FP16_TAG:
            padded = self._take(-(-2 * count // 4) * 4, what)  # padded to a multiple of 4 bytes
            return np.frombuffer(padded[: 2 * count], dtype="<f2").astype(np.float32)
        stored = "int8" if tag == NCNN_INT8_TAG else f"quantised (tag {tag:#010x})"
        raise ModelError(
            f"{self.source}: {what} is stored as {stored} weights; img2img imports float32 and float16 ncnn "
            "weights, convert the model without quantisation"
        )

    def check_consumed(self) -> None:
        if self.offset != self.size:
            raise ModelError(
                f"{self.source} has {self.size - self.offset:,} bytes after the last layer's weights; "
                "the .bin belongs to another .param"
            )


def read_ncnn_weights(layers: list[NcnnLayer], path: Path) -> dict[int, dict[str, np.ndarray]]:
    """Every weighted layer's arrays by its index in `layers`: a Convolution's "weight" (out, in,
    kernel_h, kernel_w) and, with a bias term, "bias" (out,); a PReLU's "weight" (slopes,); all
    float32.

    Raises:
        ModelError: a layer declares no or a ragged number of weights, or the .bin does not hold
            exactly the weights the layers declare.
    """
    found = {}
    with path.open("rb") as file:
        reader = _NcnnWeightReader(file, str(path))
        for index, layer in enumerate(layers):
            what = f"{layer.kind} {layer.name}"
            if layer.kind == "Convolution":
                out, size, kernel_w = layer.get(0, 0), layer.get(6, 0), layer.get(1, 0)
                kernel_h = layer.get(11, kernel_w)
                if min(out, size, kernel_w, kernel_h) < 1 or size % (out * kernel_h * kernel_w):
                    raise ModelError(
                        f"{path}: {what} holds {size} weights, not a whole number of {out} filters of "
                        f"{kernel_h}x{kernel_w} taps; the .param is damaged"
                    )
                weight = reader.tagged(size, what).reshape(out, -1, kernel_h, kernel_w)
                found[index] = {"weight": weight}
                if layer.get(5, 0):
                    found[index]["bias"] = reader.raw(out, f"the bias of {what}")
            elif layer.kind == "PReLU":
                slopes = layer.get(0, 0)
                if slopes < 1:
                    raise ModelError(f"{path}: {what} has {slopes} slopes; the .param is damaged")
                found[index] = {"weight": reader.raw(slopes, what)}
        reader.check_consumed()
    return found
