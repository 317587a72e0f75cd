"""Pair scoring, folder matching and the result table of `img2img eval pair` / `eval superres`."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from img2img.errors import Img2ImgError
from img2img.evaluate.scoring import EvalTable, PairScorer, evaluate_pairs, format_table, match_pairs
from img2img.evaluate.superres import centre_crop, evaluate_superres


def write(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def smooth(height: int, width: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 colour waves: the kind of image bicubic upscaling handles well."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [0.5 + 0.4 * np.sin(2 * np.pi * (rng.uniform(1, 3) * x + rng.uniform(1, 3) * y)) for _ in range(3)]
    return (np.stack(channels, -1) * 255).round().astype(np.uint8)


def test_psnr_of_a_known_error_and_of_identical_images():
    scorer = PairScorer(perceptual=False)
    target = torch.full((1, 3, 16, 16), 100 / 255)
    # Every sample off by 10 levels: MSE = (10/255)^2, so PSNR = 20 log10(255/10) on RGB.
    scores = scorer.score(target + 10 / 255, target)
    assert scores["psnr_rgb"] == pytest.approx(20 * math.log10(255 / 10), abs=1e-4)
    identical = scorer.score(target, target)
    assert identical["psnr_rgb"] == math.inf and identical["ssim_y"] == pytest.approx(1.0)


def test_size_mismatch_is_a_clear_error():
    with pytest.raises(Img2ImgError, match="sizes differ"):
        PairScorer(perceptual=False).score(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 20))


def test_perceptual_distance_is_zero_for_identical_and_grows_with_noise():
    scorer = PairScorer(perceptual=True)
    target = torch.from_numpy(smooth(32, 32, 0)).permute(2, 0, 1)[None].float() / 255
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(target.shape, generator=generator)
    distances = [scorer.score((target + level * noise).clamp(0, 1), target)["vgg_distance"] for level in (0, 0.05, 0.2)]
    assert distances[0] == pytest.approx(0, abs=1e-6)
    assert distances[0] < distances[1] < distances[2]


def test_folders_match_by_relative_path_ignoring_the_extension(tmp_path):
    write(tmp_path / "pred/a.png", smooth(16, 16, 0))
    write(tmp_path / "pred/sub/b.png", smooth(16, 16, 1))
    write(tmp_path / "pred/only_pred.png", smooth(16, 16, 2))
    write(tmp_path / "target/a.bmp", smooth(16, 16, 0))
    write(tmp_path / "target/sub/b.png", smooth(16, 16, 1))
    write(tmp_path / "target/only_target.png", smooth(16, 16, 3))
    pairs, only_pred, only_target = match_pairs(tmp_path / "pred", tmp_path / "target")
    assert [name for name, _, _ in pairs] == ["a", "sub/b"]
    assert only_pred == ["only_pred"] and only_target == ["only_target"]


def test_two_files_differing_only_by_extension_are_refused(tmp_path):
    write(tmp_path / "pred/a.png", smooth(16, 16, 0))
    write(tmp_path / "pred/a.bmp", smooth(16, 16, 0))
    write(tmp_path / "target/a.png", smooth(16, 16, 0))
    with pytest.raises(Img2ImgError, match="differ only by extension"):
        match_pairs(tmp_path / "pred", tmp_path / "target")


def test_evaluate_pairs_scores_good_pairs_and_reports_bad_ones(tmp_path):
    target = smooth(24, 24, 0)
    noisy = np.clip(target.astype(int) + np.random.default_rng(0).integers(-8, 9, target.shape), 0, 255).astype(np.uint8)
    write(tmp_path / "target/exact.png", target)
    write(tmp_path / "pred/exact.png", target)
    write(tmp_path / "target/noisy.png", target)
    write(tmp_path / "pred/noisy.png", noisy)
    write(tmp_path / "target/resized.png", target)
    write(tmp_path / "pred/resized.png", target[:20])
    (tmp_path / "pred/broken.png").write_bytes(b"not a png")
    write(tmp_path / "target/broken.png", target)

    table = evaluate_pairs(tmp_path / "pred", tmp_path / "target", PairScorer(perceptual=False))
    scores = dict(table.images)
    assert sorted(scores) == ["exact", "noisy"]
    assert scores["exact"]["prediction"]["psnr_rgb"] == math.inf
    assert 25 < scores["noisy"]["prediction"]["psnr_rgb"] < 40
    failures = dict(table.failures)
    assert "sizes differ" in failures["resized"] and "broken" in failures


def test_no_shared_image_is_an_error(tmp_path):
    write(tmp_path / "pred/a.png", smooth(16, 16, 0))
    write(tmp_path / "target/b.png", smooth(16, 16, 0))
    with pytest.raises(Img2ImgError, match="no image of"):
        evaluate_pairs(tmp_path / "pred", tmp_path / "target", PairScorer(perceptual=False))


def test_table_means_json_and_text():
    table = EvalTable(title="t", methods=["bicubic", "model"], metrics=["psnr_y"])
    table.images = [
        ("a", {"bicubic": {"psnr_y": 20.0}, "model": {"psnr_y": 24.0}}),
        ("b", {"bicubic": {"psnr_y": 22.0}, "model": {"psnr_y": math.inf}}),
    ]
    assert table.summary() == {"bicubic": {"psnr_y": 21.0}, "model": {"psnr_y": math.inf}}
    encoded = json.dumps(table.to_json(), allow_nan=False)  # strict JSON: inf must not leak
    assert json.loads(encoded)["summary"]["model"]["psnr_y"] == "inf"
    text = table.render()
    assert "21.0000" in text and "inf" in text and "(2 images)" in text


def test_format_table_aligns_columns():
    lines = format_table(["method", "PSNR"], [["bicubic", 21.5], ["model", 123.25]]).splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[1].endswith("21.5000") and lines[2].endswith("123.2500")


def test_centre_crop_keeps_multiples_of_the_scale():
    image = torch.zeros(1, 3, 103, 90)
    assert centre_crop(image, 4, 0).shape[-2:] == (100, 88)
    assert centre_crop(image, 4, 64).shape[-2:] == (64, 64)


def test_superres_evaluation_scores_model_and_bicubic(tmp_path):
    for index in range(3):
        write(tmp_path / f"hr/{index}.png", smooth(48, 40 + 4 * index, index))
    (tmp_path / "hr/bad.png").write_bytes(b"broken")

    def nearest_x2(lr: np.ndarray) -> np.ndarray:
        return lr.repeat(2, axis=0).repeat(2, axis=1)

    table, examples = evaluate_superres(
        nearest_x2, tmp_path / "hr", scale=2, scorer=PairScorer(crop_border=2, perceptual=False),
        model_name="nearest", sheet_count=2,
    )
    assert [name for name, _ in table.images] == ["0.png", "1.png", "2.png"]
    assert [name for name, _ in table.failures] == ["bad.png"]
    summary = table.summary()
    # On smooth images bicubic beats nearest-neighbour upscaling: the comparison is meaningful.
    assert summary["bicubic"]["psnr_y"] > summary["model"]["psnr_y"] + 1
    assert len(examples) == 2 and examples[0].lr.shape == (24, 20, 3) and examples[0].hr.shape == (48, 40, 3)


def test_superres_evaluation_refuses_a_model_of_the_wrong_scale(tmp_path):
    write(tmp_path / "hr/0.png", smooth(32, 32, 0))
    table, _ = evaluate_superres(
        lambda lr: lr, tmp_path / "hr", scale=2, scorer=PairScorer(crop_border=2, perceptual=False), model_name="identity"
    )
    assert not table.images and "is its scale 2?" in table.failures[0][1]


def test_grid_period_adds_the_grid_amplitude_of_the_prediction():
    """The checkerboard of a sub-pixel upscaler shows in the prediction alone: a pattern at one
    phase of every 4x4 cell scores far above the clean image, which scores near zero."""
    lr = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    target = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic").clamp(0.1, 0.9)
    gridded = target.clone()
    gridded[..., ::4, ::4] += 4 / 255
    scorer = PairScorer(perceptual=False, grid_period=4)
    assert scorer.metrics[-1] == "grid_amplitude"
    clean, marked = (scorer.score(image, target)["grid_amplitude"] for image in (target, gridded))
    assert clean < 0.003 < 0.008 < marked
    assert "grid_amplitude" not in PairScorer(perceptual=False).score(gridded, target)
    # Too small to measure a period-8 grid: the other metrics still come.
    small = target[..., :12, :12]
    assert set(PairScorer(perceptual=False, grid_period=8).score(small, small)) == {"psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"}
    with pytest.raises(ValueError, match="grid_period"):
        PairScorer(perceptual=False, grid_period=1)
