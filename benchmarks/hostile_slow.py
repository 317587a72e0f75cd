"""The slow hostile-input cases: large files and memory, each run as a user would run it.

    python benchmarks/hostile_slow.py [--model superres-x4] [--limit-gb 8] [--only NAME ...]

The fast cases are in tests/test_hostile_inputs.py; these take seconds to minutes and gigabytes,
so they are measured here and recorded in benchmarks/RESULTS.md. Each case builds its input in a
scratch folder, runs `img2img superres` in a child process (under an address-space limit of
--limit-gb where the case says so) and reports the exit code, the first line of stderr, the wall
time and the child's peak resident memory (wait4). Every case states what must happen; a case
whose outcome differs is marked FAIL and the script exits with 1.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
GIB = 1 << 30


@dataclass
class Case:
    """One hostile input: how to make it, and what the run must do with it."""

    name: str
    make: Callable[[Path], Path]  # scratch folder -> input file
    expect_exit: int
    expect_stderr: str = ""  # a fragment of the first stderr line
    limited: bool = False  # run under --limit-gb
    suffix: str = ".png"  # of the output file


def photo(size: tuple[int, int]) -> Callable[[Path], Path]:
    """A real photo (examples/spaniels.png) resized to `size`, saved as a camera-like JPEG."""

    def make(folder: Path) -> Path:
        path = folder / f"photo-{size[0]}x{size[1]}.jpg"
        with Image.open(ROOT / "examples" / "spaniels.png") as source:
            source.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(path, quality=92)
        return path

    return make


def jpeg_claiming(width: int, height: int) -> Callable[[Path], Path]:
    """A 3 KB JPEG whose frame header claims width x height, with an end marker (libjpeg would
    fill the missing rows with gray)."""

    def make(folder: Path) -> Path:
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buffer, format="JPEG")
        data = bytearray(buffer.getvalue())
        frame = data.find(b"\xff\xc0")
        data[frame + 5 : frame + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
        path = folder / "claims-huge.jpg"
        path.write_bytes(bytes(data[:3000]) + b"\xff\xd9")
        return path

    return make


def png_bomb(side: int) -> Callable[[Path], Path]:
    """A valid PNG of side x side black pixels: a few hundred KB that decode to side^2 * 3 bytes."""

    def make(folder: Path) -> Path:
        def chunk(kind: bytes, body: bytes) -> bytes:
            return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

        row = b"\x00" + bytes(side * 3)
        compressor = zlib.compressobj(9)
        data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
        header = side.to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
        path = folder / "bomb.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
        return path

    return make


def random_bytes(size: int) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "noise.png"
        with path.open("wb") as file:
            for _ in range(size // (1 << 20)):
                file.write(os.urandom(1 << 20))
        return path

    return make


CASES = [
    Case("4000x3000 photo at x4 (192 MP result)", photo((4000, 3000)), 0),
    # A PNG is encoded as the tiles make it: the 6.9 GB result is never held.
    Case("12000x12000 photo at x4 to PNG under the memory limit", photo((12000, 12000)), 0, limited=True),
    # JPEG needs the whole result (and Pillow's copy of it): refused before the model runs.
    Case(
        "12000x12000 photo at x4 to JPEG under the memory limit", photo((12000, 12000)), 2, "needs about",
        limited=True, suffix=".jpg",
    ),
    Case("3 KB JPEG claiming 13000x13000", jpeg_claiming(13000, 13000), 2, "truncated or corrupt"),
    Case("20000x20000 PNG bomb (400 MP, 1.2 GB decoded)", png_bomb(20000), 2, "more than the limit"),
    Case("100 MB of random bytes named .png", random_bytes(100 << 20), 2, "not an image file"),
]


def run(case: Case, source: Path, model: str, limit_gb: float) -> tuple[int, str, float, float]:
    """(exit code, first stderr line, seconds, peak RSS in GiB) of `img2img superres SOURCE`."""
    installed = shutil.which("img2img")
    command = [installed] if installed else [sys.executable, "-m", "cli"]
    env = dict(os.environ) if installed else {**os.environ, "PYTHONPATH": str(ROOT)}

    def limit() -> None:
        if case.limited:
            cap = int(limit_gb * GIB)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    output = source.with_name(source.stem + "_x4" + case.suffix)
    started = time.perf_counter()
    child = subprocess.Popen(
        [*command, "superres", str(source), "-o", str(output), "--model", model, "--device", "cpu"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=limit,
    )
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0 and output.exists():
        raise SystemExit(f"{case.name}: failed but left {output}")
    output.unlink(missing_ok=True)
    first = next((line for line in stderr.splitlines() if line.strip()), "")
    return os.waitstatus_to_exitcode(status), first, seconds, usage.ru_maxrss * 1024 / GIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="superres-x4")
    parser.add_argument("--limit-gb", type=float, default=8.0, help="address-space limit of the limited cases")
    parser.add_argument("--only", nargs="*", default=None, help="run the cases whose name contains one of these")
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    print(f"machine: {cpu}, {os.cpu_count()} cores; memory limit of the limited cases {args.limit_gb:g} GiB\n")
    print("| case | expected | exit | first stderr line | seconds | peak RSS |")
    print("|---|---|---|---|---|---|")
    failed = False
    for case in CASES:
        if args.only and not any(word in case.name for word in args.only):
            continue
        with tempfile.TemporaryDirectory() as scratch:
            source = case.make(Path(scratch))
            code, first, seconds, peak = run(case, source, args.model, args.limit_gb)
        ok = code == case.expect_exit and case.expect_stderr in first and "Traceback" not in first
        failed |= not ok
        expected = f"exit {case.expect_exit}" + (f", '{case.expect_stderr}'" if case.expect_stderr else "")
        print(f"| {case.name} | {expected} | {code}{'' if ok else ' FAIL'} | {first[:140]} | {seconds:.1f} | {peak:.2f} GiB |", flush=True)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
