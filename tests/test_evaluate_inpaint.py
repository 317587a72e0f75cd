import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from inpaint_fixture import build_inpainter
from PIL import Image

from img2img.data.masks import validation_masks
from img2img.errors import Img2ImgError
from img2img.evaluate.inpaint import (
    evaluate_inpainting,
    hide_hole,
    inpainting_sheet,
    opencv_fillers,
)
from img2img.metrics import hole_metrics, psnr, ssim
from img2img.metrics.inpaint_baseline import opencv_inpaint

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "evaluate_inpainting.py"


def box_mask(batch=1, size=32, box=(8, 20, 10, 24)):
    top, bottom, left, right = box
    mask = torch.zeros(batch, 1, size, size)
    mask[..., top:bottom, left:right] = 1
    return mask


def random_items(count=2, size=32):
    rng = np.random.default_rng(0)
    # Smooth images (a gradient plus mild noise), so the OpenCV fills are good but not perfect.
    ramp = np.linspace(40, 200, size)[None, :, None] + np.linspace(0, 40, size)[:, None, None]
    masks = validation_masks(count, size, size)
    return [
        (f"img{index}.png", np.clip(ramp + rng.normal(0, 3, (size, size, 3)), 0, 255).astype(np.uint8), masks[index])
        for index in range(count)
    ]


def perfect_filler(items):
    """A filler that returns the truth: it finds the item whose kept pixels match its input."""

    def fill(hidden, mask):
        for _, image, item_mask in items:
            if np.array_equal(item_mask, mask) and np.array_equal(hide_hole(image, mask), hidden):
                return image.copy()
        raise AssertionError("input matches no item")

    return fill


def test_hole_metrics_of_a_perfect_fill():
    target = torch.rand(2, 3, 32, 32)
    scores = hole_metrics(target, target, box_mask(2))
    assert set(scores) == {"psnr", "ssim", "psnr_hole", "ssim_hole"}
    for name in ("psnr", "psnr_hole"):
        assert scores[name].shape == (2,) and torch.isinf(scores[name]).all()
    for name in ("ssim", "ssim_hole"):
        assert torch.allclose(scores[name], torch.ones(2))


@pytest.mark.parametrize("shape", [(3, 3, 32, 40), (1, 3, 11, 11), (1, 3, 64, 17)])
def test_hole_metrics_whole_image_scores_are_those_of_full_reference(shape):
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(shape, generator=generator)
    prediction = target + 0.2 * torch.rand(shape, generator=generator)
    mask = (torch.rand(shape[0], 1, *shape[2:], generator=generator) > 0.5).float()
    scores = hole_metrics(prediction, target, mask)
    assert torch.equal(scores["psnr"], psnr(prediction, target))
    assert torch.allclose(scores["ssim"], ssim(prediction, target), rtol=0, atol=1e-7)


def test_hole_metrics_closed_form_for_an_error_inside_the_hole():
    # 102/255 and 153/255 are 8-bit levels, so quantization leaves the error exactly 0.2.
    target = torch.full((2, 3, 32, 32), 102 / 255)
    mask = box_mask(2)
    prediction = target.clone()
    prediction[0] += 0.2 * mask[0]
    prediction[1] += (51 / 255) * 0.5 * mask[1]  # half the error: rounds to 25 or 26 levels
    scores = hole_metrics(prediction, target, mask)
    hole_fraction = mask[0].mean().item()
    assert scores["psnr_hole"][0].item() == pytest.approx(10 * math.log10(1 / 0.04), abs=1e-4)
    assert scores["psnr"][0].item() == pytest.approx(10 * math.log10(1 / (0.04 * hole_fraction)), abs=1e-4)
    # Per image: the second, smaller error scores higher.
    assert scores["psnr_hole"][1] > scores["psnr_hole"][0]
    assert scores["ssim_hole"][0] < scores["ssim"][0] < 1


def test_hole_metrics_ignore_kept_pixels():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, 32, 32, generator=generator)
    mask = box_mask(1, box=(20, 28, 20, 28))
    fill = target + 0.1 * torch.rand(1, 3, 32, 32, generator=generator) * mask
    # Noise in the kept pixels more than five pixels (half the SSIM window) from the hole.
    far = torch.zeros_like(mask)
    far[..., :10, :10] = 1
    spoiled = fill + 0.3 * torch.rand(1, 3, 32, 32, generator=generator) * far
    clean, noisy = hole_metrics(fill, target, mask), hole_metrics(spoiled, target, mask)
    assert noisy["psnr_hole"].item() == clean["psnr_hole"].item()
    assert noisy["ssim_hole"].item() == pytest.approx(clean["ssim_hole"].item(), abs=1e-6)
    assert noisy["psnr"] < clean["psnr"] and noisy["ssim"] < clean["ssim"]


def test_hole_metrics_without_a_hole_are_nan():
    target = torch.rand(1, 3, 16, 16)
    scores = hole_metrics(target * 0.5, target, torch.zeros(1, 1, 16, 16))
    assert torch.isnan(scores["psnr_hole"]).all() and torch.isnan(scores["ssim_hole"]).all()
    assert torch.isfinite(scores["psnr"]).all()


def test_hole_metrics_errors():
    target = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"mask must be \(B, 1, H, W\)"):
        hole_metrics(target, target, torch.ones(1, 3, 16, 16))
    with pytest.raises(ValueError, match="at least 11x11"):
        hole_metrics(target[..., :8, :8], target[..., :8, :8], torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        hole_metrics(target, target[..., :12, :12], torch.ones(1, 1, 16, 16))


@pytest.mark.parametrize("method", ["telea", "ns"])
def test_opencv_inpaint_keeps_the_unmasked_pixels(method):
    image = np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    mask = np.zeros((24, 32), np.float32)
    mask[5:15, 8:20] = 1
    filled = opencv_inpaint(image, mask, method)
    assert filled.shape == image.shape and filled.dtype == np.uint8
    assert np.array_equal(filled[mask == 0], image[mask == 0])
    assert not np.array_equal(filled[mask == 1], image[mask == 1])


@pytest.mark.parametrize("method", ["telea", "ns"])
def test_opencv_inpaint_fills_a_flat_image_with_its_colour(method):
    image = np.empty((32, 32, 3), np.uint8)
    image[:] = (200, 100, 50)  # distinct channels: a swapped RGB/BGR order would show
    mask = np.zeros((32, 32), np.float32)
    mask[8:24, 10:22] = 1
    filled = opencv_inpaint(hide_hole(image, mask), mask, method)
    assert np.abs(filled.astype(int) - image).max() <= 4


def test_opencv_inpaint_errors():
    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="telea, ns"):
        opencv_inpaint(image, np.ones((16, 16)), "patchmatch")
    with pytest.raises(ValueError, match="the image's size"):
        opencv_inpaint(image, np.ones((8, 16)))
    with pytest.raises(ValueError, match="uint8 RGB"):
        opencv_inpaint(image.astype(np.float32), np.ones((16, 16)))


def test_evaluate_inpainting_ranks_the_perfect_fill_first():
    items = random_items()
    methods = {
        **opencv_fillers(),
        "perfect": perfect_filler(items),
        "unfilled": lambda hidden, mask: hidden,  # leaves the hole black
    }
    table, examples = evaluate_inpainting(items, methods, vgg=False, sheet_count=1)
    assert table.methods == ["telea", "ns", "perfect", "unfilled"]
    assert table.metrics == ["psnr", "ssim", "psnr_hole", "ssim_hole"]
    assert [name for name, _ in table.images] == ["img0.png", "img1.png"] and not table.failures
    summary = table.summary()
    assert math.isinf(summary["perfect"]["psnr_hole"]) and summary["perfect"]["ssim_hole"] == pytest.approx(1)
    for method in ("telea", "ns"):
        assert summary["unfilled"]["psnr_hole"] < summary[method]["psnr_hole"] < summary["perfect"]["psnr_hole"]
        assert summary[method]["ssim_hole"] < summary[method]["ssim"]
    assert len(examples) == 1 and examples[0].name == "img0.png"
    assert np.array_equal(examples[0].fills["perfect"], items[0][1])


def test_evaluate_inpainting_hides_the_hole_and_scores_the_composite():
    items = random_items(1)
    seen = []

    def white(hidden, mask):
        seen.append(hidden.copy())
        return np.full_like(hidden, 255)

    table, examples = evaluate_inpainting(items, {"white": white}, vgg=False, sheet_count=1)
    _, image, mask = items[0]
    assert np.all(seen[0][mask == 1] == 0) and np.array_equal(seen[0][mask == 0], image[mask == 0])
    # Outside the hole the scored image is the original, whatever the filler returned.
    composite = examples[0].fills["white"]
    assert np.all(composite[mask == 1] == 255) and np.array_equal(composite[mask == 0], image[mask == 0])
    expected = hole_metrics(
        torch.from_numpy(composite).permute(2, 0, 1)[None].float() / 255,
        torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255,
        torch.from_numpy(mask)[None, None],
    )
    assert table.images[0][1]["white"]["psnr"] == pytest.approx(expected["psnr"].item())


def test_evaluate_inpainting_with_the_vgg_distance():
    items = random_items(1)
    table, _ = evaluate_inpainting(items, {"perfect": perfect_filler(items), **opencv_fillers()})
    scores = table.images[0][1]
    assert table.metrics[-1] == "vgg_distance"
    assert scores["perfect"]["vgg_distance"] == pytest.approx(0, abs=1e-6)
    assert scores["telea"]["vgg_distance"] > 0


def test_evaluate_inpainting_reports_a_failing_method_and_goes_on():
    items = random_items(3)

    def flaky(hidden, mask):
        if np.array_equal(mask, items[1][2]):
            raise Img2ImgError("out of memory")
        return hidden

    def shrinking(hidden, mask):
        return hidden[:-1] if np.array_equal(mask, items[2][2]) else hidden

    table, _ = evaluate_inpainting(items, {"flaky": flaky, "shrinking": shrinking}, vgg=False)
    assert [name for name, _ in table.images] == ["img0.png"]
    assert table.failures[0] == ("img1.png", "flaky: out of memory")
    assert table.failures[1][0] == "img2.png" and "shrinking returned uint8 (31, 32, 3)" in table.failures[1][1]


def test_evaluate_inpainting_rejects_images_too_small_for_the_metrics():
    image, mask = np.zeros((12, 12, 3), np.uint8), np.ones((12, 12), np.float32)
    with pytest.raises(ValueError, match="at least 16x16"):
        evaluate_inpainting([("a.png", image, mask)], opencv_fillers())
    with pytest.raises(ValueError, match="at least one method"):
        evaluate_inpainting([("a.png", image, mask)], {})


def test_inpainting_sheet_has_a_column_per_method():
    items = random_items()
    _, examples = evaluate_inpainting(items, opencv_fillers(), vgg=False, sheet_count=2)
    sheet = inpainting_sheet(examples, tile_size=32)
    # Columns: input, telea, ns, truth; 4 * 32 px tiles + gaps + the row-title band.
    assert sheet.mode == "RGB" and 4 * 32 < sheet.width < 4 * 32 + 60
    with pytest.raises(Img2ImgError, match="nothing to draw"):
        inpainting_sheet([])


def load_script():
    spec = importlib.util.spec_from_file_location("evaluate_inpainting", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_writes_the_table_json_and_sheet(tmp_path, capsys):
    for index in range(2):
        array = np.random.default_rng(index).integers(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(array).save(tmp_path / f"{index}.png")
    out = tmp_path / "out"
    argv = [str(tmp_path), "--size", "32", "--no-vgg", "--json", str(out / "r.json"), "--sheet", str(out / "s.png")]
    assert load_script().main(argv) == 0
    printed = capsys.readouterr().out
    assert "telea" in printed and "psnr_hole" in printed and "(2 images)" in printed
    report = json.loads((out / "r.json").read_text())
    assert set(report["summary"]) == {"telea", "ns"}
    assert report["settings"]["size"] == 32 and report["settings"]["images"] == 2
    assert report["settings"]["seed"] == 0 and report["settings"]["opencv"]
    with Image.open(out / "s.png") as sheet:
        assert sheet.mode == "RGB"


def test_script_scores_an_onnx_model_beside_the_baselines(tmp_path, capsys):
    for index in range(2):
        array = np.random.default_rng(index).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(array).save(tmp_path / f"{index}.png")
    model = build_inpainter(tmp_path / "mean-fill.onnx")
    out = tmp_path / "r.json"
    argv = [str(tmp_path), "--size", "32", "--no-vgg", "--model", str(model), "--json", str(out)]
    assert load_script().main(argv) == 0
    report = json.loads(out.read_text())
    assert list(report["summary"]) == ["telea", "ns", "mean-fill"]
    assert report["settings"]["models"] == [str(model)]
    assert "mean-fill" in capsys.readouterr().out


def test_script_without_images_says_so(tmp_path, capsys):
    assert load_script().main([str(tmp_path), "--no-vgg"]) == 2
    assert "no images under" in capsys.readouterr().err
