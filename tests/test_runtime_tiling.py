"""Tiled inference: tile plans, blend weights, equality with whole-image runs, memory fallback."""

from pathlib import Path

import numpy as np
import pytest

from conftest import build_upscaler
from img2img.errors import InferenceMemoryError
from img2img.runtime import OnnxModel, load_image
from img2img.contract import ModelInfo
from img2img.runtime.tiling import (
    MIN_TILE,
    TilePlan,
    auto_tile,
    edge_weights,
    fitted_tile,
    run_tiled,
    run_with_fallback,
    tile_starts,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED_X4 = REPO / "weights" / "superres-x4.onnx"


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(100, 40, 8), (41, 40, 8), (40, 40, 8), (1000, 96, 16), (97, 32, 0), (7, 64, 16)]
)
def test_tiles_cover_the_axis_with_at_least_the_overlap(length: int, tile: int, overlap: int) -> None:
    starts = tile_starts(length, min(tile, length), overlap)
    size = min(tile, length)
    assert starts[0] == 0 and starts[-1] + size == length
    shared = [previous + size - start for previous, start in zip(starts, starts[1:])]
    assert all(overlap <= amount < size for amount in shared)


@pytest.mark.parametrize(("length", "tile", "expected"), [(1024, 512, 352), (768, 512, 392), (500, 512, 500), (513, 512, 265)])
def test_tiles_shrink_to_just_cover_the_image(length: int, tile: int, expected: int) -> None:
    assert fitted_tile(length, tile, 16) == expected


def test_tile_must_exceed_twice_the_overlap() -> None:
    with pytest.raises(ValueError, match="more than twice the overlap"):
        TilePlan.for_image(100, 100, tile=32, overlap=16)


@pytest.mark.parametrize("scale", [1, 4])
def test_blend_weights_sum_to_one_and_ignore_tile_edges(scale: int) -> None:
    length, tile, overlap = 300, 64, 16
    starts = tile_starts(length, tile, overlap)
    weights = edge_weights(starts, tile, overlap, scale)
    total = np.zeros(length * scale, np.float32)
    for start, weight in zip(starts, weights):
        total[start * scale : (start + tile) * scale] += weight
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    # Image borders keep full weight; the overlap/4 pixels at a shared edge get none.
    assert weights[0][0] == 1.0 and weights[-1][-1] == 1.0
    assert np.all(weights[1][: overlap // 4 * scale] == 0.0)
    assert np.all(weights[0][-(overlap // 4) * scale :] == 0.0)


def test_context_free_model_gives_identical_pixels_tiled_or_whole(tiny_x2: Path) -> None:
    model = OnnxModel(tiny_x2, device="cpu")
    image = np.random.default_rng(0).random((70, 90, 3), dtype=np.float32)
    whole = run_tiled(model, image, tile=None, out_dtype=np.uint8)
    for tile, overlap, batch in [(32, 8, 1), (32, 8, 3), (40, 0, 2)]:
        tiled = run_tiled(model, image, tile=tile, overlap=overlap, batch_size=batch, out_dtype=np.uint8)
        assert tiled.shape == (140, 180, 3) and tiled.dtype == np.uint8
        np.testing.assert_array_equal(tiled, whole)


@pytest.mark.parametrize(("out_dtype", "top"), [(np.uint8, 255), (np.uint16, 65535)])
def test_integer_outputs_are_rounded_from_the_float_result(tiny_x2: Path, out_dtype, top: int) -> None:
    model = OnnxModel(tiny_x2, device="cpu")
    image = np.random.default_rng(1).random((20, 36, 3), dtype=np.float32)
    floats = run_tiled(model, image, tile=16, overlap=4)
    integers = run_tiled(model, image, tile=16, overlap=4, out_dtype=out_dtype)
    assert integers.dtype == out_dtype
    np.testing.assert_array_equal(integers, np.rint(floats * top).astype(out_dtype))


@pytest.mark.skipif(not SHIPPED_X4.is_file(), reason="shipped weights not present")
def test_shipped_model_tiled_equals_whole_image_within_one_level() -> None:
    # A real photo and the real net, whose receptive field makes tile edges differ: only the
    # overlap and blending make the tiled result match.
    photo = load_image(REPO / "examples" / "spaniels.png").rgb[:120, :160]
    model = OnnxModel(SHIPPED_X4, device="cpu")
    whole = run_tiled(model, photo, tile=None, out_dtype=np.uint8).astype(int)
    tiled = run_tiled(model, photo, tile=64, overlap=16, out_dtype=np.uint8).astype(int)
    assert np.abs(tiled - whole).max() <= 1
    # Without overlap the seams are visible, so the check above is not vacuous.
    seams = run_tiled(model, photo, tile=64, overlap=0, out_dtype=np.uint8).astype(int)
    assert np.abs(seams - whole).max() > 4


class MemoryLimitedModel:
    """Wraps a model and fails like a full GPU on any call larger than `max_pixels` input pixels."""

    def __init__(self, model: OnnxModel, max_pixels: int) -> None:
        self.model, self.info, self.max_pixels = model, model.info, max_pixels
        self.calls: list[tuple[int, ...]] = []

    def run_batch(self, images: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        self.calls.append(images.shape[:3])
        if images.shape[0] * images.shape[1] * images.shape[2] > self.max_pixels:
            raise InferenceMemoryError("out of memory")
        return self.model.run_batch(images, masks)


def test_out_of_memory_drops_the_batch_then_halves_the_tile(tiny_x2: Path) -> None:
    model = MemoryLimitedModel(OnnxModel(tiny_x2, device="cpu"), max_pixels=130 * 130)
    image = np.random.default_rng(2).random((300, 300, 3), dtype=np.float32)
    warnings: list[str] = []
    result = run_with_fallback(model, image, tile=256, overlap=16, batch_size=2, warn=warnings.append)
    np.testing.assert_allclose(result, run_tiled(model.model, image, tile=None), atol=1e-6)
    assert any("one tile at a time" in warning for warning in warnings)
    assert any("tile 128" in warning for warning in warnings)
    # 300 pixels in tiles of at most 128 overlapping by 16: three tiles of 111.
    assert model.calls[-1] == (1, 111, 111)


def test_out_of_memory_below_the_smallest_tile_is_raised(tiny_x2: Path) -> None:
    model = MemoryLimitedModel(OnnxModel(tiny_x2, device="cpu"), max_pixels=MIN_TILE * MIN_TILE // 2)
    image = np.zeros((200, 200, 3), np.float32)
    with pytest.raises(InferenceMemoryError):
        run_with_fallback(model, image, tile=256, overlap=16)


def test_auto_tile_follows_the_budget() -> None:
    info = ModelInfo(task="superres", name="x4", scale=4, multiple_of=4)
    assert auto_tile(info, 300, 400, on_gpu=False, host_budget=1 << 30) is None
    big = auto_tile(info, 3000, 4000, on_gpu=False, host_budget=1 << 30)
    small = auto_tile(info, 3000, 4000, on_gpu=False, host_budget=200 << 20)
    assert big is not None and small is not None and MIN_TILE <= small < big <= 1024
    assert big % 4 == 0 and small % 4 == 0
    # On a GPU the strip lives on the host, the net on the device.
    assert auto_tile(info, 3000, 4000, on_gpu=True, device_budget=64 << 20, host_budget=8 << 30) < big


def test_fp16_nan_tiles_are_rerun_in_fp32(tmp_path: Path) -> None:
    build_upscaler(tmp_path / "m.onnx", scale=2, name="m")
    build_upscaler(
        tmp_path / "m.fp16.onnx", scale=2, name="m", metadata={"precision": "fp16"}, nan_above=0.9
    )
    half = OnnxModel(tmp_path / "m.onnx", device="cpu", precision="fp16")
    assert half.path.name == "m.fp16.onnx"
    image = np.full((64, 96, 3), 0.5, np.float32)
    image[5, 5] = 0.95  # only the tiles holding this pixel overflow
    result = run_tiled(half, image, tile=32, overlap=8)
    assert np.isfinite(result).all()
    np.testing.assert_allclose(result, image.repeat(2, axis=0).repeat(2, axis=1), atol=1e-6)
    assert half.fp32_retries == 1


def test_mask_is_tiled_with_the_image(tmp_path: Path) -> None:
    class MaskFill:
        """A same-size "inpainter": masked pixels become 1."""

        info = ModelInfo(task="inpaint", name="fill", scale=1, inputs=("image", "mask"))

        def run_batch(self, images: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
            assert masks is not None and masks.shape == images.shape[:3]
            return np.maximum(images, masks[..., None])

    image = np.random.default_rng(3).random((90, 70, 3), dtype=np.float32) * 0.5
    mask = np.zeros((90, 70), np.float32)
    mask[30:50, 10:60] = 1.0
    result = run_tiled(MaskFill(), image, tile=32, overlap=8, mask=mask)
    np.testing.assert_allclose(result, np.maximum(image, mask[..., None]), atol=1e-6)


def test_on_a_gpu_tiles_keep_their_size_and_each_shape_is_warmed_once(tiny_x2: Path) -> None:
    class GpuModel:
        on_gpu = True

        def __init__(self) -> None:
            self.model = OnnxModel(tiny_x2, device="cpu")
            self.info = self.model.info
            self.shapes: set[tuple[int, ...]] = set()
            self.warmed: list[tuple[int, int, int]] = []

        def warm_up(self, height: int, width: int, batch: int = 1) -> None:
            self.warmed.append((batch, height, width))

        def run_batch(self, images: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
            self.shapes.add(images.shape[:3])
            return self.model.run_batch(images, masks)

    gpu = GpuModel()
    for size in [(100, 90), (130, 110)]:
        image = np.random.default_rng(4).random((*size, 3), dtype=np.float32)
        result = run_tiled(gpu, image, tile=64, overlap=8, batch_size=2)
        np.testing.assert_allclose(result, run_tiled(gpu.model, image, tile=None), atol=1e-6)
    # Every image reuses the requested 64x64 tile, unlike the fitted tiles on a CPU.
    assert {shape[1:] for shape in gpu.shapes} == {(64, 64)}
    assert gpu.warmed == [(2, 64, 64), (2, 64, 64)]
