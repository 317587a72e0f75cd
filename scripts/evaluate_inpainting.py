"""Score inpainting ONNX models on the held-out set, beside OpenCV's Telea and Navier-Stokes fills.

The held-out set is that of training validation (``img2img.data.masks.validation_set``): every
image of VAL_DIR centre-cropped to a --size square, with its fixed hole mask for --seed. Each
method fills the holes without seeing what was under them; the fills are scored as the runtime
delivers them (the original pixels outside the hole):

- PSNR and SSIM (RGB, 8-bit) of the whole image and of the hole alone (PSNR-hole is the MSE of
  the hole pixels only, so it is not inflated by the pixels every method keeps);
- the VGG19 feature distance of the whole image.

Usage:
    python scripts/evaluate_inpainting.py data/photos/val --model weights/inpaint.onnx \\
        --json runs/eval-inpaint.json --sheet runs/eval-inpaint.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from img2img.data.masks import MaskSettings, validation_set
from img2img.errors import Img2ImgError
from img2img.evaluate.inpaint import (
    evaluate_inpainting,
    inpainting_sheet,
    model_filler,
    opencv_fillers,
)
from img2img.evaluate.sheets import save_sheet
from img2img.files.atomic import write_bytes_atomically


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("val_dir", type=Path, help="held-out images (searched recursively)")
    parser.add_argument("--model", action="append", default=[], help="inpainting ONNX model (repeatable)")
    parser.add_argument("--size", type=int, default=256, help="side of the square crops in pixels")
    parser.add_argument("--seed", type=int, default=0, help="picks the held-out masks")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda: runs the models and the metrics")
    parser.add_argument("--no-vgg", action="store_true", help="skip the VGG19 feature distance (slow on the CPU)")
    parser.add_argument("--json", type=Path, help="write every number and the settings here")
    parser.add_argument("--sheet", type=Path, help="comparison sheet of the first --count images")
    parser.add_argument("--count", type=int, default=8, help="rows of the sheet")
    args = parser.parse_args(argv)
    if args.size < 16:
        parser.error(f"--size must be at least 16 (the metrics' smallest image), got {args.size}")

    mask_settings = MaskSettings()
    methods = opencv_fillers()
    try:
        items = validation_set(args.val_dir, args.size, seed=args.seed, settings=mask_settings)
        for model_path in args.model:
            name = Path(model_path).stem
            if name in methods:
                parser.error(f"two methods are named {name!r}; give the models distinct file names")
            methods[name] = model_filler(model_path, device=args.device)
        started = time.perf_counter()
        table, examples = evaluate_inpainting(
            items,
            methods,
            device=args.device,
            vgg=not args.no_vgg,
            sheet_count=args.count if args.sheet else 0,
        )
    except (Img2ImgError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - started

    table.title = f"inpainting on {args.val_dir}, {args.size}x{args.size} crops, mask seed {args.seed}"
    table.settings.update(
        {
            "val_dir": str(args.val_dir),
            "size": args.size,
            "seed": args.seed,
            "images": len(items),
            "models": args.model,
            "masks": {
                "min_coverage": mask_settings.min_coverage,
                "max_coverage": mask_settings.max_coverage,
                "kinds": list(mask_settings.kinds),
            },
            "seconds": round(seconds, 1),
        }
    )
    print(table.render())
    print(f"{seconds:.0f} s")
    if args.json:
        write_bytes_atomically(args.json, json.dumps(table.to_json(), indent=2).encode())
    if args.sheet and examples:
        save_sheet(inpainting_sheet(examples, tile_size=min(args.size, 256)), args.sheet)
    return 1 if table.failures else 0


if __name__ == "__main__":
    sys.exit(main())
