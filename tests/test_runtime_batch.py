import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from batch_cases import decoded, files_under, level, outcomes, run, temp_files, upscale2, write_flat, write_png
from PIL import Image

from img2img.errors import ImageReadError, ModelError
from img2img.files.decode import LoadedImage, load_image
from img2img.runtime import batch
from img2img.runtime.batch import ProcessedImage, run_batch, write_output
from img2img.runtime.batch_options import BatchOptions

REPO = Path(__file__).resolve().parents[1]


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
from img2img.runtime.batch import run_batch
from img2img.runtime.batch_options import BatchOptions

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
