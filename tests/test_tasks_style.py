"""Style-transfer training (fast per-style nets and the AdaIN decoder), their exports, and the
style metrics, on tiny generated photos and paintings."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from img2img.engine.checkpoint import load_generator
from img2img.engine.config import resolve_config
from img2img.engine.trainer import Trainer
from img2img.errors import ConfigError
from img2img.export import export_generator
from img2img.losses import VGG19Features
from img2img.metrics.style import STYLE_DISTANCE_LAYERS, StyleDistance
from img2img.runtime.onnx_model import OnnxModel
from img2img.tasks.adain import AdaINConfig, AdaINStyle
from img2img.tasks.style import FastStyle, FastStyleConfig
from test_tasks_inpaint import textured_image


def stripes(size: int, period: int, colours: tuple[tuple[int, int, int], tuple[int, int, int]]) -> Image.Image:
    """Diagonal two-colour stripes: a 'painting' whose Gram statistics differ from any photo's."""
    y, x = np.mgrid[0:size, 0:size]
    band = ((x + y) // period) % 2 == 1
    image = np.where(band[..., None], np.array(colours[0]), np.array(colours[1]))
    return Image.fromarray(image.astype(np.uint8))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("style-data")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        (root / "photos" / split).mkdir(parents=True)
        for index in range(count):
            textured_image(rng, (48 + 8 * index, 64)).save(root / "photos" / split / f"{index}.png")
    (root / "styles" / "train").mkdir(parents=True)
    (root / "styles" / "val").mkdir(parents=True)
    stripes(64, 4, ((200, 40, 30), (20, 30, 160))).save(root / "styles" / "train" / "red-blue.png")
    stripes(72, 6, ((240, 220, 40), (10, 90, 20))).save(root / "styles" / "train" / "yellow-green.png")
    stripes(64, 3, ((250, 250, 250), (0, 0, 0))).save(root / "styles" / "val" / "black-white.png")
    return {"photos": root / "photos", "styles": root / "styles", "painting": root / "styles" / "train" / "red-blue.png"}


ENGINE = [
    "engine.batch_size=2",
    "engine.num_workers=0",
    "engine.steps=3",
    "engine.log_every=1",
    "engine.sample_every=3",
    "engine.validate_every=3",
    "engine.checkpoint_every=3",
    "engine.ema_decay=0",
]


def fast_config(folders: dict[str, Path], *overrides: str) -> FastStyleConfig:
    base = [
        f'data="{folders["photos"]}"',
        f'style_image="{folders["painting"]}"',
        "net=resnet_tiny",
        "net_options={upsample = 'resize'}",
        "patch_size=32",
        "resolution=32",
        "style_size=32",
        "scale_range=[0.5, 0.8]",
        "tv_weight=1e3",
        *ENGINE,
    ]
    return resolve_config(FastStyleConfig, overrides=[*base, *overrides])


def adain_config(folders: dict[str, Path], *overrides: str) -> AdaINConfig:
    base = [
        f'data="{folders["photos"]}"',
        f'style_data="{folders["styles"]}"',
        "net=adain_tiny",
        "patch_size=32",
        "resolution=32",
        "style_size=32",
        "scale_range=[0.5, 0.8]",
        *ENGINE,
    ]
    return resolve_config(AdaINConfig, overrides=[*base, *overrides])


def test_fast_style_step_logs_content_style_tv_and_gan_terms_and_validates(folders, tmp_path):
    config = fast_config(folders, "gan.weight=0.1", "gan_patch=16", "discriminator=patchgan_tiny")
    trainer = Trainer(FastStyle(config, torch.device("cpu")), tmp_path / "run", show_progress=False)
    trainer.fit()
    logged = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    for term in ("l_g_content", "l_g_style", "l_g_tv", "l_g_gan", "l_d_adv"):
        assert all(np.isfinite(entry[term]) for entry in logged), term
    validation = json.loads((tmp_path / "run" / "validation_log.jsonl").read_text().splitlines()[-1])
    assert validation["images"] == 2
    assert validation["content_distance"] > 0 and validation["style_distance"] > 0
    assert validation["neg_loss"] == pytest.approx(-validation["loss"])


def test_fast_style_training_moves_the_output_towards_the_painting(folders, tmp_path):
    config = fast_config(folders, "engine.steps=25", "engine.validate_every=25", "optim_g.lr=3e-3", "content_weight=0.01")
    task = FastStyle(config, torch.device("cpu"))
    torch.manual_seed(0)
    before = task.validate(task.build_generator().eval())["style_distance"]
    trainer = Trainer(task, tmp_path / "run", show_progress=False)
    after = trainer.fit()["style_distance"]
    assert after < 0.5 * before


def test_fast_style_needs_a_readable_style_image(folders, tmp_path):
    with pytest.raises(ConfigError, match="style image .* does not exist"):
        FastStyle(fast_config(folders, f'style_image="{tmp_path / "missing.png"}"'), torch.device("cpu"))
    with pytest.raises(ConfigError, match="no style image"):
        FastStyle.check_data(fast_config(folders, 'style_image=""'))


def test_fast_style_export_is_a_whole_image_model_named_after_its_painting(folders, tmp_path):
    trainer = Trainer(FastStyle(fast_config(folders), torch.device("cpu")), tmp_path / "run", show_progress=False)
    trainer.fit()
    output = tmp_path / "fast.onnx"
    errors = export_generator(load_generator(tmp_path / "run" / "checkpoints" / "last.pt"), output)
    assert errors["fp32"] < 1e-4
    model = OnnxModel(output, device="cpu")
    assert model.info.task == "style" and model.info.style == "red-blue" and model.info.whole_image
    assert model.run(np.random.default_rng(0).random((21, 30, 3), np.float32)).shape == (21, 30, 3)


def test_adain_step_logs_content_and_style_terms_and_validates_every_pair(folders, tmp_path):
    trainer = Trainer(AdaINStyle(adain_config(folders), torch.device("cpu")), tmp_path / "run", show_progress=False)
    trainer.fit()
    logged = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(entry["l_g_content"]) and np.isfinite(entry["l_g_style"]) for entry in logged)
    validation = json.loads((tmp_path / "run" / "validation_log.jsonl").read_text().splitlines()[-1])
    # Two held-out photos, each with the one held-out style.
    assert validation["pairs"] == 2
    # The decoder's reconstruction is scored against the photo itself: an untrained one is far from it.
    assert 0.05 < validation["reconstruction_error"] <= 1.0
    # Only the decoder trains; the encoder is still the ImageNet VGG19.
    net = trainer.G
    reference = VGG19Features(layers=["relu4_1"])
    assert torch.equal(net.encoder.features[0].weight, reference.features[0].weight)
    assert not any(p.requires_grad for p in net.encoder.parameters())


def test_adain_refuses_a_net_that_is_not_adain(folders):
    task = AdaINStyle(adain_config(folders, "net=resnet_tiny"), torch.device("cpu"))
    with pytest.raises(ConfigError, match="not an AdaIN net"):
        task.build_generator()


def test_adain_export_takes_content_styles_weights_and_alpha(folders, tmp_path):
    trainer = Trainer(AdaINStyle(adain_config(folders), torch.device("cpu")), tmp_path / "run", show_progress=False)
    trainer.fit()
    output = tmp_path / "adain.onnx"
    errors = export_generator(load_generator(tmp_path / "run" / "checkpoints" / "last.pt"), output)
    assert errors["fp32"] < 1e-4
    graph = onnx.load(str(output))
    assert [node.name for node in graph.graph.input] == ["input", "style", "style_weights", "alpha"]
    model = OnnxModel(output, device="cpu")
    assert model.info.inputs == ("image", "style", "style_weights", "alpha") and model.info.style_size == 32

    rng = np.random.default_rng(0)
    content = rng.random((24, 40, 3), np.float32)
    styles = rng.random((2, 32, 32, 3), np.float32)
    net = trainer.eval_generator.eval()
    with torch.no_grad():
        expected = net.blend(
            torch.from_numpy(content).permute(2, 0, 1)[None],
            torch.from_numpy(styles).permute(0, 3, 1, 2),
            torch.tensor([0.25, 0.75]),
            torch.tensor([0.6]),
        ).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    model.set_styles(styles, [1.0, 3.0], alpha=0.6)  # weights are normalised to 0.25, 0.75
    assert np.abs(model.run(content) - expected).max() < 1e-4
    # At alpha 0 the file gives the photo back, also one the runtime pads to a multiple of 8.
    model.set_styles(styles, [1.0, 3.0], alpha=0.0)
    odd = rng.random((21, 30, 3), np.float32)
    assert np.abs(model.run(odd) - odd).max() < 1e-5


def test_style_distance_is_zero_for_the_photo_and_for_the_painting_itself():
    distance = StyleDistance(VGG19Features(layers=STYLE_DISTANCE_LAYERS))
    photo = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    painting = torch.from_numpy(np.array(stripes(32, 4, ((200, 40, 30), (20, 30, 160))))).permute(2, 0, 1)[None] / 255.0
    grams = distance.style_grams(painting)
    itself = distance(photo, photo, grams)
    assert float(itself["content_distance"]) == 0.0 and float(itself["style_distance"]) > 0
    pasted = distance(painting, photo, grams)
    assert float(pasted["style_distance"]) == pytest.approx(0.0, abs=1e-6)
    assert float(pasted["content_distance"]) > 0


def test_adain_losses_are_zero_on_matching_statistics_and_blind_to_each_layers_scale():
    from img2img.tasks.adain import content_feature_loss, style_statistics_loss

    generator = torch.Generator().manual_seed(0)
    style = {name: torch.rand(2, 4, 6, 6, generator=generator) * (10**i) for i, name in enumerate(
        ("relu1_1", "relu2_1", "relu3_1", "relu4_1"))}
    # Same channel means and standard deviations, other pixels: a permutation of each map.
    shuffled = {name: f.flatten(2)[..., torch.randperm(36, generator=generator)].view_as(f) for name, f in style.items()}
    assert float(style_statistics_loss(shuffled, style)) == pytest.approx(0.0, abs=1e-6)
    output = {name: torch.rand(2, 4, 6, 6, generator=generator) * (10**i) for i, name in enumerate(style)}
    loss = style_statistics_loss(output, style)
    # Multiplying one layer's output and style features by 1000 leaves that layer's share as it was.
    louder = {name: f * 1000 if name == "relu1_1" else f for name, f in output.items()}
    louder_style = {name: f * 1000 if name == "relu1_1" else f for name, f in style.items()}
    assert float(style_statistics_loss(louder, louder_style)) == pytest.approx(float(loss), rel=1e-4)
    target = torch.rand(2, 8, 4, 4, generator=generator)
    assert float(content_feature_loss(target, target)) == 0.0
    assert float(content_feature_loss(3 * target + 1, 3 * target)) == pytest.approx(
        float(content_feature_loss(target + 1 / 3, target)), rel=1e-5
    )


def test_adain_reconstruction_error_is_zero_for_a_decoder_that_inverts_the_encoder(folders):
    task = AdaINStyle(adain_config(folders), torch.device("cpu"))

    class Inverting:
        def encode(self, images):
            return {"relu4_1": images * 2.0}

        def decode(self, features):
            return features / 2.0

    class Darkening(Inverting):
        def decode(self, features):
            return features / 2.0 - 0.1

    photos = [torch.full((3, 8, 8), 0.5), torch.full((3, 8, 8), 0.25)]
    assert task.reconstruction_error(Inverting(), photos) == 0.0
    assert abs(task.reconstruction_error(Darkening(), photos) - 0.1) < 1e-6


def test_adain_identity_term_trains_the_decoder_to_reconstruct_the_photo(folders, tmp_path):
    config = adain_config(
        folders, "identity_weight=1.0", "content_weight=0", "style_weight=0",
        "engine.steps=60", "engine.validate_every=60", "optim_g.lr=3e-3",
    )
    task = AdaINStyle(config, torch.device("cpu"))
    torch.manual_seed(0)
    photos = [photo for _, photo in task.validation_items()[0]]
    before = task.reconstruction_error(task.build_generator().eval(), photos)
    trainer = Trainer(task, tmp_path / "run", show_progress=False)
    after = trainer.fit()["reconstruction_error"]
    assert after < 0.6 * before
    logged = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(entry["l_g_identity"]) for entry in logged)
    # Off by default, as in the paper: no identity term is computed or logged.
    trainer = Trainer(AdaINStyle(adain_config(folders), torch.device("cpu")), tmp_path / "plain", show_progress=False)
    trainer.fit()
    assert all("l_g_identity" not in json.loads(line) for line in (tmp_path / "plain" / "train_log.jsonl").read_text().splitlines())


def test_adain_refuses_a_negative_identity_weight(folders):
    with pytest.raises(ConfigError, match="identity_weight must be at least 0"):
        adain_config(folders, "identity_weight=-1")
