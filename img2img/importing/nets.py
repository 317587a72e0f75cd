"""What an import builds: the rebuilt net and its provenance, the wrappers Real-ESRGAN's runners
put around it, and the helpers that size and fill a project net from weights that were read.

Nets here take and give (B, C, H, W) in [0, 1], C = 3 (or 1 for a gray net).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from img2img.contract import IMAGE
from img2img.errors import ModelError
from img2img.nets.rrdb import UNSHUFFLE_FACTORS
from img2img.nets.rrdb import SCALES as RRDB_SCALES

SUPPORTED = (
    "img2img import reads ESRGAN/RRDBNet (BasicSR keys conv_first, body.N.rdb1.conv1, ... or the original "
    "ESRGAN's model.0, model.1.sub.N.RDB1.conv1.0, ...) and Real-ESRGAN SRVGGNetCompact with PReLU "
    "(body.N), as .pth or .safetensors checkpoints or as an ncnn .param with its .bin"
)
# Mirrored pixels added on every side of the input before an imported net runs, and cut off
# again after it, as Real-ESRGAN's own runners do (RealESRGANer's pre_pad, realesrgan-ncnn-vulkan's
# prepadding): the image's edges then see image-like context rather than the zeros of the
# convolutions' padding. Even, so a pixel-unshuffled input stays a multiple of its factor.
BORDER = 10
# ESRGAN's RRDB: DENSE_BLOCKS dense blocks of DENSE_CONVS convolutions each.
DENSE_CONVS = 5
DENSE_BLOCKS = 3


@dataclass(frozen=True)
class ImportedNet:
    """A community upscaler rebuilt as a torch net.

    Attributes:
        net: float32, CPU, eval mode; (B, C, H, W) in [0, 1] -> (B, C, H*scale, W*scale), about
            [0, 1] (not clamped), C = `net.in_channels` (3, or 1 for a gray net); H and W at
            least `net.min_size` and multiples of `net.multiple_of`.
        scale: output size / input size.
        description: what was found, e.g. "BasicSR RRDBNet x4, 64 features, 23 blocks, growth 32".
        provenance: how it was stored, for the metadata: format, key layout, files and their
            SHA-256.
        ncnn: for an ncnn source, the files and blob names to run it with the ncnn package.
    """

    net: nn.Module
    scale: int
    description: str
    provenance: dict[str, Any]
    ncnn: NcnnFiles | None = None


@dataclass(frozen=True)
class NcnnFiles:
    """An ncnn model on disk, and the names of its input and output blobs."""

    param: Path
    weights: Path
    input_blob: str
    output_blob: str


class ResizedUpscaler(nn.Module):
    """An upscaler whose output is resized once more, by a fixed factor: Real-ESRGAN's ncnn files
    realesr-animevideov3-x2 and -x3 are the x4 net followed by a bicubic shrink to x2 and x3.

    Shape: (B, C, H, W) -> (B, C, H*scale, W*scale), `mode` being a torch interpolation mode
    (half-pixel centres, as ncnn's Interp).
    """

    inputs = IMAGE  # the exported graph's inputs (img2img.contract)

    def __init__(self, net: nn.Module, *, scale: int, mode: str) -> None:
        super().__init__()
        self.net = net
        self.scale = scale
        self.mode = mode
        self.in_channels, self.out_channels = net.in_channels, net.out_channels
        self.multiple_of, self.min_size, self.input_range = net.multiple_of, net.min_size, net.input_range
        self.hparams = {"net": net.hparams, "scale": scale, "mode": mode}

    def forward(self, x: Tensor) -> Tensor:
        # The output size from the input's, not a scale factor: ncnn sizes its output so too.
        size = (x.shape[-2] * self.scale, x.shape[-1] * self.scale)
        align = None if self.mode == "nearest" else False
        return F.interpolate(self.net(x), size=size, mode=self.mode, align_corners=align)


class MirroredBorder(nn.Module):
    """An upscaler run on its input with `border` mirrored pixels added on every side (BORDER),
    the border cut off again from its output (border * scale pixels).

    Shape: (B, C, H, W), H and W at least border + 1 (`min_size`, which the runtime pads a
    smaller image to) and multiples of `net.multiple_of` -> (B, C, H*scale, W*scale).
    """

    inputs = IMAGE  # the exported graph's inputs (img2img.contract)

    def __init__(self, net: nn.Module, *, scale: int, border: int = BORDER) -> None:
        super().__init__()
        self.net = net
        self.scale = scale
        self.border = border
        self.in_channels, self.out_channels = net.in_channels, net.out_channels
        self.multiple_of, self.input_range = net.multiple_of, net.input_range
        self.min_size = max(net.min_size, border + 1)  # a reflection is shorter than the image
        self.hparams = {"net": net.hparams, "border": border}

    def forward(self, x: Tensor) -> Tensor:
        border, cut = self.border, self.border * self.scale
        output = self.net(F.pad(x, (border, border, border, border), mode="reflect"))
        return output[..., cut : output.shape[-2] - cut, cut : output.shape[-1] - cut]


def rrdb_hparams(
    *, features: int, folded_channels: int, channels: int, blocks: int, growth: int, upsamples: int, source: str
) -> dict[str, Any]:
    """RRDBNet's arguments from what its weights show. The input is folded by a pixel unshuffle
    of factor r when conv_first takes r*r times the output's channels; the trunk's x2 steps then
    reach scale * r."""
    check_channels(channels, source)
    unshuffle = math.isqrt(folded_channels // channels)
    if channels * unshuffle**2 != folded_channels or unshuffle not in UNSHUFFLE_FACTORS:
        raise ModelError(
            f"{source}: the first conv takes {folded_channels} channels for a {channels}-channel output; "
            f"an RRDBNet takes {', '.join(str(channels * r * r) for r in UNSHUFFLE_FACTORS)} (pixel unshuffle "
            f"{', '.join(map(str, UNSHUFFLE_FACTORS))})"
        )
    trunk_scale = 2**upsamples if upsamples <= 4 else 0
    scale, remainder = divmod(trunk_scale, unshuffle)
    if remainder or scale not in RRDB_SCALES:
        raise ModelError(
            f"{source}: {upsamples} x2 upsampling steps after a pixel unshuffle by {unshuffle}; "
            f"img2img's RRDBNet scales x{', x'.join(map(str, RRDB_SCALES))}"
        )
    hparams = dict(
        in_channels=channels, out_channels=channels, num_features=features, num_blocks=blocks,
        growth_channels=growth, scale=scale,
    )
    return hparams | ({"pixel_unshuffle": unshuffle} if unshuffle > 1 else {})


def describe_rrdb(hparams: Mapping[str, Any], layout: str) -> str:
    unshuffle = hparams.get("pixel_unshuffle", 1)
    folded = f", pixel unshuffle {unshuffle}" if unshuffle > 1 else ""
    return (
        f"{layout} RRDBNet x{hparams['scale']}, {hparams['num_features']} features, {hparams['num_blocks']} blocks, "
        f"growth {hparams['growth_channels']}{folded}"
    )


def describe_srvgg(hparams: Mapping[str, Any]) -> str:
    return (
        f"SRVGGNetCompact x{hparams['scale']}, {hparams['num_features']} features, "
        f"{hparams['num_conv']} body convs, PReLU"
    )


def check_channels(channels: int, source: str) -> None:
    if channels not in (1, 3):
        raise ModelError(f"{source}: a net with {channels}-channel images; img2img imports RGB or gray upscalers")


def build_sized_net(
    net_class: type[nn.Module], hparams: Mapping[str, Any], state: Mapping[str, Tensor], source: str
) -> nn.Module:
    """`net_class(**hparams)` holding `state` (every key, every shape), float32, in eval mode.

    The net is built on the meta device, where its sizes cost no memory, and takes the state's
    tensors as its parameters once they all fit: hparams read from one tensor's shape (a width
    of 100,000) never allocate more than the file holds.

    Raises:
        ModelError: a key is missing or unexpected, or a shape differs.
    """
    with torch.device("meta"):
        net = net_class(**hparams)
    try:
        net.load_state_dict({key: value.float() for key, value in state.items()}, strict=True, assign=True)
    except RuntimeError as error:
        # The first line only names the net; the ones after it say which keys or shapes differ.
        details = " ".join(line.strip() for line in str(error).splitlines()[1:])
        raise ModelError(
            f"{source}: the weights do not fit the {net_class.__name__} their shapes describe: {details[:400]}"
        ) from None
    return net.eval()


def file_records(*paths: Path) -> list[dict[str, str]]:
    """The name and SHA-256 of each file, for an imported model's provenance."""
    records = []
    for path in paths:
        with path.open("rb") as file:
            records.append({"file": path.name, "sha256": hashlib.file_digest(file, "sha256").hexdigest()})
    return records
