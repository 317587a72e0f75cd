"""The `img2img` command run as users run it: a separate process, exit codes, stdout and stderr."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def img2img(*args: str | Path, weights: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return python("-m", "cli", *map(str, args), weights=weights, cwd=cwd)


def python(*args: str, weights: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "IMG2IMG_WEIGHTS": str(weights)}
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_default_is_x4_beside_the_input(weights: Path, rgb_png: Path) -> None:
    result = img2img("superres", rgb_png, weights=weights)
    assert result.returncode == 0, result.stderr
    output = rgb_png.with_name("photo_x4.png")
    with Image.open(output) as written:
        assert written.size == (52, 28)
    assert result.stdout.startswith(f"wrote {output} (52x28, x4, ")


def test_scale_2_writes_stem_x2_with_the_models_pixels(weights: Path, rgb_png: Path) -> None:
    result = img2img("superres", rgb_png, "--scale", "2", weights=weights)
    assert result.returncode == 0, result.stderr
    source = np.asarray(Image.open(rgb_png))
    written = np.asarray(Image.open(rgb_png.with_name("photo_x2.png")))
    # The tiny model is nearest-neighbour, so the output is known exactly.
    np.testing.assert_array_equal(written, source.repeat(2, axis=0).repeat(2, axis=1))


def test_output_option_and_model_path(weights: Path, rgb_png: Path, tmp_path: Path) -> None:
    output = tmp_path / "big.webp"
    result = img2img(
        "superres", rgb_png, "-o", output, "--model", weights / "superres-x2.onnx", weights=weights
    )
    assert result.returncode == 0, result.stderr
    with Image.open(output) as written:
        assert written.format == "WEBP" and written.size == (26, 14)
    assert not rgb_png.with_name("photo_x2.png").exists()


def test_alpha_is_upscaled_and_kept(weights: Path, rgba_png: Path) -> None:
    result = img2img("superres", rgba_png, "--scale", "2", weights=weights)
    assert result.returncode == 0, result.stderr
    with Image.open(rgba_png.with_name("sprite_x2.png")) as written:
        assert written.mode == "RGBA" and written.size == (20, 12)
        alpha = np.asarray(written)[:, :, 3].astype(int)
    # The opacity ramp runs left (transparent) to right (opaque) and survives upscaling.
    assert alpha[:, 0].max() <= 10 and alpha[:, -1].min() >= 245


def test_refuses_to_overwrite_the_input(weights: Path, rgb_png: Path) -> None:
    before = rgb_png.read_bytes()
    result = img2img("superres", rgb_png, "-o", rgb_png, weights=weights)
    assert_one_line_error(result, "-o")
    assert rgb_png.read_bytes() == before


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "truncated"])
def test_bad_inputs_exit_2_with_one_line_and_no_output(
    weights: Path, tmp_path: Path, truncated_png: Path, kind: str
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    path = inputs / "bad.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, not a PNG\n")
    elif kind == "truncated":
        path.write_bytes(truncated_png.read_bytes())
    before = sorted(inputs.iterdir())
    result = img2img("superres", path, weights=weights)
    assert_one_line_error(result, str(path))
    assert sorted(inputs.iterdir()) == before
    assert result.stdout == ""


def test_unknown_model_name_lists_the_shipped_ones(weights: Path, rgb_png: Path) -> None:
    result = img2img("superres", rgb_png, "--model", "superres-x3", weights=weights)
    assert_one_line_error(result, "superres-x3", "superres-x2", "superres-x4")


def test_scale_that_contradicts_the_model(weights: Path, rgb_png: Path) -> None:
    result = img2img("superres", rgb_png, "--scale", "2", "--model", "superres-x4", weights=weights)
    assert_one_line_error(result, "x4", "--scale 2")
    assert not rgb_png.with_name("photo_x2.png").exists()
    assert not rgb_png.with_name("photo_x4.png").exists()


def test_unknown_output_suffix_writes_nothing(weights: Path, rgb_png: Path) -> None:
    result = img2img("superres", rgb_png, "-o", rgb_png.with_name("out.bmp"), weights=weights)
    assert_one_line_error(result, ".bmp", ".png")
    assert sorted(path.name for path in rgb_png.parent.iterdir()) == ["photo.png", "weights"]


def test_models_lists_the_manifest(weights: Path) -> None:
    result = img2img("models", weights=weights)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TASK", "SCALE", "FILE", "USE", "FOR", "METRICS"]
    assert lines[1].split()[:4] == ["superres-x4", "superres", "x4", "superres-x4.onnx"]
    # What each model is for, in its own column, before the metrics.
    assert lines[1].index("clean photos, x4") == lines[0].index("USE FOR") < lines[1].index("div2k-val.psnr=24")


def test_superres_never_imports_torch_or_onnx(weights: Path, rgb_png: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from cli.main import app

        code = app(["superres", {str(rgb_png)!r}, "--scale", "2"], standalone_mode=False)
        assert code is None, code
        heavy = sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "onnx"))
        assert not heavy, heavy
        assert "onnxruntime" in sys.modules
        """
    )
    result = python("-c", script, weights=weights)
    assert result.returncode == 0, result.stderr
    assert rgb_png.with_name("photo_x2.png").is_file()


def test_train_without_torch_says_which_extra_to_install(weights: Path, tmp_path: Path) -> None:
    # Make torch unimportable, as in an install without the train extra.
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None
        from cli.main import app

        sys.exit(app(["train", "superres", "--data", {str(tmp_path)!r}, "--out", {str(tmp_path / "run")!r}]))
        """
    )
    result = python("-c", script, weights=weights)
    assert_one_line_error(result, 'pip install "img2img[train]"')
    assert not (tmp_path / "run").exists()
