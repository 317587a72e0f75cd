"""Cold start: wall time of a whole `img2img superres` process on a 128x128 image.

    python benchmarks/cold_start.py [--repeats 7]

Uses the installed `img2img` command when it is on PATH, else `python -m cli` from this checkout.
Goal: under 1.5 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    installed = shutil.which("img2img")
    command = [installed] if installed else [sys.executable, "-m", "cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)} if not installed else dict(os.environ)
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "in.png"
        with Image.open(ROOT / "examples" / "spaniels.png") as photo:
            photo.convert("RGB").crop((0, 0, 128, 128)).save(source)
        times = []
        for index in range(args.repeats + 1):
            output = Path(scratch) / f"out{index}.png"
            started = time.perf_counter()
            subprocess.run([*command, "superres", str(source), "-o", str(output)], check=True, env=env,
                           capture_output=True)
            elapsed = time.perf_counter() - started
            if index:  # the first run warms the OS file cache
                times.append(elapsed)
    print(f"`{' '.join(Path(c).name for c in command)} superres` on 128x128, whole process: "
          f"median {statistics.median(times):.2f} s, min {min(times):.2f} s, max {max(times):.2f} s "
          f"over {len(times)} runs")


if __name__ == "__main__":
    main()
