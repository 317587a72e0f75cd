"""Speed and quality at equal images: the reference way of training against our defaults.

    python benchmarks/speed_quality.py --task cyclegan \\
        --data-a data/emoji/google --data-b data/emoji/twitter \\
        --config scripts/recipes/emoji-cyclegan-cpu.toml \\
        --set net=resnet_9blocks --set "net_options={}" --set "discriminator_options={}" \\
        --set load_size=286 --set crop_size=256 \\
        --images 20000 --reference-batch 1 --batch 8 --seeds 2 [--defaults-set optim_g.lr=4e-4 ...]

Each variant trains from scratch on the same number of images (steps = images / batch) and is
then scored by the task's FID/KID on its held-out images (`engine.fid_samples` of them). The
reference way is fp32, channels-first, unfused Adam, no EMA, at the reference batch; the defaults
are bf16 autocast (CUDA), channels_last, fused AdamW, the recipe's EMA, at a larger batch (plus
torch.compile with --compile). Training time excludes the final FID measurement. With --seeds
k > 1 every variant trains k times (engine.seed 0..k-1), so the spread of FID between seeds of
one variant shows what counts as noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from img2img.tasks import TASKS
from train_throughput import device_name, train_throwaway, variant_settings


def run_settings(name: str, batch_size: int, steps: int, extra: list[str]) -> list[str]:
    """The variant's engine settings (the reference way also drops the EMA, as the reference
    has none), FID once at the last step, no other validation, samples or checkpoints."""
    engine = variant_settings(name, batch_size) + (["engine.ema_decay=0"] if name == "reference" else extra)
    return [*engine, f"engine.steps={steps}", f"engine.fid_every={steps}", "engine.validate_every=0",
            "engine.sample_every=0", f"engine.checkpoint_every={steps}", "engine.time_limit_minutes=0"]


def train_and_score(task_name: str, settings: list[str], config_file: Path | None) -> dict[str, float]:
    started = time.monotonic()
    config, _, train_log, scores = train_throwaway(task_name, settings, config_file)
    total = time.monotonic() - started
    final = [entry for entry in scores if "fid" in entry][-1]
    # Time spent training: the logging windows' images over their rates (the FID is outside them).
    images_per_step = config.engine.batch_size * config.engine.accumulate
    previous, seconds = 0, 0.0
    for entry in train_log:
        seconds += (entry["step"] - previous) * images_per_step / entry["images_per_second"]
        previous = entry["step"]
    return {"fid": final["fid"], "kid": final["kid"], "train_seconds": seconds, "total_seconds": total,
            "images_per_second": previous * images_per_step / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="cyclegan", choices=sorted(TASKS.names()))
    parser.add_argument("--data", type=Path)
    parser.add_argument("--data-a", type=Path)
    parser.add_argument("--data-b", type=Path)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--images", type=int, required=True, help="training images per variant")
    parser.add_argument("--reference-batch", type=int, default=1)
    parser.add_argument("--batch", type=int, required=True, help="the batch of our defaults")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE for every variant")
    parser.add_argument("--defaults-set", dest="defaults_overrides", action="append", default=[],
                        help="KEY=VALUE for our defaults only (e.g. a learning rate for the larger batch)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    common = [
        f"{key}={json.dumps(str(folder))}"
        for key, folder in (("data", args.data), ("data_a", args.data_a), ("data_b", args.data_b))
        if folder is not None
    ] + ["engine.log_every=10", *args.overrides]
    variants = {"reference": args.reference_batch, "defaults": args.batch}
    if args.compile:
        variants["defaults+compile"] = args.batch
    results: dict[str, list[dict[str, float]]] = {}
    for name, batch_size in variants.items():
        if args.images % batch_size:
            raise SystemExit(f"--images {args.images} is not a multiple of the {name} batch {batch_size}")
        steps = args.images // batch_size
        results[name] = [
            train_and_score(
                args.task,
                [*common, *run_settings(name, batch_size, steps, args.defaults_overrides), f"engine.seed={seed}"],
                args.config,
            )
            for seed in range(args.seeds)
        ]
    reference_rate = statistics.mean(run["images_per_second"] for run in results["reference"])
    print(f"{args.task}: {args.images} training images per run, {args.seeds} seed(s), on {device_name()}, "
          f"torch {torch.__version__}")
    print("| variant | batch | images/s | vs reference | training time | FID per seed | KID per seed |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        rate = statistics.mean(run["images_per_second"] for run in runs)
        seconds = statistics.mean(run["train_seconds"] for run in runs)
        fids = ", ".join(format(run["fid"], ".1f") for run in runs)
        kids = ", ".join(format(run["kid"], ".4f") for run in runs)
        print(f"| {name} | {variants[name]} | {rate:.3g} | {rate / reference_rate:.2f}x | {seconds:.0f} s | {fids} | {kids} |")
    if args.json:
        args.json.write_text(json.dumps({"task": args.task, "device": device_name(), "images": args.images,
                                         "variants": variants, "results": results}, indent=2))


if __name__ == "__main__":
    main()
