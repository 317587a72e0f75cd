"""scripts/build_translation_data.py --only openmoji on a small OpenMoji tarball of the real
layout: which pairs it keeps, how it splits them, what it writes and that a rebuild changes
nothing."""

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_translation_data.py"

OUTLINE = (
    '<svg viewBox="0 0 72 72" xmlns="http://www.w3.org/2000/svg">'
    '<circle cx="36" cy="36" r="23" fill="none" stroke="#000000" stroke-width="2"/></svg>'
)
COLOURED = (
    '<svg viewBox="0 0 72 72" xmlns="http://www.w3.org/2000/svg">'
    '<circle cx="36" cy="36" r="23" fill="#FCEA2B"/>'
    '<circle cx="36" cy="36" r="23" fill="none" stroke="#000000" stroke-width="2"/></svg>'
)

# name -> (group, skin tone, colour drawing). 1F600 falls in the training split and 1F267 in
# validation (SHA-1 of the name modulo 10).
EMOJI = {
    "1F600": ("smileys-emotion", "", COLOURED),
    "1F267": ("objects", "", COLOURED),
    "1F44B-1F3FB": ("people-body", "1F3FB", COLOURED),  # a skin-tone variant
    "1F1E9-1F1EA": ("flags", "", COLOURED),  # a flag
    "2753": ("symbols", "", OUTLINE),  # its colour drawing is its outline
}


def openmoji_tarball(downloads: Path) -> None:
    """downloads/openmoji-17.0.0.tgz with the package's folders and data files."""
    downloads.mkdir()
    files = {"package/package.json": json.dumps({"name": "openmoji", "license": "CC-BY-SA-4.0"})}
    files["package/data/openmoji.json"] = json.dumps(
        [{"hexcode": name, "group": group, "skintone": tone} for name, (group, tone, _) in EMOJI.items()]
    )
    for name, (_, _, colour) in EMOJI.items():
        files[f"package/black/svg/{name}.svg"] = OUTLINE
        files[f"package/color/svg/{name}.svg"] = colour
    with tarfile.open(downloads / "openmoji-17.0.0.tgz", "w:gz") as tar:
        for path, text in files.items():
            data = text.encode()
            member = tarfile.TarInfo(path)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))


def build(out: Path, downloads: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "openmoji", "--out", str(out), "--downloads", str(downloads)],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_openmoji_keeps_the_pairs_with_one_right_colouring_and_splits_them_by_name(tmp_path):
    downloads, out = tmp_path / "downloads", tmp_path / "data"
    openmoji_tarball(downloads)
    build(out, downloads)

    root = out / "openmoji"
    written = sorted(str(path.relative_to(root)) for path in root.rglob("*.png"))
    assert written == [
        "color/train/1F600.png", "color/val/1F267.png", "outline/train/1F600.png", "outline/val/1F267.png",
    ]  # fmt: skip
    with Image.open(root / "outline/train/1F600.png") as outline, Image.open(root / "color/train/1F600.png") as colour:
        assert outline.size == colour.size == (64, 64) and outline.mode == colour.mode == "RGBA"
        centre_outline, centre_colour = np.asarray(outline)[32, 32], np.asarray(colour)[32, 32]
    assert centre_outline[3] == 0  # inside the outline: transparent
    assert tuple(centre_colour) == (0xFC, 0xEA, 0x2B, 255)  # the colour drawing's fill
    sources = json.loads((root / "sources.json").read_text())
    assert sources["counts"] == {"pairs": 2, "train": 1, "val": 1}
    assert sources["left_out"] == {
        "skin_tone_variants": 1, "group flags": 1, "group component": 0, "colour_drawing_same_as_outline": 1,
    }  # fmt: skip
    assert sources["package"]["images_license"].startswith("CC-BY-SA-4.0")

    assert "(wrote 0, kept 4, removed 0)" in build(out, downloads)
