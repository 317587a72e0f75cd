"""Helpers the batch tests share: tiny processors, image writers and views of a run's outcome."""

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from img2img.files.decode import LoadedImage
from img2img.runtime.batch import ProcessedImage, Processor, run_batch
from img2img.runtime.batch_options import BatchOptions
from img2img.runtime.batch_report import BatchReport


def upscale2(image: LoadedImage) -> ProcessedImage:
    """Nearest-neighbour x2 in the source's bit depth: uint8 for 8-bit sources, uint16 for 16-bit."""
    top, dtype = (65535, np.uint16) if image.bit_depth == 16 else (255, np.uint8)

    def grow(plane: np.ndarray) -> np.ndarray:
        return np.rint(plane * top).astype(dtype).repeat(2, axis=0).repeat(2, axis=1)

    return ProcessedImage(grow(image.rgb), None if image.alpha is None else grow(image.alpha))


def write_png(path: Path, seed: int = 0, size: tuple[int, int] = (12, 8)) -> Path:
    """A (width, height) = `size` RGB noise PNG, creating its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_flat(path: Path, value: int) -> Path:
    """A 6x4 PNG filled with one gray level, so a processor can tell which file it got."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 4), (value, value, value)).save(path)
    return path


def level(image: LoadedImage) -> int:
    return int(round(float(image.rgb[0, 0, 0]) * 255))


def run(
    input_dir: Path, output_dir: Path, processor: Processor = upscale2, **options: Any
) -> tuple[BatchReport, list[str]]:
    """run_batch without a progress line; returns the report and the logged lines."""
    lines: list[str] = []
    settings = BatchOptions(output_dir=output_dir, **options)
    return run_batch(input_dir, processor, settings, progress=False, log=lines.append), lines


def outcomes(report: BatchReport) -> list[tuple[str, str]]:
    return [(record.input, record.status) for record in report.files]


def files_under(root: Path) -> list[str]:
    """Every file under root, hidden ones included, as sorted relative posix paths."""
    found = []
    for folder, _, names in os.walk(root):
        found.extend((Path(folder) / name).relative_to(root).as_posix() for name in names)
    return sorted(found)


def temp_files(root: Path) -> list[str]:
    return [name for name in files_under(root) if name.endswith(".img2img.tmp")]


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image.load()
        return np.asarray(image)
