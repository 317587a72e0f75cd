"""Run a model over an image in overlapping tiles and blend them without seams.

A net sees only its tile, so pixels near a tile's edge are computed without part of their
neighbourhood and differ from what the whole image would give. Tiles therefore overlap by
`overlap` input pixels, and each tile's output is weighted along every edge it shares with a
neighbour: 0 over the first quarter of the overlap (the pixels that lack context), rising linearly
to 1 across the middle half, 1 beyond. The blend is the weighted mean. The weights are separable
(a row ramp times a column ramp) and the tiles form a grid, so normalising each axis's ramps to
sum to one normalises the 2-D weights too: tiles are simply added into the output, and only
their ramp bands are multiplied at all.

Memory: the input stays whole on the host; the output comes out row of tiles by row of tiles
as final (integer) bands, and only one row of tiles is ever held in float32. Upscaling a
4000x3000 photo x4 into uint8 needs the 576 MB result plus one float strip, not a 2.3 GB float
image; a consumer that encodes each band as it comes (`tiled_bands` into a PNG writer) needs
only the strip.

Example:
    >>> model = OnnxModel("weights/superres-x4.onnx")
    >>> out = run_tiled(model, image, tile=256, overlap=32, out_dtype=np.uint8)  # (4H, 4W, 3) uint8
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from img2img.contract import ModelInfo
from img2img.errors import InferenceMemoryError, ModelError
from img2img.files.pixels import quantize
from img2img.runtime.memory import available_bytes

DEFAULT_OVERLAP = 16
MIN_TILE = 64
MAX_AUTO_TILE = 1024
# Bytes of device memory one input pixel costs while a tile runs, per unit of output area:
# activations at input resolution (the shipped nets keep 32-64 float32 channels, two or three
# alive at once) plus the float32 output. Measured peaks of the shipped x4 model on the CPU sit
# below this; other nets get the same budget, and an out-of-memory error halves the tile anyway.
_BYTES_PER_INPUT_PIXEL = 1024
_BYTES_PER_OUTPUT_PIXEL = 3 * 4 * 3
# Host bytes per output pixel of a tile row: float32 RGB sums, their weight, one quantising copy.
_STRIP_BYTES_PER_PIXEL = 3 * 4 + 4 + 3 * 4

# Bounds of the options that size work: a side no tile needs to exceed, and an overlap far
# beyond any net's receptive field.
MAX_TILE = 16_384
MAX_TILE_OVERLAP = 1_024

T = TypeVar("T")


class TileModel(Protocol):
    """What tiling needs from a model: its metadata and a batched run (see OnnxModel)."""

    info: ModelInfo

    def run_batch(self, images: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray: ...

    # Optional: `on_gpu` (bool) and `warm_up(height, width, batch)`, as OnnxModel has them.


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one image go. All tiles have the same size, so they batch.

    Attributes:
        tile_height, tile_width: tile size in input pixels: at most the requested tile, shrunk
            so that the tiles just cover the image (see `fitted_tile`).
        overlap: input pixels shared by neighbouring tiles, at least.
        starts_y, starts_x: top and left input coordinates of the tile rows and columns.
    """

    tile_height: int
    tile_width: int
    overlap: int
    starts_y: tuple[int, ...]
    starts_x: tuple[int, ...]

    @classmethod
    def for_image(cls, height: int, width: int, *, tile: int, overlap: int, fit: bool = True) -> TilePlan:
        """Plan `tile`-sized tiles (or the image size on an axis shorter than that) over an image.

        With `fit`, tiles shrink to just cover the image (less work); without, they keep the
        requested size, so that every image reuses the same input shape (a TensorRT engine is
        built per shape).

        Raises:
            ValueError: the overlap is negative or the tile is not more than twice the overlap.
        """
        if overlap < 0:
            raise ValueError(f"tile overlap must be 0 or more, got {overlap}")
        if tile <= 2 * overlap:
            raise ValueError(
                f"tile {tile} must be more than twice the overlap {overlap}; raise --tile or lower --tile-overlap"
            )
        if fit:
            tile_height, tile_width = fitted_tile(height, tile, overlap), fitted_tile(width, tile, overlap)
        else:
            tile_height, tile_width = min(tile, height), min(tile, width)
        return cls(
            tile_height=tile_height,
            tile_width=tile_width,
            overlap=overlap,
            starts_y=tile_starts(height, tile_height, overlap),
            starts_x=tile_starts(width, tile_width, overlap),
        )

    @property
    def count(self) -> int:
        return len(self.starts_y) * len(self.starts_x)


def check_tiling(tile: int | str | None, overlap: int) -> None:
    """Refuse a tile (input pixels, "auto" or None for whole) and overlap that cannot tile an image.

    Raises:
        ModelError: a tile that is not positive, "auto" or None, above MAX_TILE, or not more than
            twice the overlap; an overlap outside 0..MAX_TILE_OVERLAP.
    """
    if isinstance(tile, int) and tile < 1 or isinstance(tile, str) and tile != "auto":
        raise ModelError(f"tile must be a positive number of pixels or 'auto', got {tile!r}")
    if isinstance(tile, int) and tile > MAX_TILE:
        raise ModelError(f"tile {tile:,} is larger than any image needs; use at most {MAX_TILE:,}, 0 or 'auto'")
    if not 0 <= overlap <= MAX_TILE_OVERLAP:
        raise ModelError(f"tile overlap must be 0 to {MAX_TILE_OVERLAP} pixels, got {overlap:,}")
    if isinstance(tile, int) and tile <= 2 * overlap:
        raise ModelError(
            f"tile {tile} must be more than twice the tile overlap {overlap}; raise --tile or lower --tile-overlap"
        )


def fitted_tile(length: int, tile: int, overlap: int) -> int:
    """The smallest tile length (at most `tile`) that covers `length` with as few tiles as `tile`
    would, so the tiles overlap by about `overlap` and not by whatever is left over: 1024 pixels
    in tiles of at most 512 with overlap 16 become 3 tiles of 352, not 3 of 512."""
    if tile >= length:
        return length
    count = math.ceil((length - overlap) / (tile - overlap))
    return min(tile, math.ceil((length + (count - 1) * overlap) / count))


def tile_starts(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Start coordinates of the fewest `tile`-long windows covering [0, length) with neighbours
    overlapping by at least `overlap`, spread evenly so the first starts at 0 and the last ends at
    `length`."""
    if tile >= length:
        return (0,)
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1)
    return tuple(round(index * step) for index in range(count))


def edge_weights(starts: tuple[int, ...], tile: int, overlap: int, scale: int) -> list[np.ndarray]:
    """Blend weights along one axis, one (tile * scale,) float32 ramp per tile, in output pixels,
    normalised so that at every output position the ramps of the tiles covering it sum to 1.

    An edge at the image border keeps weight 1 (no neighbour has a better view of those pixels);
    an edge shared with a neighbour is 0 for overlap/4 input pixels, then rises linearly to 1 over
    overlap/2 pixels.
    """
    length = tile * scale
    # Distance of each output pixel's centre from the tile's start and end, in input pixels.
    from_start = (np.arange(length, dtype=np.float32) + 0.5) / scale
    from_end = tile - from_start
    blind, ramp = overlap / 4, overlap / 2
    weights = []
    for index in range(len(starts)):
        weight = np.ones(length, np.float32)
        if overlap > 0:
            if index > 0:
                weight = np.minimum(weight, np.clip((from_start - blind) / ramp, 0.0, 1.0))
            if index < len(starts) - 1:
                weight = np.minimum(weight, np.clip((from_end - blind) / ramp, 0.0, 1.0))
        weights.append(weight)
    total = np.zeros((starts[-1] + tile) * scale, np.float32)
    for start, weight in zip(starts, weights, strict=True):
        total[start * scale : start * scale + length] += weight
    return [weight / total[start * scale : start * scale + length] for start, weight in zip(starts, weights, strict=True)]


def _ramp_bands(weight: np.ndarray) -> list[tuple[slice, np.ndarray]]:
    """The leading and trailing runs of `weight` that are not exactly 1, as (slice, values)."""
    ones = np.flatnonzero(weight == 1.0)
    if len(ones) == 0:
        return [(slice(0, len(weight)), weight)]
    bands = []
    if ones[0] > 0:
        bands.append((slice(0, ones[0]), weight[: ones[0]]))
    if ones[-1] < len(weight) - 1:
        bands.append((slice(ones[-1] + 1, len(weight)), weight[ones[-1] + 1 :]))
    # Values strictly inside the interior are 1 when tiles overlap only at their edges.
    inside = weight[ones[0] : ones[-1] + 1]
    if not np.all(inside == 1.0):
        return [(slice(0, len(weight)), weight)]
    return bands


def run_tiled(
    model: TileModel,
    image: np.ndarray,
    *,
    tile: int | None,
    overlap: int = DEFAULT_OVERLAP,
    mask: np.ndarray | None = None,
    batch_size: int = 1,
    out_dtype: type[np.generic] = np.float32,
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Run `model` on `image` tile by tile and blend the results into one array.

    Takes the arguments of `tiled_bands`.

    Returns:
        (H * scale, W * scale, C_out) C-contiguous array of `out_dtype`.

    Raises:
        InferenceMemoryError: a model call ran out of memory (retry with a smaller tile).
    """
    height, width = image.shape[:2]
    bands = tiled_bands(
        model, image, tile=tile, overlap=overlap, mask=mask, batch_size=batch_size, out_dtype=out_dtype,
        on_tile=on_tile,
    )
    return assemble(bands, height * model.info.scale, width * model.info.scale)


def tiled_bands(
    model: TileModel,
    image: np.ndarray,
    *,
    tile: int | None,
    overlap: int = DEFAULT_OVERLAP,
    mask: np.ndarray | None = None,
    batch_size: int = 1,
    out_dtype: type[np.generic] = np.float32,
    on_tile: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Run `model` on `image` tile by tile and yield the blended output as it becomes final.

    Args:
        model: an OnnxModel (or anything with `info` and a `run_batch` returning [0, 1] floats).
        image: (H, W, C) float32 in [0, 1].
        tile: tile size in input pixels, or None to run the whole image at once.
        overlap: input pixels neighbouring tiles share.
        mask: (H, W) float32 in [0, 1], tiled with the image, for models that take a mask.
        batch_size: tiles per model call; tiles of a row are batched.
        out_dtype: np.uint8 (0-255), np.uint16 (0-65535) or np.float32 ([0, 1]) output.
        on_tile: called as on_tile(tiles_done, tiles_total) after each model call.

    Yields:
        (top output row, (rows, W * scale, C_out) C-contiguous `out_dtype` band) pairs, top to
        bottom, covering the H * scale output rows once: one band per row of tiles (the rows
        above the next tile row's top, which no later tile touches), one band for a whole image.
        A consumer that writes each band away (a PNG encoder) never holds the whole output.

    Raises:
        InferenceMemoryError: a model call ran out of memory (retry with a smaller tile).

    On a GPU (a model whose `on_gpu` is true) tiles keep their requested size, so every image
    reuses one input shape, and each new shape is warmed up once before the tiles run.
    """
    height, width = image.shape[:2]
    scale = model.info.scale
    on_gpu = getattr(model, "on_gpu", False)
    if tile is None or (tile >= height and tile >= width):
        result = model.run_batch(image[None], None if mask is None else mask[None])[0]
        if on_tile is not None:
            on_tile(1, 1)
        # The session hands back finite outputs (a non-finite tile is rerun in float32) that
        # the graph clamped to [0, 1], and blending weights sum to 1: no clipping pass is due.
        yield 0, quantize(result, out_dtype, in_place=True, in_range=True)
        return

    plan = TilePlan.for_image(height, width, tile=tile, overlap=overlap, fit=not on_gpu)
    tile_h, tile_w = plan.tile_height, plan.tile_width
    if on_gpu:
        model.warm_up(tile_h, tile_w, batch=min(batch_size, len(plan.starts_x)))
    bands_y = [_ramp_bands(weight) for weight in edge_weights(plan.starts_y, tile_h, overlap, scale)]
    bands_x = [_ramp_bands(weight) for weight in edge_weights(plan.starts_x, tile_w, overlap, scale)]
    # One row of tiles, summed in float32 at output resolution.
    strip: np.ndarray | None = None
    done = 0
    for row, top in enumerate(plan.starts_y):
        for batch in _chunks(list(enumerate(plan.starts_x)), batch_size):
            crops = np.stack([image[top : top + tile_h, left : left + tile_w] for _, left in batch])
            masks = None
            if mask is not None:
                masks = np.stack([mask[top : top + tile_h, left : left + tile_w] for _, left in batch])
            results = model.run_batch(crops, masks)
            if strip is None:
                strip = np.zeros((tile_h * scale, width * scale, results.shape[3]), np.float32)
            for (column, left), result in zip(batch, results, strict=True):
                for band, weight in bands_y[row]:
                    result[band] *= weight[:, None, None]
                for band, weight in bands_x[column]:
                    result[:, band] *= weight[None, :, None]
                strip[:, left * scale : (left + tile_w) * scale] += result
            done += len(batch)
            if on_tile is not None:
                on_tile(done, plan.count)

        # Output rows above the next tile row's top are final: no later tile touches them.
        assert strip is not None
        is_last = row == len(plan.starts_y) - 1
        final = tile_h * scale if is_last else (plan.starts_y[row + 1] - top) * scale
        band = quantize(strip[:final], out_dtype, in_place=True, in_range=True)
        # A float32 band is a view of the strip, which the next row of tiles overwrites.
        yield top * scale, band.copy() if np.shares_memory(band, strip) else band
        if not is_last:
            # Keep the rows the next tile row overlaps, at the top of the strip.
            carry = tile_h * scale - final
            strip[:carry] = strip[final:]
            strip[carry:] = 0.0


def assemble(bands: Iterator[tuple[int, np.ndarray]], height: int, width: int) -> np.ndarray:
    """The (height, width, C) array that `tiled_bands`' bands cover (a single band covering it
    all is returned as it is, without a copy)."""
    output: np.ndarray | None = None
    for top, band in bands:
        if output is None:
            if top == 0 and band.shape[:2] == (height, width):
                return band
            output = np.empty((height, width, band.shape[2]), band.dtype)
        output[top : top + band.shape[0]] = band
    assert output is not None, "no bands"
    return output


def run_with_fallback(
    model: TileModel,
    image: np.ndarray,
    *,
    tile: int | str | None,
    overlap: int = DEFAULT_OVERLAP,
    mask: np.ndarray | None = None,
    batch_size: int = 1,
    out_dtype: type[np.generic] = np.float32,
    on_gpu: bool = False,
    warn: Callable[[str], None] | None = None,
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """`run_tiled` with `tile="auto"` resolved and out-of-memory recovery (see
    `stream_with_fallback`); returns the (H * scale, W * scale, C_out) `out_dtype` output."""
    height, width = image.shape[:2]
    scale = model.info.scale
    return stream_with_fallback(
        model, image, lambda bands: assemble(bands, height * scale, width * scale), tile=tile, overlap=overlap,
        mask=mask, batch_size=batch_size, out_dtype=out_dtype, on_gpu=on_gpu, warn=warn, on_tile=on_tile,
    )


def stream_with_fallback(
    model: TileModel,
    image: np.ndarray,
    consume: Callable[[Iterator[tuple[int, np.ndarray]]], T],
    *,
    tile: int | str | None,
    overlap: int = DEFAULT_OVERLAP,
    mask: np.ndarray | None = None,
    batch_size: int = 1,
    out_dtype: type[np.generic] = np.float32,
    on_gpu: bool = False,
    warn: Callable[[str], None] | None = None,
    on_tile: Callable[[int, int], None] | None = None,
) -> T:
    """`consume(tiled_bands(...))`, with `tile="auto"` resolved and out-of-memory recovery.

    On InferenceMemoryError the batch is cut to one tile, then the tile is halved (down to
    MIN_TILE), and `consume` is called again on a new run from the top, so it must start afresh
    each time (a writer into a new temporary file); `warn` hears about each retry.

    Raises:
        InferenceMemoryError: even MIN_TILE tiles one at a time do not fit.
    """
    height, width = image.shape[:2]
    if tile == "auto":
        tile = auto_tile(model.info, height, width, on_gpu=on_gpu)
    elif isinstance(tile, str):
        raise ModelError(f"tile must be a number of pixels, 'auto' or None, got {tile!r}")
    while True:
        try:
            return consume(
                tiled_bands(
                    model,
                    image,
                    tile=tile,
                    overlap=overlap,
                    mask=mask,
                    batch_size=batch_size,
                    out_dtype=out_dtype,
                    on_tile=on_tile,
                )
            )
        except InferenceMemoryError:
            if batch_size > 1:
                batch_size = 1
                retry = f"out of memory; running one tile at a time (tile {tile or 'whole image'})"
            else:
                current = tile or max(height, width)
                smaller = _align(current // 2, model.info.multiple_of)
                if smaller < MIN_TILE or smaller <= 2 * overlap:
                    raise
                tile = smaller
                retry = f"out of memory; retrying with tile {tile}"
            if warn is not None:
                warn(retry)


def auto_tile(
    info: ModelInfo,
    height: int,
    width: int,
    *,
    on_gpu: bool,
    device_budget: int | None = None,
    host_budget: int | None = None,
) -> int | None:
    """A tile size for an image from the memory there is to spend, or None for the whole image.

    A tile costs device memory for the net's activations and float32 output, and host memory for
    the float32 strip of one tile row across the whole output width. The budgets default to a
    quarter of what is free (host RAM as `memory.available_bytes` finds it, capped at 2 GiB; the
    GPU's free memory from nvidia-smi), leaving room for decoding, encoding and the output buffer.
    On the CPU both costs come out of the one host budget.
    """
    if host_budget is None:
        host_budget = min(available_bytes() // 4, 2 << 30)
    if device_budget is None:
        device_budget = _free_gpu_memory() // 4 if on_gpu else host_budget
    scale = info.scale

    def fits(tile_h: int, tile_w: int, tiled: bool) -> bool:
        device = tile_h * tile_w * (_BYTES_PER_INPUT_PIXEL + _BYTES_PER_OUTPUT_PIXEL * scale * scale)
        strip = tile_h * scale * width * scale * _STRIP_BYTES_PER_PIXEL if tiled else 0
        if on_gpu:
            return device <= device_budget and strip <= host_budget
        return device + strip <= host_budget

    if max(height, width) <= MAX_AUTO_TILE and fits(height, width, tiled=False):
        return None
    tile = MAX_AUTO_TILE
    while tile > MIN_TILE and not fits(tile, tile, tiled=True):
        tile //= 2
    return _align(tile, info.multiple_of)


def _free_gpu_memory() -> int:
    """Free memory of the first visible GPU in bytes, from nvidia-smi; 4 GiB if it cannot tell."""
    import subprocess

    device = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0]
    try:
        answer = subprocess.run(
            ["nvidia-smi", f"--id={device}", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return int(answer.stdout.split()[0]) << 20
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return 4 << 30


def _align(value: int, multiple: int) -> int:
    return max(multiple, value // multiple * multiple)


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + size]
