"""Build the natural-photo set used to train and validate the super-resolution models.

The photos come from four Debian packages:

- gcompris-qt-data: WebP photos stored inside Qt resource (``.rcc``) files,
- lomiri-wallpapers-16.04: wallpaper photos (CC-BY-4.0, CC-BY-SA-4.0, CC0-1.0),
- plasma-workspace-wallpapers: the photographic wallpapers,
- mate-backgrounds: the ``nature`` wallpapers.

Every photo is downscaled by 2, so the blocks and ringing of its JPEG or lossy-WebP encoding
fall below the pixel grid and the set can serve as clean high-resolution targets, and capped at
``--max-size`` pixels on its long side; both happen in one antialiased Lanczos resize. Images
whose short side would fall below ``--min-short-side`` (icons, thin strips) are skipped. The
result is written as PNG to ``<out>/train`` and ``<out>/val`` with a fixed split by file, plus
``<out>/sources.json``, which records for every image where it came from and the license and
copyright holders that its package's ``debian/copyright`` file names for it.

Usage:
    python scripts/build_photos.py                      # apt-get download the packages
    python scripts/build_photos.py --debs /tmp/debs     # use .deb files already downloaded

Running it again gives the same files; images whose source and settings did not change are kept.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from PIL import Image

PACKAGES = (
    "gcompris-qt-data",
    "lomiri-wallpapers-16.04",
    "plasma-workspace-wallpapers",
    "mate-backgrounds",
)
# Short prefixes for output file names, so a file name says which package it came from.
PREFIXES = {
    "gcompris-qt-data": "gcompris",
    "lomiri-wallpapers-16.04": "lomiri",
    "plasma-workspace-wallpapers": "plasma",
    "mate-backgrounds": "mate",
}
GCOMPRIS_RCC = (
    "erase.rcc",
    "explore_monuments.rcc",
    "explore_world_animals.rcc",
    "explore_farm_animals.rcc",
    "explore_world_music.rcc",
    "clickgame.rcc",
)
# lomiri-wallpapers-16.04 ships two wallpapers that are not photographs.
LOMIRI_SKIP = ("analogpattern", "umang")
# The photographic plasma wallpapers; the others in the package are digital art.
PLASMA_PHOTOS = (
    "BytheWater",
    "ColdRipple",
    "ColorfulCups",
    "DarkestHour",
    "EveningGlow",
    "FallenLeaf",
    "Grey",
    "Kite",
    "OneStandsOut",
    "Path",
    "summer_1am",
)


@dataclass(frozen=True)
class Candidate:
    """One photo found in a package, not yet decoded."""

    package: str
    group: str  # photos of one kind (a package, or one GCompris activity), split evenly
    name: str  # output file stem, unique over the whole set
    path: str  # where it is inside the unpacked package (an rcc entry gets "file.rcc:/entry")
    upstream: tuple[str, ...]  # spellings of its path in debian/copyright, to find its license
    data: bytes


@dataclass(frozen=True)
class CopyrightStanza:
    patterns: tuple[str, ...]
    copyright: str
    license: str
    comment: str


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


# --------------------------------------------------------------------------------------------
# Getting and unpacking the packages


def download_debs(dest: Path) -> None:
    try:
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=dest, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        fail(
            f"`apt-get download {' '.join(PACKAGES)}` failed ({err}). Run `apt-get update` "
            "first, or download the four .deb files yourself and pass their folder with --debs."
        )


def find_deb(folder: Path, package: str) -> Path:
    matches = sorted(folder.glob(f"{package}_*.deb"))
    if not matches:
        fail(f"no {package}_*.deb in {folder}; download it with `apt-get download {package}`.")
    if len(matches) > 1:
        names = ", ".join(m.name for m in matches)
        fail(f"several versions of {package} in {folder} ({names}); keep only one.")
    return matches[0]


def unpack(deb: Path, dest: Path) -> str:
    """Extracts ``deb`` into ``dest`` and returns the package version."""
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    version = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True
    )
    return version.stdout.strip()


# --------------------------------------------------------------------------------------------
# debian/copyright (machine-readable format 1.0)


def parse_copyright(text: str) -> list[CopyrightStanza]:
    """Returns the ``Files:`` stanzas in file order (in DEP-5 the last match wins)."""
    stanzas = []
    for block in text.split("\n\n"):
        fields: dict[str, list[str]] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key is not None:
                fields[key].append(line.strip())
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = [value.strip()] if value.strip() else []
        if "files" not in fields or "license" not in fields:
            continue
        patterns = tuple(p for line in fields["files"] for p in line.split())
        stanzas.append(
            CopyrightStanza(
                patterns=patterns,
                copyright="; ".join(fields.get("copyright", [])),
                # The first line of a License field is its short name; the rest is its text.
                license=fields["license"][0] if fields["license"] else "",
                comment=" ".join(fields.get("comment", [])),
            )
        )
    return stanzas


def find_license(stanzas: list[CopyrightStanza], upstream: tuple[str, ...]) -> CopyrightStanza:
    match = None
    for stanza in stanzas:
        # DEP-5 globs: "*" also matches "/", which is what fnmatch does.
        if any(fnmatch.fnmatchcase(u, p) for p in stanza.patterns for u in upstream):
            match = stanza
    if match is None:
        fail(f"debian/copyright names no license for {upstream[0]}")
    return match


# --------------------------------------------------------------------------------------------
# Qt resource files


def rcc_entries(blob: bytes) -> dict[int, str]:
    """Maps the byte offset of each file's payload inside an ``.rcc`` file to its resource path.

    Format (qtbase/src/corelib/io/qresource.cpp): header "qres", version, tree, data and names
    offsets (big endian); tree nodes of 14 bytes (version 1) or 22 bytes (version 2+, which add
    a modification time); a directory node holds a child count and first child index, a file
    node a data offset whose payload is preceded by its 4-byte size.
    """
    if blob[:4] != b"qres":
        raise ValueError("not a Qt resource file")
    version, tree, data, names = struct.unpack(">4I", blob[4:20])
    node_size = 14 if version == 1 else 22

    def name_at(offset: int) -> str:
        (length,) = struct.unpack(">H", blob[names + offset : names + offset + 2])
        start = names + offset + 6  # skip the length and a 4-byte hash
        return blob[start : start + 2 * length].decode("utf-16-be")

    entries: dict[int, str] = {}
    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        node = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", blob[node : node + 6])
        path = prefix + "/" + name_at(name_offset) if index else ""
        if flags & 2:  # directory
            count, first = struct.unpack(">II", blob[node + 6 : node + 14])
            stack.extend((child, path) for child in range(first, first + count))
        else:
            (offset,) = struct.unpack(">I", blob[node + 10 : node + 14])
            entries[data + offset + 4] = path
    return entries


def carve_webp(blob: bytes) -> Iterator[tuple[int, bytes]]:
    """Yields ``(offset, bytes)`` of every WebP file stored uncompressed inside ``blob``."""
    start = blob.find(b"RIFF")
    while start >= 0:
        if blob[start + 8 : start + 12] == b"WEBP":
            (size,) = struct.unpack("<I", blob[start + 4 : start + 8])
            yield start, blob[start : start + size + 8]
            start = blob.find(b"RIFF", start + size + 8)
        else:
            start = blob.find(b"RIFF", start + 4)


# --------------------------------------------------------------------------------------------
# Where each package keeps its photos


def gcompris_photos(root: Path) -> Iterator[Candidate]:
    for rcc_name in GCOMPRIS_RCC:
        rcc = root / "usr/share/gcompris-qt/rcc" / rcc_name
        if not rcc.is_file():
            fail(f"{rcc} is missing from gcompris-qt-data; was the package layout changed?")
        blob = rcc.read_bytes()
        entries = rcc_entries(blob)
        for offset, data in carve_webp(blob):
            if offset not in entries:
                fail(f"the WebP at byte {offset} of {rcc_name} is not in its resource tree")
            entry = entries[offset]  # e.g. /gcompris/src/activities/erase/resource/calf.webp
            source = entry.removeprefix("/gcompris/")
            stem = source.rsplit(".", 1)[0]
            parts = [p for p in stem.removeprefix("src/activities/").split("/") if p != "resource"]
            yield Candidate(
                package="gcompris-qt-data",
                group=f"gcompris-qt-data:{rcc_name}",
                name="-".join(parts),
                path=f"/usr/share/gcompris-qt/rcc/{rcc_name}:{entry}",
                # The build converted the upstream JPEG/PNG files to WebP; debian/copyright
                # names the upstream files.
                upstream=tuple(f"{stem}.{ext}" for ext in ("webp", "jpg", "jpeg", "png", "JPG")),
                data=data,
            )


def lomiri_photos(root: Path) -> Iterator[Candidate]:
    for path in sorted((root / "usr/share/backgrounds").glob("*.jpg")):
        if path.name.startswith(LOMIRI_SKIP):
            continue
        yield Candidate(
            package="lomiri-wallpapers-16.04",
            group="lomiri-wallpapers-16.04",
            name=path.stem,
            path=f"/usr/share/backgrounds/{path.name}",
            upstream=(f"16.04/{path.name}",),
            data=path.read_bytes(),
        )


def plasma_photos(root: Path) -> Iterator[Candidate]:
    for name in PLASMA_PHOTOS:
        relative = f"{name}/contents/images/2560x1600.jpg"
        path = root / "usr/share/wallpapers" / relative
        if not path.is_file():
            fail(f"{path} is missing from plasma-workspace-wallpapers")
        yield Candidate(
            package="plasma-workspace-wallpapers",
            group="plasma-workspace-wallpapers",
            name=name,
            path=f"/usr/share/wallpapers/{relative}",
            upstream=(relative,),
            data=path.read_bytes(),
        )


def mate_photos(root: Path) -> Iterator[Candidate]:
    for path in sorted((root / "usr/share/backgrounds/mate/nature").glob("*.jpg")):
        yield Candidate(
            package="mate-backgrounds",
            group="mate-backgrounds",
            name=path.stem,
            path=f"/usr/share/backgrounds/mate/nature/{path.name}",
            upstream=(f"nature/{path.name}",),
            data=path.read_bytes(),
        )


COLLECTORS: dict[str, Callable[[Path], Iterator[Candidate]]] = {
    "gcompris-qt-data": gcompris_photos,
    "lomiri-wallpapers-16.04": lomiri_photos,
    "plasma-workspace-wallpapers": plasma_photos,
    "mate-backgrounds": mate_photos,
}


# --------------------------------------------------------------------------------------------
# Resizing, splitting and writing


def target_size(size: tuple[int, int], max_size: int) -> tuple[int, int]:
    """Half the size, then the long side capped at ``max_size``."""
    width, height = size[0] / 2, size[1] / 2
    factor = min(1.0, max_size / max(width, height))
    return max(1, round(width * factor)), max(1, round(height * factor))


def split_validation(records: list[dict], val_fraction: float, min_val: int) -> set[str]:
    """Chooses the validation files: in every group the files whose source id hashes lowest.

    Taking a share of each group (a package, or one GCompris activity) keeps every kind of photo
    in validation; hashing the source id (not the order of discovery) keeps a file's split fixed
    from one run to the next.
    """
    by_group: dict[str, list[dict]] = {}
    for record in records:
        by_group.setdefault(record["group"], []).append(record)
    ranked = {
        group: sorted(items, key=lambda r: hashlib.sha1(r["source_id"].encode()).hexdigest())
        for group, items in by_group.items()
    }
    take = {g: max(1, round(val_fraction * len(items))) for g, items in ranked.items()}
    # Top up from the largest groups until the validation set is big enough to report on.
    while sum(take.values()) < min(min_val, len(records) // 2):
        group = max(ranked, key=lambda g: len(ranked[g]) - take[g])
        take[group] += 1
    return {r["file"] for g, items in ranked.items() for r in items[: take[g]]}


def write_png(image: Image.Image, dest: Path) -> None:
    # Write next to the target and rename, so an interrupted run never leaves half a file.
    tmp = dest.with_suffix(".png.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, dest)


def collect(
    debs: Path, max_size: int, min_short_side: int
) -> tuple[list[dict], dict[str, bytes], dict[str, dict]]:
    """Unpacks the packages and lists their photos.

    Returns one record per photo (what ``sources.json`` keeps), the encoded bytes of each photo
    by output file name, and per-package information.
    """
    records: list[dict] = []
    data: dict[str, bytes] = {}
    packages: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="img2img-photos-") as tmp:
        for package in PACKAGES:
            root = Path(tmp) / package
            version = unpack(find_deb(debs, package), root)
            copyright_file = f"/usr/share/doc/{package}/copyright"
            if not (root / copyright_file.lstrip("/")).is_file():
                fail(f"{package} has no {copyright_file}")
            stanzas = parse_copyright((root / copyright_file.lstrip("/")).read_text("utf-8"))
            info = {"version": version, "copyright": copyright_file, "skipped": 0}
            packages[package] = info
            for candidate in COLLECTORS[package](root):
                with Image.open(io.BytesIO(candidate.data)) as probe:
                    size = probe.size
                if min(size) // 2 < min_short_side:  # icons and thin strips, not photos
                    info["skipped"] += 1
                    continue
                file = f"{PREFIXES[package]}-{candidate.name}.png"
                if file in data:
                    fail(f"two photos would be written as {file}")
                data[file] = candidate.data
                stanza = find_license(stanzas, candidate.upstream)
                records.append({
                    "file": file,
                    "package": package,
                    "group": candidate.group,
                    "version": version,
                    "source_id": f"{package}:{candidate.path}",
                    "path": candidate.path,
                    "sha1": hashlib.sha1(candidate.data).hexdigest(),
                    "original_size": list(size),
                    "size": list(target_size(size, max_size)),
                    "license": stanza.license,
                    "copyright": stanza.copyright,
                    "comment": stanza.comment,
                })
    return records, data, packages


def write_photos(
    records: list[dict], data: dict[str, bytes], out: Path, previous: dict[str, dict]
) -> tuple[int, int, int]:
    """Writes every record's PNG into ``out/<split>/`` and deletes files no record names.

    A PNG is kept when it exists and ``previous`` (the last run's records, made with the same
    settings) says it came from the same source bytes. Returns (written, kept, removed).
    """
    written = kept = 0
    for split in ("train", "val"):
        (out / split).mkdir(parents=True, exist_ok=True)
    for record in records:
        dest = out / record["split"] / record["file"]
        old = previous.get(record["file"], {})
        if dest.is_file() and (old.get("sha1"), old.get("split")) == (
            record["sha1"],
            record["split"],
        ):
            kept += 1
            continue
        with Image.open(io.BytesIO(data[record["file"]])) as image:
            # One Lanczos resize straight to the final size: halving and capping in one filter.
            small = image.convert("RGB").resize(tuple(record["size"]), Image.Resampling.LANCZOS)
        write_png(small, dest)
        written += 1

    # Files that an earlier run wrote and this one does not (another split, other settings).
    planned = {(r["split"], r["file"]) for r in records}
    removed = 0
    for split in ("train", "val"):
        for path in sorted((out / split).iterdir()):
            if (split, path.name) not in planned:
                path.unlink()
                removed += 1
    return written, kept, removed


def build(
    debs: Path, out: Path, max_size: int, min_short_side: int, val_fraction: float, min_val: int
) -> None:
    settings = {
        "downscale": 2,
        "filter": "lanczos",
        "max_size": max_size,
        "min_short_side": min_short_side,
        "val_fraction": val_fraction,
        "min_val": min_val,
    }
    sources_path = out / "sources.json"
    previous: dict[str, dict] = {}
    if sources_path.is_file():
        old = json.loads(sources_path.read_text())
        if old.get("settings") == settings:
            previous = {r["file"]: r for r in old["images"]}

    records, data, packages = collect(debs, max_size, min_short_side)
    val = split_validation(records, val_fraction, min_val)
    for record in records:
        record["split"] = "val" if record["file"] in val else "train"
    written, kept, removed = write_photos(records, data, out, previous)

    for package, info in packages.items():
        mine = [r for r in records if r["package"] == package]
        info["train"] = sum(r["split"] == "train" for r in mine)
        info["val"] = sum(r["split"] == "val" for r in mine)
        info["licenses"] = dict(sorted(Counter(r["license"] for r in mine).items()))
    records.sort(key=lambda r: (r["split"], r["file"]))
    sources = {"settings": settings, "packages": packages, "images": records}
    tmp_sources = sources_path.with_suffix(".json.tmp")
    tmp_sources.write_text(json.dumps(sources, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp_sources, sources_path)

    print(f"{'package':28s} {'version':12s} {'train':>5s} {'val':>4s} {'skipped':>7s}  licenses")
    for package, info in packages.items():
        licenses = ", ".join(f"{name} x{count}" for name, count in info["licenses"].items())
        print(
            f"{package:28s} {info['version']:12s} {info['train']:5d} {info['val']:4d} "
            f"{info['skipped']:7d}  {licenses}"
        )
    n_val = sum(r["split"] == "val" for r in records)
    print(
        f"{len(records)} photos: {len(records) - n_val} train, {n_val} val in {out} "
        f"(wrote {written}, kept {kept} up to date, removed {removed} stale)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--debs",
        type=Path,
        help="folder holding the four .deb files (default: apt-get download them)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("data/photos"), help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=1024,
        help="cap on the long side after halving, in pixels (default: %(default)s)",
    )
    parser.add_argument(
        "--min-short-side",
        type=int,
        default=256,
        help="skip images whose short side is below this after halving, in pixels; drops icons "
        "and thin strips (default: %(default)s)",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.12,
        help="share of each group of photos kept for validation (default: %(default)s)",
    )
    parser.add_argument(
        "--min-val", type=int, default=12, help="smallest validation set (default: %(default)s)"
    )
    args = parser.parse_args()
    if not 0.0 < args.val_fraction < 1.0:
        fail("--val-fraction must be between 0 and 1")
    options = (args.max_size, args.min_short_side, args.val_fraction, args.min_val)

    if args.debs is not None:
        if not args.debs.is_dir():
            fail(f"--debs {args.debs} is not a folder")
        build(args.debs, args.out, *options)
        return
    with tempfile.TemporaryDirectory(prefix="img2img-debs-") as tmp:
        download_debs(Path(tmp))
        build(Path(tmp), args.out, *options)


if __name__ == "__main__":
    main()
