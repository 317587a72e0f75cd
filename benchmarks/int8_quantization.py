"""8-bit static quantization of the shipped super-resolution models: what it costs in quality and
what it gains in CPU speed, before any int8 variant ships.

    python benchmarks/int8_quantization.py [--models superres-x4 superres-x2] \\
        [--calibration data/photos/train --calibration-count 32] [--hr-dir data/photos/val] \\
        [--protocols clean degraded] [--threads 2] [--json OUT]

For each model, weights/NAME.onnx is quantized as `img2img quantize` does it
(`img2img.quantize.quantize_model`: QDQ int8 convolutions but the first and last, uint8
activation ranges from percentiles over the LR of --calibration-count centre crops of the
training photos; the rest of the graph stays float32).

Both graphs then upscale the same LR of the held-out photos through
`img2img.evaluate.superres.evaluate_superres`, the protocol of `img2img eval superres` and
benchmarks/sr_peers.py (PSNR-Y, SSIM-Y, VGG dist and grid against HR), each as one raw ONNX
Runtime session with the same thread count; speed is seconds per output megapixel over those
calls (one untimed warm-up call), and a separate median over repeated runs on one fixed
256x256 LR input.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from img2img.contract import ModelInfo
from img2img.evaluate.scoring import PairScorer, from_uint8
from img2img.evaluate.superres import evaluate_superres
from img2img.quantize import quantize_model

REPOSITORY = Path(__file__).resolve().parents[1]
WEIGHTS = REPOSITORY / "weights"


class OrtUpscaler:
    """(h, w, 3) uint8 -> (h*scale, w*scale, 3) uint8 through one ONNX Runtime session, timed."""

    def __init__(self, path: Path, threads: int) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.seconds, self.output_pixels, self.warmed_up = 0.0, 0, False

    def run(self, lr: np.ndarray) -> np.ndarray:
        """(1, 3, h, w) float32 in [0, 1] -> the graph's output."""
        return self.session.run(None, {self.input_name: lr})[0]

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        planes = from_uint8(lr).numpy()
        if not self.warmed_up:
            self.run(planes)
            self.warmed_up = True
        started = time.perf_counter()
        output = self.run(planes)
        self.seconds += time.perf_counter() - started
        self.output_pixels += output.shape[-2] * output.shape[-1]
        return np.ascontiguousarray((np.clip(output[0], 0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8))


def median_seconds_per_megapixel(upscaler: OrtUpscaler, side: int, repeats: int) -> float:
    lr = np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32)
    upscaler.run(lr)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        output = upscaler.run(lr)
        times.append(time.perf_counter() - started)
    return statistics.median(times) / (output.shape[-2] * output.shape[-1] / 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["superres-x4", "superres-x2", "superres-x4-real"])
    parser.add_argument("--calibration", type=Path, default=REPOSITORY / "data" / "photos" / "train")
    parser.add_argument("--calibration-count", type=int, default=32)
    parser.add_argument("--hr-dir", type=Path, default=REPOSITORY / "data" / "photos" / "val")
    parser.add_argument("--protocols", nargs="+", default=["clean"], choices=["clean", "degraded"])
    parser.add_argument("--max-size", type=int, default=256, help="centre crops of the HR photos, as sr_peers.py")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    results = []
    print(f"ONNX Runtime {ort.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.2f}")
    print("| model | protocol | precision | PSNR-Y | SSIM-Y | VGG dist | grid | s/MP (photos) | s/MP (256x256 LR) |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models:
            source = WEIGHTS / f"{name}.onnx"
            metadata = {prop.key: prop.value for prop in onnx.load(str(source)).metadata_props}
            scale = ModelInfo.from_metadata(metadata, source=str(source)).scale
            scorer = PairScorer(crop_border=scale, perceptual=True, grid_period=scale)
            quantized, agreement = quantize_model(
                source, args.calibration, output=Path(scratch) / f"{name}.int8.onnx", count=args.calibration_count
            )
            print(f"{name}: int8 outputs {agreement:.1f} dB PSNR from float32 on the calibration photos", flush=True)
            for protocol in args.protocols:
                for precision, path in (("fp32", source), ("int8", quantized)):
                    upscaler = OrtUpscaler(path, args.threads)
                    table, _ = evaluate_superres(
                        upscaler, args.hr_dir, scale=scale, scorer=scorer, model_name=name,
                        max_size=args.max_size, protocol=protocol,
                    )
                    means = table.summary()["model"]
                    photos = upscaler.seconds / (upscaler.output_pixels / 1e6)
                    fixed = median_seconds_per_megapixel(upscaler, 256, args.repeats)
                    row = {"model": name, "protocol": protocol, "precision": precision,
                           **{metric: means[metric] for metric in ("psnr_y", "ssim_y", "vgg_distance", "grid_amplitude")},
                           "seconds_per_megapixel": photos, "fixed_seconds_per_megapixel": fixed,
                           "bytes": path.stat().st_size}
                    results.append(row)
                    print(f"| {name} | {protocol} | {precision} | {row['psnr_y']:.3f} dB | {row['ssim_y']:.4f} | "
                          f"{row['vgg_distance']:.4f} | {row['grid_amplitude']:.4f} | {photos:.3f} | {fixed:.3f} |",
                          flush=True)
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "onnxruntime": ort.__version__, "rows": results}, indent=2))


if __name__ == "__main__":
    main()
