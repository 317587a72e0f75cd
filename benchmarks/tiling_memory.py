"""Peak memory of upscaling a 4000x3000 photo x4 on the CPU with tiling, whole process.

    python benchmarks/tiling_memory.py [--size 4000 3000] [--tile auto] [--ext png] [--limit-gb 8]

Makes the input from a real photo (examples/spaniels.png, bicubic-resized to --size, saved as a
JPEG like a camera's), runs `img2img superres IN -o OUT --tile ...` in a child process and reads
the child's peak resident set size from the kernel (wait4). Goal: peak RSS at most the output
buffer (W*4 x H*4 x 3 bytes) plus 1.5 GB. With --limit-gb the child runs under that address-space
limit (`ulimit -v`): a result that cannot fit must be refused within seconds, before the model
runs, with one `error:` line saying how much it needs.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
GB = 1 << 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs=2, default=(4000, 3000), metavar=("W", "H"))
    parser.add_argument("--tile", default="auto")
    parser.add_argument("--ext", default="png", choices=("png", "jpg", "webp"))
    parser.add_argument("--model", default="superres-x4")
    parser.add_argument("--limit-gb", type=float, help="address-space limit of the child, in GiB")
    args = parser.parse_args()

    def limit_memory() -> None:
        if args.limit_gb:
            cap = int(args.limit_gb * GB)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    installed = shutil.which("img2img")
    command = [installed] if installed else [sys.executable, "-m", "cli"]
    env = dict(os.environ) if installed else {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as scratch:
        source, output = Path(scratch) / "photo.jpg", Path(scratch) / f"photo_x4.{args.ext}"
        with Image.open(ROOT / "examples" / "spaniels.png") as photo:
            photo.convert("RGB").resize(tuple(args.size), Image.Resampling.BICUBIC).save(source, quality=92)
        started = time.perf_counter()
        child = subprocess.Popen(
            [*command, "superres", str(source), "-o", str(output), "--model", args.model,
             "--tile", args.tile, "--device", "cpu"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit_memory,
        )
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        stdout, stderr = child.stdout.read(), child.stderr.read()
        peak = usage.ru_maxrss * 1024  # Linux reports kilobytes
        if os.waitstatus_to_exitcode(status) != 0:
            print(f"input {args.size[0]}x{args.size[1]} x4 under a {args.limit_gb} GiB limit: exit "
                  f"{os.waitstatus_to_exitcode(status)} after {seconds:.1f} s, peak RSS {peak / GB:.2f} GiB")
            print(stderr.strip())
            return
        Image.MAX_IMAGE_PIXELS = None  # the output is ours, and larger than Pillow's default limit
        with Image.open(output) as written:
            width, height = written.size
    buffer = width * height * 3
    print(stdout.strip())
    print(f"input {args.size[0]}x{args.size[1]} -> {width}x{height} .{args.ext}, tile {args.tile}: "
          f"peak RSS {peak / GB:.2f} GiB = output buffer {buffer / GB:.2f} GiB + {(peak - buffer) / GB:.2f} GiB "
          f"(goal: + at most 1.5 GB = 1.40 GiB); {seconds:.0f} s")


if __name__ == "__main__":
    main()
