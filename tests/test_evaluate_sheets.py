import numpy as np
import pytest
from PIL import Image

from img2img.evaluate.sheets import (
    BACKGROUND,
    OUTLINE_COLOUR,
    Tile,
    comparison_sheet,
    find_detail_box,
    save_sheet,
)
from img2img.files.atomic import TEMP_SUFFIX

WHITE = np.array(BACKGROUND, dtype=np.uint8)
# With tile_size 64 the documented sizes are: font 11, line height L = 16, gap g = 4.
TILE, LINE, GAP = 64, 16, 4


def solid(colour, height=20, width=20):
    return np.full((height, width, 3), colour, dtype=np.uint8)


def pixels(sheet):
    return np.asarray(sheet.convert("RGB"))


def is_white(region):
    return bool((region == WHITE).all())


def tile_origin(row, column, *, title_lines=1, caption_lines=0, band=0):
    """Top-left corner of a tile's square, from the layout in comparison_sheet's docstring."""
    left = band + GAP + column * (TILE + GAP)
    top = GAP + title_lines * LINE + row * (TILE + caption_lines * LINE + GAP)
    return left, top


def test_sheet_size_follows_the_documented_formula():
    rows = [[Tile(solid(0)), Tile(solid(80), "PSNR 27.31 dB\nSSIM 0.812"), Tile(solid(160))] for _ in range(2)]
    sheet = comparison_sheet(rows, column_titles=["input", "bicubic", "model"], tile_size=TILE)
    # width = 3 * 64 + 4 * 4; height = 1 title line * 16 + 2 * (64 + 2 caption lines * 16) + 3 * 4
    assert sheet.size == (208, 220)
    titled = comparison_sheet(rows, column_titles=["input", "bicubic", "model"], row_titles=["a", "b"], tile_size=TILE)
    assert titled.size == (208 + LINE + GAP, 220)
    # tile_size 256: font 16, L = 24, g = 8; no titles and no captions take no room.
    bare = [[Tile(solid(0)), Tile(solid(50))]]
    assert comparison_sheet(bare, column_titles=["", ""], tile_size=256).size == (2 * 256 + 3 * 8, 256 + 2 * 8)


def test_adding_a_row_or_a_column_adds_one_cell():
    def sheet(rows, columns):
        grid = [[Tile(solid(10 * c), "x") for c in range(columns)] for _ in range(rows)]
        return comparison_sheet(grid, column_titles=[f"c{c}" for c in range(columns)], tile_size=TILE)

    width, height = sheet(2, 2).size
    assert sheet(3, 2).size == (width, height + TILE + LINE + GAP)
    assert sheet(2, 3).size == (width + TILE + GAP, height)


def test_solid_tiles_land_in_their_cells():
    colours = [[(255, 0, 0), (0, 255, 0)], [(0, 0, 255), (40, 40, 40)]]
    rows = [[Tile(solid(colour)) for colour in row] for row in colours]
    sheet = pixels(comparison_sheet(rows, column_titles=["a", "b"], tile_size=TILE))
    for r, row in enumerate(colours):
        for c, colour in enumerate(row):
            left, top = tile_origin(r, c)
            region = sheet[top : top + TILE, left : left + TILE]
            assert (region == np.array(colour, dtype=np.uint8)).all(), (r, c)
    # The gaps between tiles stay white.
    left, top = tile_origin(0, 0)
    assert is_white(sheet[top : top + TILE, left + TILE : left + TILE + GAP])


def test_a_wide_tile_is_letterboxed_with_its_aspect_kept():
    wide = solid((200, 30, 30), height=10, width=20)  # 2:1 -> 64x32, centred vertically
    sheet = pixels(comparison_sheet([[Tile(wide)]], column_titles=["wide"], tile_size=TILE))
    left, top = tile_origin(0, 0)
    square = sheet[top : top + TILE, left : left + TILE]
    assert is_white(square[:16]) and is_white(square[48:])
    assert (square[16:48] == np.array((200, 30, 30), dtype=np.uint8)).all()


def test_enlarged_tiles_keep_their_pixels_sharp():
    # A 2x2 image blown up to 64x64 is four uniform 32x32 blocks, not a blurred ramp.
    image = np.array([[[0, 0, 0], [255, 255, 255]], [[255, 255, 255], [0, 0, 0]]], dtype=np.uint8)
    sheet = pixels(comparison_sheet([[Tile(image)]], column_titles=[""], tile_size=TILE))
    left, top = tile_origin(0, 0, title_lines=0)
    square = sheet[top : top + TILE, left : left + TILE, 0]
    assert (square[:32, :32] == 0).all() and (square[:32, 32:] == 255).all()
    assert (square[32:, :32] == 255).all() and (square[32:, 32:] == 0).all()


def test_captions_and_titles_are_drawn_where_given():
    rows = [[Tile(solid(90), "PSNR 27.31 dB"), Tile(solid(90))]]
    sheet = pixels(comparison_sheet(rows, column_titles=["model", ""], tile_size=TILE))
    for column, has_text in ((0, True), (1, False)):
        left, top = tile_origin(0, column, caption_lines=1)
        caption = sheet[top + TILE : top + TILE + LINE, left : left + TILE]
        title = sheet[GAP : GAP + LINE, left : left + TILE]
        assert is_white(caption) is not has_text
        assert is_white(title) is not has_text


def test_a_long_caption_stays_inside_its_column():
    long_caption = "a caption far too long to fit under a sixty-four pixel tile " * 3
    rows = [[Tile(solid(90), long_caption), Tile(solid(90))]]
    sheet = pixels(comparison_sheet(rows, column_titles=["", ""], row_titles=["0801.png"], tile_size=TILE))
    band = LINE + GAP
    left, top = tile_origin(0, 0, title_lines=0, caption_lines=1, band=band)
    caption_band = sheet[top + TILE : top + TILE + LINE]
    assert not is_white(caption_band[:, left : left + TILE])
    assert is_white(caption_band[:, left + TILE :])
    # The row title is written in the band left of the tiles, which move right to make room.
    assert (sheet[top : top + TILE, left : left + TILE] == 90).all()
    assert not is_white(sheet[top : top + TILE, GAP : GAP + LINE])
    assert is_white(sheet[top : top + TILE, GAP + LINE : left])


def test_detail_box_finds_the_textured_quadrant():
    image = np.full((64, 64, 3), 128, dtype=np.uint8)
    y, x = np.mgrid[32:64, 0:32]
    image[32:, :32] = ((x + y) % 2 * 255)[:, :, None]  # one-pixel checkerboard, bottom-left
    left, top, right, bottom = find_detail_box(image, 16)
    assert (right - left, bottom - top) == (16, 16)
    assert 0 <= left and right <= 32 and 32 <= top and bottom <= 64


def test_detail_box_lands_on_a_small_textured_patch():
    image = np.full((64, 64, 3), 128, dtype=np.uint8)
    y, x = np.mgrid[28:44, 20:36]
    image[28:44, 20:36] = ((x + y) % 2 * 255)[:, :, None]
    left, top, right, bottom = find_detail_box(image, 16)
    overlap = (min(right, 36) - max(left, 20)) * (min(bottom, 44) - max(top, 28))
    # Candidates every 16 // 4 = 4 pixels: the patch is found within 2 pixels on each axis.
    assert overlap >= 14 * 14


def test_detail_box_of_a_flat_image_is_centred_and_clipped():
    flat = np.zeros((30, 50, 3), dtype=np.uint8)
    assert find_detail_box(flat, 10) == (20, 10, 30, 20)
    # Larger than the image: the square shrinks to the shorter side.
    assert find_detail_box(flat, 100) == (10, 0, 40, 30)
    with pytest.raises(ValueError, match="size"):
        find_detail_box(flat, 0)


def test_detail_box_reaches_the_bottom_right_corner():
    image = np.zeros((37, 41), dtype=np.uint8)
    image[-3:, -3:] = 255
    left, top, right, bottom = find_detail_box(image, 8)
    assert (right, bottom) == (41, 37)


def checker_images():
    """A 32x32 noise image with a 2x2 checker of 4-pixel cells in (8, 8, 16, 16), and its x4
    nearest-neighbour reduction (8x8), in which the same region is the 2x2 pixels at (2, 2)."""
    hr = np.random.default_rng(0).integers(60, 200, size=(32, 32, 3), dtype=np.uint8)
    cells = np.kron(np.array([[0, 255], [255, 0]], dtype=np.uint8), np.ones((4, 4), dtype=np.uint8))
    hr[8:16, 8:16] = cells[:, :, None]
    return hr[::4, ::4].copy(), hr


def test_zoom_magnifies_the_box_in_every_tile_at_its_own_resolution():
    lr, hr = checker_images()
    rows = [[Tile(lr), Tile(hr), Tile(hr)]]
    sheet = pixels(comparison_sheet(rows, column_titles=["", "", ""], tile_size=TILE, zoom_box=[(8, 8, 16, 16)]))
    # The x4 input shows the same region as the target: its 2x2 pixels at (2, 2), x32.
    for column in (0, 1, 2):
        left, top = tile_origin(0, column, title_lines=0)
        square = sheet[top : top + TILE, left : left + TILE, 0]
        # 8x8 box -> 64x64: each 4-pixel checker cell becomes a uniform 32x32 block.
        assert (square[:32, :32] == 0).all() and (square[32:, 32:] == 0).all(), column
        assert (square[:32, 32:] == 255).all() and (square[32:, :32] == 255).all(), column


def test_zoom_reference_shows_the_whole_image_with_the_box_outlined():
    lr, hr = checker_images()
    rows = [[Tile(lr), Tile(hr)]]
    sheet = pixels(
        comparison_sheet(rows, column_titles=["", ""], tile_size=TILE, zoom_box=[(8, 8, 16, 16)], zoom_reference=0)
    )
    left, top = tile_origin(0, 0, title_lines=0)
    square = sheet[top : top + TILE, left : left + TILE]
    # The 8x8 input enlarged x8; the box (8..16 of 32) is at 16..32 of 64.
    red = np.array(OUTLINE_COLOUR, dtype=np.uint8)
    assert (square[24, 16] == red).all() and (square[16, 24] == red).all() and (square[31, 24] == red).all()
    # Away from the outline the tile is the input itself, pixel for pixel.
    assert (square[60, 60] == lr[7, 7]).all() and (square[2, 2] == lr[0, 0]).all()


def test_rows_without_a_box_are_not_zoomed():
    lr, hr = checker_images()
    rows = [[Tile(hr)], [Tile(hr)]]
    sheet = pixels(comparison_sheet(rows, column_titles=[""], tile_size=TILE, zoom_box=[None, (8, 8, 16, 16)]))
    whole = sheet[GAP : GAP + TILE, GAP : GAP + TILE]
    assert (whole[::2, ::2] == hr).all()  # 32x32 shown x2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"column_titles": ["a"]}, "column titles"),
        ({"column_titles": ["a", "b"], "zoom_box": [(0, 0, 40, 8)]}, "not inside"),
        ({"column_titles": ["a", "b"], "zoom_box": [(0, 0, 8, 8), None]}, "entries"),
        ({"column_titles": ["a", "b"], "zoom_reference": 2}, "zoom_reference"),
        ({"column_titles": ["a", "b"], "row_titles": ["x", "y"]}, "row titles"),
    ],
)
def test_inconsistent_arguments_are_refused(kwargs, message):
    row = [Tile(solid(0, 32, 32)), Tile(solid(0, 32, 32))]
    with pytest.raises(ValueError, match=message):
        comparison_sheet([row], tile_size=TILE, **kwargs)


def test_tiles_must_be_uint8_rgb():
    with pytest.raises(ValueError, match="uint8"):
        Tile(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="H, W, 3"):
        Tile(np.zeros((4, 4), dtype=np.uint8))


def test_save_sheet_writes_the_png_atomically(tmp_path):
    sheet = comparison_sheet([[Tile(solid((1, 2, 3)), "x")]], column_titles=["t"], tile_size=TILE)
    path = save_sheet(sheet, tmp_path / "new" / "sheet.png")
    assert path == tmp_path / "new" / "sheet.png"
    with Image.open(path) as written:
        assert written.format == "PNG"
        assert (np.asarray(written) == pixels(sheet)).all()
    assert not list(path.parent.glob(f"*{TEMP_SUFFIX}"))
