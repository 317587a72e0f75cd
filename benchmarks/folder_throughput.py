"""Folder throughput: 50 photos end to end (decode, tile, infer, encode, write) vs the model alone.

    python benchmarks/folder_throughput.py --data data/photos [--count 50] [--model superres-x4]

Takes the first --count photos (sorted) under --data, copies them into a scratch folder, then
1. model only: decodes them all into memory first, then times every onnxruntime call the
   tiler makes on them (same tiles, same batch sizes) and nothing else;
2. end to end: `run_batch` over the folder into a fresh output folder, as `img2img superres DIR
   -o OUT` does, wall time from start to the report.
Goal: end-to-end throughput at least 90% of model-only throughput.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from img2img.files.listing import image_files
from img2img.runtime import load_image
from img2img.runtime.api import Model
from img2img.runtime.batch import run_batch
from img2img.runtime.batch_options import BatchOptions


class TimedModel:
    """Wraps an OnnxModel and adds up the seconds spent in run_batch."""

    def __init__(self, model) -> None:
        self.model, self.info, self.seconds = model, model.info, 0.0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def run_batch(self, images: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        started = time.perf_counter()
        try:
            return self.model.run_batch(images, masks)
        finally:
            self.seconds += time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--model", default="superres-x4")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile", default="auto")
    parser.add_argument("--ext", default="png")
    args = parser.parse_args()

    photos = image_files(args.data)[: args.count]
    tile = None if args.tile == "0" else args.tile if args.tile == "auto" else int(args.tile)
    model = Model(args.model, device=args.device, tile=tile)
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "in"
        source.mkdir()
        for index, photo in enumerate(photos):
            shutil.copy(photo, source / f"{index:03d}{photo.suffix}")

        # Warm up every shape once, so neither pass pays for first-call setup.
        decoded = [load_image(path) for path in sorted(source.iterdir())]
        for image in decoded:
            model.process(image)
        pixels = sum(image.rgb.shape[0] * image.rgb.shape[1] for image in decoded)

        timed = TimedModel(model.onnx)
        model.onnx = timed
        for image in decoded:
            model.process(image)
        model.onnx = timed.model
        model_only = timed.seconds
        del decoded

        started = time.perf_counter()
        report = run_batch(source, model.process, BatchOptions(output_dir=Path(scratch) / "out", ext=args.ext),
                           progress=False, log=lambda line: None)
        end_to_end = time.perf_counter() - started
    count = len(photos)
    print(f"{count} photos ({pixels / count / 1e6:.2f} MP mean) {args.model} on {args.device}, "
          f"tile {args.tile}, .{args.ext} output; {report.written} written, {report.failed} failed")
    print(f"model only: {model_only:.1f} s ({count / model_only:.2f} images/s)")
    print(f"end to end: {end_to_end:.1f} s ({count / end_to_end:.2f} images/s) = "
          f"{100 * model_only / end_to_end:.0f}% of model-only throughput (goal: at least 90%)")


if __name__ == "__main__":
    main()
