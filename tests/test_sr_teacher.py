"""scripts/build_sr_teacher.py: a teacher's LR/HR pairs for distillation, with a nearest-neighbour
x4 model standing in for the teacher."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import build_upscaler

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_sr_teacher.py"


def build(photos: Path, out: Path, teacher: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), "--photos", str(photos), "--out", str(out), "--teacher", str(teacher),
               "--lr-size", "16", "--threads", "1", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_pairs_hold_the_teacher_output_or_the_photo_and_a_rerun_keeps_them(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (72, 76, 3), dtype=np.uint8) for _ in range(2)]
    for index, array in enumerate(arrays):
        Image.fromarray(array).save(photos / f"{index}.png")
    teacher = build_upscaler(tmp_path / "nearest.onnx", scale=4, name="nearest")
    out = tmp_path / "set"
    result = build(photos, out, teacher, "--count", "12", "--clean-prob", "0.5")
    assert result.returncode == 0, result.stderr
    clean = degraded = 0
    for index in range(12):
        lr = np.asarray(Image.open(out / "lr" / f"{index:05d}.png"))
        hr = np.asarray(Image.open(out / "hr" / f"{index:05d}.png"))
        assert lr.shape == (16, 16, 3) and hr.shape == (64, 64, 3)
        if np.array_equal(hr, np.repeat(np.repeat(lr, 4, axis=0), 4, axis=1)):
            degraded += 1  # the teacher's output for this LR
        else:
            # A clean sample: the target is a crop of one of the photos itself.
            assert any(
                np.array_equal(array[top : top + 64, left : left + 64], hr)
                for array in arrays for top in range(9) for left in range(13)
            )
            clean += 1
    assert clean and degraded
    record = json.loads((out / "teacher.json").read_text())
    assert record["count"] == 12 and record["settings"]["teacher"]["name"] == "nearest"

    before = {path.name: path.stat().st_mtime_ns for path in (out / "hr").iterdir()}
    result = build(photos, out, teacher, "--count", "14", "--clean-prob", "0.5")
    assert result.returncode == 0 and "made 2 now" in result.stdout
    assert all((out / "hr" / name).stat().st_mtime_ns == stamp for name, stamp in before.items())

    # Other settings draw other samples: the set starts again rather than mixing the two.
    result = build(photos, out, teacher, "--count", "3", "--clean-prob", "0")
    assert result.returncode == 0 and "made 3 now" in result.stdout
    assert sorted(path.name for path in (out / "lr").iterdir()) == ["00000.png", "00001.png", "00002.png"]


def test_a_teacher_of_another_scale_is_refused(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.zeros((72, 72, 3), np.uint8)).save(photos / "a.png")
    teacher = build_upscaler(tmp_path / "x2.onnx", scale=2, name="x2")
    result = build(photos, tmp_path / "set", teacher, "--count", "2")
    assert result.returncode != 0 and "x2, not x4" in result.stderr
    assert not list((tmp_path / "set").glob("*/*.png"))
