"""ONNX Runtime vs PyTorch eager on the CPU, same weights, same input sizes.

Runs the shipped model (weights/<name>.onnx) and the PyTorch net rebuilt from its safetensors twin
on random RGB inputs of each size and prints the median latency of repeated runs.

    python benchmarks/cpu_inference.py [--name superres-x4] [--sizes 256 512] [--repeats 10]

Needs the train extra (torch) for the PyTorch side. Goal: ONNX Runtime at least 1.5x faster.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from img2img.engine.checkpoint import load_safetensors_generator

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def median_seconds(run, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="superres-x4")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = onnxruntime.InferenceSession(
        str(WEIGHTS / f"{args.name}.onnx"), options, providers=["CPUExecutionProvider"]
    )
    net = load_safetensors_generator(WEIGHTS / f"{args.name}.safetensors").net

    rows = []
    for size in args.sizes:
        image = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
        tensor = torch.from_numpy(image)

        def run_onnx():
            session.run(["output"], {"input": image})

        def run_torch():
            with torch.inference_mode():
                net(tensor).clamp(0, 1)

        onnx_s = median_seconds(run_onnx, args.repeats)
        torch_s = median_seconds(run_torch, args.repeats)
        rows.append({"size": size, "onnxruntime_ms": 1000 * onnx_s, "torch_eager_ms": 1000 * torch_s,
                     "speedup": torch_s / onnx_s})

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} threads"
    print(f"{args.name} on CPU ({machine}); onnxruntime {onnxruntime.__version__}, torch {torch.__version__}")
    print(f"{'input':>9} {'onnxruntime ms':>15} {'torch eager ms':>15} {'speedup':>8}")
    for row in rows:
        print(f"{row['size']:>4}x{row['size']:<4} {row['onnxruntime_ms']:>15.1f} {row['torch_eager_ms']:>15.1f} "
              f"{row['speedup']:>7.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"model": args.name, "machine": machine, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
