"""A self-contained HTML evaluation report: score tables, comparison sheets and the settings.

The report is one file that can be mailed, archived or opened offline years later: the CSS is
inline, every image is embedded as a `data:image/png;base64,...` URI, and a
Content-Security-Policy forbids the page from loading anything else. Sheets are shown at their
own pixel size (scrolling sideways when wider than the window), because a super-resolution
comparison judged on a browser-rescaled image judges the browser's resampling.

No torch: the standard library and Pillow (numpy only through the sheet module it writes with).

Example:
    >>> table = ReportTable("DIV2K val, x4", ["method", "PSNR-Y dB", "SSIM-Y"],
    ...                     [["bicubic", 26.69, 0.7747], ["model", 28.94, 0.8261]])
    >>> write_html_report("eval/report.html", title="superres-x4", tables=[table],
    ...                   sheets=[("0801-0810", Path("eval/sheet.png"))],
    ...                   settings={"crop_border": 4, "y_channel": True})
"""

from __future__ import annotations

import base64
import html
import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from img2img.errors import ImageReadError
from img2img.evaluate.sheets import png_bytes
from img2img.files.atomic import write_bytes_atomically

MISSING = "—"
SIGNIFICANT_DIGITS = 4

# Nothing but inline styles and data: images may load; a stray external reference fails loudly
# in the browser instead of silently phoning home.
_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #111;
       margin: 2em auto; max-width: 72em; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
table.settings td:first-child { font-family: ui-monospace, monospace; white-space: nowrap; }
figure { margin: 0 0 2em; }
figure .sheet { overflow-x: auto; }
figure img { display: block; image-rendering: pixelated; }
figcaption { font-weight: 600; margin-bottom: 0.4em; }
"""


@dataclass(frozen=True)
class ReportTable:
    """A titled table of scores.

    Attributes:
        title: shown as the table's caption.
        columns: header cells.
        rows: one list per row, as long as `columns`. Floats are shown with 4 significant
            digits ("27.31", "0.8123", "inf"), None as an em dash, anything else with str().
    """

    title: str
    columns: list[str]
    rows: list[list[Any]]

    def __post_init__(self) -> None:
        for index, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table {self.title!r}: row {index} has {len(row)} cells for {len(self.columns)} columns"
                )


def format_value(value: Any) -> str:
    """How a table cell shows `value`: floats with 4 significant digits, inf as "inf".

    Example:
        >>> [format_value(v) for v in (27.31234, 0.812345, 1234.56, float("inf"), 7, None)]
        ['27.31', '0.8123', '1235', 'inf', '7', '—']
    """
    if value is None:
        return MISSING
    if isinstance(value, bool) or isinstance(value, numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isnan(number):
            return "nan"
        if math.isinf(number):
            return "inf" if number > 0 else "-inf"
        return f"{number:.{SIGNIFICANT_DIGITS}g}"
    return str(value)


def write_html_report(
    path: str | os.PathLike[str],
    *,
    title: str,
    tables: Sequence[ReportTable],
    sheets: Sequence[tuple[str, Image.Image | str | os.PathLike[str]]],
    settings: Mapping[str, Any],
    notes: Iterable[str] = (),
) -> Path:
    """Write one self-contained HTML page, atomically, and return its path.

    Sections, in order: the title, the tables, the comparison sheets (each under its caption),
    the notes, and the settings as a key/value table (nested mappings flattened to dotted
    keys, e.g. "degradation.scale"; settings values are shown exactly, not rounded). All text
    is HTML-escaped.

    Args:
        path: the .html file to write; missing parent folders are created.
        title: page title and heading.
        tables: score tables.
        sheets: (caption, image) pairs; an image is a PIL image or the path of an image file
            (PNG embedded as is, other formats converted to PNG).
        settings: how the numbers were computed (model, data, crop border, resize, ...).
        notes: short paragraphs shown as a list (caveats, e.g. "FID on 100 images is biased").

    Raises:
        ImageReadError: a sheet path is missing or not an image.
        OutputError: the file cannot be written.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{_escape(title)}</h1>",
    ]
    if tables:
        parts.append("<h2>Scores</h2>")
        parts += [_table(table) for table in tables]
    if sheets:
        parts.append("<h2>Comparisons</h2>")
        parts += [_figure(caption, image) for caption, image in sheets]
    notes = list(notes)
    if notes:
        parts.append("<h2>Notes</h2>")
        parts.append("<ul>" + "".join(f"<li>{_escape(note)}</li>" for note in notes) + "</ul>")
    parts.append("<h2>Settings</h2>")
    parts.append(_settings_table(settings))
    parts += ["</body>", "</html>", ""]
    return write_bytes_atomically(Path(path), "\n".join(parts).encode("utf-8"))


def _escape(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table(table: ReportTable) -> str:
    header = "".join(f"<th>{_escape(column)}</th>" for column in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for value in row:
            numeric = isinstance(value, numbers.Real) and not isinstance(value, bool)
            css = ' class="number"' if numeric else ""
            cells.append(f"<td{css}>{_escape(format_value(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<table><caption>{_escape(table.title)}</caption>"
        f"<thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _figure(caption: str, image: Image.Image | str | os.PathLike[str]) -> str:
    data, (width, height) = _png(image)
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (
        f"<figure><figcaption>{_escape(caption)}</figcaption>"
        f'<div class="sheet"><img src="{uri}" width="{width}" height="{height}" alt="{_escape(caption)}"></div>'
        "</figure>"
    )


def _png(image: Image.Image | str | os.PathLike[str]) -> tuple[bytes, tuple[int, int]]:
    """PNG bytes of `image` and its (width, height)."""
    if isinstance(image, Image.Image):
        return png_bytes(image), image.size
    path = Path(image)
    try:
        data = path.read_bytes()
        with Image.open(BytesIO(data)) as opened:
            if opened.format == "PNG":
                return data, opened.size
            # JPEG and the rest are converted: the page promises PNG data URIs only.
            converted = opened.convert("RGBA" if "A" in opened.getbands() else "RGB")
            return png_bytes(converted), converted.size
    except FileNotFoundError:
        raise ImageReadError(f"comparison sheet {path} does not exist; write it before the report") from None
    except (OSError, UnidentifiedImageError) as error:
        raise ImageReadError(f"comparison sheet {path} cannot be read as an image: {error}") from None


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            items += _flatten(value, f"{name}.")
        else:
            items.append((name, value))
    return items


def _setting_text(value: Any) -> str:
    # Settings are shown exactly (a learning rate of 0.00012345 must not read 0.0001234).
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(_setting_text(item) for item in value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def _settings_table(settings: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{_escape(key)}</td><td>{_escape(_setting_text(value))}</td></tr>"
        for key, value in _flatten(settings)
    )
    if not rows:
        rows = f"<tr><td colspan=\"2\">{MISSING}</td></tr>"
    header = "<thead><tr><th>setting</th><th>value</th></tr></thead>"
    return f'<table class="settings">{header}<tbody>{rows}</tbody></table>'
