"""Training throughput of a task's recipe: the reference way (fp32 eager, the reference batch)
against this toolkit's defaults (bf16 autocast on CUDA, channels_last, fused AdamW, a larger
batch, optionally torch.compile), same nets, same data, same device.

    python benchmarks/train_throughput.py --task cyclegan \\
        --data-a data/emoji/google --data-b data/emoji/twitter \\
        --config scripts/recipes/emoji-cyclegan-cpu.toml --set load_size=286 --set crop_size=256 \\
        --reference-batch 1 --batch 8 [--compile] [--steps 60] [--json results.json]

    python benchmarks/train_throughput.py --task superres --data data/photos \\
        --config scripts/recipes/superres-x4-cpu.toml

    python benchmarks/train_throughput.py --task superres --data data/photos \\
        --config scripts/recipes/campaign/superres-x4.toml \\
        --variant fp32:engine.precision=fp32 --variant bf16:engine.precision=bf16 \\
        --variant bf16+nhwc:engine.precision=bf16,engine.channels_last_cpu=true

Each variant trains a throwaway run for --steps steps on the device engine.device picks (the GPU
when there is one) and reports the median over the logging windows after the first (which holds
allocation, autotuning and compilation) of images/s and of the share of wall time the loop spent
waiting for the data loader (near 0: the loader keeps up; the GPU is never starved by data).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from img2img.engine.config import config_to_dict, resolve_config
from img2img.engine.device import resolve_device
from img2img.engine.trainer import Trainer
from img2img.tasks import TASKS


def variant_settings(name: str, batch_size: int) -> list[str]:
    """Engine overrides of one variant: "reference", "defaults" or "defaults+compile"."""
    if name == "reference":
        return [
            "engine.precision=fp32", "engine.channels_last=false", "engine.fused_adam=false",
            "engine.compile=false", f"engine.batch_size={batch_size}",
        ]
    return [
        "engine.precision=auto", "engine.channels_last=true", "engine.fused_adam=true",
        f"engine.compile={'true' if name.endswith('compile') else 'false'}", f"engine.batch_size={batch_size}",
    ]


def train_throwaway(task_name: str, settings: list[str], config_file: Path | None) -> tuple[Any, Trainer, list, list]:
    """Trains `task_name` with `settings` in a temporary run folder; returns the resolved config,
    the trainer, and the train and validation log records."""
    task_class = TASKS.get(task_name)
    config = resolve_config(task_class.config_class, config_file=config_file, overrides=settings)
    device = resolve_device(config.engine.device)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(task_class(config, device), Path(run_dir), show_progress=False)
        trainer.fit()
        logs = [
            [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
            for path in (Path(run_dir) / "train_log.jsonl", Path(run_dir) / "validation_log.jsonl")
        ]
    return config, trainer, *logs


def measure(task_name: str, settings: list[str], config_file: Path | None) -> dict[str, float]:
    config, trainer, log, _ = train_throwaway(task_name, settings, config_file)
    if len(log) < 2:
        raise SystemExit("too few logging windows to leave out the warm-up; raise --steps or lower --log-every")
    windows = log[1:]
    return {
        "batch_size": config.engine.batch_size,
        "precision": "bf16" if trainer.use_bf16 else "fp32",
        "images_per_second": statistics.median(w["images_per_second"] for w in windows),
        "data_wait_share": statistics.median(w["data_wait_share"] for w in windows),
        "config": config_to_dict(config),
    }


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        model = names[0] if names else model
    return f"CPU ({model}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="superres", choices=sorted(TASKS.names()))
    parser.add_argument("--data", type=Path, help="training folder (one-folder tasks)")
    parser.add_argument("--data-a", type=Path, help="domain A folder (cyclegan, pix2pix)")
    parser.add_argument("--data-b", type=Path, help="domain B folder (cyclegan, pix2pix)")
    parser.add_argument("--config", type=Path, help="the task's recipe (TOML)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--log-every", type=int, default=10, help="steps per measuring window")
    parser.add_argument("--reference-batch", type=int, help="the reference recipe's batch (default: the recipe's)")
    parser.add_argument("--batch", type=int, help="the batch of our defaults (default: the recipe's)")
    parser.add_argument("--workers", type=int, help="data loader processes (default: the recipe's)")
    parser.add_argument("--compile", action="store_true", help="also measure the defaults with torch.compile")
    parser.add_argument("--defaults-only", action="store_true", help="measure our defaults alone (no reference run)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE for every variant")
    parser.add_argument(
        "--variant", dest="variants", action="append", default=[], metavar="NAME:KEY=VALUE,...",
        help="measure a named variant of the defaults with these engine settings, e.g. "
        "bf16:engine.precision=bf16,engine.channels_last_cpu=true (repeatable; replaces the reference/defaults pair)",
    )
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()

    common = [
        f"{key}={json.dumps(str(folder))}"
        for key, folder in (("data", args.data), ("data_a", args.data_a), ("data_b", args.data_b))
        if folder is not None
    ]
    common += [
        f"engine.steps={args.steps}", f"engine.log_every={args.log_every}", "engine.validate_every=0",
        "engine.sample_every=0", "engine.fid_every=0", f"engine.checkpoint_every={args.steps}",
        "engine.time_limit_minutes=0",
    ]
    if args.workers is not None:
        common.append(f"engine.num_workers={args.workers}")
    common += args.overrides
    recipe_batch = resolve_config(
        TASKS.get(args.task).config_class, config_file=args.config, overrides=common
    ).engine.batch_size
    if args.variants:
        variants = {}
        for text in args.variants:
            name, sep, settings = text.partition(":")
            if not sep or not name:
                raise SystemExit(f"--variant {text!r} is not NAME:KEY=VALUE,...")
            variants[name] = [f"engine.batch_size={args.batch or recipe_batch}", *filter(None, settings.split(","))]
    else:
        variants = {} if args.defaults_only else {"reference": args.reference_batch or recipe_batch}
        variants["defaults"] = args.batch or recipe_batch
        if args.compile:
            variants["defaults+compile"] = args.batch or recipe_batch
        variants = {name: variant_settings(name, batch_size) for name, batch_size in variants.items()}

    results = {}
    for name, settings in variants.items():
        results[name] = measure(args.task, [*common, *settings], args.config)
    baseline = results[next(iter(results))]["images_per_second"]
    print(f"{args.task} training throughput on {device_name()}, torch {torch.__version__}, {args.steps} steps")
    print(f"| variant | precision | batch | images/s | vs {next(iter(results))} | data-wait share |")
    print("|---|---|---|---|---|---|")
    for name, result in results.items():
        print(
            f"| {name} | {result['precision']} | {result['batch_size']} | {result['images_per_second']:.3g} | "
            f"{result['images_per_second'] / baseline:.2f}x | {result['data_wait_share']:.1%} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"task": args.task, "device": device_name(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
