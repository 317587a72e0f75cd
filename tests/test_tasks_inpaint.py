"""Inpainting training, the hole-only guarantee of net and export, on tiny generated photos."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from PIL import Image
from torch import nn

from img2img.engine.checkpoint import load_generator
from img2img.engine.config import resolve_config
from img2img.engine.trainer import Trainer
from img2img.errors import ConfigError
from img2img.export import describe_net, export_generator, export_onnx
from img2img.nets import build_net
from img2img.tasks.inpaint import InpaintConfig, Inpainting


def textured_image(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Smooth colour waves with a darker band: structure a fill can continue."""
    height, width = size
    y, x = np.mgrid[0:height, 0:width] / max(size)
    channels = [
        0.5 + 0.35 * np.sin(2 * np.pi * (fx * x + fy * y) + phase) for fx, fy, phase in rng.uniform(1, 6, size=(3, 3))
    ]
    image = np.stack(channels, axis=-1)
    image[(y * 5).astype(int) % 2 == 1] *= 0.7
    return Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 3)):
        (root / split).mkdir()
        for index in range(count):
            textured_image(rng, (48 + 8 * index, 64)).save(root / split / f"{index}.png")
    return root


def tiny_config(data: Path, *overrides: str) -> InpaintConfig:
    base = [
        f'data="{data}"',
        "net=inpaint_unet_tiny",
        "discriminator=patchgan_tiny",
        "discriminator_options={spectral_norm = true, norm = 'none'}",
        "patch_size=32",
        "scale_range=[0.5, 0.8]",
        "resolution=32",
        "perceptual_weight=0",
        "style_weight=0",
        "engine.batch_size=2",
        "engine.num_workers=0",
        "engine.steps=4",
        "engine.log_every=1",
        "engine.sample_every=2",
        "engine.validate_every=2",
        "engine.checkpoint_every=1",
        "engine.ema_decay=0.9",
    ]
    return resolve_config(InpaintConfig, overrides=[*base, *overrides])


def fit(config: InpaintConfig, run_dir: Path, *, resume: bool = False, stop_at: int | None = None) -> Trainer:
    trainer = Trainer(Inpainting(config, torch.device("cpu")), run_dir, resume=resume, show_progress=False)
    trainer.fit(stop_at=stop_at)
    return trainer


def test_training_logs_every_term_and_validates_against_telea(photo_folder, tmp_path):
    fit(tiny_config(photo_folder, "engine.penalty_interval=1"), tmp_path / "run")
    logged = (tmp_path / "run" / "train_log.jsonl").read_text()
    for term in ("l_g_hole", "l_g_valid", "l_g_gan", "l_d_adv", "l_d_penalty"):
        assert f'"{term}"' in logged
    validation = json.loads((tmp_path / "run" / "validation_log.jsonl").read_text().splitlines()[-1])
    assert validation["images"] == 3
    for key in ("psnr", "ssim", "psnr_hole", "ssim_hole", "telea_psnr_hole", "psnr_hole_gain"):
        assert np.isfinite(validation[key]), key
    with Image.open(tmp_path / "run" / "samples" / "step_0000004.png") as grid:
        assert grid.width > grid.height  # three columns: input with hole, fill, truth


def test_val_vgg_scores_model_and_telea_as_the_evaluation_script_does(photo_folder):
    """The campaign tracks the VGG distance target from training's validation: Telea's figure
    there is the one `scripts/evaluate_inpainting.py` reports on the same crops and masks."""
    from img2img.evaluate.inpaint import evaluate_inpainting, opencv_fillers

    task = Inpainting(tiny_config(photo_folder, "val_vgg=true"), torch.device("cpu"))
    metrics = task.validate(task.build_generator().eval())
    table, _ = evaluate_inpainting(task.validation_items(), {"telea": opencv_fillers()["telea"]})
    assert metrics["telea_vgg_distance"] == pytest.approx(table.summary()["telea"]["vgg_distance"], abs=1e-3)
    assert 0 < metrics["vgg_distance"] < 2 and metrics["vgg_distance"] != metrics["telea_vgg_distance"]
    assert "vgg_distance" not in Inpainting(tiny_config(photo_folder), torch.device("cpu")).validate(
        task.build_generator().eval()
    )


def test_resume_is_exact(photo_folder, tmp_path):
    """2 steps, interrupted, resumed for 2 more == 4 straight steps (masks drawn the same)."""
    straight = fit(tiny_config(photo_folder), tmp_path / "straight")
    fit(tiny_config(photo_folder), tmp_path / "split", stop_at=2)
    resumed = fit(tiny_config(photo_folder), tmp_path / "split", resume=True)
    for first, second in ((straight.G, resumed.G), (straight.D, resumed.D), (straight.G_ema, resumed.G_ema)):
        for (key, x), (_, y) in zip(first.state_dict().items(), second.state_dict().items()):
            assert torch.equal(x, y), key


def test_training_examples_have_holes_in_the_configured_range(photo_folder):
    task = Inpainting(tiny_config(photo_folder, "min_coverage=0.2", "max_coverage=0.3"), torch.device("cpu"))
    torch.manual_seed(0)
    examples = [task.train_dataset()[index % 4] for index in range(12)]
    for example in examples:
        assert example["image"].shape == (3, 32, 32) and example["mask"].shape == (1, 32, 32)
        assert set(example["mask"].unique().tolist()) <= {0.0, 1.0}
        assert 0.2 <= example["mask"].mean() <= 0.3
    assert not torch.equal(examples[0]["mask"], examples[4]["mask"])  # fresh masks every draw


class ConstantFill(nn.Module):
    """Predicts `value` at every pixel: a stand-in generator whose losses can be worked out."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, image, mask):
        return torch.full_like(image, self.value)


def test_hole_and_valid_terms_by_hand(photo_folder):
    task = Inpainting(tiny_config(photo_folder, "hole_weight=6", "valid_weight=1", "gan.weight=0"), torch.device("cpu"))
    image = torch.full((1, 3, 16, 16), 0.5)  # in the net's [-1, 1] range
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :8, :] = 1.0  # the top half is the hole
    batch = {"image": image, "mask": mask}
    fake = task.generate(ConstantFill(-0.5), batch)
    # Outside the hole the composite is the image itself; inside, the prediction.
    assert torch.equal(fake["composite"][..., 8:, :], image[..., 8:, :])
    assert torch.equal(fake["composite"][..., :8, :], torch.full((1, 3, 8, 16), -0.5))
    discriminator = build_net("patchgan_tiny", in_channels=4)
    terms = task.generator_loss(batch, fake, discriminator)
    # |error| = 1 everywhere; half the pixels are hole: 6 * 1 * 0.5 and 1 * 1 * 0.5.
    assert terms["l_g_hole"].item() == pytest.approx(3.0)
    assert terms["l_g_valid"].item() == pytest.approx(0.5)
    assert terms["l_g_gan"].item() == 0.0


def test_generator_never_sees_what_is_under_the_hole():
    net = build_net("inpaint_unet_tiny").eval()
    image = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1.0
    changed = torch.where(mask.bool(), torch.rand_like(image), image)
    with torch.no_grad():
        assert torch.equal(net(image, mask), net(changed, mask))


def test_bad_settings_are_clear_errors(photo_folder):
    with pytest.raises(ConfigError, match="min_coverage"):
        Inpainting(tiny_config(photo_folder, "min_coverage=0.7", "max_coverage=0.6"), torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"short_side_range .*patch_size \(32\)"):
        Inpainting(tiny_config(photo_folder, "short_side_range=[24, 40]"), torch.device("cpu"))
    task = Inpainting(tiny_config(photo_folder, "patch_size=34"), torch.device("cpu"))
    with pytest.raises(ConfigError, match="multiples of 4"):
        task.build_generator()
    gray = Inpainting(tiny_config(photo_folder, "net_options.in_channels=1", "net_options.out_channels=1"),
                      torch.device("cpu"))
    with pytest.raises(ConfigError, match="in_channels 3"):
        gray.build_generator()
    with pytest.raises(ValueError, match="must both be 1"):
        build_net("inpaint_unet_tiny", in_channels=3, out_channels=1)


def test_grayscale_net_exports_and_fills_gray_inside_the_hole_only(tmp_path):
    """A one-channel net (for a user's grayscale scans) fills from the luma of an RGB input
    and the graph still returns every pixel outside the hole unchanged."""
    net = build_net("inpaint_unet_tiny", in_channels=1, out_channels=1).eval()
    output = tmp_path / "gray.onnx"
    error = export_onnx(net, output, info=describe_net(net, task="inpaint"), opset=17)
    assert error < 1e-4
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(2).random((1, 3, 16, 20), dtype=np.float32)
    mask = np.zeros((1, 1, 16, 20), np.float32)
    mask[..., 4:12, 6:14] = 1.0
    (filled,) = session.run(["output"], {"input": image, "mask": mask})
    keep = np.broadcast_to(mask == 0, image.shape)
    assert np.array_equal(filled[keep], image[keep])
    hole = filled[0, :, 4:12, 6:14]
    assert np.array_equal(hole[0], hole[1]) and np.array_equal(hole[1], hole[2])  # gray fill


def test_export_takes_image_and_mask_and_keeps_every_unmasked_pixel(photo_folder, tmp_path):
    fit(tiny_config(photo_folder, "engine.steps=2"), tmp_path / "run")
    output = tmp_path / "inpaint.onnx"
    errors = export_generator(load_generator(tmp_path / "run" / "checkpoints" / "last.pt"), output, opset=17)
    assert errors["fp32"] < 1e-4
    model = onnx.load(str(output))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["task"] == "inpaint" and props["inputs"] == "image,mask" and props["resolution"] == "32"
    assert props["multiple_of"] == "4" and props["scale"] == "1"
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    assert [node.name for node in session.get_inputs()] == ["input", "mask"]
    rng = np.random.default_rng(1)
    image = rng.random((1, 3, 24, 40), dtype=np.float32)  # not the traced size
    mask = np.zeros((1, 1, 24, 40), np.float32)
    mask[..., 5:15, 10:30] = 1.0
    (filled,) = session.run(["output"], {"input": image, "mask": mask})
    keep = np.broadcast_to(mask == 0, image.shape)
    assert np.array_equal(filled[keep], image[keep])  # bit for bit
    assert not np.allclose(filled[~keep], image[~keep])


def test_exported_model_fills_through_the_runtime_and_the_command_line(photo_folder, tmp_path):
    """Train, export, then `img2img.load` and `img2img inpaint` on a photo larger than the
    model's resolution: the crop around the hole is shrunk, filled and pasted back."""
    import subprocess
    import sys

    import img2img

    fit(tiny_config(photo_folder, "engine.steps=1"), tmp_path / "run")
    model_path = tmp_path / "tiny-inpaint.onnx"
    export_generator(load_generator(tmp_path / "run" / "checkpoints" / "last.pt"), model_path, opset=17)
    photo = np.asarray(textured_image(np.random.default_rng(3), (90, 120)))
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[20:70, 30:100] = 255  # a 70x50 hole: its crop is larger than the 32-pixel resolution
    filled = img2img.load(model_path, task="inpaint")(photo, mask)
    assert filled.shape == photo.shape and filled.dtype == np.uint8
    assert np.array_equal(filled[mask == 0], photo[mask == 0])
    assert not np.array_equal(filled[mask > 0], photo[mask > 0])

    Image.fromarray(photo).save(tmp_path / "photo.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    done = subprocess.run(
        [sys.executable, "-m", "cli", "inpaint", str(tmp_path / "photo.png"), "--mask", str(tmp_path / "mask.png"),
         "--model", str(model_path), "-o", str(tmp_path / "out.png")],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "out.png") as written:
        assert np.array_equal(np.asarray(written), filled)


def test_shipped_architecture_exports_and_runs_images_below_its_minimum(tmp_path):
    """The dilated bottleneck pads by reflection, so the net needs 72x72 at least: the export
    must trace at a size it accepts, and the runtime must pad a smaller image up to it."""
    from img2img.runtime.onnx_model import OnnxModel

    net = build_net("inpaint_unet", base_channels=4).eval()
    assert net.min_size == 72
    output = tmp_path / "narrow.onnx"
    error = export_onnx(net, output, info=describe_net(net, task="inpaint"), opset=17)
    assert error < 1e-4
    model = OnnxModel(output, device="cpu")
    assert (model.info.multiple_of, model.info.min_size) == (8, 72)
    image = np.random.default_rng(0).random((40, 50, 3), dtype=np.float32)
    mask = np.zeros((40, 50), np.float32)
    mask[10:30, 10:40] = 1.0
    filled = model.run(image, mask)
    assert filled.shape == (40, 50, 3)
    assert np.array_equal(filled[mask == 0], image[mask == 0])
