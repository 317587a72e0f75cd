"""The static onnxruntime-web page in examples/embed/web, in a real headless Chromium: its
results match the Python runtime's within one level of 255 (onnxruntime's WASM and native CPU
kernels round differently), including the padding a style model needs, and its metadata reader
agrees with onnx's.

Needs the `playwright` package, Debian's `chromium` (or IMG2IMG_CHROMIUM naming a Chromium
binary) and the page's onnxruntime-web (`npm ci --prefix examples/embed/web`); skipped without
any of them. The page runs on the WASM backend, one thread, as any static server gives it.
"""

from __future__ import annotations

import base64
import functools
import http.server
import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "examples" / "embed" / "web"
EXAMPLE = ROOT / "examples" / "spaniels.png"
ORT_BUILD = WEB / "node_modules" / "onnxruntime-web" / "dist" / "ort.min.mjs"
RUN_TIMEOUT_MS = 180_000

# Chromium and Playwright: the `browser` fixture of conftest.py skips without them.
pytestmark = pytest.mark.skipif(
    not ORT_BUILD.is_file(), reason="examples/embed/web/node_modules is missing: run `npm ci --prefix examples/embed/web`"
)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def site_url():
    """A plain static server on the repository root, as `python -m http.server` serves it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(ROOT)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)



@pytest.fixture
def page(browser, site_url):
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{site_url}/examples/embed/web/?backend=wasm")
    page.wait_for_function("document.body.dataset.state === 'idle'")
    yield page
    context.close()
    assert errors == [], f"the page raised: {errors}"


def run_on_page(page, model: str, image: Path) -> np.ndarray:
    """Pick `model`, upload `image`, press Run; the result canvas's pixels, (H, W, 3) uint8."""
    page.select_option("#model", model)
    page.set_input_files("#file", str(image))
    page.click("#run")
    page.wait_for_function(
        "document.body.dataset.state === 'error' || document.body.dataset.runs === '1'", timeout=RUN_TIMEOUT_MS
    )
    assert page.evaluate("document.body.dataset.state") == "done", page.inner_text("#status")
    url = page.eval_on_selector("#result", "canvas => canvas.toDataURL('image/png')")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as png:
        rgba = np.asarray(png.convert("RGBA"))
    assert (rgba[:, :, 3] == 255).all(), "the result should be opaque"
    return rgba[:, :, :3]


def python_result(model: str, task: str, image: Path) -> np.ndarray:
    from img2img.runtime.api import Model

    pixels = np.asarray(Image.open(image).convert("RGB"))
    # The float32 file the page is given, not the 8-bit variant `auto` picks on a CPU.
    return Model(str(ROOT / "weights" / f"{model}.onnx"), task=task, device="cpu", tile=None, precision="fp32")(pixels)


def assert_matches_python(page, model: str, task: str, image: Path) -> None:
    browser_pixels = run_on_page(page, model, image)
    expected = python_result(model, task, image)
    assert browser_pixels.shape == expected.shape
    difference = np.abs(browser_pixels.astype(np.int16) - expected.astype(np.int16))
    assert difference.max() <= 1, (
        f"{model}: {int((difference > 1).sum())} samples differ from the Python runtime by more than 1 "
        f"(max {difference.max()})"
    )
    # Off-by-one samples come from float rounding, a few per million; a systematic error (a
    # different rounding rule, say) would touch many.
    differing = int((difference > 0).sum())
    assert differing <= max(2, difference.size // 1000), f"{model}: {differing} of {difference.size} samples differ"


def test_superres_x4_matches_the_python_runtime(page):
    assert_matches_python(page, "superres-x4", "superres", EXAMPLE)
    assert page.eval_on_selector("#result", "canvas => [canvas.width, canvas.height]") == [1024, 768]
    assert page.get_attribute("#download", "download") == "spaniels_x4.png"
    assert page.eval_on_selector("#download", "link => link.href").startswith("blob:")
    assert float(page.get_attribute("#timing", "data-ms")) > 0
    assert page.inner_text("#timing").endswith(" ms")


def test_style_starry_night_matches_the_python_runtime(page):
    assert_matches_python(page, "style-starry-night", "style", EXAMPLE)
    assert page.get_attribute("#download", "download") == "spaniels_style-starry-night.png"


@pytest.mark.parametrize(
    ("box", "padding"),
    [
        # 101x75 -> 104x76: reflected rows and columns (the pad is shorter than the image).
        ((40, 30, 141, 105), "reflect"),
        # 5x3 -> 8x8 (min_size 8): 5 rows repeat the edge (pad >= height), 3 columns reflect.
        ((100, 100, 105, 103), "edge and reflect"),
    ],
)
def test_a_style_model_pads_odd_sizes_as_the_python_runtime_does(page, tmp_path, box, padding):
    image = tmp_path / "crop.png"
    with Image.open(EXAMPLE) as photo:
        photo.convert("RGB").crop(box).save(image)
    assert_matches_python(page, "style-starry-night", "style", image)


def test_the_metadata_reader_agrees_with_onnx_on_every_shipped_model(page):
    onnx = pytest.importorskip("onnx")
    names = sorted(path.name for path in (ROOT / "weights").glob("*.onnx"))
    assert names
    from_page = page.evaluate(
        """async (names) => {
            const { readMetadataProps } = await import('./onnx-metadata.js');
            const props = {};
            for (const name of names) {
                const response = await fetch(`../../../weights/${name}`);
                props[name] = readMetadataProps(await response.arrayBuffer());
            }
            return props;
        }""",
        names,
    )
    for name in names:
        model = onnx.load(str(ROOT / "weights" / name), load_external_data=False)
        assert from_page[name] == {entry.key: entry.value for entry in model.metadata_props}, name


def test_a_model_outside_the_contract_is_refused_with_a_reason(page):
    page.set_input_files("#file", str(EXAMPLE))
    page.fill("#models-url", "../../../weights/")
    page.evaluate("document.querySelector('#model').add(new Option('inpaint', 'inpaint'))")
    page.select_option("#model", "inpaint")
    page.click("#run")
    page.wait_for_function("document.body.dataset.state === 'error'", timeout=RUN_TIMEOUT_MS)
    assert "image-to-image models only" in page.inner_text("#status")
