"""Training throughput of the super-resolution recipe, fp32 against bf16 autocast.

    python benchmarks/train_throughput.py --data data/photos [--config scripts/recipes/superres-x4-cpu.toml]
        [--steps 60] [--set KEY=VALUE ...]

Trains a throwaway run per precision on the given device (engine.device=auto picks the GPU) and
prints images/s measured over the steps after a warm-up. bf16 autocast is meant for CUDA; on a
CPU its speed depends on the processor's bf16 support.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from img2img.engine.config import resolve_config
from img2img.engine.trainer import Trainer, resolve_device
from img2img.tasks.superres import SuperResConfig, SuperResolution

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=ROOT / "scripts" / "recipes" / "superres-x4-cpu.toml")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    results = {}
    for precision in ("fp32", "bf16"):
        overrides = [
            f'data="{args.data}"', f"engine.steps={args.steps}", "engine.log_every=10", f"engine.precision={precision}",
            "engine.validate_every=0", "engine.sample_every=0", f"engine.checkpoint_every={args.steps}",
            "engine.time_limit_minutes=0", *args.overrides,
        ]
        config = resolve_config(SuperResConfig, config_file=args.config, overrides=overrides)
        device = resolve_device(config.engine.device)
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = Trainer(SuperResolution(config, device), Path(run_dir), show_progress=False)
            trainer.fit()
            log = [json.loads(line) for line in (Path(run_dir) / "train_log.jsonl").read_text().splitlines()]
        # The first window holds start-up work (allocation, autotuning); leave it out.
        results[precision] = statistics.median(entry["images_per_second"] for entry in log[1:])
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{config.net} x{config.scale}, batch {config.engine.batch_size}, patch {config.patch_size} on {name}")
    for precision, rate in results.items():
        print(f"  {precision}: {rate:.0f} images/s")


if __name__ == "__main__":
    main()
