"""Score exported translation models on held-out true pairs, beside the identity baseline.

For every source image that has a target of the same name, the source is composited onto the
model's background (as in training), run through each ONNX model by the runtime, and compared
with the target composited the same way:

- PSNR and SSIM (RGB, 8-bit) and the VGG19 feature distance, per image, averaged;
- FID and KID of all outputs against all targets (FID Inception, clean resize);
- the same for the identity baseline (output = the source itself);
- with --reference-points TRAIN_TARGETS, what FID reads for other sets against the same targets:
  as many other target-domain images (from TRAIN_TARGETS) and the targets themselves blurred
  (bicubic down and up by 2 and by 4), to show where a good translation's FID must land.

Usage:
    python scripts/evaluate_translation.py data/emoji/google/val data/emoji/twitter/val \\
        --model weights/emoji-google2twitter.onnx --model weights/emoji-google2twitter-pix2pix.onnx \\
        --json runs/eval-google2twitter.json --sheet runs/eval-google2twitter.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from img2img.data.two_domain import load_domain_image, parse_background
from img2img.evaluate.scoring import (
    PairScorer,
    format_table,
    from_uint8,
    images_by_stem,
)
from img2img.evaluate.sheets import Tile, comparison_sheet, save_sheet
from img2img.metrics import (
    FeatureSet,
    InceptionFeatures,
    frechet_distance,
    kernel_inception_distance,
)
from img2img.runtime.api import Model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="held-out source-domain images")
    parser.add_argument("target", type=Path, help="their true counterparts (same names)")
    parser.add_argument("--model", action="append", required=True, help="ONNX model (repeatable)")
    parser.add_argument("--background", default="white", help="what transparency is composited onto")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--sheet", type=Path, help="comparison sheet of the first --count images")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument(
        "--reference-points", type=Path, metavar="TRAIN_TARGETS",
        help="also score other target-domain images from this folder and blurred targets (FID/KID only)",
    )
    args = parser.parse_args()

    background = parse_background(args.background)
    sources, targets = images_by_stem(args.source), images_by_stem(args.target)
    names = sorted(set(sources) & set(targets))
    load = lambda path: load_domain_image(path, channels=3, background=background)  # noqa: E731
    source_pixels = [load(sources[name]) for name in names]
    target_pixels = [load(targets[name]) for name in names]

    started = time.perf_counter()
    outputs = {"identity": source_pixels}
    for model_path in args.model:
        model = Model(model_path, task="translate", tile=None, alpha="drop", device="cpu")
        outputs[Path(model_path).stem] = [np.asarray(model(pixels)) for pixels in source_pixels]

    scorer = PairScorer(perceptual=True)
    inception = InceptionFeatures()

    def features(images: list[np.ndarray]) -> FeatureSet:
        with torch.no_grad():
            chunks = [inception(torch.cat([from_uint8(p) for p in images[i : i + 64]])).numpy() for i in range(0, len(images), 64)]
        return FeatureSet.from_features(np.concatenate(chunks))

    real = features(target_pixels)
    results: dict[str, dict[str, float]] = {}
    for method, images in outputs.items():
        per_image = [scorer.score(from_uint8(out), from_uint8(tgt)) for out, tgt in zip(images, target_pixels)]
        summary = {key: float(np.mean([scores[key] for scores in per_image])) for key in ("psnr_rgb", "ssim_rgb", "vgg_distance")}
        generated = features(images)
        summary["fid"] = frechet_distance(real, generated)
        summary["kid"], summary["kid_std_error"] = kernel_inception_distance(real, generated)
        results[method] = summary
    if args.reference_points:
        others = images_by_stem(args.reference_points)
        other_pixels = [load(others[name]) for name in sorted(set(others) - set(names))[: len(names)]]
        references = {f"other {args.reference_points.parent.name} images": other_pixels}
        for factor in (2, 4):
            references[f"targets blurred x{factor}"] = [_blurred(pixels, factor) for pixels in target_pixels]
        for label, images in references.items():
            generated = features(images)
            kid, kid_error = kernel_inception_distance(real, generated)
            results[label] = {"fid": frechet_distance(real, generated), "kid": kid, "kid_std_error": kid_error}
    seconds = time.perf_counter() - started

    columns = ["method", "PSNR-RGB dB", "SSIM-RGB", "VGG dist", "FID", "KID", "KID s.e."]
    keys = ["psnr_rgb", "ssim_rgb", "vgg_distance", "fid", "kid", "kid_std_error"]
    print(f"{len(names)} held-out pairs, {args.source} -> {args.target}, {seconds:.0f} s")
    print(format_table(columns, [[method] + [scores.get(key, "") for key in keys] for method, scores in results.items()]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"pairs": len(names), "results": results}, indent=2))
    if args.sheet:
        rows = [
            [Tile(source_pixels[i], names[i])]
            + [Tile(outputs[method][i], method) for method in outputs if method != "identity"]
            + [Tile(target_pixels[i], "target")]
            for i in range(min(args.count, len(names)))
        ]
        titles = ["source"] + [method for method in outputs if method != "identity"] + ["target"]
        save_sheet(comparison_sheet(rows, column_titles=titles, tile_size=128), args.sheet)


def _blurred(pixels: np.ndarray, factor: int) -> np.ndarray:
    """(H, W, 3) uint8 shrunk by `factor` (bicubic, antialiased) and enlarged back."""
    image = Image.fromarray(pixels)
    small = image.resize((image.width // factor, image.height // factor), Image.Resampling.BICUBIC)
    return np.array(small.resize(image.size, Image.Resampling.BICUBIC))


if __name__ == "__main__":
    main()
