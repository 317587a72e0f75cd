import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from img2img.errors import ConfigError, ImageReadError, ModelError, OutputError
from img2img.runtime import batch
from img2img.runtime.batch import (
    BatchOptions,
    BatchReport,
    ProcessedImage,
    Processor,
    find_inputs,
    output_path_for,
    parse_shard,
    run_batch,
    shard_of,
    write_output,
)
from img2img.runtime.image_io import LoadedImage, load_image

REPO = Path(__file__).resolve().parents[1]


def upscale2(image: LoadedImage) -> ProcessedImage:
    """Nearest-neighbour x2 in the source's bit depth: uint8 for 8-bit sources, uint16 for 16-bit."""
    top, dtype = (65535, np.uint16) if image.bit_depth == 16 else (255, np.uint8)

    def grow(plane: np.ndarray) -> np.ndarray:
        return np.rint(plane * top).astype(dtype).repeat(2, axis=0).repeat(2, axis=1)

    return ProcessedImage(grow(image.rgb), None if image.alpha is None else grow(image.alpha))


def write_png(path: Path, seed: int = 0, size: tuple[int, int] = (12, 8)) -> Path:
    """A (width, height) = `size` RGB noise PNG, creating its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_flat(path: Path, value: int) -> Path:
    """A 6x4 PNG filled with one gray level, so a processor can tell which file it got."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 4), (value, value, value)).save(path)
    return path


def level(image: LoadedImage) -> int:
    return int(round(float(image.rgb[0, 0, 0]) * 255))


def run(
    input_dir: Path, output_dir: Path, processor: Processor = upscale2, **options: Any
) -> tuple[BatchReport, list[str]]:
    """run_batch without a progress line; returns the report and the logged lines."""
    lines: list[str] = []
    settings = BatchOptions(output_dir=output_dir, **options)
    return run_batch(input_dir, processor, settings, progress=False, log=lines.append), lines


def outcomes(report: BatchReport) -> list[tuple[str, str]]:
    return [(record.input, record.status) for record in report.files]


def files_under(root: Path) -> list[str]:
    """Every file under root, hidden ones included, as sorted relative posix paths."""
    found = []
    for folder, _, names in os.walk(root):
        found.extend((Path(folder) / name).relative_to(root).as_posix() for name in names)
    return sorted(found)


def temp_files(root: Path) -> list[str]:
    return [name for name in files_under(root) if name.endswith(".img2img.tmp")]


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image.load()
        return np.asarray(image)


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


# --- running ---------------------------------------------------------------------------------


def test_batch_mirrors_the_tree_and_writes_a_report(tmp_path: Path) -> None:
    write_png(tmp_path / "in" / "b.png", size=(7, 5))
    write_png(tmp_path / "in" / "trip" / "a.png", seed=1)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    report, lines = run(tmp_path / "in", tmp_path / "out", ext="webp", quality=90)
    assert files_under(tmp_path / "out") == ["b.webp", "img2img-report.json", "trip/a.webp"]
    assert decoded(tmp_path / "out" / "b.webp").shape == (10, 14, 3)
    assert (report.written, report.skipped, report.failed, report.exit_code) == (2, 0, 0, 0)
    assert report.report_path == tmp_path / "out" / "img2img-report.json"
    assert lines[-1].startswith("2 written, 0 skipped, 0 failed in ")
    assert lines[-1].endswith(f"images/s); report: {report.report_path}")

    saved = json.loads(report.report_path.read_text())
    assert saved["input_dir"] == str((tmp_path / "in").absolute())
    assert saved["counts"] == {"written": 2, "skipped": 0, "failed": 0, "warnings": 0, "not_done": 0}
    assert saved["options"]["ext"] == "webp" and saved["options"]["quality"] == 90
    assert saved["interrupted"] is False
    assert saved["files"][0] == {
        "input": "b.png",
        "output": "b.webp",
        "status": "written",
        "reason": None,
        "warnings": [],
        "seconds": saved["files"][0]["seconds"],
    }
    assert [entry["input"] for entry in saved["files"]] == ["b.png", "trip/a.png"]


def test_bad_files_are_recorded_and_the_batch_goes_on(tmp_path: Path, truncated_png: Path) -> None:
    root = tmp_path / "in"
    write_flat(root / "1-good.png", 1)
    write_flat(root / "2-model.png", 2)
    write_flat(root / "3-bug.png", 3)
    root.joinpath("4-truncated.png").write_bytes(truncated_png.read_bytes())
    write_flat(root / "5-blocked.png", 5)
    write_flat(root / "6-good.png", 6)
    (tmp_path / "out" / "5-blocked.png").mkdir(parents=True)  # a folder where the output should go

    def processor(image: LoadedImage) -> ProcessedImage:
        if level(image) == 2:
            raise ModelError("the model ran out of memory; pass a smaller --tile")
        if level(image) == 3:
            raise IndexError("index 7 is out of bounds\nfor axis 0")
        return upscale2(image)

    report, lines = run(root, tmp_path / "out", processor=processor)
    outcome = {record.input: (record.status, record.reason) for record in report.files}
    assert outcome["1-good.png"] == ("written", None) and outcome["6-good.png"] == ("written", None)
    assert outcome["2-model.png"] == ("failed", "the model ran out of memory; pass a smaller --tile")
    assert outcome["3-bug.png"] == ("failed", "unexpected IndexError: index 7 is out of bounds for axis 0")
    assert outcome["4-truncated.png"][0] == "failed" and "4-truncated.png" in outcome["4-truncated.png"][1]
    assert outcome["5-blocked.png"][0] == "failed" and "folder" in outcome["5-blocked.png"][1]
    assert (report.written, report.failed, report.exit_code) == (2, 4, 1)
    failed = ["2-model.png", "3-bug.png", "4-truncated.png", "5-blocked.png"]
    assert [record.input for record in report.failures] == failed
    assert lines[:4] == [f"failed: {record.input}: {record.reason}" for record in report.failures]
    assert lines[-1].startswith("2 written, 0 skipped, 4 failed in ")
    assert temp_files(tmp_path / "out") == []
    assert sorted(files_under(tmp_path / "out")) == ["1-good.png", "6-good.png", "img2img-report.json"]


def test_warnings_are_recorded_per_file(tmp_path: Path) -> None:
    write_flat(tmp_path / "in" / "a.png", 1)
    write_flat(tmp_path / "in" / "b.png", 2)

    def processor(image: LoadedImage) -> ProcessedImage:
        result = upscale2(image)
        return ProcessedImage(result.pixels, result.alpha, ("ran in 4 tiles",) if level(image) == 2 else ())

    report, lines = run(tmp_path / "in", tmp_path / "out", processor=processor)
    assert [record.warnings for record in report.files] == [(), ("ran in 4 tiles",)]
    assert report.warnings == 1 and report.exit_code == 0
    assert "warning: b.png: ran in 4 tiles" in lines


def test_skip_existing_leaves_finished_outputs_alone(tmp_path: Path) -> None:
    write_png(tmp_path / "in" / "a.png")
    write_png(tmp_path / "in" / "sub" / "b.png", seed=1)
    run(tmp_path / "in", tmp_path / "out")
    (tmp_path / "out" / "a.png").write_bytes(b"kept as it is")
    report, lines = run(tmp_path / "in", tmp_path / "out", skip_existing=True)
    assert (report.written, report.skipped) == (0, 2)
    assert {record.reason for record in report.files} == {"output exists"}
    assert (tmp_path / "out" / "a.png").read_bytes() == b"kept as it is"
    assert lines[-1].startswith("0 written, 2 skipped, 0 failed")
    report, _ = run(tmp_path / "in", tmp_path / "out")
    assert report.written == 2 and decoded(tmp_path / "out" / "a.png").shape == (16, 24, 3)


def test_stale_temporary_files_of_this_run_are_removed(tmp_path: Path) -> None:
    write_png(tmp_path / "in" / "done.png")
    write_png(tmp_path / "in" / "new.png", seed=1)
    run(tmp_path / "in", tmp_path / "out", include=("done.png",))
    out = tmp_path / "out"
    token = "0123456789abcdef"
    for name in ("done.png", "new.png", "other.png", "img2img-report.json"):
        (out / f".{name}.{token}.img2img.tmp").write_bytes(b"partial")
    report, _ = run(tmp_path / "in", out, skip_existing=True)
    assert (report.written, report.skipped) == (1, 1)
    # Another shard may be writing other.png into the same folder right now.
    assert temp_files(out) == [f".other.png.{token}.img2img.tmp"]


def test_dry_run_lists_and_writes_nothing(tmp_path: Path) -> None:
    write_png(tmp_path / "in" / "a.png")
    write_png(tmp_path / "in" / "b.png")
    report, lines = run(tmp_path / "in", tmp_path / "out", dry_run=True)
    assert not (tmp_path / "out").exists()
    assert [record.status for record in report.files] == ["planned", "planned"]
    assert report.report_path is None and report.exit_code == 0
    assert lines == [
        f"would write {tmp_path / 'out' / 'a.png'} (from a.png)",
        f"would write {tmp_path / 'out' / 'b.png'} (from b.png)",
        "dry run: 2 to write, 0 to skip, 0 failed; nothing written",
    ]
    run(tmp_path / "in", tmp_path / "out", include=("a.png",))
    report, lines = run(tmp_path / "in", tmp_path / "out", dry_run=True, skip_existing=True)
    assert [record.status for record in report.files] == ["skipped", "planned"]
    assert lines[0] == f"would skip {tmp_path / 'out' / 'a.png'} (exists)"
    assert files_under(tmp_path / "out") == ["a.png", "img2img-report.json"]


def test_a_folder_that_cannot_be_listed_is_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_png(tmp_path / "in" / "a.png")
    write_png(tmp_path / "in" / "locked" / "b.png")
    scandir = os.scandir

    def refusing(path: str = ".") -> object:
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    report, lines = run(tmp_path / "in", tmp_path / "out")
    assert outcomes(report) == [("locked/", "failed"), ("a.png", "written")]
    assert "Permission denied" in report.files[0].reason and report.exit_code == 1
    assert lines[0].startswith("failed: locked/: cannot list folder ")


def test_an_empty_folder_is_no_error(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("no pictures yet")
    report, lines = run(tmp_path / "in", tmp_path / "out")
    assert report.files == [] and report.exit_code == 0
    assert lines[0].startswith(f"no images to process in {tmp_path / 'in'}")
    assert lines[1].startswith("0 written, 0 skipped, 0 failed")


def test_missing_or_file_input_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such folder"):
        run(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(ImageReadError, match="not a folder"):
        run(write_png(tmp_path / "a.png"), tmp_path / "out")


def test_write_output_keeps_sixteen_bits_only_in_png(tmp_path: Path) -> None:
    image = LoadedImage(rgb=np.zeros((2, 3, 3), np.float32), alpha=None, mode="RGB;16", bit_depth=16)
    pixels = np.full((4, 6, 3), 1000, np.uint16)
    write_output(image, ProcessedImage(pixels, None), tmp_path / "deep.png")
    write_output(image, ProcessedImage(pixels, None), tmp_path / "flat.jpg")
    with Image.open(tmp_path / "flat.jpg") as flat:
        assert flat.mode == "RGB" and flat.size == (6, 4)
    assert load_image(tmp_path / "deep.png").bit_depth == 16
    with pytest.raises(ValueError, match="alpha"):
        write_output(image, ProcessedImage(pixels, np.zeros((2, 2), np.uint16)), tmp_path / "bad.png")


# --- the pipeline ----------------------------------------------------------------------------


def test_pipeline_keeps_order_overlaps_io_and_bounds_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 14
    for index in range(count):
        write_flat(tmp_path / "in" / f"{index:02d}.png", index)
    lock = threading.Lock()
    decoded_count, written_count = [0], [0]
    io_threads: set[bool] = set()
    waiting, writing, order = [], [], []
    load, write = batch.load_image, batch.write_output

    def counting_load(*args: object, **kwargs: object) -> LoadedImage:
        image = load(*args, **kwargs)
        with lock:
            decoded_count[0] += 1
            io_threads.add(threading.current_thread() is threading.main_thread())
        return image

    def slow_write(*args: object, **kwargs: object) -> tuple[str, ...]:
        time.sleep(0.01)
        warnings = write(*args, **kwargs)
        with lock:
            written_count[0] += 1
            io_threads.add(threading.current_thread() is threading.main_thread())
        return warnings

    def processor(image: LoadedImage) -> ProcessedImage:
        order.append(level(image))
        with lock:
            waiting.append(decoded_count[0] - len(order))
            writing.append(len(order) - 1 - written_count[0])
        time.sleep(0.01)
        return upscale2(image)

    monkeypatch.setattr(batch, "load_image", counting_load)
    monkeypatch.setattr(batch, "write_output", slow_write)
    report, _ = run(tmp_path / "in", tmp_path / "out", processor=processor, io_threads=2)
    assert report.written == count
    assert order == list(range(count))
    assert io_threads == {False}  # decoding and encoding never ran in the calling thread
    assert max(waiting) <= 3 and max(waiting) >= 1  # decoded ahead, at most io_threads + 1 waiting
    assert max(writing) <= 2  # at most io_threads results queued for the writers


def test_progress_line_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for index in range(3):
        write_flat(tmp_path / "in" / f"{index}.png", index)
    run_batch(tmp_path / "in", upscale2, BatchOptions(tmp_path / "out"), progress=True, log=lambda line: None)
    err = capsys.readouterr().err
    assert "\r  3/3 images  " in err and " img/s  ETA 0:00:00  2.png" in err
    assert err.endswith("\r")  # the line is cleared at the end
    run_batch(tmp_path / "in", upscale2, BatchOptions(tmp_path / "out2"), log=lambda line: None)
    assert capsys.readouterr().err == ""  # stderr is not a terminal here


# --- interrupts ------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupt_finishes_handed_over_writes_and_reports(tmp_path: Path, how: str) -> None:
    for index in range(8):
        write_flat(tmp_path / "in" / f"{index}.png", index)
    handler = signal.getsignal(signal.SIGTERM)

    def processor(image: LoadedImage) -> ProcessedImage:
        if level(image) == 3:
            if how == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises inside the sleep
        return upscale2(image)

    report, lines = run(tmp_path / "in", tmp_path / "out", processor=processor)
    assert report.interrupted and report.exit_code == 130
    assert (report.written, report.not_done) == (3, 5)
    assert lines[-1].startswith("interrupted: 3 written, 0 skipped, 0 failed in ")
    assert ", 5 not done; report: " in lines[-1]
    saved = json.loads((tmp_path / "out" / "img2img-report.json").read_text())
    assert saved["interrupted"] is True and saved["counts"]["not_done"] == 5
    assert files_under(tmp_path / "out") == ["0.png", "1.png", "2.png", "img2img-report.json"]
    assert signal.getsignal(signal.SIGTERM) == handler


SLOW_BATCH = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from test_runtime_batch import upscale2
from img2img.runtime.batch import BatchOptions, run_batch

def slow(image):
    time.sleep(0.05)
    return upscale2(image)

run_batch(sys.argv[1], slow, BatchOptions(output_dir=Path(sys.argv[2])), progress=False)
"""


def test_a_killed_batch_leaves_only_complete_files_and_resumes(tmp_path: Path) -> None:
    count = 30
    for index in range(count):
        # Noise compresses badly, so each write takes long enough for the kill to land in one.
        write_png(tmp_path / "in" / f"part{index % 3}" / f"{index:02d}.png", seed=index, size=(160, 120))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_BATCH, str(tmp_path / "in"), str(out), str(REPO / "tests")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def finished() -> list[Path]:
        return sorted(path for path in out.rglob("*.png") if not path.name.startswith("."))

    deadline = time.monotonic() + 30
    while len(finished()) < 6 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    # Aim the kill at a write in progress (its temporary file present); kill anyway after a while.
    deadline = time.monotonic() + 1
    while not temp_files(out) and child.poll() is None and time.monotonic() < deadline:
        pass
    child.kill()
    _, err = child.communicate()
    assert child.returncode == -signal.SIGKILL, err.decode()
    survivors = finished()
    assert 6 <= len(survivors) < count
    for path in survivors:
        assert decoded(path).shape == (240, 320, 3)  # complete, never a partial file
    assert not (out / "img2img-report.json").exists()

    report, _ = run(tmp_path / "in", out, skip_existing=True)
    assert (report.skipped, report.written, report.failed) == (len(survivors), count - len(survivors), 0)
    reference, _ = run(tmp_path / "in", tmp_path / "reference")
    assert reference.written == count
    for record in reference.files:
        reference_pixels = decoded(tmp_path / "reference" / record.output)
        np.testing.assert_array_equal(decoded(out / record.output), reference_pixels)
    assert temp_files(out) == []


# --- a folder of images as people have them --------------------------------------------------


def pixel_at(plane: np.ndarray, fraction: tuple[float, float]) -> np.ndarray:
    height, width = plane.shape[:2]
    return plane[min(int(fraction[1] * height), height - 1), min(int(fraction[0] * width), width - 1)]


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_a_folder_of_real_world_images(tmp_path: Path, ext: str) -> None:
    from image_cases import write_image_cases

    cases = write_image_cases(tmp_path / "in")
    out = tmp_path / "out"
    report, lines = run(tmp_path / "in", out, ext=ext)
    records = {record.input: record for record in report.files}
    good = {name for name, case in cases.items() if case.good}
    bad = {name for name, case in cases.items() if not case.good and not case.expect.get("ignored")}
    assert set(records) == good | bad  # notes.txt is not an input at all

    for name in sorted(bad):
        assert records[name].status == "failed" and records[name].output is not None
        assert cases[name].reason_contains in records[name].reason, name
        assert f"failed: {name}: {records[name].reason}" in lines

    for name in sorted(good):
        expect, record = cases[name].expect, records[name]
        assert record.status == "written", (name, record.reason)
        assert record.output == str(Path(name).with_suffix(f".{ext}").as_posix())
        if expect["warning"] is not None:
            assert any(expect["warning"] in warning for warning in record.warnings), name
            assert any(line.startswith(f"warning: {name}: ") for line in lines)
        else:
            assert record.warnings == (), name
        path = out / record.output
        with Image.open(path) as written:
            assert written.size == (2 * expect["size"][0], 2 * expect["size"][1]), name
            assert written.getexif().get(0x0112, 1) == 1, name  # the pixels are upright already
            if ext == "png":
                assert written.mode == expect["png_mode"], name
        result = load_image(path)
        assert result.warnings == (), name
        assert (result.icc_profile is not None) == expect["icc"], name
        assert (result.exif is not None) == expect["exif"], name
        assert result.grayscale == expect["grayscale"], name
        if ext == "jpg":
            assert result.bit_depth == 8 and result.alpha is None, name
            continue
        assert result.bit_depth == expect["bit_depth"], name
        assert (result.alpha is not None) == expect["alpha"], name
        for fraction, colour, tolerance in expect["probes"]:
            got = np.rint(pixel_at(result.rgb, fraction) * 255)
            assert np.abs(got - colour).max() <= tolerance, (name, fraction, got, colour)
        for fraction, opacity, tolerance in expect["alpha_probes"]:
            got = np.rint(pixel_at(result.alpha, fraction) * 255)
            assert abs(got - opacity) <= tolerance, (name, fraction, got, opacity)

    if ext == "jpg":
        # JPEG has no alpha: transparent parts are flattened onto white, never onto the colour
        # hidden under them (magenta here).
        flattened = load_image(out / "a" / "rgba.jpg").rgb
        assert np.abs(np.rint(pixel_at(flattened, (0.05, 0.25)) * 255) - 255).max() <= 8

    assert (report.written, report.skipped, report.failed) == (len(good), 0, len(bad))
    assert report.exit_code == 1
    assert lines[-1].startswith(f"{len(good)} written, 0 skipped, {len(bad)} failed in ")
    assert temp_files(out) == []
    expected = sorted(str(Path(name).with_suffix(f".{ext}").as_posix()) for name in good)
    assert files_under(out) == sorted(expected + ["img2img-report.json"])
