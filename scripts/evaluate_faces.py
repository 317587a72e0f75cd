"""Score face generators by FID and KID against their training images, side by side.

Each model draws `--samples` faces: seed i gives the latent default_rng(i).standard_normal(D)
(the runtime's rule), and a conditional model gets labels drawn in the training folder's class
proportions (fixed by `--seed`), so the class mix does not count against it. Inception features
of the training folder are cached (`img2img eval` shares the cache).

A model is NAME=PATH: an exported .onnx file (run through the torch-free runtime), or a training
checkpoint .pt (its EMA generator; append "#raw" for the trained generator itself, which is how
the EMA ablation is measured without a second run).

Usage:
    python scripts/evaluate_faces.py data/faces-emoji \\
        modern=weights/faces-emoji.onnx dcgan=runs/faces-dcgan/checkpoints/last.pt \\
        --samples 5000 --json runs/eval-faces.json --sheet runs/eval-faces.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from img2img.data.labelled import LabelledImages, class_names
from img2img.engine.checkpoint import generator_from_checkpoint, load_checkpoint
from img2img.files.pixels import quantize
from img2img.metrics import FeatureSet, InceptionFeatures, frechet_distance, kernel_inception_distance
from img2img.metrics.folders import folder_features
from img2img.runtime.faces import FaceGenerator, image_grid

SHEET_FACES = 32


class CheckpointGenerator:
    """A checkpoint's generator behind the runtime's interface (latent_dim, labels, generate)."""

    def __init__(self, path: Path, *, raw: bool) -> None:
        checkpoint = load_checkpoint(path)
        loaded = generator_from_checkpoint(checkpoint, prefer_ema=not raw)
        self.net = loaded.net.eval()
        self.latent_dim = self.net.latent_dim
        config = loaded.config
        self.labels = tuple(n for n in config.get("labels", "").split(",") if n) if config.get("conditional") else ()

    @torch.no_grad()
    def generate(self, z: np.ndarray, labels: np.ndarray | None, batch_size: int = 64) -> np.ndarray:
        out = []
        for start in range(0, len(z), batch_size):
            chunk = None if labels is None else torch.from_numpy(labels[start : start + batch_size])
            images = (self.net(torch.from_numpy(z[start : start + batch_size]), chunk) + 1) / 2
            out.append(images.clamp(0, 1).permute(0, 2, 3, 1).numpy())
        return np.concatenate(out)


def open_generator(spec: str):
    path, _, variant = spec.partition("#")
    if path.endswith(".onnx"):
        return FaceGenerator(path, device="cpu")
    return CheckpointGenerator(Path(path), raw=variant == "raw")


def latents(count: int, dim: int) -> np.ndarray:
    return np.stack([np.random.default_rng(seed).standard_normal(dim) for seed in range(count)]).astype(np.float32)


def class_labels(data: Path, names: tuple[str, ...], count: int, seed: int) -> np.ndarray | None:
    if not names:
        return None
    if list(names) != class_names(data):
        raise SystemExit(f"error: the model's labels {names} are not the subfolders of {data}")
    frequencies = LabelledImages(data, resolution=8, labels=list(names)).label_counts().astype(np.float64)
    return np.random.default_rng(seed).choice(len(names), size=count, p=frequencies / frequencies.sum()).astype(np.int64)


@torch.no_grad()
def features_of(images: np.ndarray, extractor: InceptionFeatures, batch_size: int = 50) -> FeatureSet:
    chunks = [
        extractor(torch.from_numpy(images[start : start + batch_size]).permute(0, 3, 1, 2)).numpy()
        for start in range(0, len(images), batch_size)
    ]
    return FeatureSet.from_features(np.concatenate(chunks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="the training folder (real images)")
    parser.add_argument("models", nargs="+", help="NAME=PATH (.onnx, checkpoint .pt, or .pt#raw)")
    parser.add_argument("--samples", type=int, default=5000, help="faces per model (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the label draw")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--sheet", type=Path, help="write a sheet of each model's first faces here")
    args = parser.parse_args()

    extractor = InceptionFeatures().eval()
    real = folder_features(args.data, extractor).features
    results, sheets = {}, []
    for spec in args.models:
        name, _, path = spec.partition("=")
        started = time.perf_counter()
        generator = open_generator(path)
        labels = class_labels(args.data, tuple(generator.labels), args.samples, args.seed)
        images = generator.generate(latents(args.samples, generator.latent_dim), labels)
        fake = features_of(images, extractor)
        kid, kid_error = kernel_inception_distance(real.features, fake.features)
        results[name] = {
            "model": path,
            "fid": round(frechet_distance(real, fake), 3),
            "kid": round(kid, 5),
            "kid_std_error": round(kid_error, 5),
            "samples": args.samples,
            "real_images": real.count,
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(json.dumps({name: results[name]}))
        sheets.append(image_grid(images[:SHEET_FACES], columns=SHEET_FACES // 2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.sheet:
        sheet = np.concatenate(sheets, axis=0)
        Image.fromarray(quantize(sheet, np.uint8)).save(args.sheet)


if __name__ == "__main__":
    main()
