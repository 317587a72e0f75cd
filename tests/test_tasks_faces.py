"""The faces task: both recipes train and resume exactly, conditioning, FID-picked checkpoints, export."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image, ImageDraw

from img2img.engine.config import resolve_config
from img2img.engine.trainer import Trainer
from img2img.errors import ConfigError
from img2img.export import export_generator
from img2img.engine.checkpoint import load_generator
from img2img.runtime.faces import FaceGenerator
from img2img.tasks.faces import Faces, FacesConfig

MODERN = ("net_g=resgan_generator_tiny", "net_d=resgan_discriminator_tiny", "ada_target=0.6", "augment_p=0.5")
DCGAN = (
    "net_g=dcgan_generator_tiny",
    "net_d=dcgan_discriminator_tiny",
    'gan.loss="nonsaturating"',
    'gan.penalty="none"',
    'augment="none"',
    "engine.ema_decay=0.0",
)


def draw_face(colour: tuple[int, int, int], size: int = 24, mode: str = "RGB") -> Image.Image:
    """A disc with two eyes: a stand-in face."""
    image = Image.new(mode, (size, size), (255, 255, 255, 0) if mode == "RGBA" else (255, 255, 255))
    pen = ImageDraw.Draw(image)
    pen.ellipse((2, 2, size - 3, size - 3), fill=colour)
    pen.ellipse((7, 8, 10, 11), fill=(0, 0, 0))
    pen.ellipse((size - 11, 8, size - 8, 11), fill=(0, 0, 0))
    return image


@pytest.fixture(scope="module")
def face_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    for label, colour in (("smiley", (250, 200, 40)), ("person", (200, 140, 100))):
        (root / label).mkdir()
        for index in range(5):
            shade = tuple(max(0, c - 12 * index) for c in colour)
            draw_face(shade).save(root / label / f"{index}.png")
    draw_face((250, 210, 60), mode="RGBA").save(root / "smiley" / "transparent.png")
    return root


def tiny_config(data: Path, *overrides: str) -> FacesConfig:
    return resolve_config(
        FacesConfig,
        overrides=[
            f"data={json.dumps(str(data))}",
            "resolution=16",
            "latent_dim=16",
            "engine.steps=4",
            "engine.batch_size=4",
            "engine.num_workers=0",
            "engine.device='cpu'",
            "engine.log_every=1",
            "engine.sample_every=0",
            "engine.validate_every=0",
            "engine.fid_every=0",
            "engine.checkpoint_every=2",
            "engine.penalty_interval=2",
            *overrides,
        ],
    )


def fit(config: FacesConfig, run_dir: Path, *, resume: bool = False, stop_at: int | None = None) -> Trainer:
    trainer = Trainer(Faces(config, torch.device("cpu")), run_dir, resume=resume, show_progress=False)
    trainer.fit(stop_at=stop_at)
    return trainer


def train_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("recipe", [MODERN, DCGAN], ids=["modern", "dcgan"])
def test_one_step_of_each_recipe_logs_its_terms(face_folder, tmp_path, recipe):
    fit(tiny_config(face_folder, "conditional=true", "engine.steps=1", *recipe), tmp_path)
    (first,) = train_log(tmp_path)
    assert np.isfinite(first["l_g_adv"]) and np.isfinite(first["l_d_adv"])
    if recipe is MODERN:
        assert first["l_d_penalty"] > 0  # R1 on the first D update (lazy: every 2nd)
        assert 0 < first["augment_p"] <= 1
    else:
        assert "l_d_penalty" not in first and first["augment_p"] == 0


@pytest.mark.parametrize("recipe", [MODERN, DCGAN], ids=["modern", "dcgan"])
def test_resume_is_exact(face_folder, tmp_path, recipe):
    """2 steps, interrupted, resumed for 2 more == 4 straight steps: nets, EMA and ADA's p."""
    config = ("conditional=true", *recipe)
    straight = fit(tiny_config(face_folder, *config), tmp_path / "straight")
    fit(tiny_config(face_folder, *config), tmp_path / "split", stop_at=2)
    resumed = fit(tiny_config(face_folder, *config), tmp_path / "split", resume=True)
    pairs = [(straight.G, resumed.G), (straight.D, resumed.D)]
    if straight.G_ema is not None:
        pairs.append((straight.G_ema, resumed.G_ema))
    for first, second in pairs:
        for (key, x), (_, y) in zip(first.state_dict().items(), second.state_dict().items()):
            assert torch.equal(x, y), key
    assert straight.task.augment.probability == resumed.task.augment.probability


def test_labels_come_from_the_subfolders_and_travel_with_the_config(face_folder, tmp_path):
    trainer = fit(tiny_config(face_folder, "conditional=true", "engine.steps=1", *MODERN), tmp_path)
    assert trainer.config.labels == "person,smiley"
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["labels"] == "person,smiley"
    assert trainer.G.num_classes == 2 and trainer.D.num_classes == 2


def test_conditional_training_needs_labelled_subfolders(face_folder, tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    draw_face((1, 2, 3)).save(loose / "a.png")
    with pytest.raises(ConfigError, match="outside any class subfolder"):
        Faces(tiny_config(loose, "conditional=true"), torch.device("cpu"))


def test_d_sees_real_and_fake_through_the_same_augmentation(face_folder):
    """With p = 1 both kinds of input reach D augmented; turned off, both reach it unchanged."""
    for policy, changed in (("color,translation,cutout", True), ("none", False)):
        task = Faces(tiny_config(face_folder, *MODERN, f'augment="{policy}"', "ada_target=0.0", "augment_p=1.0"), torch.device("cpu"))
        seen = []

        def discriminator(images, labels):
            seen.append(images.detach().clone())
            return images.mean(dim=(1, 2, 3))[:, None]

        batch = task.prepare_batch(
            torch.utils.data.default_collate([task.train_dataset()[i] for i in range(4)]), torch.Generator().manual_seed(0)
        )
        fake = torch.rand_like(batch["real"]) * 2 - 1
        task.discriminator_loss(batch, fake, discriminator, regularize=False)
        real_seen, fake_seen = seen
        assert (not torch.equal(real_seen, batch["real"])) == changed
        assert (not torch.equal(fake_seen, fake)) == changed


def test_best_checkpoint_keeps_the_lowest_fid(face_folder, tmp_path):
    trainer = Trainer(Faces(tiny_config(face_folder, *MODERN), torch.device("cpu")), tmp_path, show_progress=False)
    for step, fid in ((1, 50.0), (2, 70.0), (3, 40.0), (4, 45.0)):
        trainer.step = step
        trainer.evaluation.keep_if_best({"fid": fid, "kid": 0.0}, step)
    assert trainer.best == {"metric": "fid", "value": 40.0, "step": 3}
    assert torch.load(trainer.checkpoint_path("best"), weights_only=False)["step"] == 3


def test_fid_samples_are_fixed_and_the_real_side_may_run_out(face_folder):
    task = Faces(tiny_config(face_folder, "conditional=true", *MODERN), torch.device("cpu"))
    G = task.build_generator().eval()
    first = list(task.distribution_samples(G, 20))
    second = list(task.distribution_samples(G, 20))
    assert sum(len(fake) for fake, _ in first) == 20
    assert sum(len(real) for _, real in first if real is not None) == 11  # the whole training set
    assert first[-1][1] is None
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(first, second))
    assert all(0 <= fake.min() and fake.max() <= 1 for fake, _ in first)


@pytest.mark.parametrize("conditional", [False, True])
def test_export_takes_z_and_labels_and_matches_pytorch(face_folder, tmp_path, conditional):
    config = tiny_config(face_folder, f"conditional={str(conditional).lower()}", "engine.steps=2", *MODERN)
    fit(config, tmp_path / "run")
    generator = load_generator(tmp_path / "run" / "checkpoints" / "last.pt")
    path = tmp_path / "faces.onnx"
    errors = export_generator(generator, path)
    assert errors["fp32"] < 1e-4
    model = onnx.load(str(path))
    assert [node.name for node in model.graph.input] == (["z", "label"] if conditional else ["z"])
    props = {p.key: p.value for p in model.metadata_props}
    assert props["latent_dim"] == "16" and props["resolution"] == "16"
    assert props["labels"] == ("person,smiley" if conditional else "")

    runtime = FaceGenerator(path, device="cpu")
    seeds = [0, 1, 2]
    z = runtime.latents(seeds)
    labels = runtime.labels_for(seeds, "smiley" if conditional else None)
    images = runtime.generate(z, labels)
    assert images.shape == (3, 16, 16, 3) and images.min() >= 0 and images.max() <= 1
    net = generator.net.eval()
    with torch.no_grad():
        expected = (net(torch.from_numpy(z), None if labels is None else torch.from_numpy(labels)) + 1) / 2
    np.testing.assert_allclose(images, expected.clamp(0, 1).permute(0, 2, 3, 1).numpy(), atol=1e-4)


def test_transparent_faces_are_composited_onto_the_background(face_folder):
    task = Faces(tiny_config(face_folder, "conditional=true", "flip=false", *MODERN), torch.device("cpu"))
    dataset = task.train_dataset()
    (index,) = [i for i, (path, _) in enumerate(dataset.items) if path.name == "transparent.png"]
    image = dataset[index]["image"]
    assert torch.allclose(image[:, 0, 0], torch.ones(3))  # white corner, not black
    assert dataset[index]["label"] == 1  # smiley


def test_a_folder_of_face_photos_trains_unchanged(tmp_path):
    """The user path: a flat folder of aligned crops, any size and aspect, JPEG, unconditional."""
    crops = tmp_path / "crops"
    crops.mkdir()
    for index in range(3):
        draw_face((230 - 30 * index, 180, 150), size=40).resize((40, 48)).save(crops / f"face{index}.jpg")
    trainer = fit(tiny_config(crops, "engine.steps=1", *MODERN), tmp_path / "run")
    assert trainer.G.num_classes == 0 and trainer.task.train_dataset()[0]["image"].shape == (3, 16, 16)
