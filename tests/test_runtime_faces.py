"""The face-generator runtime (numpy and onnxruntime only) on a hand-built linear generator, and
the shipped faces-emoji model."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from img2img.errors import ModelError, OutputError
from img2img.runtime.faces import (
    GRID_PADDING,
    FaceGenerator,
    image_grid,
    interpolation_path,
    parse_seeds,
    save_frames_gif,
    slerp,
    write_samples,
)
from img2img.runtime.onnx_model import OnnxModel

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
LATENT, SIDE = 4, 6
LABELS = ("smiley", "person")


def build_linear_generator(path: Path, *, conditional: bool = True, name: str = "faces-test") -> Path:
    """A graph with the faces export contract: image = clip(0.5 + 0.1 * z @ W + table[label], 0, 1)
    reshaped to (N, 3, SIDE, SIDE); the mean-latent image (z = 0) is 0.5 + table[label]."""
    rng = np.random.default_rng(0)
    pixels = 3 * SIDE * SIDE
    weight = (0.1 * rng.standard_normal((LATENT, pixels))).astype(np.float32)
    table = np.stack([np.full(pixels, 0.2, np.float32), np.full(pixels, -0.2, np.float32)])
    nodes = [
        helper.make_node("MatMul", ["z", "weight"], ["mixed"]),
        helper.make_node("Add", ["mixed", "half"], ["centred"]),
    ]
    inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", LATENT])]
    last = "centred"
    if conditional:
        nodes += [
            helper.make_node("Gather", ["table", "label"], ["offset"], axis=0),
            helper.make_node("Add", ["centred", "offset"], ["shifted"]),
        ]
        inputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]))
        last = "shifted"
    nodes += [
        helper.make_node("Reshape", [last, "shape"], ["image"]),
        helper.make_node("Clip", ["image", "low", "high"], ["output"]),
    ]
    initializers = [
        numpy_helper.from_array(weight, "weight"),
        numpy_helper.from_array(table, "table"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array(np.array([-1, 3, SIDE, SIDE], np.int64), "shape"),
        numpy_helper.from_array(np.array(0.0, np.float32), "low"),
        numpy_helper.from_array(np.array(1.0, np.float32), "high"),
    ]
    graph = helper.make_graph(
        nodes,
        "linear_generator",
        inputs,
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, SIDE, SIDE])],
        initializer=[i for i in initializers if conditional or i.name != "table"],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    helper.set_model_props(
        model,
        {
            "task": "faces",
            "name": name,
            "scale": "1",
            "range": "0,1",
            "inputs": "z,label" if conditional else "z",
            "latent_dim": str(LATENT),
            "resolution": str(SIDE),
            "labels": ",".join(LABELS) if conditional else "",
        },
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def generator(tmp_path) -> FaceGenerator:
    return FaceGenerator(build_linear_generator(tmp_path / "faces.onnx"), device="cpu")


def test_a_seed_is_one_latent_everywhere(generator):
    z = generator.latents([7, 8, 7])
    assert z.shape == (3, LATENT) and z.dtype == np.float32
    np.testing.assert_array_equal(z[0], z[2])
    np.testing.assert_array_equal(z[0], np.random.default_rng(7).standard_normal(LATENT).astype(np.float32))


def test_truncation_zero_gives_the_mean_latent_image_for_every_seed(generator):
    seeds = [0, 1, 2, 3]
    labels = generator.labels_for(seeds, "smiley")
    images = generator.generate(generator.latents(seeds, truncation=0.0), labels)
    mean_face = generator.generate(np.zeros((1, LATENT), np.float32), labels[:1])[0]
    for image in images:
        np.testing.assert_array_equal(image, mean_face)
    np.testing.assert_allclose(mean_face, 0.7, atol=1e-6)  # 0.5 + the smiley offset
    varied = generator.generate(generator.latents(seeds, truncation=1.0), labels)
    assert np.abs(varied[0] - varied[1]).max() > 0.01


def test_truncation_scales_the_latents(generator):
    np.testing.assert_allclose(generator.latents([5], 0.7), 0.7 * generator.latents([5]), rtol=1e-6)
    with pytest.raises(ValueError, match="between 0"):
        generator.latents([5], 1.5)


def test_labels_by_name_or_drawn_per_seed(generator):
    assert generator.labels_for([0, 1], "person").tolist() == [1, 1]
    drawn = generator.labels_for(list(range(40)))
    assert set(drawn.tolist()) == {0, 1}
    assert drawn.tolist() == generator.labels_for(list(range(40))).tolist()
    with pytest.raises(ValueError, match="unknown label 'cat'; faces.onnx knows smiley, person"):
        generator.labels_for([0], "cat")


def test_unconditional_models_take_no_label(tmp_path):
    plain = FaceGenerator(build_linear_generator(tmp_path / "plain.onnx", conditional=False), device="cpu")
    assert plain.labels_for([0, 1]) is None
    assert plain.generate(plain.latents([0, 1])).shape == (2, SIDE, SIDE, 3)
    with pytest.raises(ValueError, match="unconditional"):
        plain.labels_for([0], "smiley")


def test_image_models_and_noise_models_refuse_each_other(tmp_path):
    from conftest import build_upscaler

    upscaler = build_upscaler(tmp_path / "up.onnx", scale=2, name="up")
    with pytest.raises(ModelError, match="not a face generator"):
        FaceGenerator(upscaler, device="cpu")
    with pytest.raises(ModelError, match="takes no input image; run it with `img2img faces generate"):
        OnnxModel(build_linear_generator(tmp_path / "faces.onnx"), device="cpu")


def test_slerp_keeps_the_norm_between_orthogonal_latents():
    a, b = np.array([3.0, 0.0]), np.array([0.0, 3.0])
    middle = slerp(a, b, 0.5)
    assert np.linalg.norm(middle) == pytest.approx(3.0)
    np.testing.assert_allclose(slerp(a, b, 0.0), a)
    np.testing.assert_allclose(slerp(a, b, 1.0), b)
    path = interpolation_path(np.stack([a, b, a]), steps=4)
    assert len(path) == 9
    np.testing.assert_allclose(path[4], b)
    with pytest.raises(ValueError, match="at least two seeds"):
        interpolation_path(a[None], steps=4)


def test_seed_lists_and_ranges():
    assert parse_seeds("1,2,3") == [1, 2, 3]
    assert parse_seeds("0-3,9") == [0, 1, 2, 3, 9]
    with pytest.raises(ValueError, match="write them as 1,2,3 or 0-7"):
        parse_seeds("a-b")


def test_grid_places_images_row_by_row_with_padding():
    images = np.stack([np.full((2, 2, 3), value, np.float32) for value in (0.0, 0.25, 0.5)])
    grid = image_grid(images, columns=2)
    step = 2 + GRID_PADDING
    assert grid.shape == (2 * step + GRID_PADDING, 2 * step + GRID_PADDING, 3)
    assert grid[GRID_PADDING, GRID_PADDING + step, 0] == 0.25
    assert grid[GRID_PADDING + step, GRID_PADDING, 0] == 0.5
    assert grid[GRID_PADDING + step, GRID_PADDING + step, 0] == 1.0  # empty cell stays white


def test_writing_samples_never_leaves_partial_files(tmp_path):
    images = np.random.default_rng(0).random((3, SIDE, SIDE, 3)).astype(np.float32)
    (grid,) = write_samples(images, [0, 1, 2], tmp_path / "grid.png", zoom=2)
    with Image.open(grid) as written:
        assert written.size == (2 * (2 * (SIDE + GRID_PADDING) + GRID_PADDING),) * 2
    files = write_samples(images, [4, 5, 6], tmp_path / "faces")
    assert [path.name for path in files] == ["seed0004.png", "seed0005.png", "seed0006.png"]
    with pytest.raises(OutputError, match="unknown image suffix"):
        write_samples(images, [0, 1, 2], tmp_path / "grid.tiff2")
    with pytest.raises(OutputError, match="does not exist"):
        write_samples(images, [0, 1, 2], tmp_path / "missing" / "grid.png")
    with pytest.raises(OutputError, match="name it .gif"):
        save_frames_gif(images, tmp_path / "a.png")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["faces", "grid.png"]


def test_gif_has_one_frame_per_latent(tmp_path):
    frames = np.random.default_rng(1).random((5, SIDE, SIDE, 3)).astype(np.float32)
    save_frames_gif(frames, tmp_path / "a.gif", fps=10, zoom=3)
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 5 and gif.size == (3 * SIDE, 3 * SIDE)
        assert gif.info["duration"] == 100


def test_shipped_faces_model_draws_varied_faces_and_the_mean_face_at_truncation_zero():
    path = WEIGHTS / "faces-emoji.onnx"
    if not path.is_file():
        pytest.skip("shipped weights not present")
    model = FaceGenerator(path, device="cpu")
    assert model.info.resolution == 64 and model.latent_dim > 0
    assert "smiley" in model.labels
    seeds = list(range(8))
    labels = model.labels_for(seeds, "smiley")
    faces = model.generate(model.latents(seeds), labels)
    assert faces.shape == (8, 64, 64, 3) and 0 <= faces.min() and faces.max() <= 1
    assert faces.std(axis=0).mean() > 0.02  # different seeds, different faces
    mean_faces = model.generate(model.latents(seeds, truncation=0.0), labels)
    np.testing.assert_allclose(mean_faces, mean_faces[:1].repeat(8, axis=0), atol=1e-6)
    # Emoji sit on white: the corners of a generated face are light.
    assert faces[:, :4, :4].mean() > 0.7
