"""Time the browser page on a 512x512 photo for each model it runs, in headless Chromium.

Serves the repository root with Python's static server (as `python -m http.server` would), opens
/examples/embed/web/ and, per model, times a first run (fetching the .onnx and creating the
onnxruntime-web session included) and then the median of a few warm runs, in wall-clock seconds
seen from Python, beside the part of a warm run the page itself counts as running the model. Prints a markdown table headed by the machine (CPU model, core count), the
load average, the browser and onnxruntime-web versions.

    npm ci --prefix examples/embed/web
    python examples/embed/web/measure.py                   # WASM, one thread (any static server)
    python examples/embed/web/measure.py --isolated        # COOP/COEP headers: WASM threads
    python examples/embed/web/measure.py --parity          # also the max difference to img2img

Needs the `playwright` package and a Chromium binary (`chromium` on PATH, IMG2IMG_CHROMIUM or
--chromium). The photo is examples/spaniels.png resized to 512x512 (Lanczos).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

WEB = Path(__file__).resolve().parent
ROOT = WEB.parents[2]
EXAMPLE = ROOT / "examples" / "spaniels.png"
MODELS = {
    "superres-x4": "superres",
    "superres-x2": "superres",
    "superres-x4-real": "superres",
    "style-starry-night": "style",
    "style-the-kiss": "style",
}
RUN_TIMEOUT_MS = 600_000


class _Handler(http.server.SimpleHTTPRequestHandler):
    isolated = False

    def end_headers(self):
        if self.isolated:
            # Cross-origin isolation: the page gets SharedArrayBuffer, so WASM threads.
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, format, *args):
        pass


def serve(isolated: bool) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = type("Handler", (_Handler,), {"isolated": isolated})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(ROOT)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def core_count() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{usable} usable of {os.cpu_count()}" if usable != os.cpu_count() else str(usable)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def make_photo(folder: Path, size: int) -> Path:
    from PIL import Image

    path = folder / f"spaniels-{size}.png"
    with Image.open(EXAMPLE) as photo:
        photo.convert("RGB").resize((size, size), Image.Resampling.LANCZOS).save(path)
    return path


def python_difference(model: str, photo: Path, page) -> int:
    """Max absolute difference between the page's result canvas and the Python runtime's output."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from img2img.runtime.api import Model

    url = page.eval_on_selector("#result", "canvas => canvas.toDataURL('image/png')")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as png:
        browser = np.asarray(png.convert("RGB")).astype(np.int16)
    with Image.open(photo) as image:
        pixels = np.asarray(image.convert("RGB"))
    # The float32 file the page runs, not the 8-bit variant `auto` picks on a CPU.
    expected = Model(
        str(ROOT / "weights" / f"{model}.onnx"), task=MODELS[model], device="cpu", tile=None, precision="fp32"
    )(pixels)
    return int(np.abs(browser - expected.astype(np.int16)).max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--size", type=int, default=512, help="side of the square photo (default 512)")
    parser.add_argument("--repeats", type=int, default=3, help="warm runs per model; the median is shown")
    parser.add_argument("--backend", default="wasm", choices=("wasm", "webgpu", "auto"))
    parser.add_argument("--isolated", action="store_true", help="send COOP/COEP headers: WASM may use threads")
    parser.add_argument("--parity", action="store_true", help="add the max difference to the Python runtime")
    parser.add_argument("--chromium", default=os.environ.get("IMG2IMG_CHROMIUM") or shutil.which("chromium"))
    args = parser.parse_args()
    if not args.chromium:
        parser.error("no Chromium: install chromium, set IMG2IMG_CHROMIUM or pass --chromium")
    if not (WEB / "node_modules" / "onnxruntime-web" / "dist").is_dir():
        parser.error("examples/embed/web/node_modules is missing: run `npm ci --prefix examples/embed/web`")
    from playwright.sync_api import sync_playwright

    ort_version = json.loads((WEB / "node_modules" / "onnxruntime-web" / "package.json").read_text())["version"]
    load_before = load_average()
    server, site = serve(args.isolated)
    rows = []
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as driver:
        photo = make_photo(Path(folder), args.size)
        browser = driver.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        backend_seen = set()
        for model in args.models:
            context = browser.new_context()
            page = context.new_page()
            page.goto(f"{site}/examples/embed/web/?backend={args.backend}&model={model}")
            page.wait_for_function("document.body.dataset.state === 'idle'")
            page.set_input_files("#file", str(photo))
            page.wait_for_function("document.body.dataset.state === 'ready'")
            run = "name => window.img2imgRun(name)"
            started = time.perf_counter()
            result = page.evaluate(run, model)
            first = time.perf_counter() - started
            warm, inference = [], []
            for _ in range(args.repeats):
                started = time.perf_counter()
                inference.append(page.evaluate(run, model)["runMs"] / 1000)
                warm.append(time.perf_counter() - started)
            threads = f", {result['threads']} thread{'s' * (result['threads'] != 1)}" if result["threads"] else ""
            backend_seen.add(f"{result['backend']}{threads}")
            row = [model, f"{result['width']}x{result['height']}", f"{first:.2f}", f"{statistics.median(warm):.2f}",
                   f"{statistics.median(inference):.2f}"]
            if args.parity:
                row.append(str(python_difference(model, photo, page)))
            rows.append(row)
            print(f"{model}: first {first:.2f} s, warm {statistics.median(warm):.2f} s", file=sys.stderr)
            context.close()
        version = browser.version
        browser.close()
    server.shutdown()
    server.server_close()

    print(f"- Machine: {cpu_model()}, {core_count()} cores, load average {load_before} before the runs")
    print(f"- Browser: headless Chromium {version}; onnxruntime-web {ort_version}, {', '.join(sorted(backend_seen))}")
    print(
        f"- Photo: {args.size}x{args.size} PNG; wall-clock seconds; warm = median of {args.repeats} runs; "
        "'of which the model' is the page's own count (padding, onnxruntime-web, rounding, drawing), the "
        "rest is encoding the download PNG and the page round trip"
    )
    print()
    header = ["Model", "Output", "First run, s (load included)", "Warm run, s", "of which the model, s"]
    if args.parity:
        header.append("Max abs diff vs Python runtime")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
