"""`img2img superres DIR -o OUTDIR`: the folder mode as users run it, in a separate process."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from image_cases import write_image_cases
from test_cli_superres import img2img


def test_a_real_world_folder_finishes_and_reports_the_bad_files(weights: Path, tmp_path: Path) -> None:
    cases = write_image_cases(tmp_path / "in")
    result = img2img("superres", tmp_path / "in", "-o", tmp_path / "out", "--scale", "2", weights=weights)
    assert result.returncode == 1, result.stderr  # some files are bad

    good = {name: case for name, case in cases.items() if case.good}
    bad = {name: case for name, case in cases.items() if not case.good and case.reason_contains}
    for name, case in good.items():
        output = (tmp_path / "out" / name).with_suffix(".png")
        with Image.open(output) as written:
            assert written.size == tuple(2 * side for side in case.expect["size"]), name
            assert written.mode == case.expect["png_mode"], name
    for name, case in bad.items():
        assert not (tmp_path / "out" / name).with_suffix(".png").exists()
        failure = next(line for line in result.stderr.splitlines() if line.startswith("failed:") and name in line)
        assert case.reason_contains in failure, failure

    report = json.loads((tmp_path / "out" / "img2img-report.json").read_text())
    assert report["counts"]["written"] == len(good) and report["counts"]["failed"] == len(bad)
    assert f"{len(good)} written, 0 skipped, {len(bad)} failed" in result.stderr
    leftovers = [path for path in (tmp_path / "out").rglob("*") if path.name.endswith(".tmp")]
    assert not leftovers


def test_skip_existing_dry_run_and_shards(weights: Path, tmp_path: Path) -> None:
    source = tmp_path / "in"
    for index in range(6):
        folder = source / f"set{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 12, 3), 40 * index, np.uint8)).save(folder / f"{index}.jpg")
    out = tmp_path / "out"

    dry = img2img("superres", source, "-o", out, "--dry-run", weights=weights)
    assert dry.returncode == 0, dry.stderr
    assert not out.exists()

    shards = [img2img("superres", source, "-o", out, "--shard", f"{k}/2", "--ext", "webp", weights=weights) for k in (0, 1)]
    assert all(shard.returncode == 0 for shard in shards), [shard.stderr for shard in shards]
    outputs = sorted(path.relative_to(out).as_posix() for path in out.rglob("*.webp"))
    assert outputs == [f"set{index % 2}/{index}.webp" for index in sorted(range(6), key=lambda i: (i % 2, i))]
    with Image.open(out / "set0" / "0.webp") as written:
        assert written.size == (48, 32)

    again = img2img("superres", source, "-o", out, "--ext", "webp", "--skip-existing", weights=weights)
    assert again.returncode == 0 and "0 written, 6 skipped, 0 failed" in again.stderr


def test_bad_options_exit_2_before_touching_anything(weights: Path, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(source / "a.png")
    for args, says in [
        (["--shard", "2/2"], "shard"),
        (["--ext", "gif"], "png, jpg, webp"),
        (["--tile", "big"], "--tile"),
        (["-o", source], "input folder"),
    ]:
        result = img2img("superres", source, *(args if args[0] == "-o" else ["-o", tmp_path / "out", *args]),
                         weights=weights)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: ") and says in result.stderr, result.stderr
    assert not (tmp_path / "out").exists() and sorted(source.iterdir()) == [source / "a.png"]


def test_max_pixels_refuses_a_large_single_image(weights: Path, tmp_path: Path) -> None:
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "big.png")
    result = img2img("superres", tmp_path / "big.png", "--max-pixels", "1000", weights=weights)
    assert result.returncode == 2 and "--max-pixels" in result.stderr
    assert not (tmp_path / "big_x4.png").exists()


def test_info_prints_the_model_metadata(weights: Path) -> None:
    result = img2img("info", "superres-x2", weights=weights)
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(None, 1) for line in result.stdout.splitlines() if " " in line.strip())
    assert fields["task"].strip() == "superres" and fields["scale"].strip() == "2"
