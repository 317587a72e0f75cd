"""`img2img compare`: a comparison sheet of image folders matched by relative path."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from img2img.errors import Img2ImgError
from img2img.evaluate.scoring import PairScorer, images_by_stem, to_uint8
from img2img.evaluate.sheets import Tile, comparison_sheet, find_detail_box
from img2img.metrics.folders import load_rgb


def _caption(scores: dict[str, float]) -> str:
    lines = [f"PSNR-Y {scores['psnr_y']:.2f} dB", f"SSIM-Y {scores['ssim_y']:.4f}"]
    if "vgg_distance" in scores:
        lines.append(f"VGG dist {scores['vgg_distance']:.4f}")
    return "\n".join(lines)


def folder_sheet(
    columns: list[Path],
    target: Path | None,
    *,
    labels: list[str],
    count: int = 4,
    scorer: PairScorer | None = None,
    zoom: bool = False,
    tile_size: int = 256,
) -> Image.Image:
    """A sheet of the first `count` images that every folder has (by relative path without
    extension): one row per image, one column per folder, then the target.

    Under a tile of the target's size the scorer's metrics against the target are printed, under
    any other its size. With `zoom`, every tile shows the most detailed quarter of the target (or
    of the largest image) magnified, and the first column the whole image with that box outlined.

    Raises:
        Img2ImgError: no image is present in every folder, or `count` < 1.
    """
    if count < 1:
        raise Img2ImgError(f"--count must be at least 1, got {count}")
    folders = list(columns) + ([target] if target is not None else [])
    found = [images_by_stem(folder) for folder in folders]
    shared = sorted(set.intersection(*(set(files) for files in found)))
    if not shared:
        raise Img2ImgError(
            f"no image is present in all of {', '.join(map(str, folders))} under the same relative path"
        )
    rows, boxes, names = [], [], []
    for name in shared[:count]:
        images = [load_rgb(files[name]) for files in found]
        reference = images[-1] if target is not None else max(images, key=lambda image: image.shape[-1] * image.shape[-2])
        tiles = []
        for index, image in enumerate(images):
            is_target = target is not None and index == len(images) - 1
            if scorer is not None and not is_target and target is not None and image.shape == reference.shape:
                caption = _caption(scorer.score(image, reference))
            else:
                caption = f"{image.shape[-1]}x{image.shape[-2]}"
            tiles.append(Tile(to_uint8(image), caption))
        rows.append(tiles)
        names.append(name)
        if zoom:
            pixels = to_uint8(reference)
            boxes.append(find_detail_box(pixels, max(8, min(pixels.shape[:2]) // 4)))
    titles = list(labels) + (["target"] if target is not None else [])
    return comparison_sheet(
        rows,
        column_titles=titles,
        row_titles=names,
        tile_size=tile_size,
        zoom_box=boxes if zoom else None,
        zoom_reference=0 if zoom else None,
    )
