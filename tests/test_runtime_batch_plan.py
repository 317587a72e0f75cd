"""Batch options and plans: option checks, the files a batch takes, shards and output paths."""

import hashlib
from pathlib import Path

import pytest
from batch_cases import decoded, files_under, outcomes, run, write_png
from PIL import Image

from img2img.errors import ConfigError, OutputError
from img2img.runtime.batch_options import BatchOptions, parse_shard, shard_of
from img2img.runtime.batch_plan import find_inputs, output_path_for


# --- options ---------------------------------------------------------------------------------


def test_options_are_normalised_and_checked(tmp_path: Path) -> None:
    options = BatchOptions(output_dir=str(tmp_path), ext=".JPEG", include=["*.png"])  # type: ignore[arg-type]
    assert options.ext == "jpg" and options.output_dir == tmp_path and options.include == ("*.png",)
    assert options.report_path == tmp_path / "img2img-report.json"
    assert BatchOptions(tmp_path, shard=(1, 3)).report_path.name == "img2img-report.shard-1-of-3.json"
    assert BatchOptions(tmp_path, report=tmp_path / "r.json").report_path == tmp_path / "r.json"
    with pytest.raises(OutputError, match="png, jpg, webp"):
        BatchOptions(tmp_path, ext="gif")
    with pytest.raises(OutputError, match="1 to 100"):
        BatchOptions(tmp_path, quality=0)
    with pytest.raises(ConfigError, match="0 <= K < N"):
        BatchOptions(tmp_path, shard=(3, 3))
    with pytest.raises(ConfigError, match="at least 1"):
        BatchOptions(tmp_path, io_threads=0)


def test_parse_shard() -> None:
    assert parse_shard("0/4") == (0, 4) and parse_shard("3/4") == (3, 4)
    for text in ("4/4", "-1/4", "1", "a/b", "1/0", ""):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(text)


# --- finding the inputs ----------------------------------------------------------------------


def test_find_inputs_walks_the_tree_in_sorted_order(tmp_path: Path) -> None:
    root = tmp_path / "in"
    names = ["b.png", "a/z.JPG", "a/y.webp", "a/deep/x.tif", "c.gif", "d.bmp", "e.jpeg", "f.tiff"]
    ignored = ["notes.txt", "g.heic", ".hidden.png", ".cache/q.png", "out/done.png", "a/.x.png.1.img2img.tmp"]
    for name in names + ignored:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    elsewhere = tmp_path / "elsewhere"
    write_png(elsewhere / "s.png")
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)

    found = find_inputs(root, BatchOptions(output_dir=root / "out"))
    assert [path.relative_to(root).as_posix() for path in found] == [
        "a/deep/x.tif",
        "a/y.webp",
        "a/z.JPG",
        "b.png",
        "c.gif",
        "d.bmp",
        "e.jpeg",
        "f.tiff",
    ]


def test_include_and_exclude_match_the_path_or_the_name(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for name in ["a.png", "b.jpg", "trip/c.png", "trip/d.jpg", "trip/thumbs/e.png", "thumbs/f.png"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")

    def relative(**options: object) -> list[str]:
        found = find_inputs(root, BatchOptions(tmp_path / "out", **options))
        return [path.relative_to(root).as_posix() for path in found]

    assert relative(include=("*.png",)) == ["a.png", "thumbs/f.png", "trip/c.png", "trip/thumbs/e.png"]
    assert relative(include=("trip/*",), exclude=("*.jpg",)) == ["trip/c.png", "trip/thumbs/e.png"]
    assert relative(include=("d.jpg", "a.png")) == ["a.png", "trip/d.jpg"]
    # A folder whose name matches an exclude pattern is not entered at any depth.
    assert relative(exclude=("thumbs",)) == ["a.png", "b.jpg", "trip/c.png", "trip/d.jpg"]


def test_shards_split_the_files_disjointly_and_stably(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for index in range(40):
        (root / f"d{index % 3}").mkdir(parents=True, exist_ok=True)
        (root / f"d{index % 3}" / f"{index}.png").write_bytes(b"")
    everything = find_inputs(root, BatchOptions(tmp_path / "out"))
    parts = [find_inputs(root, BatchOptions(tmp_path / "out", shard=(k, 3))) for k in range(3)]
    assert sorted(path for part in parts for path in part) == everything
    assert all(part for part in parts)
    # Pinned: the split must not change between versions, or machines sharing a folder disagree.
    key = int.from_bytes(hashlib.sha1(b"trip/img_01.jpg").digest()[:8], "big")
    assert [shard_of("trip/img_01.jpg", n) for n in (1, 2, 7)] == [0, key % 2, key % 7]
    assert shard_of("fo\u0308to.png", 5) == shard_of("f\u00f6to.png", 5)


# --- output paths ----------------------------------------------------------------------------


def test_output_path_mirrors_the_tree(tmp_path: Path) -> None:
    options = BatchOptions(tmp_path / "out", ext="jpeg")
    source = tmp_path / "in" / "trip" / "day 1" / "img.v2.PNG"
    expected = tmp_path / "out" / "trip" / "day 1" / "img.v2.jpg"
    assert output_path_for(tmp_path / "in", source, options) == expected
    with pytest.raises(OutputError, match="not inside"):
        output_path_for(tmp_path / "in", tmp_path / "other" / "a.png", options)


def test_outputs_never_escape_the_output_folder(tmp_path: Path) -> None:
    write_png(tmp_path / "in" / "a" / "x.png")
    write_png(tmp_path / "in" / "b.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "a").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(OutputError, match="outside the output folder"):
        output_path_for(tmp_path / "in", tmp_path / "in" / "a" / "x.png", BatchOptions(tmp_path / "out"))

    report, _ = run(tmp_path / "in", tmp_path / "out")
    assert outcomes(report) == [("a/x.png", "failed"), ("b.png", "written")]
    assert "outside the output folder" in report.files[0].reason
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_the_input_folder_as_output_folder_is_refused_up_front(tmp_path: Path) -> None:
    source = write_png(tmp_path / "in" / "a.png")
    before = source.read_bytes()
    for output_dir in (tmp_path / "in", tmp_path / "in" / "sub" / ".."):
        with pytest.raises(OutputError, match="is the input folder"):
            run(tmp_path / "in", output_dir)
    assert files_under(tmp_path / "in") == ["a.png"] and source.read_bytes() == before


def test_an_output_that_would_replace_an_input_fails_that_file(tmp_path: Path) -> None:
    # The output folder holds the input folder: photos/photos/x.png would be written to
    # photos/x.png, which is an input.
    inputs = tmp_path / "photos"
    top = write_png(inputs / "x.png", seed=1)
    write_png(inputs / "photos" / "x.png", seed=2)
    before = top.read_bytes()
    report, _ = run(inputs, tmp_path)
    assert outcomes(report) == [("photos/x.png", "failed"), ("x.png", "written")]
    assert "inside the input folder" in report.files[0].reason
    assert top.read_bytes() == before
    assert decoded(tmp_path / "x.png").shape == (16, 24, 3)


def test_an_output_folder_inside_the_input_folder_is_not_scanned(tmp_path: Path) -> None:
    write_png(tmp_path / "in" / "a.png")
    first, _ = run(tmp_path / "in", tmp_path / "in" / "up")
    second, _ = run(tmp_path / "in", tmp_path / "in" / "up")
    assert first.written == second.written == 1
    assert files_under(tmp_path / "in") == ["a.png", "up/a.png", "up/img2img-report.json"]


def test_two_inputs_with_one_output_name_fail_the_second(tmp_path: Path) -> None:
    write_png(tmp_path / "in" / "a.png")
    Image.new("RGB", (5, 3), "red").save(tmp_path / "in" / "a.jpg")
    report, lines = run(tmp_path / "in", tmp_path / "out")
    assert [(record.input, record.output, record.status) for record in report.files] == [
        ("a.jpg", "a.png", "written"),
        ("a.png", "a.png", "failed"),
    ]
    assert "also the output of a.jpg" in report.files[1].reason
    assert decoded(tmp_path / "out" / "a.png").shape == (6, 10, 3)
    assert any(line.startswith("failed: a.png: ") for line in lines)


def test_a_clash_is_settled_the_same_way_in_every_shard(tmp_path: Path) -> None:
    for stem in ("a", "b", "c", "d"):
        write_png(tmp_path / "in" / f"{stem}.png")
        Image.new("RGB", (5, 3), "red").save(tmp_path / "in" / f"{stem}.webp")
    statuses = {}
    for k in range(2):
        report, _ = run(tmp_path / "in", tmp_path / "out", shard=(k, 2), dry_run=True)
        statuses.update({record.input: record.status for record in report.files})
    assert statuses == {
        **{f"{stem}.png": "planned" for stem in "abcd"},
        **{f"{stem}.webp": "failed" for stem in "abcd"},
    }
