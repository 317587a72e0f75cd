"""Training under torchrun: gloo processes on the CPU step like one process with their summed
batch, resume exactly, leave writing to rank 0 and stop together when one rank fails."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_tasks_style import folders  # noqa: F401  (the photo and painting fixture)
from typer.testing import CliRunner

import cli.main
from img2img.engine.batches import StepBatches
from img2img.engine.checkpoint import load_checkpoint
from img2img.engine.config import resolve_config
from img2img.engine.distributed import convert_sync_batchnorm, torchrun_command
from img2img.engine.trainer import Trainer, split_batch
from img2img.errors import ConfigError
from img2img.tasks.faces import Faces, FacesConfig
from img2img.tasks.pix2pix import Pix2Pix, Pix2PixConfig

ROOT = Path(__file__).resolve().parents[1]
SIZE = 16


def disc(rng: np.random.Generator, colour: tuple[int, int, int]) -> Image.Image:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    cy, cx = rng.uniform(4, 12, size=2)
    pixels = np.full((SIZE, SIZE, 3), 128, np.uint8)
    pixels[(y - cy) ** 2 + (x - cx) ** 2 < 16] = colour
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """a/: red discs, b/: blue discs at the same places, same names (pix2pix pairs)."""
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 2)):
        for domain in ("a", "b"):
            (root / domain / split).mkdir(parents=True)
        for index in range(count):
            state = rng.bit_generator.state
            disc(rng, (220, 30, 30)).save(root / "a" / split / f"{index}.png")
            rng.bit_generator.state = state
            disc(rng, (30, 30, 220)).save(root / "b" / split / f"{index}.png")
    return root


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(1)
    for label, colour in (("smiley", (250, 200, 40)), ("person", (200, 140, 100))):
        (root / label).mkdir()
        for index in range(4):
            disc(rng, colour).save(root / label / f"{index}.png")
    return root


def pix2pix_settings(steps: int, batch_size: int) -> list[str]:
    """Tiny pix2pix without batch statistics or dropout, with R1 and gradient clipping, so that
    nothing but the batch split differs between the runs compared."""
    return [
        "net=unet_tiny",
        'net_options={norm="instance"}',
        "discriminator=patchgan_tiny",
        'discriminator_options={norm="instance"}',
        f"load_size={SIZE + 2}",
        f"crop_size={SIZE}",
        'gan.penalty="r1"',
        "gan.penalty_weight=1.0",
        "engine.grad_clip=1.0",
        "engine.ema_decay=0.9",
        f"engine.steps={steps}",
        f"engine.batch_size={batch_size}",
        "engine.num_workers=0",
        "engine.device='cpu'",
        "engine.log_every=1",
        "engine.sample_every=2",
        "engine.validate_every=2",
        "engine.checkpoint_every=2",
    ]


def torchrun(nproc: int, *arguments: str) -> subprocess.CompletedProcess:
    """`img2img train ARGUMENTS --nproc N`, the way a user launches it."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cli", "train", *arguments, "--nproc", str(nproc)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,  # a hang (a rank waiting forever) fails the test instead of the suite
    )


def settings_arguments(settings: list[str]) -> list[str]:
    return [part for setting in settings for part in ("--set", setting)]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    named = {f"G.{k}": v for k, v in checkpoint["generator"]["state_dict"].items()}
    named |= {f"D.{k}": v for k, v in checkpoint["discriminator"]["state_dict"].items()}
    return named | {f"G_ema.{k}": v for k, v in checkpoint["generator_ema"].items()}


@pytest.fixture(scope="module")
def two_process_run(pairs, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """4 steps of pix2pix on 2 processes at batch 1."""
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    data = ["--data-a", str(pairs / "a"), "--data-b", str(pairs / "b")]
    result = torchrun(2, "pix2pix", *data, "--out", str(run_dir), *settings_arguments(pix2pix_settings(4, 1)))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result


def test_two_processes_step_like_one_process_with_twice_the_batch(pairs, two_process_run, tmp_path):
    run_dir, _ = two_process_run
    settings = [f'data_a="{pairs / "a"}"', f'data_b="{pairs / "b"}"', *pix2pix_settings(4, 2)]
    config = resolve_config(Pix2PixConfig, overrides=settings)
    Trainer(Pix2Pix(config, torch.device("cpu")), tmp_path / "one", show_progress=False).fit()
    together, alone = weights(run_dir), weights(tmp_path / "one")
    assert together.keys() == alone.keys()
    for name in alone:
        torch.testing.assert_close(together[name], alone[name], rtol=1e-4, atol=1e-5, msg=name)
    # The comparison can fail: training moves the weights away from where they start.
    fresh = Trainer(Pix2Pix(config, torch.device("cpu")), tmp_path / "fresh", show_progress=False).G.state_dict()
    assert any(not torch.allclose(value, alone[f"G.{name}"]) for name, value in fresh.items())


def test_a_two_process_run_resumes_exactly(pairs, two_process_run, tmp_path):
    straight, _ = two_process_run
    data = ["--data-a", str(pairs / "a"), "--data-b", str(pairs / "b")]
    first = torchrun(2, "pix2pix", *data, "--out", str(tmp_path / "split"), *settings_arguments(pix2pix_settings(2, 1)))
    assert first.returncode == 0, first.stderr[-3000:]
    second = torchrun(2, "pix2pix", "--resume", str(tmp_path / "split"), "--set", "engine.steps=4")
    assert second.returncode == 0, second.stderr[-3000:]
    resumed, original = weights(tmp_path / "split"), weights(straight)
    for name in original:
        assert torch.equal(resumed[name], original[name]), name


def test_only_rank_zero_logs_samples_and_checkpoints(two_process_run):
    run_dir, result = two_process_run
    logged_steps = [json.loads(line)["step"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert logged_steps == [1, 2, 3, 4]
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step_0000002.png", "step_0000004.png"]
    assert len(list((run_dir / "tensorboard").iterdir())) == 1
    assert result.stdout.count("trained pix2pix to step 4 on 2 processes") == 1
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert checkpoint["ranks"] == 2 and len(checkpoint["rank_states"]) == 2
    # Each rank keeps its own random stream (dropout, augmentation), saved for the resume.
    first, second = (state["rng"]["torch"] for state in checkpoint["rank_states"])
    assert not torch.equal(first, second)
    logged = json.loads((run_dir / "train_log.jsonl").read_text().splitlines()[-1])
    assert logged["images_per_second"] > 0


def test_a_failure_on_one_rank_stops_every_rank(faces, tmp_path):
    """A corrupt image that only rank 1 draws, at step 0, after the ranks have met: the run ends
    with that rank's error, no rank waits for it forever, and no checkpoint is half written."""
    data = tmp_path / "faces"
    data.mkdir()
    for index, path in enumerate(sorted(faces.rglob("*.png"))):
        (data / f"{index}.png").write_bytes(path.read_bytes())
    settings = [
        "resolution=16", "latent_dim=16", "engine.steps=3", "engine.batch_size=1", "engine.num_workers=0",
        "engine.device='cpu'", "engine.sample_every=0", "engine.validate_every=0", "engine.fid_every=0",
        "net_g=dcgan_generator_tiny", "net_d=dcgan_discriminator_tiny",
    ]
    dataset = Faces(resolve_config(FacesConfig, overrides=[f'data="{data}"', *settings]), torch.device("cpu")).train_dataset()
    # A seed whose step 0 hands rank 1 (the second half of the global batch) an example rank 0 lacks.
    seed = next(s for s in range(100) if len(set(np.random.default_rng([s, 0]).integers(len(dataset), size=2))) == 2)
    bad_path = dataset.items[np.random.default_rng([seed, 0]).integers(len(dataset), size=2)[1]][0]
    bad_path.write_bytes(b"not a png")
    result = torchrun(
        2, "faces", "--data", str(data), "--out", str(tmp_path / "run"),
        *settings_arguments([*settings, f"engine.seed={seed}"]),
    )
    assert result.returncode != 0
    assert f"cannot read image {bad_path}" in result.stderr
    assert "process 0 of 2 stopped because another process of this run failed" in result.stderr
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


@pytest.mark.parametrize(
    "recipe",
    [
        ("net_g=resgan_generator_tiny", "net_d=resgan_discriminator_tiny", "ada_target=0.6", "augment_p=0.5"),
        ("net_g=dcgan_generator_tiny", "net_d=dcgan_discriminator_tiny", 'augment="none"', 'gan.penalty="none"'),
    ],
    ids=["modern", "dcgan"],
)
def test_conditional_faces_train_on_two_processes_with_one_augmentation_probability(faces, tmp_path, recipe):
    """The noise-to-image GAN: labels, R1 through DiffAugment, ADA's p kept equal on every rank,
    and batch statistics (the DCGAN's BatchNorm) per rank."""
    settings = [
        "resolution=16", "latent_dim=16", "engine.steps=2", "engine.batch_size=2", "engine.num_workers=0",
        "engine.device='cpu'", "engine.log_every=1", "engine.sample_every=0", "engine.validate_every=0",
        "engine.fid_every=0", "engine.checkpoint_every=1", "engine.penalty_interval=2", *recipe,
    ]
    result = torchrun(2, "faces", "--data", str(faces), "--conditional", "--out", str(tmp_path / "run"),
                      *settings_arguments(settings))
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert checkpoint["step"] == 2
    task_states = [state["task_state"] for state in checkpoint["rank_states"]]
    assert task_states[0] == task_states[1]


def test_cyclegan_trains_both_pairs_on_two_processes(pairs, tmp_path):
    settings = [
        "net=resnet_tiny", "discriminator=patchgan_tiny", f"load_size={SIZE + 2}", f"crop_size={SIZE}",
        "pool_size=2", "engine.steps=2", "engine.batch_size=1", "engine.num_workers=0", "engine.device='cpu'",
        "engine.log_every=1", "engine.sample_every=0", "engine.validate_every=2", "engine.checkpoint_every=1",
    ]
    result = torchrun(2, "cyclegan", "--data-a", str(pairs / "a"), "--data-b", str(pairs / "b"),
                      "--out", str(tmp_path / "run"), *settings_arguments(settings))
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert checkpoint["step"] == 2 and len(checkpoint["rank_states"]) == 2


IMAGE_TASKS = {
    "superres": lambda d: [
        "--data", str(d["photos"]), "--set", "net=srvgg_tiny", "--set", "scale=2", "--set", "patch_size=16",
        "--set", "stage=gan", "--set", "discriminator=patchgan_tiny", "--set", "perceptual_weight=0",
        "--set", "gan.loss=hinge", "--set", "gan.penalty=r1",
    ],
    "inpaint": lambda d: [
        "--data", str(d["photos"]), "--set", "net=inpaint_unet_tiny", "--set", "discriminator=patchgan_tiny",
        "--set", "discriminator_options={spectral_norm = true, norm = 'none'}", "--set", "patch_size=32",
        "--set", "scale_range=[0.5, 0.8]", "--set", "resolution=32", "--set", "perceptual_weight=0",
        "--set", "style_weight=0",
    ],
    "style": lambda d: [
        "--data", str(d["photos"]), "--set", f'style_image="{d["painting"]}"', "--set", "net=resnet_tiny",
        "--set", "net_options={upsample = 'resize'}", "--set", "patch_size=32", "--set", "resolution=32",
        "--set", "style_size=32", "--set", "scale_range=[0.5, 0.8]", "--set", "gan.weight=0.1",
        "--set", "gan_patch=16", "--set", "discriminator=patchgan_tiny",
    ],
    "adain": lambda d: [
        "--data", str(d["photos"]), "--set", f'style_data="{d["styles"]}"', "--set", "net=adain_tiny",
        "--set", "patch_size=32", "--set", "resolution=32", "--set", "style_size=32",
        "--set", "scale_range=[0.5, 0.8]",
    ],
}


@pytest.mark.parametrize("task", sorted(IMAGE_TASKS))
def test_every_image_task_trains_on_two_processes(task, folders, tmp_path):  # noqa: F811 (the fixture)
    engine = [
        "engine.steps=2", "engine.batch_size=1", "engine.num_workers=0", "engine.device='cpu'",
        "engine.log_every=1", "engine.sample_every=2", "engine.validate_every=2", "engine.checkpoint_every=1",
    ]
    result = torchrun(2, task, *IMAGE_TASKS[task](folders), "--out", str(tmp_path / "run"), *settings_arguments(engine))
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert checkpoint["step"] == 2 and len(checkpoint["rank_states"]) == 2
    assert (tmp_path / "run" / "samples" / "step_0000002.png").is_file()


def test_gradient_accumulation_matches_the_full_batch(pairs, tmp_path):
    """Batch 1 x 2 micro-batches updates like batch 2, in one process."""
    base = [f'data_a="{pairs / "a"}"', f'data_b="{pairs / "b"}"', *pix2pix_settings(3, 2)]
    full = resolve_config(Pix2PixConfig, overrides=base)
    split = resolve_config(Pix2PixConfig, overrides=[*base, "engine.batch_size=1", "engine.accumulate=2"])
    for name, config in (("full", full), ("split", split)):
        Trainer(Pix2Pix(config, torch.device("cpu")), tmp_path / name, show_progress=False).fit()
    together, apart = weights(tmp_path / "full"), weights(tmp_path / "split")
    for name in together:
        torch.testing.assert_close(apart[name], together[name], rtol=1e-4, atol=1e-5, msg=name)


def test_step_batches_give_each_rank_its_slice_of_the_global_batch():
    examples = list(range(100))
    whole = StepBatches(examples, batch_size=6, seed=3)[7][0]
    slices = [StepBatches(examples, batch_size=3, seed=3, rank=r, ranks=2)[7][0] for r in range(2)]
    assert torch.equal(torch.cat(slices), whole)
    with pytest.raises(ValueError, match="rank 2"):
        StepBatches(examples, batch_size=3, seed=3, rank=2, ranks=2)


def test_split_batch_cuts_per_example_tensors_and_shares_the_rest():
    batch = {"image": torch.arange(8.0).view(4, 2), "style": torch.ones(1, 3), "weight": torch.tensor(2.0)}
    first, second = split_batch(batch, 2)
    assert torch.equal(first["image"], batch["image"][:2]) and torch.equal(second["image"], batch["image"][2:])
    assert first["style"] is batch["style"] and second["weight"] is batch["weight"]


def test_nproc_launches_torchrun_with_the_same_arguments(monkeypatch, tmp_path):
    launched = []

    def fake_run(command, check):
        launched.append(command)
        return subprocess.CompletedProcess(command, returncode=3)

    monkeypatch.setattr(cli.main.subprocess, "run", fake_run)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    result = CliRunner().invoke(
        cli.main.app,
        ["train", "faces", "--data", "faces", "--out", "runs/f", "--set", "engine.steps=10", "--conditional",
         "--nproc", "4"],
    )
    assert result.exit_code == 3  # torchrun's status is the command's
    assert launched == [
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4", "-m", "cli", "train",
         "faces", "--data", "faces", "--out", "runs/f", "--set", "engine.steps=10", "--set", "conditional=true"]
    ]
    assert launched[0] == torchrun_command(4, launched[0][8:])


def test_nproc_under_torchrun_is_refused(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(cli.main.app, ["train", "faces", "--data", "x", "--out", "y", "--nproc", "2"])
    assert result.exit_code == 2
    assert "already runs under torchrun" in result.output


def test_sync_batchnorm_and_accumulation_settings_are_checked(pairs, tmp_path):
    with pytest.raises(ConfigError, match="needs CUDA"):
        convert_sync_batchnorm(torch.nn.BatchNorm2d(3), torch.device("cpu"))
    settings = [f'data_a="{pairs / "a"}"', f'data_b="{pairs / "b"}"', *pix2pix_settings(1, 1), "engine.accumulate=0"]
    with pytest.raises(ConfigError, match="engine.accumulate must be at least 1"):
        Trainer(Pix2Pix(resolve_config(Pix2PixConfig, overrides=settings), torch.device("cpu")), tmp_path)
    with pytest.raises(ConfigError, match="cannot be split into 2"):
        split_batch({"image": torch.zeros(3, 1)}, 2)
