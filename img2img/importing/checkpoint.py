"""PyTorch checkpoints (.pth, .safetensors) of ESRGAN's RRDBNet (BasicSR's or the original
ESRGAN's key layout) and Real-ESRGAN's SRVGGNetCompact, rebuilt as project nets.

A checkpoint is opened with `torch.load(weights_only=True)`, which refuses any pickle that needs
more than tensors and plain containers; the key layout tells the family, the tensor shapes its
sizes.
"""

from __future__ import annotations

import math
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from img2img.errors import ModelError, first_line
from img2img.importing.nets import (
    DENSE_CONVS,
    SUPPORTED,
    build_sized_net,
    check_channels,
    describe_rrdb,
    describe_srvgg,
    rrdb_hparams,
)
from img2img.nets.rrdb import RRDBNet
from img2img.nets.srvgg import SCALES as SRVGG_SCALES
from img2img.nets.srvgg import SRVGGNet

# Checkpoint wrappers holding the state dict, in the order they are preferred: BasicSR keeps the
# EMA generator, the one its authors publish, under "params_ema".
STATE_DICT_KEYS = ("params_ema", "params", "state_dict")
# torch.save stores tensors uncompressed; a zip checkpoint whose entries inflate to more than this
# many times its size is refused before torch.load inflates them.
MAX_ZIP_EXPANSION = 2


def read_checkpoint(path: Path, kind: str) -> dict[str, Tensor]:
    """The state dict of a .pth ("pytorch") or .safetensors ("safetensors") file, unwrapped from
    BasicSR's "params_ema"/"params" (or "state_dict"), without a DataParallel "module." prefix.

    Raises:
        ModelError: the file cannot be read, needs code to unpickle, would inflate far beyond its
            size, or holds no tensors by name.
    """
    if kind == "safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except Exception as error:  # safetensors raises its own SafetensorError, and OSError
            raise ModelError(f"{path} cannot be read as a .safetensors file ({first_line(error)})") from None
    _check_zip_expansion(path)
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols its safe loader may not read; whether it read
            # this file is told by the load itself, in one line below.
            warnings.simplefilter("ignore", UserWarning)
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        needed = re.search(r"GLOBAL (\S+)", str(error))
        what = f" ({needed.group(1)})" if needed else ""
        raise ModelError(
            f"refused {path}: unpickling it needs code{what}, and img2img reads weights only, never code "
            "from a checkpoint; save its state_dict() (or .safetensors) with the code that made it"
        ) from None
    except Exception as error:  # a corrupt zip, a truncated pickle, a file of another kind
        raise ModelError(f"{path} cannot be read as a PyTorch checkpoint ({first_line(error)})") from None
    for key in STATE_DICT_KEYS:
        if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, Mapping) or not checkpoint:
        raise ModelError(f"{path} holds no state dict (weights by name); {SUPPORTED}")
    for key, value in checkpoint.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise ModelError(
                f"{path} is not a state dict of tensors ({key!r} holds a {type(value).__name__}); {SUPPORTED}"
            )
    if all(key.startswith("module.") for key in checkpoint):
        return {key.removeprefix("module."): value for key, value in checkpoint.items()}
    return dict(checkpoint)


def _check_zip_expansion(path: Path) -> None:
    """Refuse a zip checkpoint (torch.save's format) whose entries declare more bytes than
    MAX_ZIP_EXPANSION times the file's size: torch.load would inflate compressed entries."""
    if not zipfile.is_zipfile(path):
        return  # a legacy torch.save pickle: its storages are read from the file, byte for byte
    try:
        with zipfile.ZipFile(path) as archive:
            inflated = sum(entry.file_size for entry in archive.infolist())
    except (zipfile.BadZipFile, OSError) as error:
        raise ModelError(f"{path} cannot be read as a PyTorch checkpoint ({first_line(error)})") from None
    size = path.stat().st_size
    if inflated > MAX_ZIP_EXPANSION * size:
        raise ModelError(
            f"refused {path}: its zip entries inflate to {inflated:,} bytes from {size:,}; torch.save stores "
            "tensors uncompressed, so save it again with torch.save"
        )


def net_from_state_dict(state: Mapping[str, Tensor], source: str) -> tuple[nn.Module, str, str]:
    """The project net holding a community state dict, the key layout's name and a description of
    the net; the key layout tells the family, the tensor shapes its sizes.

    Raises:
        ModelError: an unknown layout, or tensors that do not fit the layout's net.
    """
    keys = set(state)
    if "conv_first.weight" in keys and any(key.startswith("body.") for key in keys):
        return _rrdb_from_state(_rename_basicsr(state, source), source, layout="BasicSR")
    if "model.0.weight" in keys and any(key.startswith("model.1.sub.") for key in keys):
        return _rrdb_from_state(_rename_esrgan(state, source), source, layout="ESRGAN")
    if all(_SRVGG_KEY.fullmatch(key) for key in keys):
        return _srvgg_from_state(state, source)
    examples = ", ".join(repr(key) for key in sorted(keys)[:3])
    raise ModelError(f"{source}: unrecognised weights (keys like {examples}); {SUPPORTED}")


_BASICSR_DENSE = re.compile(r"body\.(\d+)\.rdb([1-3])\.conv([1-5])\.(weight|bias)")
_BASICSR_UPSAMPLE = re.compile(r"conv_up([1-9])\.(weight|bias)")
_BASICSR_RENAMES = {
    "conv_first": "conv_first", "conv_body": "conv_trunk", "conv_hr": "conv_hr", "conv_last": "conv_last",
}
_ESRGAN_DENSE = re.compile(r"model\.1\.sub\.(\d+)\.RDB([1-3])\.conv([1-5])\.0\.(weight|bias)")
_ESRGAN_TRUNK = re.compile(r"model\.1\.sub\.(\d+)\.(weight|bias)")
_ESRGAN_TOP = re.compile(r"model\.(\d+)\.(weight|bias)")
_SRVGG_KEY = re.compile(r"body\.(\d+)\.(weight|bias)")


def _dense_key(block: str, dense: str, conv: str, kind: str) -> str:
    """The RRDBNet key of convolution `conv` (1-5) of dense block `dense` (1-3) in RRDB `block`."""
    layer = "fuse" if conv == str(DENSE_CONVS) else f"convs.{int(conv) - 1}"
    return f"trunk.{int(block)}.blocks.{int(dense) - 1}.{layer}.{kind}"


def _rename_basicsr(state: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
    """BasicSR's RRDBNet keys -> the project's RRDBNet keys."""
    renamed = {}
    for key, tensor in state.items():
        module, _, kind = key.rpartition(".")
        if match := _BASICSR_DENSE.fullmatch(key):
            renamed[_dense_key(*match.groups())] = tensor
        elif match := _BASICSR_UPSAMPLE.fullmatch(key):
            renamed[f"upsample_convs.{int(match.group(1)) - 1}.{match.group(2)}"] = tensor
        elif module in _BASICSR_RENAMES and kind in ("weight", "bias"):
            renamed[f"{_BASICSR_RENAMES[module]}.{kind}"] = tensor
        else:
            raise ModelError(f"{source}: unexpected key {key!r} for a BasicSR RRDBNet checkpoint; {SUPPORTED}")
    return renamed


def _rename_esrgan(state: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
    """The original ESRGAN's keys -> the project's RRDBNet keys.

    Its net is one flattened Sequential: model.0 the first conv, model.1 the trunk (its RRDBs,
    then the trunk conv at the index after the last block), then per x2 step a nearest upsample,
    a conv and a LeakyReLU (the convs at model.3, model.6, ...), then the HR conv, a LeakyReLU and
    the last conv (2 and 4 after the last upsampling conv).
    """
    renamed, trunk, tail = {}, {}, {}
    for key, tensor in state.items():
        if match := _ESRGAN_DENSE.fullmatch(key):
            renamed[_dense_key(*match.groups())] = tensor
        elif match := _ESRGAN_TRUNK.fullmatch(key):
            trunk.setdefault(int(match.group(1)), {})[match.group(2)] = tensor
        elif (match := _ESRGAN_TOP.fullmatch(key)) and match.group(1) != "1":
            tail.setdefault(int(match.group(1)), {})[match.group(2)] = tensor
        else:
            raise ModelError(f"{source}: unexpected key {key!r} for an ESRGAN checkpoint; {SUPPORTED}")
    blocks = len({key.split(".")[1] for key in renamed})
    if list(trunk) != [blocks]:
        raise ModelError(
            f"{source}: an ESRGAN checkpoint has one trunk conv, model.1.sub.{blocks} after its {blocks} RRDBs; "
            f"this one has {', '.join(f'model.1.sub.{index}' for index in sorted(trunk)) or 'none'}"
        )
    upsamples = len(tail) - 3
    positions = [0, *(3 * step for step in range(1, upsamples + 1)), 3 * upsamples + 2, 3 * upsamples + 4]
    if sorted(tail) != positions:
        raise ModelError(
            f"{source}: convs at {', '.join(f'model.{index}' for index in sorted(tail))}; the original ESRGAN "
            "with nearest upsampling has them at model.0, model.3, model.6, ... and the HR and last conv 2 and 4 "
            f"after the last upsampling one; {SUPPORTED}"
        )
    names = {0: "conv_first", positions[-2]: "conv_hr", positions[-1]: "conv_last"}
    names |= {index: f"upsample_convs.{step}" for step, index in enumerate(positions[1:-2])}
    for index, tensors in tail.items():
        renamed |= {f"{names[index]}.{kind}": tensor for kind, tensor in tensors.items()}
    renamed |= {f"conv_trunk.{kind}": tensor for kind, tensor in trunk[blocks].items()}
    return renamed


def _rrdb_from_state(state: dict[str, Tensor], source: str, *, layout: str) -> tuple[RRDBNet, str, str]:
    """An RRDBNet sized by a state dict in the project's keys, the layout and a description."""
    try:
        names = ("conv_first", "trunk.0.blocks.0.convs.0", "conv_last")
        first, dense, last = (state[f"{name}.weight"] for name in names)
    except KeyError as missing:
        raise ModelError(f"{source}: a {layout} RRDBNet checkpoint without {missing}; {SUPPORTED}") from None
    if not first.ndim == dense.ndim == last.ndim == 4:
        raise ModelError(
            f"{source}: convolution weights of {first.ndim}, {dense.ndim} and {last.ndim} dimensions, not 4"
        )
    blocks = len({key.split(".")[1] for key in state if key.startswith("trunk.")})
    upsamples = len({key.split(".")[1] for key in state if key.startswith("upsample_convs.")})
    hparams = rrdb_hparams(
        features=first.shape[0], folded_channels=first.shape[1], channels=last.shape[0],
        blocks=blocks, growth=dense.shape[0], upsamples=upsamples, source=source,
    )
    return build_sized_net(RRDBNet, hparams, state, source), layout, describe_rrdb(hparams, layout)


def _srvgg_from_state(state: Mapping[str, Tensor], source: str) -> tuple[SRVGGNet, str, str]:
    """An SRVGGNet sized by Real-ESRGAN's SRVGGNetCompact weights (body.0 the first conv, body.1
    its PReLU, ... and the last conv, to channels * scale * scale, at the last index), the layout
    and a description."""
    weights: dict[int, Tensor | None] = {}
    for key, tensor in state.items():
        index, kind = _SRVGG_KEY.fullmatch(key).groups()
        weights.setdefault(int(index), None)
        if kind == "weight":
            weights[int(index)] = tensor
    dims = [None if tensor is None else tensor.ndim for tensor in weights.values()]
    first, last = weights.get(0), weights[max(weights)]
    if dims.count(4) < 2 or first is None or last is None or first.ndim != 4 or last.ndim != 4:
        raise ModelError(f"{source}: 'body.N' weights without a first and last convolution; {SUPPORTED}")
    if dims.count(1) != dims.count(4) - 1:
        raise ModelError(
            f"{source}: an SRVGGNetCompact whose activations hold no weights (ReLU or LeakyReLU, which the "
            f"weights cannot tell apart); img2img imports the PReLU variants, as Real-ESRGAN publishes them"
        )
    channels, features = first.shape[1], first.shape[0]
    check_channels(channels, source)
    scale = math.isqrt(last.shape[0] // channels)
    if channels * scale * scale != last.shape[0] or scale not in SRVGG_SCALES:
        raise ModelError(
            f"{source}: the last conv gives {last.shape[0]} channels, which is not {channels} channels times "
            f"scale squared for a scale of {', '.join(map(str, SRVGG_SCALES))}"
        )
    hparams = dict(
        in_channels=channels, out_channels=channels, num_features=features, num_conv=dims.count(4) - 2,
        scale=scale, act="prelu",
    )
    return build_sized_net(SRVGGNet, hparams, state, source), "Real-ESRGAN", describe_srvgg(hparams)
