"""Comparison sheets: one row per image, one column per method, a caption under every tile.

A sheet is what a reader of a super-resolution paper looks at first: the input, the baselines,
the model and the target side by side, each with its scores. Tiles of one row may have different
resolutions (an x4 input is a quarter of the output's size); every tile is fitted into the same
square, so the row lines up. For super-resolution the whole image, shrunk to a tile, hides the
differences that matter, so a row can instead show one zoomed region (`find_detail_box` picks
the most detailed one) magnified with nearest-neighbour sampling, pixels visible, while one
column shows the whole image with that region outlined.

numpy and Pillow only: sheets are drawn from uint8 arrays, no torch.

Example:
    >>> box = find_detail_box(target, 48)
    >>> sheet = comparison_sheet(
    ...     [[Tile(lr), Tile(bicubic, "PSNR 24.10 dB"), Tile(sr, "PSNR 26.73 dB"), Tile(target)]],
    ...     column_titles=["input", "bicubic", "model", "target"],
    ...     zoom_box=[box],
    ...     zoom_reference=0,
    ... )
    >>> save_sheet(sheet, "runs/x4/eval/sheet.png")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from img2img.files.atomic import write_bytes_atomically

Box = tuple[int, int, int, int]

BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (17, 17, 17)
# Red with a white rim: visible on dark, light and busy (noisy, saturated) images alike.
OUTLINE_COLOUR = (230, 30, 30)
OUTLINE_RIM = (255, 255, 255)
ELLIPSIS = "…"
# BT.601 luma weights: detail is judged on brightness, where the eye sees it.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Candidate boxes are tried every side/_BOX_STEPS pixels: fine enough to centre a textured
# region, coarse enough that a 4K image takes milliseconds.
_BOX_STEPS = 4


@dataclass
class Tile:
    """One cell of a comparison sheet.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        caption: text under the tile; "\\n" separates lines, e.g. "PSNR 27.31 dB\\nSSIM 0.812".
    """

    image: np.ndarray
    caption: str = ""

    def __post_init__(self) -> None:
        image = self.image
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, "shape", type(image).__name__)
            raise ValueError(f"Tile.image must be an (H, W, 3) RGB array, got {shape}")
        if image.dtype != np.uint8:
            raise ValueError(
                f"Tile.image must be uint8, got {image.dtype}; convert floats in [0, 1] with "
                "(x.clip(0, 1) * 255).round().astype(np.uint8)"
            )
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"Tile.image is empty: {image.shape}")

    @property
    def lines(self) -> list[str]:
        return self.caption.split("\n") if self.caption else []


@dataclass(frozen=True)
class SheetMetrics:
    """Sizes derived from `tile_size`, in pixels; they fix the sheet's size (see comparison_sheet).

    font_size = max(11, tile_size // 16), line_height = 3 * font_size // 2,
    gap = max(4, tile_size // 32), outline = max(2, tile_size // 96).
    """

    tile_size: int
    font_size: int
    line_height: int
    gap: int
    outline: int

    @classmethod
    def for_tile_size(cls, tile_size: int) -> SheetMetrics:
        font_size = max(11, tile_size // 16)
        return cls(
            tile_size=tile_size,
            font_size=font_size,
            line_height=3 * font_size // 2,
            gap=max(4, tile_size // 32),
            outline=max(2, tile_size // 96),
        )


def find_detail_box(image: np.ndarray, size: int) -> Box:
    """The size x size square of `image` with the most detail, for a zoomed crop.

    Detail is the summed absolute luma gradient (|dI/dx| + |dI/dy|, BT.601 luma) inside the
    square; squares are tried every max(1, side // 4) pixels along each axis, plus the last
    position, so the right and bottom edges are reachable. An image without any gradient gets
    the centred square. For super-resolution pass the target (or the output): the box is in
    its coordinates, as `comparison_sheet` expects.

    Args:
        image: (H, W, 3) or (H, W) array, any numeric dtype.
        size: side of the square in pixels (>= 1); clipped to min(H, W).

    Returns:
        (left, top, right, bottom), right and bottom exclusive, inside the image.

    Example:
        >>> image = np.zeros((64, 64, 3), np.uint8)
        >>> image[40:, 40:] = np.random.default_rng(0).integers(0, 256, (24, 24, 3))
        >>> find_detail_box(image, 16)
        (44, 44, 60, 60)
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if image.ndim == 3 and image.shape[2] == 3:
        luma = image.astype(np.float32) @ _LUMA
    elif image.ndim == 2:
        luma = image.astype(np.float32)
    else:
        raise ValueError(f"image must be (H, W, 3) or (H, W), got {image.shape}")
    height, width = luma.shape
    side = min(size, height, width)
    energy = np.zeros((height, width), dtype=np.float64)
    energy[:, :-1] += np.abs(np.diff(luma, axis=1))
    energy[:-1, :] += np.abs(np.diff(luma, axis=0))
    # Summed-area table: the energy of any square costs four lookups.
    table = np.zeros((height + 1, width + 1), dtype=np.float64)
    table[1:, 1:] = energy.cumsum(axis=0).cumsum(axis=1)
    step = max(1, side // _BOX_STEPS)
    tops = np.unique(np.append(np.arange(0, height - side + 1, step), height - side))
    lefts = np.unique(np.append(np.arange(0, width - side + 1, step), width - side))
    sums = (
        table[np.ix_(tops + side, lefts + side)]
        - table[np.ix_(tops, lefts + side)]
        - table[np.ix_(tops + side, lefts)]
        + table[np.ix_(tops, lefts)]
    )
    if sums.max() <= 0:
        top, left = (height - side) // 2, (width - side) // 2
    else:
        row, column = np.unravel_index(np.argmax(sums), sums.shape)
        top, left = int(tops[row]), int(lefts[column])
    return left, top, left + side, top + side


def comparison_sheet(
    rows: Sequence[Sequence[Tile]],
    *,
    column_titles: Sequence[str],
    row_titles: Sequence[str] | None = None,
    tile_size: int = 256,
    zoom_box: Sequence[Box | None] | None = None,
    zoom_reference: int | None = None,
) -> Image.Image:
    """Draw a grid of tiles on white, titles on top, captions under the tiles.

    Every tile image is fitted into a tile_size x tile_size square, aspect kept and centred on
    white; it is enlarged with nearest-neighbour sampling (pixels stay visible, nothing is
    invented) and reduced with Lanczos. Captions are centred under their tile, column titles
    above their column, row titles written bottom-to-top left of their row; text too wide is
    cut with an ellipsis.

    Zoom: when ``zoom_box[r]`` is given, every tile of row r shows that region instead of the
    whole image. The box is in the pixel coordinates of the row's largest tile (the target or
    the output) and is scaled to each tile's own resolution, so an x4 input shows the same
    region with a quarter of the pixels. The column ``zoom_reference`` (e.g. 0, the input)
    shows its whole image with the region outlined in red.

    Size, with f = max(11, tile_size // 16), L = 3 f // 2, g = max(4, tile_size // 32),
    C columns, R rows, T = most lines in a column title (0 when all are empty), K = most lines
    in a caption (0 when there are none), and B = L + g when row_titles are given, else 0:

        width  = B + C * tile_size + (C + 1) * g
        height = T * L + R * (tile_size + K * L) + (R + 1) * g

    Args:
        rows: R rows of C tiles each.
        column_titles: C titles, e.g. ["input", "bicubic", "model", "target"].
        row_titles: R titles (e.g. image names) or None.
        tile_size: side of a tile's square in pixels (>= 16).
        zoom_box: R entries, each (left, top, right, bottom) or None; or None for no zoom.
        zoom_reference: column that shows the whole image with the box outlined, or None.

    Returns:
        An RGB PIL image.
    """
    if not rows:
        raise ValueError("a comparison sheet needs at least one row of tiles")
    columns = len(column_titles)
    for index, row in enumerate(rows):
        if len(row) != columns:
            raise ValueError(
                f"row {index} has {len(row)} tiles but there are {columns} column titles; "
                "give one title per column"
            )
    if row_titles is not None and len(row_titles) != len(rows):
        raise ValueError(f"{len(row_titles)} row titles for {len(rows)} rows")
    if tile_size < 16:
        raise ValueError(f"tile_size must be >= 16, got {tile_size}")
    if zoom_box is not None and len(zoom_box) != len(rows):
        raise ValueError(f"zoom_box has {len(zoom_box)} entries for {len(rows)} rows; use None for rows without zoom")
    if zoom_reference is not None and not 0 <= zoom_reference < columns:
        raise ValueError(f"zoom_reference must be a column index in [0, {columns}), got {zoom_reference}")

    metrics = SheetMetrics.for_tile_size(tile_size)
    gap, line = metrics.gap, metrics.line_height
    font = _font(metrics.font_size)
    title_lines = max((len(title.split("\n")) for title in column_titles if title), default=0)
    caption_lines = max((len(tile.lines) for row in rows for tile in row), default=0)
    band = line + gap if row_titles is not None else 0
    cell_height = tile_size + caption_lines * line
    width = band + columns * tile_size + (columns + 1) * gap
    height = title_lines * line + len(rows) * cell_height + (len(rows) + 1) * gap

    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    left_of = [band + gap + column * (tile_size + gap) for column in range(columns)]
    for column, title in enumerate(column_titles):
        lines = title.split("\n") if title else []
        _draw_lines(draw, lines, font, left_of[column], gap, tile_size, line)
    for index, row in enumerate(rows):
        top = gap + title_lines * line + index * (cell_height + gap)
        if row_titles is not None:
            _draw_row_title(sheet, row_titles[index], font, (gap, top), tile_size, line)
        box = zoom_box[index] if zoom_box is not None else None
        images = [Image.fromarray(tile.image) for tile in row]
        if box is not None:
            images = _zoomed(images, box, zoom_reference, tile_size, metrics.outline, index)
        else:
            images = [_fit(image, None, tile_size) for image in images]
        for column, (tile, image) in enumerate(zip(row, images, strict=True)):
            x = left_of[column] + (tile_size - image.width) // 2
            y = top + (tile_size - image.height) // 2
            sheet.paste(image, (x, y))
            _draw_lines(draw, tile.lines, font, left_of[column], top + tile_size, tile_size, line)
    return sheet


def save_sheet(image: Image.Image, path: str | Path) -> Path:
    """Write `image` as a PNG at `path`, atomically (a temporary file renamed into place).

    Missing parent folders are created. Returns the path.
    """
    return write_bytes_atomically(Path(path), png_bytes(image))


def png_bytes(image: Image.Image) -> bytes:
    """`image` encoded as PNG."""
    buffer = BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow >= 10.1 ships a scalable default font when it is built with FreeType; otherwise
    # the fixed bitmap font is all there is, and the layout (fixed line pitch) still holds.
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _text_width(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return right - left


def _shorten(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str, width: int) -> str:
    """`text`, or its longest prefix plus an ellipsis that fits in `width` pixels."""
    if _text_width(font, text) <= width:
        return text
    low, high = 0, len(text)
    # Binary search on the prefix length: widths grow with the prefix.
    while low < high:
        middle = (low + high + 1) // 2
        if _text_width(font, text[:middle].rstrip() + ELLIPSIS) <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + ELLIPSIS if low else ""


def _draw_lines(
    draw: ImageDraw.ImageDraw,
    lines: Sequence[str],
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    left: int,
    top: int,
    width: int,
    line_height: int,
) -> None:
    """Each line centred in `width`, one every `line_height` pixels from `top`."""
    # One vertical offset for every line ("Ag" spans ascender to descender), so baselines are
    # evenly spaced whatever letters a line holds.
    _, glyph_top, _, glyph_bottom = font.getbbox("Ag")
    offset = (line_height - (glyph_bottom - glyph_top)) // 2 - glyph_top
    for number, text in enumerate(lines):
        text = _shorten(font, text, width)
        if not text:
            continue
        text_left, _, text_right, _ = font.getbbox(text)
        x = left + (width - (text_right - text_left)) // 2 - text_left
        draw.text((x, top + number * line_height + offset), text, fill=TEXT_COLOUR, font=font)


def _draw_row_title(
    sheet: Image.Image,
    title: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    origin: tuple[int, int],
    length: int,
    line_height: int,
) -> None:
    """The title written bottom-to-top in a line_height-wide band beside a row's tiles."""
    strip = Image.new("RGB", (length, line_height), BACKGROUND)
    _draw_lines(ImageDraw.Draw(strip), [title.replace("\n", " ")], font, 0, 0, length, line_height)
    sheet.paste(strip.transpose(Image.Transpose.ROTATE_90), origin)


def _fit(image: Image.Image, box: tuple[float, float, float, float] | None, size: int) -> Image.Image:
    """`image` (or its `box` region) scaled to fit a size x size square, aspect kept."""
    left, top, right, bottom = box if box is not None else (0, 0, image.width, image.height)
    source_width, source_height = right - left, bottom - top
    scale = min(size / source_width, size / source_height)
    shape = (max(1, round(source_width * scale)), max(1, round(source_height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    return image.resize(shape, resample, box=(left, top, right, bottom))


def _zoomed(
    images: list[Image.Image],
    box: Box,
    reference: int | None,
    size: int,
    outline: int,
    row: int,
) -> list[Image.Image]:
    """Each image's view of `box` (given in the largest image's pixels), fitted to size x size."""
    largest = max(images, key=lambda image: image.width * image.height)
    left, top, right, bottom = box
    if not (0 <= left < right <= largest.width and 0 <= top < bottom <= largest.height):
        raise ValueError(
            f"zoom_box {tuple(box)} of row {row} is not inside its largest tile "
            f"({largest.width}x{largest.height}); find_detail_box gives a box that is"
        )
    views = []
    for column, image in enumerate(images):
        # Float boxes: an x4 input crops exactly a quarter of the region, whatever its alignment.
        scale_x, scale_y = image.width / largest.width, image.height / largest.height
        if column == reference:
            view = _fit(image, None, size)
            to_x, to_y = view.width / largest.width, view.height / largest.height
            x0, y0 = round(left * to_x), round(top * to_y)
            # At least the outline's own width across, so a tiny box still shows.
            x1 = max(round(right * to_x) - 1, x0 + outline)
            y1 = max(round(bottom * to_y) - 1, y0 + outline)
            draw = ImageDraw.Draw(view)
            draw.rectangle([x0 - 1, y0 - 1, x1 + 1, y1 + 1], outline=OUTLINE_RIM, width=outline + 2)
            draw.rectangle([x0, y0, x1, y1], outline=OUTLINE_COLOUR, width=outline)
        else:
            view = _fit(image, (left * scale_x, top * scale_y, right * scale_x, bottom * scale_y), size)
        views.append(view)
    return views
