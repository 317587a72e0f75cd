"""Tiling overhead: tiled vs whole-image inference at equal output, and how far apart they are.

    python benchmarks/tiling_overhead.py [--model superres-x4] [--tiles 512 256] [--repeats 3]

Runs the model on one real photo (examples/spaniels.png upscaled to --size with bicubic, or
--image) whole and in tiles, each --repeats times after a warm-up, one process, median times.
Goal: tiled at most 15% slower than whole at the auto tile size. Also prints the max abs
difference of the uint8 outputs (the tiling tests require at most 1).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from img2img.runtime import OnnxModel, resolve_model
from img2img.runtime.tiling import DEFAULT_OVERLAP, TilePlan, run_tiled

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="superres-x4")
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "spaniels.png")
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 768), metavar=("W", "H"))
    parser.add_argument("--tiles", type=int, nargs="+", default=[512, 256])
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    with Image.open(args.image) as photo:
        image = np.asarray(photo.convert("RGB").resize(tuple(args.size), Image.Resampling.BICUBIC), np.float32) / 255
    model = OnnxModel(resolve_model(args.model, task=None, scale=None), device=args.device)

    def timed(tile: int | None) -> tuple[float, np.ndarray]:
        run_tiled(model, image, tile=tile, overlap=args.overlap, out_dtype=np.uint8)  # warm-up
        times, result = [], None
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = run_tiled(model, image, tile=tile, overlap=args.overlap, out_dtype=np.uint8)
            times.append(time.perf_counter() - started)
        return statistics.median(times), result

    whole_time, whole = timed(None)
    print(f"{args.model} on {args.size[0]}x{args.size[1]} ({args.device}, {model.providers[0]}), "
          f"median of {args.repeats}")
    print("| tile | tiles | time | overhead vs whole | max abs diff (uint8) |")
    print("|---|---|---|---|---|")
    print(f"| whole image | 1 | {whole_time:.2f} s | - | - |")
    for tile in args.tiles:
        plan = TilePlan.for_image(args.size[1], args.size[0], tile=tile, overlap=args.overlap)
        tile_time, tiled = timed(tile)
        difference = int(np.abs(tiled.astype(int) - whole.astype(int)).max())
        print(f"| {tile} (overlap {args.overlap}) | {plan.count} | {tile_time:.2f} s | "
              f"{100 * (tile_time / whole_time - 1):+.1f}% | {difference} |")


if __name__ == "__main__":
    main()
