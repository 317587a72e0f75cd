"""The Node.js programs in examples/embed/node, which run the shipped models on onnxruntime-node
and sharp alone: their outputs match the Python runtime's within one level of 255, for every
shipped model, including what the contract asks around the graph (compositing onto the model's
background, bottom/right padding by reflection or edge, cropping, rounding), and their metadata
reader agrees with onnxruntime's.

Needs `node` on PATH and the example's packages (`npm ci --prefix examples/embed/node`); skipped
without either. The tests never run npm themselves.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = ROOT / "examples" / "embed" / "node"
WEIGHTS = ROOT / "weights"
EXAMPLE = ROOT / "examples" / "spaniels.png"
NODE = shutil.which("node")
RUN_TIMEOUT_S = 300
# One level of 255: onnxruntime's native kernels may differ in the last float bits between the
# Python wheel and the Node binding, which can move a value across a rounding boundary.
TOLERANCE = 1

# What runs each task of the manifest: the program, and the input it is checked on.
PROGRAMS = {"superres": "upscale.mjs", "translate": "upscale.mjs", "style": "upscale.mjs", "inpaint": "inpaint.mjs", "faces": "faces.mjs"}

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="no node on PATH: install Node.js 20.9 or later to run the Node.js example"),
    pytest.mark.skipif(
        not (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir() or not (NODE_DIR / "node_modules" / "sharp").is_dir(),
        reason="examples/embed/node/node_modules is missing: run `npm ci --prefix examples/embed/node`",
    ),
]


def shipped_models() -> list[dict]:
    return json.loads((WEIGHTS / "manifest.json").read_text())["models"]


def models_of(*tasks: str) -> list[str]:
    return [entry["name"] for entry in shipped_models() if entry["task"] in tasks]


def node(script: str, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NODE, script, *map(str, args)], check=False, cwd=NODE_DIR, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )


def run_ok(script: str, *args: object) -> None:
    result = node(script, *args)
    assert result.returncode == 0, f"node {script} failed ({result.returncode}): {result.stderr}"


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def assert_close(node_pixels: np.ndarray, python_pixels: np.ndarray, what: str) -> int:
    assert node_pixels.shape == python_pixels.shape, f"{what}: Node gave {node_pixels.shape}, Python {python_pixels.shape}"
    assert node_pixels.dtype == python_pixels.dtype == np.uint8
    worst = int(np.abs(node_pixels.astype(np.int16) - python_pixels.astype(np.int16)).max())
    assert worst <= TOLERANCE, f"{what}: Node and Python outputs differ by up to {worst}/255"
    return worst


# ------------------------------------------------------------------ inputs


def photo() -> np.ndarray:
    """The README's example photo, 256x192 RGB."""
    with Image.open(EXAMPLE) as image:
        return np.asarray(image.convert("RGB"))


def odd_photo() -> np.ndarray:
    """The photo cropped to 250x187: no multiple of 4 or 8 either way, so the style and inpainting
    nets need reflection padding on the bottom and right."""
    return np.ascontiguousarray(photo()[:187, :250])


def emoji(height: int, width: int) -> np.ndarray:
    """An emoji-like RGBA image: an opaque disc with a soft edge on transparent corners, and
    garbage colour under the transparent pixels (what compositing must hide)."""
    rng = np.random.default_rng(height * 1000 + width)
    rows, columns = np.mgrid[:height, :width]
    radius = np.hypot(rows - (height - 1) / 2, columns - (width - 1) / 2) / (min(height, width) / 2)
    alpha = np.clip((1.0 - radius) * 4.0, 0.0, 1.0)
    rgb = np.stack([200 + 55 * (columns / max(width - 1, 1)), 180 * (rows / max(height - 1, 1)), np.full(rows.shape, 40.0)], axis=2)
    garbage = rng.integers(0, 256, (height, width, 3))
    rgb = np.where(alpha[:, :, None] > 0, rgb, garbage)
    return np.dstack([rgb, alpha * 255]).round().astype(np.uint8)


def hole_mask(height: int, width: int) -> np.ndarray:
    """Rectangles (two of them a few pixels from the right and bottom edges, where the net's view
    of the hole's surroundings includes the padding) and a single pixel, white on black."""
    mask = np.zeros((height, width), np.uint8)
    mask[60:100, 90:150] = 255
    mask[150:160, 10:30] = 255
    mask[5, 93] = 255
    mask[80:110, width - 10 : width - 2] = 255
    mask[height - 14 : height - 2, 150:200] = 255
    return mask


# ------------------------------------------------------------------ the model contract


def test_every_shipped_model_has_a_program():
    unknown = {entry["name"]: entry["task"] for entry in shipped_models() if entry["task"] not in PROGRAMS}
    assert not unknown, f"no Node program (and no parity test) for these shipped models: {unknown}"


def test_the_metadata_reader_agrees_with_onnxruntime_and_model_info():
    import onnxruntime

    from img2img.contract import ModelInfo

    files = sorted(WEIGHTS.glob("*.onnx"))
    script = (
        "import { readFileSync } from 'node:fs';"
        "import { readMetadataProps, parseModelInfo } from './contract.mjs';"
        "const out = {};"
        "for (const path of process.argv.slice(1)) {"
        "  const props = readMetadataProps(readFileSync(path), path);"
        "  out[path] = { props, info: parseModelInfo(props, path) };"
        "}"
        "console.log(JSON.stringify(out));"
    )
    result = subprocess.run(
        [NODE, "--input-type=module", "-e", script, *map(str, files)],
        check=False, cwd=NODE_DIR, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr
    read = json.loads(result.stdout)
    for path in files:
        props = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
        assert read[str(path)]["props"] == props, path.name
        info = ModelInfo.from_metadata(props, source=str(path))
        parsed = read[str(path)]["info"]
        assert parsed.pop("generates") == info.generates, path.name
        assert parsed == json.loads(json.dumps(asdict(info))), path.name


# ------------------------------------------------------------------ parity with the Python runtime


def python_model(name: str, task: str, **options):
    from img2img.runtime.api import Model

    # The float32 file the Node example is given, not the 8-bit variant `auto` picks on a CPU.
    return Model(WEIGHTS / f"{name}.onnx", task=task, device="cpu", tile=None, precision="fp32", **options)


@pytest.mark.parametrize("name", models_of("superres"))
def test_superres_matches_python(name, tmp_path):
    out = tmp_path / "out.png"
    run_ok("upscale.mjs", EXAMPLE, out, "--model", WEIGHTS / f"{name}.onnx")
    expected = python_model(name, "superres")(photo())
    assert_close(read_png(out), expected, name)


@pytest.mark.parametrize("name", models_of("style"))
def test_style_matches_python_with_padding(name, tmp_path):
    source, out = tmp_path / "photo.png", tmp_path / "out.png"
    pixels = odd_photo()
    Image.fromarray(pixels).save(source)
    run_ok("upscale.mjs", source, out, "--model", WEIGHTS / f"{name}.onnx")
    assert_close(read_png(out), python_model(name, "style")(pixels), name)


@pytest.mark.parametrize("size", [(57, 61), (3, 5)], ids=["emoji-61x57", "tiny-5x3"])
@pytest.mark.parametrize("name", models_of("translate"))
def test_translate_composites_and_pads_like_python(name, size, tmp_path):
    """RGBA on the model's white background, padded with it (61x57 to 64x64 for pix2pix, 64x60
    for the CycleGAN nets). The alpha plane comes back as it went in, except from a model that
    paints over transparent areas (opaque_output), which writes RGB, as the Python runtime does."""
    source, out = tmp_path / "emoji.png", tmp_path / "out.png"
    pixels = emoji(*size)
    Image.fromarray(pixels, "RGBA").save(source)
    run_ok("upscale.mjs", source, out, "--model", WEIGHTS / f"{name}.onnx")
    written = read_png(out)
    expected = python_model(name, "translate")(pixels)
    assert_close(written, expected, name)
    if written.shape[2] == 4:
        assert np.array_equal(written[:, :, 3], pixels[:, :, 3])


def test_upscaling_rgba_resizes_alpha_like_python(tmp_path):
    source, out = tmp_path / "emoji.png", tmp_path / "out.png"
    pixels = emoji(57, 61)
    Image.fromarray(pixels, "RGBA").save(source)
    run_ok("upscale.mjs", source, out, "--model", WEIGHTS / "superres-x2.onnx")
    assert_close(read_png(out), python_model("superres-x2", "superres")(pixels), "superres-x2 RGBA")


@pytest.mark.parametrize("name", models_of("inpaint"))
def test_inpaint_matches_python_full_mode(name, tmp_path):
    source, mask_file, out = tmp_path / "photo.png", tmp_path / "mask.png", tmp_path / "out.png"
    pixels = odd_photo()
    mask = hole_mask(*pixels.shape[:2])
    Image.fromarray(pixels).save(source)
    Image.fromarray(mask).save(mask_file)
    run_ok("inpaint.mjs", source, mask_file, out, "--model", WEIGHTS / f"{name}.onnx")
    written = read_png(out)
    assert_close(written, python_model(name, "inpaint", full=True)(pixels, mask), name)
    kept = mask == 0
    assert np.array_equal(written[kept], pixels[kept]), "a pixel outside the mask changed"
    assert (written[~kept] != pixels[~kept]).any(), "nothing in the hole was filled"


@pytest.mark.parametrize("name", models_of("faces"))
@pytest.mark.parametrize("label", [None, "smiley"], ids=["labels-from-seeds", "one-label"])
def test_faces_match_python_from_the_same_latents(name, label, tmp_path):
    from img2img.files.pixels import quantize
    from img2img.runtime.faces import FaceGenerator, image_grid

    generator = FaceGenerator(WEIGHTS / f"{name}.onnx", device="cpu")
    if label is not None and label not in generator.labels:
        pytest.skip(f"{name} has no class {label!r}")
    seeds = list(range(7))
    z = generator.latents(seeds)
    labels = generator.labels_for(seeds, label)
    latents, out = tmp_path / "z.json", tmp_path / "grid.png"
    args: list[object] = ["--model", WEIGHTS / f"{name}.onnx", "--z", latents]
    if label is None:
        latents.write_text(json.dumps({"z": z.tolist(), "labels": None if labels is None else labels.tolist()}))
        columns = None
    else:
        latents.write_text(json.dumps(z.tolist()))
        columns = 4
        args += ["--label", label, "--columns", columns]
    run_ok("faces.mjs", out, *args)
    expected = quantize(image_grid(generator.generate(z, labels), columns), np.uint8)
    assert_close(read_png(out), expected, name)


# ------------------------------------------------------------------ the command lines


def test_help_and_one_line_errors(tmp_path):
    not_a_model = tmp_path / "model.onnx"
    not_a_model.write_text("not a model\n")
    for script in ("upscale.mjs", "inpaint.mjs", "faces.mjs"):
        shown = node(script, "--help")
        assert shown.returncode == 0 and shown.stdout.startswith(f"usage: node {script}"), shown.stderr
    cases = [
        (("upscale.mjs", EXAMPLE), 2, "expected 2 argument(s)"),
        (("upscale.mjs", EXAMPLE, tmp_path / "out.gif"), 2, "name the output .png, .jpg or .webp"),
        (("upscale.mjs", tmp_path / "missing.png", tmp_path / "out.png", "--model", WEIGHTS / "superres-x2.onnx"), 1, "cannot read"),
        (("upscale.mjs", EXAMPLE, tmp_path / "out.png", "--model", WEIGHTS / "faces-emoji.onnx"), 1, "use faces.mjs"),
        (("upscale.mjs", EXAMPLE, tmp_path / "out.png", "--model", not_a_model), 1, "is not an ONNX model"),
        (("inpaint.mjs", EXAMPLE, EXAMPLE, tmp_path / "out.png", "--model", WEIGHTS / "superres-x2.onnx"), 1, "takes no mask"),
        (("faces.mjs", tmp_path / "out.png"), 2, "--z LATENTS.json is required"),
    ]
    for args, status, fragment in cases:
        result = node(*args)
        assert result.returncode == status, (args, result.stderr)
        assert fragment in result.stderr and result.stderr.count("\n") == 1, (args, result.stderr)
    assert not (tmp_path / "out.png").exists()


def test_inpaint_refuses_a_mask_of_another_size_or_an_empty_one(tmp_path):
    mask_file = tmp_path / "mask.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(mask_file)
    result = node("inpaint.mjs", EXAMPLE, mask_file, tmp_path / "out.png")
    assert result.returncode == 1 and "mask is 10x10 but the image is 256x192" in result.stderr
    Image.fromarray(np.zeros((192, 256), np.uint8)).save(mask_file)
    result = node("inpaint.mjs", EXAMPLE, mask_file, tmp_path / "out.png")
    assert result.returncode == 1 and "mask marks no pixel to fill" in result.stderr
