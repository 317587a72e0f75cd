import base64
import io
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from img2img.errors import ImageReadError
from img2img.evaluate.report import ReportTable, format_value, write_html_report
from img2img.files.atomic import TEMP_SUFFIX

DATA_URI = "data:image/png;base64,"
HOSTILE = "<script>alert('x')</script> & \"co\""


class Page(HTMLParser):
    """Collects what a browser would fetch or show: every src/href, tag names, text, cells."""

    def __init__(self):
        super().__init__()
        self.references: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.references += [value for name, value in attrs if name in ("src", "href")]
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def random_image(width, height, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.fixture
def report(tmp_path):
    png_path = tmp_path / "sheet.png"
    # A text chunk that re-encoding would drop: the file must be embedded as it is.
    info = PngInfo()
    info.add_text("Comment", "drawn by the sheet code")
    Image.fromarray(random_image(17, 11, seed=1)).save(png_path, pnginfo=info)
    jpeg_path = tmp_path / "sheet.jpg"
    Image.fromarray(random_image(12, 8, seed=2)).save(jpeg_path, quality=90)
    tables = [
        ReportTable("Mean over images", ["method", "PSNR-Y dB", "SSIM-Y"], [["bicubic", 26.6912, 0.774712],
                                                                           ["model", float("inf"), None]]),
        ReportTable("Distribution", ["metric", "value"], [["fid", 12.3456], ["images", 100]]),
    ]
    path = write_html_report(
        tmp_path / "out" / "report.html",
        title="superres-x4 <DIV2K>",
        tables=tables,
        sheets=[
            ("in memory", Image.fromarray(random_image(40, 30))),
            ("png file", png_path),
            ("jpeg file", jpeg_path),
        ],
        settings={
            "model": HOSTILE,
            "degradation": {"kind": "bicubic", "scale": 4},
            "learning_rate": 0.00012345678,
            "folders": [Path("a/b"), "c"],
        },
        notes=["FID on 100 images is biased upwards & noisy"],
    )
    return path


def test_report_is_written_atomically_where_asked(report, tmp_path):
    assert report == tmp_path / "out" / "report.html"
    assert report.is_file()
    assert not list(report.parent.glob(f"*{TEMP_SUFFIX}"))


def test_every_image_is_an_embedded_png_of_the_right_size(report):
    page = parse(report)
    assert len(page.references) == 3
    sizes = []
    for reference in page.references:
        assert reference.startswith(DATA_URI)
        with Image.open(io.BytesIO(base64.b64decode(reference[len(DATA_URI) :], validate=True))) as image:
            assert image.format == "PNG"
            sizes.append(image.size)
    assert sizes == [(40, 30), (17, 11), (12, 8)]


def test_the_png_file_is_embedded_byte_for_byte(report, tmp_path):
    embedded = parse(report).references[1][len(DATA_URI) :]
    assert base64.b64decode(embedded) == (tmp_path / "sheet.png").read_bytes()


def test_nothing_outside_the_file_is_referenced(report):
    text = report.read_text(encoding="utf-8")
    assert "://" not in text and "url(" not in text and "@import" not in text
    page = parse(report)
    assert not {"script", "link", "iframe", "object", "embed"} & set(page.tags)


def test_tables_show_values_with_four_significant_digits(report):
    cells = parse(report).cells
    for expected in ("bicubic", "26.69", "0.7747", "inf", "—", "12.35", "100", "PSNR-Y dB"):
        assert expected in cells
    assert "26.6912" not in cells


def test_settings_are_flattened_exact_and_escaped(report):
    text = report.read_text(encoding="utf-8")
    assert "<script>" not in text and "<DIV2K>" not in text
    page = parse(report)
    cells = page.cells
    # The parser unescapes: the hostile string comes back as plain text, not as markup.
    assert HOSTILE in cells
    assert "superres-x4 <DIV2K>" in page.text
    assert cells[cells.index("degradation.scale") + 1] == "4"
    assert cells[cells.index("degradation.kind") + 1] == "bicubic"
    assert cells[cells.index("learning_rate") + 1] == "0.00012345678"
    assert cells[cells.index("folders") + 1] == "a/b, c"
    assert any("biased upwards & noisy" in chunk for chunk in page.text)


def test_a_missing_sheet_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(ImageReadError, match="nope.png"):
        write_html_report(tmp_path / "r.html", title="t", tables=[], sheets=[("x", missing)], settings={})
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    with pytest.raises(ImageReadError, match="notes.png"):
        write_html_report(tmp_path / "r.html", title="t", tables=[], sheets=[("x", not_an_image)], settings={})
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(
    "value, shown",
    [
        (27.31234, "27.31"),
        (0.812345, "0.8123"),
        (1234.56, "1235"),
        (123456.0, "1.235e+05"),
        (0.000123456, "0.0001235"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        (float("nan"), "nan"),
        (np.float32(0.5), "0.5"),
        (np.int64(7), "7"),
        (True, "True"),
        (None, "—"),
        ("model", "model"),
    ],
)
def test_format_value(value, shown):
    assert format_value(value) == shown


def test_a_row_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="row 1 has 1 cells for 2 columns"):
        ReportTable("t", ["a", "b"], [[1, 2], [3]])
