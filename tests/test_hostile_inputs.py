"""Hostile and careless input to the command line: nothing the run reads is ever overwritten,
file names are taken as the OS gives them, and every refusal is one `error:` line (or a report
entry in a folder run), never a traceback.

Each case runs the CLI in its own process, as a user would, on tiny models and images.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import random_rgb
from inpaint_fixture import blob_image, blob_mask, ship_inpainter
from test_cli_superres import assert_one_line_error, img2img

# The longest name ext4, XFS, APFS and NTFS take.
NAME_MAX = 255


def photo_folder(folder: Path, *names: str | bytes) -> Path:
    """`folder` with a small random PNG under each name (bytes names may be any bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        path = os.path.join(os.fsencode(folder), os.fsencode(name))
        Image.fromarray(random_rgb(12, 10, seed=index)).save(path, format="PNG")
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def no_traceback(result) -> None:
    assert "Traceback" not in result.stderr, result.stderr


# ----------------------------------------------------------------------------- nothing read is overwritten


def test_report_onto_an_input_is_refused_before_anything_is_written(weights: Path, tmp_path: Path) -> None:
    source = photo_folder(tmp_path / "in", "a.png", "b.png")
    before = snapshot(source)
    result = img2img("superres", source, "-o", tmp_path / "out", "--report", source / "b.png", weights=weights)
    assert_one_line_error(result, "report", "b.png")
    assert snapshot(source) == before and not (tmp_path / "out").exists()


def test_report_with_a_json_name_inside_the_input_tree_that_is_an_input_is_refused(weights: Path, tmp_path: Path) -> None:
    # A .json name is not an image suffix, so only the input rule can catch it, when it is one.
    source = photo_folder(tmp_path / "in", "a.png")
    (source / "notes.json").write_text("{}")
    result = img2img("superres", source, "-o", tmp_path / "out", "--report", source / "notes.json", weights=weights)
    assert result.returncode == 0, result.stderr  # not an input: the user asked for it there
    assert json.loads((source / "notes.json").read_text())["counts"]["written"] == 1


def test_report_onto_an_output_is_refused(weights: Path, tmp_path: Path) -> None:
    # Else a later --skip-existing run would take the JSON for a finished image.
    source = photo_folder(tmp_path / "in", "a.png", "b.png")
    result = img2img(
        "superres", source, "-o", tmp_path / "out", "--report", tmp_path / "out" / "b.json", "--ext", "png",
        weights=weights,
    )
    assert result.returncode == 0, result.stderr
    clash = img2img("superres", source, "-o", tmp_path / "out2", "--report", tmp_path / "out2" / "a.png", weights=weights)
    assert_one_line_error(clash, "report", "a.png")
    assert not (tmp_path / "out2" / "a.png").exists()


@pytest.mark.parametrize("report_name", ["report.png", "REPORT.JPG", "r.webp"])
def test_report_with_an_image_suffix_is_refused(weights: Path, tmp_path: Path, report_name: str) -> None:
    source = photo_folder(tmp_path / "in", "a.png")
    result = img2img("superres", source, "-o", tmp_path / "out", "--report", tmp_path / report_name, weights=weights)
    assert_one_line_error(result, "image suffix", ".json")


def inpaint_folders(tmp_path: Path) -> tuple[Path, Path]:
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir()
    masks.mkdir()
    for name in ("a", "b"):
        Image.fromarray(blob_image(24, 24, top=8, left=8)).save(photos / f"{name}.png")
        Image.fromarray(blob_mask(24, 24, top=8, left=8)).save(masks / f"{name}.png")
    return photos, masks


@pytest.mark.parametrize("where", ["masks", "masks/sub"])
def test_inpaint_folder_results_never_replace_the_masks(weights: Path, tmp_path: Path, where: str) -> None:
    ship_inpainter(weights)
    photos, masks = inpaint_folders(tmp_path)
    before = snapshot(masks)
    result = img2img("inpaint", photos, "--mask", masks, "-o", tmp_path / where, weights=weights)
    assert_one_line_error(result, "mask folder", "replace the masks")
    assert snapshot(masks) == before


def test_inpaint_outputs_that_would_land_in_a_mask_folder_inside_the_output_are_refused(weights: Path, tmp_path: Path) -> None:
    ship_inpainter(weights)
    photos, _ = inpaint_folders(tmp_path)
    out = tmp_path / "out"
    # The masks live in out/masks, and the photos have a masks/ subfolder whose results go there.
    (photos / "masks").mkdir()
    Image.fromarray(blob_image(24, 24, top=8, left=8)).save(photos / "masks" / "a.png")
    (out / "masks" / "masks").mkdir(parents=True)
    for name in ("a", "b"):
        Image.fromarray(blob_mask(24, 24, top=8, left=8)).save(out / "masks" / f"{name}.png")
    Image.fromarray(blob_mask(24, 24, top=8, left=8)).save(out / "masks" / "masks" / "a.png")
    before = snapshot(out / "masks")
    result = img2img("inpaint", photos, "--mask", out / "masks", "-o", out, weights=weights)
    no_traceback(result)
    assert result.returncode == 1
    assert "masks/a.png" in result.stderr and "could replace a mask" in result.stderr
    assert snapshot(out / "masks") == before
    assert (out / "a.png").is_file() and (out / "b.png").is_file()


# ----------------------------------------------------------------------------- names as the OS gives them


def test_a_name_that_is_not_utf8_is_processed_and_reported_escaped(weights: Path, tmp_path: Path) -> None:
    source = photo_folder(tmp_path / "in", b"caf\xe9.png", "ok.png")
    result = img2img("superres", source, "-o", tmp_path / "out", weights=weights)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "img2img-report.json").read_text(encoding="utf-8"))
    assert sorted(entry["input"] for entry in report["files"]) == ["caf\\xe9.png", "ok.png"]
    assert os.path.exists(os.path.join(os.fsencode(tmp_path / "out"), b"caf\xe9.png"))


def test_a_name_that_is_not_utf8_can_be_sharded(weights: Path, tmp_path: Path) -> None:
    source = photo_folder(tmp_path / "in", b"caf\xe9.png", "ok.png", "z.png")
    written = 0
    for shard in ("0/2", "1/2"):
        result = img2img("superres", source, "-o", tmp_path / "out", "--shard", shard, weights=weights)
        assert result.returncode == 0, result.stderr
        written += json.loads(next((tmp_path / "out").glob(f"*shard-{shard[0]}-of-2.json")).read_text())["counts"]["written"]
    assert written == 3


@pytest.mark.parametrize("spelling", [".", "./", "sub/.."])
def test_the_current_folder_as_input_writes_beside_it(weights: Path, tmp_path: Path, spelling: str) -> None:
    source = photo_folder(tmp_path / "photos", "a.png")
    (source / "sub").mkdir()
    result = img2img("superres", spelling, weights=weights, cwd=source)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "photos_x4" / "a.png").is_file()


def test_the_root_folder_without_an_output_is_one_error_line(weights: Path) -> None:
    result = img2img("superres", "/", "--dry-run", weights=weights)
    assert_one_line_error(result, "-o")


def test_names_up_to_the_file_system_limit_are_written(weights: Path, tmp_path: Path) -> None:
    # The temporary file of each write must fit wherever its final name fits.
    longest = "a" * (NAME_MAX - len(".png")) + ".png"
    source = photo_folder(tmp_path / "in", longest, "b" * 236 + ".png")
    result = img2img("superres", source, "-o", tmp_path / "out", weights=weights)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / longest).is_file() and (tmp_path / "out" / ("b" * 236 + ".png")).is_file()
    # A single file whose default output name (`<stem>_x4.png`) is exactly the limit.
    single = photo_folder(tmp_path / "single", "c" * (NAME_MAX - len("_x4.png")) + ".png")
    result = img2img("superres", next(single.iterdir()), weights=weights)
    assert result.returncode == 0, result.stderr
    assert (single / ("c" * (NAME_MAX - len("_x4.png")) + "_x4.png")).is_file()
    assert not [path for path in tmp_path.rglob("*.tmp")]


# ----------------------------------------------------------------------------- metadata the format cannot hold


def big_exif_png(path: Path, size: int = 70_000) -> Path:
    exif = Image.Exif()
    exif[0x010E] = "x" * size  # ImageDescription
    Image.fromarray(random_rgb(12, 10)).save(path, exif=exif.tobytes())
    return path


def test_exif_over_the_jpeg_limit_is_left_out_with_a_warning(weights: Path, tmp_path: Path) -> None:
    source = big_exif_png(tmp_path / "big.png")
    result = img2img("superres", source, "-o", tmp_path / "big_x4.jpg", weights=weights)
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "EXIF" in result.stderr and "JPEG" in result.stderr
    with Image.open(tmp_path / "big_x4.jpg") as written:
        assert written.size == (40, 48) and "exif" not in written.info
    # PNG keeps it.
    result = img2img("superres", source, "-o", tmp_path / "big_x4.png", weights=weights)
    assert result.returncode == 0 and "warning" not in result.stderr
    with Image.open(tmp_path / "big_x4.png") as written:
        assert len(written.info["exif"]) > 65_533


def test_a_folder_to_jpeg_reports_the_dropped_exif_per_file(weights: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    big_exif_png(tmp_path / "in" / "big.png")
    result = img2img("superres", tmp_path / "in", "-o", tmp_path / "out", "--ext", "jpg", weights=weights)
    assert result.returncode == 0, result.stderr
    entry, = json.loads((tmp_path / "out" / "img2img-report.json").read_text())["files"]
    assert entry["status"] == "written" and any("EXIF" in warning for warning in entry["warnings"])


def test_temporary_names_fit_and_belong_to_one_destination() -> None:
    from img2img.files.atomic import temp_file_pattern, temp_key

    short = "photo.png"
    assert temp_key(short) == short
    long_a, long_b = "a" * 250 + "1.png", "a" * 250 + "2.png"
    assert temp_key(long_a) != temp_key(long_b)
    temp = f".{temp_key(long_a)}.{'0' * 16}.img2img.tmp"
    assert len(os.fsencode(temp)) <= NAME_MAX
    import fnmatch

    assert fnmatch.fnmatchcase(temp, temp_file_pattern(long_a)) and not fnmatch.fnmatchcase(temp, temp_file_pattern(long_b))
    # A multi-byte name cut mid-character still makes a valid name.
    assert len(os.fsencode(f".{temp_key('é' * 127)}.{'0' * 16}.img2img.tmp")) <= NAME_MAX


# ----------------------------------------------------------------------------- images that lie


def jpeg_claiming(path: Path, width: int, height: int, keep_bytes: int, *, end_marker: bool) -> Path:
    """A real small JPEG whose frame header is patched to claim width x height, cut to
    `keep_bytes`, with an end-of-image marker appended or not."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(random_rgb(64, 64)).save(buffer, format="JPEG", quality=90)
    data = bytearray(buffer.getvalue())
    frame = data.find(b"\xff\xc0")
    data[frame + 5 : frame + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path.write_bytes(bytes(data[:keep_bytes]) + (b"\xff\xd9" if end_marker else b""))
    return path


@pytest.mark.parametrize("end_marker", [False, True])
def test_a_small_jpeg_claiming_a_huge_size_is_refused_without_decoding(weights: Path, tmp_path: Path, end_marker: bool) -> None:
    # With an end marker libjpeg fills the missing rows with gray and only warns.
    bomb = jpeg_claiming(tmp_path / "bomb.jpg", 13000, 13000, 3000, end_marker=end_marker)
    result = img2img("superres", bomb, "--max-pixels", "200000000", weights=weights)
    assert_one_line_error(result, "truncated or corrupt", "13000x13000")
    assert not (tmp_path / "bomb_x4.png").exists()


def test_a_large_flat_jpeg_is_not_taken_for_a_truncated_one(tmp_path: Path) -> None:
    from img2img.runtime import load_image

    Image.new("L", (3000, 2000), 0).save(tmp_path / "black.jpg", quality=1)
    assert load_image(tmp_path / "black.jpg").rgb.shape == (2000, 3000, 3)


# ----------------------------------------------------------------------------- models that lie


def one_channel_upscaler(path: Path) -> Path:
    """An x2 model with honest metadata except that its graph returns one channel, not RGB."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["gray"], axes=[1], keepdims=1),
            helper.make_node("Resize", ["gray", "", "scales"], ["output"], mode="nearest"),
        ],
        "gray_upscaler",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1, "h", "w"])],
        initializer=[helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, 2.0, 2.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"task": "superres", "name": "gray", "scale": "2", "range": "0,1"})
    onnx.save(model, path)
    return path


def lying_models(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    from conftest import build_upscaler

    return {
        "says x4, computes x2": (
            build_upscaler(tmp_path / "liar.onnx", scale=2, name="liar", metadata={"scale": "4"}), "does not match its graph"
        ),
        "one output channel": (one_channel_upscaler(tmp_path / "gray.onnx"), "does not match its graph"),
        "all NaN": (build_upscaler(tmp_path / "nan.onnx", scale=2, name="nan", nan_above=-1.0), "NaN"),
        "scale 1000": (
            build_upscaler(tmp_path / "huge.onnx", scale=2, name="huge", metadata={"scale": "1000"}), "expected 1 to 16"
        ),
        "multiple_of a million": (
            build_upscaler(tmp_path / "pad.onnx", scale=2, name="pad", metadata={"multiple_of": "1000000"}), "expected 1 to 1,024"
        ),
    }


@pytest.mark.parametrize("case", ["says x4, computes x2", "one output channel", "all NaN", "scale 1000", "multiple_of a million"])
def test_a_model_that_lies_is_refused_and_writes_nothing(weights: Path, tmp_path: Path, case: str) -> None:
    model, says = lying_models(tmp_path)[case]
    photo = tmp_path / "photo.png"
    Image.fromarray(random_rgb(16, 16)).save(photo)
    result = img2img("superres", photo, "--model", model, "-o", tmp_path / "out.png", weights=weights)
    assert_one_line_error(result, says)
    assert not (tmp_path / "out.png").exists()


def test_a_folder_run_with_a_lying_model_writes_no_image(weights: Path, tmp_path: Path) -> None:
    model, _ = lying_models(tmp_path)["says x4, computes x2"]
    source = photo_folder(tmp_path / "in", "a.png", "b.png")
    result = img2img("superres", source, "--model", model, "-o", tmp_path / "out", weights=weights)
    no_traceback(result)
    assert result.returncode != 0 and "does not match its graph" in result.stderr
    assert not list((tmp_path / "out").glob("*.png"))


# ----------------------------------------------------------------------------- memory


def test_a_result_too_large_for_memory_is_refused_before_the_model_runs(tiny_x2: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import img2img
    from img2img.errors import InferenceMemoryError
    from img2img.runtime import memory
    from img2img.files.decode import from_pil

    model = img2img.load(str(tiny_x2))
    calls = []
    monkeypatch.setattr(model.onnx, "run_batch", lambda *args, **kwargs: calls.append(args))
    monkeypatch.setattr(memory, "available_bytes", lambda: 400 << 20)
    image = from_pil(Image.fromarray(random_rgb(4000, 3000)))
    with pytest.raises(InferenceMemoryError, match=r"3000x4000 image at x2 .* needs about .* GiB of memory, but 0.4 GiB is free"):
        model.process(image)
    assert not calls


def test_the_memory_estimate_grows_with_the_result_and_counts_sixteen_bits_and_alpha() -> None:
    from img2img.runtime.memory import bytes_needed

    small, large = bytes_needed(100, 100, scale=4), bytes_needed(1000, 1000, scale=4)
    # Per output pixel: the 3-byte buffer and the encoder's 4-byte copy at least.
    assert large - small >= (4000 * 4000 - 400 * 400) * 7
    assert bytes_needed(1000, 1000, scale=4, alpha=True) > large
    # 16 bits: a 6-byte buffer; the 16-bit PNG encoder writes it strip by strip, without a copy.
    assert bytes_needed(1000, 1000, scale=4, bit_depth=16) - bytes_needed(100, 100, scale=4, bit_depth=16) >= (
        4000 * 4000 - 400 * 400
    ) * 6


def test_an_address_space_cap_below_what_decoding_needs_is_one_error_line(weights: Path, tmp_path: Path) -> None:
    # `ulimit -v` below what the decode needs: one line, not numpy's MemoryError traceback.
    import resource
    import subprocess
    import sys

    Image.new("RGB", (6000, 6000), (20, 120, 200)).save(tmp_path / "big.png")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "IMG2IMG_WEIGHTS": str(weights)}
    script = (
        "import resource, runpy, sys\n"
        "import onnxruntime, numpy, PIL.Image\n"  # mapped before the cap
        "mapped = int([l for l in open('/proc/self/status') if l.startswith('VmSize')][0].split()[1]) * 1024\n"
        "resource.setrlimit(resource.RLIMIT_AS, (mapped + (300 << 20), resource.RLIM_INFINITY))\n"
        "sys.argv = ['img2img', 'superres', sys.argv[1], '--scale', '2']\n"
        "runpy.run_module('cli', run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "big.png")], env=env, capture_output=True, text=True, timeout=120
    )
    assert_one_line_error(result, "memory")
    assert not (tmp_path / "big_x2.png").exists()
    assert resource  # the cap is POSIX-only, like the CI machines


def test_a_memory_error_the_estimate_missed_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from cli.common import user_errors

    with pytest.raises(typer.Exit) as stopped, user_errors():
        raise MemoryError()
    assert stopped.value.exit_code == 2
    assert capsys.readouterr().err.startswith("error: ran out of memory; nothing was written")


def test_a_folder_run_reports_a_memory_error_and_goes_on() -> None:
    from img2img.runtime.batch import _reason

    assert _reason(MemoryError()).startswith("ran out of memory")



# ----------------------------------------------------------------------------- options that size work


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--threads", "100000", "threads must be 1 to 1024"),  # once: 100,000 threads were started
        ("--threads", "-3", "threads must be 1 to 1024"),  # once: taken silently
        ("--tile-overlap", "99999999", "tile overlap must be 0 to 1024"),
        ("--tile", "99999999999", "at most 16,384"),
        ("--max-pixels", "-5", "pass a positive number"),
        ("--quality", "101", "quality must be between 1 and 100"),
    ],
)
def test_options_that_size_work_are_bounded(weights: Path, tmp_path: Path, option: str, value: str, says: str) -> None:
    photo = tmp_path / "photo.png"
    Image.fromarray(random_rgb(16, 16)).save(photo)
    result = img2img("superres", photo, "-o", tmp_path / "out.png", option, value, weights=weights)
    assert_one_line_error(result, says)
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    ("weights_given", "says"),
    [(["nan"], "must be finite"), (["inf"], "must be finite"), (["-1"], "0 or more"), (["0"], "not all 0")],
)
def test_style_weights_must_be_finite_and_not_negative(weights_given: list[str], says: str) -> None:
    from img2img.errors import ModelError
    from img2img.runtime.onnx_model import OnnxModel

    model = OnnxModel.__new__(OnnxModel)  # only the checks of set_styles run
    model.info = type("Info", (), {"inputs": ("image", "style", "style_weights", "alpha"), "name": "adain"})()
    with pytest.raises(ModelError, match=says):
        model.set_styles(np.zeros((1, 8, 8, 3), np.float32), np.array([float(w) for w in weights_given]), 1.0)


# ----------------------------------------------------------------------------- nothing extra on the terminal


def test_an_unwritable_home_prints_nothing_extra(tmp_path: Path) -> None:
    # onnxruntime records a telemetry device ID under $HOME on import, and warns where it cannot.
    from conftest import build_upscaler
    import subprocess
    import sys

    build_upscaler(tmp_path / "x2.onnx", scale=2, name="x2")
    Image.fromarray(random_rgb(8, 8)).save(tmp_path / "a.png")
    (tmp_path / "home").write_text("a file, so nothing can be created under it")
    env = {key: value for key, value in os.environ.items() if key not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    env |= {"HOME": str(tmp_path / "home"), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(
        [sys.executable, "-m", "cli", "superres", str(tmp_path / "a.png"), "--model", str(tmp_path / "x2.onnx")],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith("wrote ")


def test_a_library_warning_is_one_line_and_a_corrupt_exif_is_said_once(weights: Path, tmp_path: Path) -> None:
    # Pillow warns "Corrupt EXIF data" (two lines, naming its own source file); the runtime
    # already says it, by file name.
    Image.fromarray(random_rgb(12, 12)).save(tmp_path / "bad.jpg", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff")
    result = img2img("superres", tmp_path / "bad.jpg", "-o", tmp_path / "out.png", weights=weights)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["warning: bad.jpg: its EXIF block is malformed and is not copied to the output"]


def test_python_warnings_print_as_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import warnings

    from cli.common import one_line_warnings

    saved = warnings.showwarning, list(warnings.filters)
    try:
        one_line_warnings()
        warnings.warn_explicit("two\nlines", UserWarning, "somewhere.py", 1)
    finally:
        warnings.showwarning, warnings.filters[:] = saved
    assert capsys.readouterr().err == "warning: two lines\n"


def test_a_png_result_is_counted_without_the_encoders_copy() -> None:
    from img2img.runtime.memory import bytes_needed

    png, jpeg = (bytes_needed(3000, 4000, scale=4, output_format=fmt) for fmt in ("PNG", "JPEG"))
    assert jpeg - png == 12000 * 16000 * 4
    assert bytes_needed(3000, 4000, scale=4) == jpeg  # unknown: the costliest
