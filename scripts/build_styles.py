"""Build the style-image set: the paintings the style models learn from and are judged on.

Sources, all Debian packages (downloaded with `apt-get download`, never installed):

- opencv-doc: Van Gogh, The Starry Night (`starry_night.jpg`, 752x600);
- visp-images-data: Klimt, The Kiss (`Klimt.png`, 558x560);
- mate-backgrounds: the `abstract/` wallpapers (the Elephants painting and five digital works);
- plasma-workspace-wallpapers: the digital-art wallpapers (the photographs among them belong to
  the photo set, not here);
- wesnoth-1.16-data: the game's story art, 16 painted landscapes with visible brushwork (two
  near-copies of others left out), so that flat low-poly wallpapers are not most of what an
  arbitrary-style model learns painting from.

Each image is scaled (Lanczos, antialiased) so its shorter side is at most `--size` pixels and
written as PNG to `<out>/train` or, for the held-out styles (`HELD_OUT`: never seen in training,
so validation shows how AdaIN does on a new painting), to `<out>/val`. The two paintings the
shipped per-style networks learn are also written to `<out>/paintings/` for those runs.
`<out>/sources.json` records each file's package, path inside it and license.

Usage:
    python scripts/build_styles.py                   # apt-get download the packages
    python scripts/build_styles.py --debs /tmp/debs  # use .deb files already downloaded
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from PIL import Image

# package -> (path inside the package, output name, license)
SOURCES: dict[str, list[tuple[str, str, str]]] = {
    "opencv-doc": [
        ("usr/share/doc/opencv-doc/examples/data/starry_night.jpg", "starry-night",
         "painting public domain (Van Gogh, 1889); file from opencv-doc, Apache-2.0"),
    ],
    "visp-images-data": [
        ("usr/share/visp-images-data/ViSP-images/Klimt/Klimt.png", "the-kiss",
         "painting public domain (Klimt, 1908); file from visp-images-data, GPL-2+"),
    ],
    "mate-backgrounds": [
        (f"usr/share/backgrounds/mate/abstract/{name}", f"mate-{Path(name).stem.lower().split('_')[0]}", "GPL-2+")
        for name in ("Elephants_5640x3172.jpg", "Flow.png", "Gulp.png", "Silk.png", "Spring.png", "Waves.png")
    ],
    "plasma-workspace-wallpapers": [
        (f"usr/share/wallpapers/{name}/contents/images/{size}", f"plasma-{name.lower()}", "LGPL-3")
        for name, size in (
            ("Altai", "2560x1600.png"), ("Autumn", "2560x1600.jpg"), ("Canopee", "2560x1600.png"),
            ("Cascade", "2560x1600.png"), ("Cluster", "2560x1600.png"), ("Elarun", "2560x1600.png"),
            ("Flow", "2560x1600.jpg"), ("FlyingKonqui", "2560x1600.png"), ("Honeywave", "2560x1600.jpg"),
            ("IceCold", "2560x1600.png"), ("Kay", "2560x1600.png"), ("Kokkini", "2560x1600.png"),
            ("MilkyWay", "2560x1600.png"), ("Opal", "2560x1600.png"), ("PastelHills", "2560x1600.png"),
            ("Patak", "2560x1600.png"), ("SafeLanding", "1622x2880.jpg"), ("Shell", "2560x1600.jpg"),
            ("Volna", "2560x1600.png"),
        )
    ],
    "wesnoth-1.16-data": [
        (f"usr/share/games/wesnoth/1.16/data/core/images/story/{name}.jpg", f"wesnoth-{name}",
         "GPL-2+ (Battle for Wesnoth art)")
        for name in (
            "grim-altar", "landscape-battlefield", "landscape-bridge", "landscape-castle", "landscape-coast",
            "landscape-hills-01", "landscape-hills-02", "landscape-mountains-01", "landscape-mountains-02",
            "landscape-mountains-03", "landscape-mountains-04", "landscape-mountains-05", "landscape-plain",
            "swamp-01", "swamp-02", "swamp-03",
        )
    ],
}
# Kept out of training: a painting and a digital work the AdaIN model is validated on unseen.
HELD_OUT = {"mate-elephants", "plasma-volna"}
# Written again to paintings/ for the per-style networks.
PAINTINGS = {"starry-night", "the-kiss"}


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def find_deb(folder: Path, package: str) -> Path:
    matches = sorted(folder.glob(f"{package}_*.deb"))
    if len(matches) != 1:
        fail(f"expected one {package}_*.deb in {folder}, found {len(matches)}; `apt-get download {package}` there")
    return matches[0]


def find_member(deb: Path, member: str, unpacked: Path) -> Path:
    """The path of `member` once `deb` is unpacked under `unpacked` (unpacking once per package)."""
    marker = unpacked / f".{deb.name}.done"
    if not marker.exists():
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        marker.touch()
    path = unpacked / member
    if not path.is_file():
        # Some wallpaper folders ship a different largest size; take the largest image there.
        candidates = sorted(path.parent.glob("*.*"), key=lambda p: p.stat().st_size)
        if not candidates:
            fail(f"{deb.name} has no {member}; the package layout changed, update SOURCES")
        path = candidates[-1]
    return path


def build(debs: Path, out: Path, size: int) -> None:
    records = []
    with tempfile.TemporaryDirectory(prefix="img2img-styles-") as scratch:
        for package, entries in SOURCES.items():
            deb = find_deb(debs, package)
            for member, name, license in entries:
                source = find_member(deb, member, Path(scratch))
                with Image.open(source) as image:
                    image = image.convert("RGB")
                    factor = min(1.0, size / min(image.size))
                    if factor < 1.0:
                        new_size = (round(image.width * factor), round(image.height * factor))
                        image = image.resize(new_size, Image.Resampling.LANCZOS)
                    split = "val" if name in HELD_OUT else "train"
                    folders = [split] + (["paintings"] if name in PAINTINGS else [])
                    for folder in folders:
                        (out / folder).mkdir(parents=True, exist_ok=True)
                        image.save(out / folder / f"{name}.png")
                records.append(
                    {"name": name, "split": split, "package": package, "deb": deb.name,
                     "member": str(source.relative_to(scratch)), "size": list(image.size), "license": license}
                )
    (out / "sources.json").write_text(json.dumps(records, indent=2) + "\n")
    held_out = sum(record["split"] == "val" for record in records)
    print(f"{len(records)} style images: {len(records) - held_out} train, {held_out} val in {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--debs", type=Path, help="folder holding the .deb files (default: apt-get download them)")
    parser.add_argument("--out", type=Path, default=Path("data/styles"), help="output folder (default: %(default)s)")
    parser.add_argument(
        "--size", type=int, default=512, help="cap on the shorter side, in pixels (default: %(default)s)"
    )
    args = parser.parse_args()
    if args.debs is not None:
        if not args.debs.is_dir():
            fail(f"--debs {args.debs} is not a folder")
        build(args.debs, args.out, args.size)
        return
    with tempfile.TemporaryDirectory(prefix="img2img-debs-") as tmp:
        try:
            subprocess.run(["apt-get", "download", *SOURCES], cwd=tmp, check=True)
        except (OSError, subprocess.CalledProcessError) as error:
            fail(f"`apt-get download {' '.join(SOURCES)}` failed ({error}); run `apt-get update` first or pass --debs")
        build(Path(tmp), args.out, args.size)


if __name__ == "__main__":
    main()
