"""`img2img faces generate|interpolate` as users run it, in a separate process, with a
hand-built linear generator shipped as faces-emoji in a test weights folder."""

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from test_cli_superres import assert_one_line_error, img2img
from test_runtime_faces import GRID_PADDING, SIDE, build_linear_generator


@pytest.fixture
def face_weights(tmp_path: Path) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    path = build_linear_generator(folder / "faces-emoji.onnx", name="faces-emoji")
    entry = {
        "name": "faces-emoji",
        "task": "faces",
        "scale": 1,
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "checkpoint": "faces-emoji.safetensors",
        "card": "faces-emoji.md",
        "metrics": {"fid": 10.0},
    }
    (folder / "manifest.json").write_text(json.dumps({"models": [entry]}))
    return folder


def test_generate_writes_a_grid_with_the_shipped_default(face_weights, tmp_path):
    grid = tmp_path / "grid.png"
    result = img2img("faces", "generate", "-n", "6", "--seed", "3", "-o", grid, "--truncation", "0.7", weights=face_weights)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"generated 6 faces (seeds 3-8, truncation 0.7) -> {grid}"
    with Image.open(grid) as written:
        # 6 faces on 3 columns x 2 rows (ceil(sqrt(6)) = 3).
        assert written.size == (3 * (SIDE + GRID_PADDING) + GRID_PADDING, 2 * (SIDE + GRID_PADDING) + GRID_PADDING)


def test_generate_into_a_folder_with_a_label(face_weights, tmp_path):
    result = img2img("faces", "generate", "--seeds", "0-2,9", "--label", "person", "-o", tmp_path / "out", weights=face_weights)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"seed000{i}.png" for i in (0, 1, 2, 9)]


def test_interpolate_writes_one_gif_frame_per_step(face_weights, tmp_path):
    gif = tmp_path / "a.gif"
    result = img2img("faces", "interpolate", "--seeds", "1,2,3", "--steps", "4", "-o", gif, "--zoom", "2", weights=face_weights)
    assert result.returncode == 0, result.stderr
    with Image.open(gif) as written:
        assert written.n_frames == 9 and written.size == (2 * SIDE, 2 * SIDE)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--label", "cat"], ["unknown label 'cat'", "smiley, person"]),
        (["--truncation", "2"], ["truncation must be between 0"]),
        (["--seeds", "x"], ["cannot read seeds"]),
        (["--model", "superres-x4"], ["unknown model 'superres-x4'"]),
        # Counts that size the work are bounded before anything is allocated.
        (["-n", "100000000"], ["100,000,000 faces asked", "1 to 10,000"]),
        (["--seeds", "0-99999999999"], ["100,000,000,000 seeds asked"]),
        (["--seeds", "0-9000,9001-20000"], ["seeds asked", "1 to 10,000"]),
        (["--seed", str(2**64), "-n", "2"], ["past the largest seed"]),
        (["-n", "2", "--columns", "999999999"], ["999,999,999 grid columns for 2 faces"]),
    ],
)
def test_bad_requests_fail_in_one_line_and_write_nothing(face_weights, tmp_path, args, fragments):
    out = tmp_path / "out"
    out.mkdir()
    result = img2img("faces", "generate", "-o", out / "grid.png", *args, weights=face_weights)
    assert_one_line_error(result, *fragments)
    assert list(out.iterdir()) == []


def test_an_image_model_is_not_a_face_generator(weights, tmp_path):
    """`weights` (conftest) ships only superres models: faces has no default there."""
    result = img2img("faces", "generate", "-o", tmp_path / "grid.png", weights=weights)
    assert_one_line_error(result, "no shipped faces model")
    result = img2img("faces", "generate", "-o", tmp_path / "grid.png", "--model", weights / "superres-x4.onnx", weights=weights)
    assert_one_line_error(result, "not a face generator")
    assert not (tmp_path / "grid.png").exists()


def test_info_shows_latent_size_and_labels(face_weights):
    result = img2img("info", "faces-emoji", weights=face_weights)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.strip()}
    assert rows["latent_dim"] == ["4"] and rows["labels"] == ["smiley,person"]
