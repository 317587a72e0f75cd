"""Inpainting in the runtime: masks, the crop around the hole, kept pixels bit for bit, mask folders.

The fixture model fills the hole with the mean colour of the pixels it keeps (see
inpaint_fixture.py), so a hole in a flat image must come back as exactly that colour.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from inpaint_fixture import blob_image, blob_mask, build_inpainter
from PIL import Image

import img2img
from img2img.errors import ImageReadError, ModelError
from img2img.runtime import BatchOptions, ModelInfo, OnnxModel, load_image, run_batch
from img2img.runtime.describe import describe
from img2img.runtime.inpaint import (
    MIN_MARGIN,
    as_mask,
    fill_holes,
    hole_box,
    mask_from_alpha,
    read_mask,
)

BACKGROUND = 90


@pytest.fixture
def inpainter(tmp_path: Path) -> Path:
    return build_inpainter(tmp_path / "inpaint.onnx")


@pytest.fixture
def mid_res_inpainter(tmp_path: Path) -> Path:
    """The same model declaring a 48-pixel working resolution: a crop of the 64-pixel test images."""
    return build_inpainter(tmp_path / "inpaint-48.onnx", name="inpaint-48", resolution=48)


@pytest.fixture
def low_res_inpainter(tmp_path: Path) -> Path:
    """The same model declaring a 16-pixel working resolution, so crops get shrunk."""
    return build_inpainter(tmp_path / "inpaint-16.onnx", name="inpaint-16", resolution=16)


def noise(height: int, width: int, channels: int, dtype: type[np.generic], seed: int = 0) -> np.ndarray:
    top = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, top, (height, width, channels), dtype=dtype, endpoint=True)


def test_resolution_metadata_is_optional_and_checked() -> None:
    props = {"task": "inpaint", "scale": "1", "inputs": "image,mask"}
    assert ModelInfo.from_metadata({**props, "resolution": "256"}, source="m.onnx").resolution == 256
    assert ModelInfo.from_metadata(props, source="m.onnx").resolution == 0
    for bad in ("0", "big"):
        with pytest.raises(ModelError, match=r"m\.onnx: metadata 'resolution'.*re-export"):
            ModelInfo.from_metadata({**props, "resolution": bad}, source="m.onnx")


def test_describe_shows_the_inputs_and_resolution(inpainter: Path) -> None:
    described = describe(inpainter)
    assert described["task"] == "inpaint" and described["inputs"] == "image,mask"
    assert described["resolution"] == 256 and json.dumps(described)


def test_hole_box_grows_by_a_margin_clipped_to_the_image() -> None:
    mask = np.zeros((200, 300), np.float32)
    mask[100, 150] = 1
    assert hole_box(mask) == (slice(100 - MIN_MARGIN, 101 + MIN_MARGIN), slice(150 - MIN_MARGIN, 151 + MIN_MARGIN))
    mask[5, 140:290] = 1  # a 150-pixel-wide hole: 30 % margin (45), clipped at the top and right
    assert hole_box(mask) == (slice(0, 101 + 45), slice(140 - 45, 300))


def test_hole_box_grows_to_the_models_resolution_where_the_image_allows() -> None:
    mask = np.zeros((100, 300), np.float32)
    mask[50, 150] = 1
    # Rows: the whole 100-pixel height. Columns: 118..183 with the margins, grown by 63 about the centre.
    assert hole_box(mask, min_side=128) == (slice(0, 100), slice(118 - 31, 183 + 32))
    mask[50, 295] = 1  # near the right edge: the box slides left to stay inside
    assert hole_box(mask, min_side=256) == (slice(0, 100), slice(300 - 256, 300))


@pytest.mark.parametrize(("height", "width"), [(64, 64), (61, 37), (100, 17)])
def test_a_shrunk_crop_loses_no_hole_pixel_and_never_shows_the_hole(height: int, width: int) -> None:
    rng = np.random.default_rng(height)
    rgb = rng.random((height, width, 3), dtype=np.float32)
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    def run(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        seen.append((image, hole))
        return np.full_like(image, 0.5)

    for _ in range(20):
        mask = np.zeros((height, width), np.float32)
        mask[rng.integers(height), rng.integers(width)] = 1  # a single pixel: the hardest to keep
        box, filled = fill_holes(run, rgb, mask, resolution=8, full=False)
        image, hole = seen[-1]
        assert max(hole.shape) == 8 and hole.sum() >= 1
        assert np.all(image[hole > 0] == 0)  # the net never sees what the hole held
        assert filled.shape == mask[box].shape + (3,)
        np.testing.assert_allclose(filled[mask[box] > 0], 0.5, atol=1e-6)


def test_masks_from_python_objects_agree() -> None:
    plane = np.zeros((4, 5), np.uint8)
    plane[1:3, 2:4] = 255
    expected = (plane > 0).astype(np.float32)
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[1:3, 2:4, 2] = 7  # any colour but black is hole
    rgba = np.concatenate([np.full((4, 5, 3), 255, np.uint8), plane[:, :, None]], axis=2)  # strokes on clear
    for mask in (plane, plane > 0, rgb, rgba, Image.fromarray(plane), Image.fromarray(plane).convert("1")):
        result = as_mask(mask)
        assert result.dtype == np.float32
        np.testing.assert_array_equal(result, expected)
    with pytest.raises(ValueError, match="mask"):
        as_mask(np.zeros((4, 5, 2)))


def test_read_mask_takes_any_image_file(tmp_path: Path) -> None:
    plane = np.zeros((6, 7), np.uint8)
    plane[2:4, 1:5] = 200
    Image.fromarray(plane).save(tmp_path / "gray.png")
    Image.fromarray(np.stack([plane, plane * 0, plane * 0], axis=2)).save(tmp_path / "red.jpg", quality=100)
    np.testing.assert_array_equal(read_mask(tmp_path / "gray.png"), plane > 0)
    assert read_mask(tmp_path / "red.jpg")[2:4, 1:5].all()
    with pytest.raises(ImageReadError, match="no such file"):
        read_mask(tmp_path / "missing.png")


def test_mask_from_alpha_fills_what_is_not_opaque() -> None:
    alpha = np.ones((3, 4), np.float32)
    alpha[0, 0], alpha[1, 2] = 0.0, 0.5
    np.testing.assert_array_equal(mask_from_alpha(alpha), [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    with pytest.raises(ImageReadError, match="photo.jpg has no alpha channel.*--mask"):
        mask_from_alpha(None, name="photo.jpg")
    with pytest.raises(ImageReadError, match="every pixel of a.png is opaque"):
        mask_from_alpha(np.ones((3, 4), np.float32), name="a.png")


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize(("dtype", "channels"), [(np.uint8, 3), (np.uint16, 3), (np.uint8, 4), (np.uint16, 1)])
def test_only_hole_pixels_change_bit_for_bit(
    low_res_inpainter: Path, full: bool, dtype: type[np.generic], channels: int
) -> None:
    # Noise, and a crop larger than the model's 16-pixel resolution: a blur of the kept pixels
    # anywhere would show.
    image = noise(48, 64, channels, dtype, seed=channels)
    image = image[:, :, 0] if channels == 1 else image
    mask = blob_mask(48, 64, top=20, left=30)
    result = img2img.load(low_res_inpainter, full=full)(image, mask)
    assert result.dtype == image.dtype and result.shape == image.shape
    keep = mask == 0
    np.testing.assert_array_equal(result[keep], image[keep])
    assert not np.array_equal(result[~keep], image[~keep])
    if channels == 4:
        np.testing.assert_array_equal(result[:, :, 3], image[:, :, 3])  # alpha, hole included


def test_float_images_keep_their_values_outside_the_hole(inpainter: Path) -> None:
    image = np.random.default_rng(2).random((20, 30, 3), dtype=np.float32)
    mask = blob_mask(20, 30, top=5, left=5)
    result = img2img.load(inpainter)(image, mask)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result[mask == 0], image[mask == 0])


def test_process_keeps_sixteen_bit_and_rgba_files_outside_the_hole(low_res_inpainter: Path, tmp_path: Path) -> None:
    deep = noise(40, 50, 1, np.uint16)[:, :, 0]
    Image.fromarray(deep).save(tmp_path / "deep.png")
    rgba = noise(40, 50, 4, np.uint8)
    Image.fromarray(rgba).save(tmp_path / "sprite.png")
    mask = blob_mask(40, 50, top=10, left=10).astype(np.float32) / 255
    keep = mask == 0
    model = img2img.load(low_res_inpainter)

    result = model.process(load_image(tmp_path / "deep.png"), mask=mask)
    assert result.pixels.dtype == np.uint16 and result.alpha is None
    np.testing.assert_array_equal(result.pixels[keep], np.repeat(deep[keep][:, None], 3, axis=1))

    result = model.process(load_image(tmp_path / "sprite.png"), mask=mask)
    assert result.pixels.dtype == np.uint8 and result.alpha is not None
    np.testing.assert_array_equal(result.pixels[keep], rgba[:, :, :3][keep])
    np.testing.assert_array_equal(result.alpha, rgba[:, :, 3])


def test_crop_and_full_both_fill_the_hole_from_what_they_see(mid_res_inpainter: Path) -> None:
    # Black on the left, grey elsewhere; the hole is far to the right, so the crop around it is
    # all grey while the whole image averages in the black.
    image = blob_image(48, 64, background=BACKGROUND, top=20, left=50)
    image[:, :12] = 0
    mask = blob_mask(48, 64, top=20, left=50)
    hole = mask > 0
    crop = img2img.load(mid_res_inpainter)(image, mask)
    np.testing.assert_array_equal(crop[hole], np.full((hole.sum(), 3), BACKGROUND))
    whole = img2img.load(mid_res_inpainter, full=True)(image, mask)
    keep_count = (~hole).sum()
    mean = (image[~hole].astype(float).sum(axis=0) / keep_count).round()
    # Padding to multiples of 8 reflects some kept pixels in, so the mean is near, not exact.
    np.testing.assert_allclose(whole[hole], np.broadcast_to(mean, (hole.sum(), 3)), atol=3)
    assert whole[hole].max() < BACKGROUND - 10


def test_a_crop_larger_than_the_resolution_is_shrunk_to_it(
    low_res_inpainter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shapes: list[tuple[int, ...]] = []
    run_batch_of = OnnxModel.run_batch

    def spy(self: OnnxModel, images: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        shapes.append(images.shape)
        return run_batch_of(self, images, masks)

    monkeypatch.setattr(OnnxModel, "run_batch", spy)
    image = blob_image(64, 60, background=BACKGROUND, top=30, left=25)
    mask = blob_mask(64, 60, top=30, left=25)
    result = img2img.load(low_res_inpainter)(image, mask)
    assert shapes == [(1, 16, 15, 3)]  # the whole 64x60 image is the crop, shrunk to 16 on its longer side
    np.testing.assert_allclose(result[mask > 0], BACKGROUND, atol=1)

    shapes.clear()
    img2img.load(low_res_inpainter, full=True)(image, mask)
    assert shapes == [(1, 64, 60, 3)]


def test_mask_errors_say_what_to_do(inpainter: Path) -> None:
    model = img2img.load(inpainter)
    image = np.zeros((8, 10, 3), np.uint8)
    with pytest.raises(ImageReadError, match="mask is 5x4 but the image is 10x8; give a mask of the image's size"):
        model(image, np.ones((4, 5), np.uint8))
    with pytest.raises(ImageReadError, match="mask marks no pixel to fill; paint the region to fill white"):
        model(image, np.zeros((8, 10), np.uint8))
    with pytest.raises(ModelError, match="pass a mask"):
        model(image)


def test_an_upscaling_model_with_a_mask_input_is_refused(tmp_path: Path) -> None:
    path = build_inpainter(tmp_path / "odd.onnx", metadata={"scale": "2"})
    with pytest.raises(ModelError, match="takes a mask but scales x2"):
        img2img.load(path)


def test_pil_in_pil_out(inpainter: Path) -> None:
    image = blob_image(24, 20, top=8, left=6)
    mask = Image.fromarray(blob_mask(24, 20, top=8, left=6))
    model = img2img.load(inpainter)
    result = model(Image.fromarray(image), mask)
    assert isinstance(result, Image.Image) and result.mode == "RGB" and result.size == (20, 24)
    np.testing.assert_array_equal(np.asarray(result), np.full((24, 20, 3), BACKGROUND))
    gray = model(Image.fromarray(image).convert("L"), mask)
    assert gray.mode == "L"
    np.testing.assert_array_equal(np.asarray(gray), np.asarray(Image.fromarray(image).convert("L"))[0, 0])


def save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_mask_folder_matches_relative_paths_across_suffixes(inpainter: Path, tmp_path: Path) -> None:
    photos, masks = tmp_path / "photos", tmp_path / "photos" / "masks"  # masks inside: never an input
    for name in ("a.png", "trip/b.png", "nomask.png", "small.png"):
        save(photos / name, blob_image(24, 24, top=8, left=8))
    save(masks / "a.jpg", blob_mask(24, 24, top=8, left=8))  # another suffix
    save(masks / "trip" / "b.png", blob_mask(24, 24, top=8, left=8))
    save(masks / "small.png", blob_mask(12, 12))
    save(masks / "c.png", blob_mask(24, 24))  # a mask without an image is no input either
    options = BatchOptions(output_dir=tmp_path / "out", masks=masks)
    logged: list[str] = []
    report = run_batch(photos, img2img.load(inpainter).process, options, log=logged.append)
    assert (report.written, report.failed, report.exit_code) == (2, 2, 1)
    for name in ("a.png", "trip/b.png"):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / name)), np.full((24, 24, 3), 90))
    assert sorted(path.name for path in (tmp_path / "out").rglob("*.png")) == ["a.png", "b.png"]
    reasons = {record.input: record.reason for record in report.failures}
    assert reasons["nomask.png"].startswith("no mask for it:") and "nomask.*" in reasons["nomask.png"]
    assert reasons["small.png"] == "mask is 12x12 but small.png is 24x24; give a mask of the image's size"
    assert any(line.startswith("failed: nomask.png: no mask for it") for line in logged)
    saved = json.loads((tmp_path / "out" / "img2img-report.json").read_text())
    assert saved["options"]["masks"] == str(masks)


def test_mask_folder_problems(inpainter: Path, tmp_path: Path) -> None:
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    save(photos / "a.png", blob_image(16, 16))
    save(masks / "a.png", blob_mask(16, 16))
    save(masks / "a.webp", blob_mask(16, 16))
    process = img2img.load(inpainter).process
    report = run_batch(photos, process, BatchOptions(output_dir=tmp_path / "out", masks=masks, dry_run=True))
    assert report.failures[0].reason == f"several masks for it in {masks}: a.png, a.webp; keep one"
    with pytest.raises(ImageReadError, match="mask folder .*missing does not exist"):
        run_batch(photos, process, BatchOptions(output_dir=tmp_path / "out", masks=tmp_path / "missing"))
    with pytest.raises(ImageReadError, match="is the input folder"):
        run_batch(photos, process, BatchOptions(output_dir=tmp_path / "out", masks=photos))
    assert not (tmp_path / "out").exists()


SHIPPED_INPAINT = Path(__file__).resolve().parents[1] / "weights" / "inpaint.onnx"


@pytest.mark.skipif(not SHIPPED_INPAINT.is_file(), reason="shipped weights not present")
def test_shipped_model_fills_a_real_photo_from_its_surroundings() -> None:
    """The shipped model on the example photo: every kept pixel is exact, and the fill is closer
    to what was there than a flat fill with the mean colour of the kept pixels."""
    photo = load_image(Path(__file__).resolve().parents[1] / "examples" / "spaniels.png").rgb
    model = img2img.load(SHIPPED_INPAINT, task="inpaint", device="cpu")
    assert model.info.resolution == 256 and model.info.inputs == ("image", "mask")
    mask = np.zeros(photo.shape[:2], np.float32)
    mask[60:100, 90:150] = 1.0
    filled = model(photo, mask)
    hole = mask > 0
    assert np.array_equal(filled[~hole], photo[~hole])
    flat = photo[~hole].mean(axis=0)
    model_error = np.abs(filled[hole] - photo[hole]).mean()
    flat_error = np.abs(flat - photo[hole]).mean()
    assert model_error < 0.8 * flat_error
