"""Build the face-emoji set the shipped face generator is trained on.

No real face set of useful size ships in a package registry, so the face model learns from emoji
heads: the 64x64 images of Google (Noto, npm ``emoji-datasource-google``) and Twitter (Twemoji,
npm ``emoji-datasource-twitter``) whose ``emoji.json`` entry is a face or a person's head, every
skin-tone variant included. Each image is composited onto white (the packages ship RGBA) and
written as RGB PNG to ``<out>/<label>/<style>-<name>.png``, one folder per label:

- ``smiley``: Smileys & Emotion, the ``face-*`` subcategories (smiling, tongue, unwell, ...);
- ``person``: People & Body / person (baby, child, adult, older person, hair styles);
- ``gesture``: People & Body / person-gesture (frowning, pouting, gesturing, bowing, ...);
- ``role``: People & Body / person-role (health worker, cook, guard, royalty, ...);
- ``fantasy``: People & Body / person-fantasy (angel, mage, fairy, vampire, ...).

The folder names are the labels of the class-conditional model, and the layout is the one a
user's own data takes (`img2img train faces --data DIR [--conditional]`). There is no held-out
split: a generator is scored by FID/KID against the training images themselves.
``sources.json`` records the packages, licenses and counts.

Usage:
    python scripts/build_faces.py                     # -> data/faces-emoji
    python scripts/build_faces.py --out DIR --downloads data/downloads
"""

from __future__ import annotations

import argparse
import fnmatch
import io
from collections import Counter
from pathlib import Path

from PIL import Image

from build_translation_data import (
    EMOJI_SIZE,
    EMOJI_STYLES,
    EMOJI_VERSION,
    emoji_package_record,
    fail,
    npm_pack,
    png_bytes,
    read_emoji_package,
    write_files,
    write_json,
)

# Label -> (category, subcategory pattern) of emoji.json.
LABELS = {
    "smiley": ("Smileys & Emotion", "face-*"),
    "person": ("People & Body", "person"),
    "gesture": ("People & Body", "person-gesture"),
    "role": ("People & Body", "person-role"),
    "fantasy": ("People & Body", "person-fantasy"),
}
BACKGROUND = (255, 255, 255)


def face_labels(emoji: list[dict]) -> dict[str, str]:
    """Image name (without .png) -> label, for every face emoji and each of its skin tones."""
    labels = {}
    for entry in emoji:
        for label, (category, subcategory) in LABELS.items():
            if entry["category"] == category and fnmatch.fnmatchcase(entry["subcategory"], subcategory):
                for item in [entry, *(entry.get("skin_variations") or {}).values()]:
                    labels[item["image"].removesuffix(".png")] = label
    return labels


def on_white(data: bytes, where: str) -> bytes:
    """The RGBA emoji composited onto white, as RGB PNG bytes."""
    with Image.open(io.BytesIO(data)) as image:
        if image.size != (EMOJI_SIZE, EMOJI_SIZE):
            fail(f"{where} is {image.size[0]}x{image.size[1]}, not {EMOJI_SIZE}x{EMOJI_SIZE}")
        rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
    return png_bytes(Image.alpha_composite(canvas, rgba).convert("RGB"))


def build_faces(out: Path, downloads: Path) -> None:
    files: dict[Path, bytes] = {}
    packages = {}
    counts: dict[str, Counter] = {}
    for style, package in EMOJI_STYLES.items():
        tarball = npm_pack(package, EMOJI_VERSION, downloads)
        images, emoji, note = read_emoji_package(tarball, style)
        labels = face_labels(emoji)
        missing = sorted(name for name in labels if name not in images)
        counts[style] = Counter()
        for name, label in sorted(labels.items()):
            if name in images:
                files[out / label / f"{style}-{name}.png"] = on_white(images[name], f"{package} {name}.png")
                counts[style][label] += 1
        packages[style] = {
            **emoji_package_record(style, tarball, note),
            "faces": dict(sorted(counts[style].items())),
            "faces_without_image": len(missing),
        }
    written, kept, removed = write_files(files, [out / label for label in LABELS])
    total = Counter()
    for style_counts in counts.values():
        total.update(style_counts)
    write_json(
        {
            "description": f"face and head emoji of Google (Noto) and Twitter (Twemoji), {EMOJI_SIZE}x"
            f"{EMOJI_SIZE}, composited onto white, RGB PNG; folder = label",
            "labels": {label: f"{category} / {subcategory}" for label, (category, subcategory) in LABELS.items()},
            "packages": packages,
            "counts": dict(sorted(total.items())),
            "images": sum(total.values()),
        },
        out / "sources.json",
    )
    print(
        f"faces: {sum(total.values())} images in {out} "
        + ", ".join(f"{label} {total[label]}" for label in LABELS)
        + f" (wrote {written}, kept {kept}, removed {removed})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/faces-emoji"), help="output folder (default: %(default)s)")
    parser.add_argument(
        "--downloads", type=Path, default=Path("data/downloads"), help="cache of the npm tarballs (default: %(default)s)"
    )
    args = parser.parse_args()
    build_faces(args.out, args.downloads)


if __name__ == "__main__":
    main()
