"""The shared file vocabulary: one lister, one decoder for training and inference, one rounding,
atomic writes, and no torch on import."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from img2img.data.folder import HRCropDataset, ValidationImages, list_images, read_rgb
from img2img.data.two_domain import load_domain_image
from img2img.errors import OutputError
from img2img.evaluate.scoring import images_by_stem
from img2img.files.atomic import TEMP_SUFFIX, write_atomically
from img2img.files.decode import load_image
from img2img.files.encode import save_image
from img2img.files.listing import IMAGE_SUFFIXES, image_files
from img2img.files.pixels import composite, quantize, unit_float
from img2img.runtime.batch_options import BatchOptions
from img2img.runtime.batch_plan import find_inputs


def gradient(height: int, width: int, top: int) -> np.ndarray:
    """(height, width, 3) uint16 ramps that use the low byte, so 16-to-8-bit rounding shows."""
    rows = np.linspace(0, top, height * width * 3, dtype=np.float64).reshape(height, width, 3)
    return rows.astype(np.uint16)


@pytest.fixture
def deep_images(tmp_path: Path) -> dict[str, Path]:
    """A 16-bit RGB PNG, a 16-bit gray PNG, an 8-bit TIFF and a 16-bit TIFF in one folder."""
    folder = tmp_path / "deep"
    folder.mkdir()
    rgb16 = gradient(6, 10, 65535)
    save_image(rgb16, folder / "rgb16.png", bit_depth=16)
    # 16-bit gray above 255: Pillow's own convert("RGB") clips it to white.
    Image.fromarray(np.full((6, 10), 40_000, np.uint16)).save(folder / "gray16.png")
    Image.fromarray(quantize(unit_float(rgb16), np.uint8)).save(folder / "rgb8.tif")
    cv2.imwrite(str(folder / "rgb16.tiff"), rgb16[:, :, ::-1])
    return {path.name: path for path in sorted(folder.iterdir())}


def test_training_reads_tiff_and_16_bit_png_as_inference_does(deep_images: dict[str, Path]) -> None:
    root = next(iter(deep_images.values())).parent
    expected = {name: quantize(load_image(path).rgb, np.uint8) for name, path in deep_images.items()}
    assert expected["gray16.png"].max() == round(40_000 / 65535 * 255)

    for name, path in deep_images.items():
        np.testing.assert_array_equal(read_rgb(path), expected[name], err_msg=name)
        np.testing.assert_array_equal(
            load_domain_image(path, channels=3, background=(255, 255, 255)), expected[name], err_msg=name
        )

    validation = ValidationImages(root=root, scale=1, max_size=64)
    assert validation.names == sorted(deep_images)
    for name, crop in zip(validation.names, validation, strict=True):
        pixels = (crop.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        np.testing.assert_array_equal(pixels, expected[name], err_msg=name)

    training = HRCropDataset(root=root, patch_size=4, augment=False)
    assert [path.name for path in training.paths] == sorted(deep_images)


def test_training_composites_alpha_as_inference_does(tmp_path: Path) -> None:
    rgba = np.random.default_rng(0).integers(0, 256, size=(5, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "icon.png")
    image = load_image(tmp_path / "icon.png")
    expected = quantize(composite(image.rgb, image.alpha, (10, 200, 30)), np.uint8)
    np.testing.assert_array_equal(load_domain_image(tmp_path / "icon.png", channels=3, background=(10, 200, 30)), expected)
    np.testing.assert_array_equal(read_rgb(tmp_path / "icon.png"), rgba[:, :, :3])


def test_one_lister_for_training_evaluation_and_inference(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    for folder in ("b", ".cache", "c"):
        (root / folder).mkdir(parents=True)
    names = ("b/z.PNG", "a.JpG", "c.webp", "b/a.tif", "c/d.gif", "e.TIFF", ".cache/x.png", "b/.y.png", "readme.md")
    for name in names:
        (root / name).write_bytes(b"")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "linked.png").write_bytes(b"")
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "alias.png").symlink_to(outside / "linked.png")

    listed = image_files(root)
    assert [path.relative_to(root).as_posix() for path in listed] == [
        "a.JpG", "alias.png", "b/a.tif", "b/z.PNG", "c/d.gif", "c.webp", "e.TIFF",
    ]
    assert list_images(root) == listed
    assert find_inputs(root, BatchOptions(output_dir=tmp_path / "out")) == listed
    assert list(images_by_stem(root).values()) == listed
    assert [path.name for path in image_files(root, recursive=False)] == ["a.JpG", "alias.png", "c.webp", "e.TIFF"]
    assert {".tif", ".tiff", ".gif"} <= set(IMAGE_SUFFIXES)


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"

    def half_then_fail(temp: Path) -> None:
        temp.write_bytes(b'{"half": ')
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_atomically(target, half_then_fail)
    assert list(tmp_path.iterdir()) == []

    target.write_bytes(b"old")

    def fail_with_os_error(temp: Path) -> None:
        temp.write_bytes(b"new but cut")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="No space left"):
        write_atomically(target, fail_with_os_error)
    assert target.read_bytes() == b"old"
    assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))

    write_atomically(target, lambda temp: temp.write_bytes(b"new"))
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["report.json"]


def test_one_rounding_and_scaling() -> None:
    values = np.array([-0.5, 0.0, 0.5, 1 / 255 * 0.49, 1.0, 2.0, np.nan], np.float32)
    assert quantize(values, np.uint8).tolist() == [0, 0, 128, 0, 255, 255, 0]
    assert quantize(values, np.uint16).tolist() == [0, 0, 32768, 126, 65535, 65535, 0]
    eight = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(quantize(unit_float(eight), np.uint8), eight)
    sixteen = np.arange(0, 65536, 7, dtype=np.uint16)
    np.testing.assert_array_equal(quantize(unit_float(sixteen), np.uint16), sixteen)
    in_place = np.array([0.25, 0.75], np.float32)
    assert quantize(in_place, np.uint8, in_place=True).tolist() == [64, 191]
    assert in_place.tolist() == [64.0, 191.0]  # scaled and rounded where it lies
    # Values a caller knows to be in [0, 1] (clamped model outputs) round the same without the
    # NaN and clipping passes.
    known = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    for dtype in (np.uint8, np.uint16):
        np.testing.assert_array_equal(quantize(known, dtype, in_range=True), quantize(known, dtype))


def test_vocabulary_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "import img2img.files.atomic, img2img.files.decode, img2img.files.encode, img2img.files.listing\n"
        "import img2img.files.metadata, img2img.files.pixels, img2img.files.png_stream, img2img.runtime\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stderr
