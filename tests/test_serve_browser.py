"""`img2img serve` in a real headless Chromium, driven by Playwright: every task from the page,
the inpainting brush, the before/after slider.

Needs Debian's `chromium` (or IMG2IMG_CHROMIUM naming a Chromium binary) and the `playwright`
package (the test extra); skipped without them. With IMG2IMG_SCREENSHOTS=DIR each task's page is
saved as DIR/serve-TASK.jpg (the README's screenshots: IMG2IMG_SCREENSHOTS=examples/screenshots).
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")

from conftest import build_colour_mixer  # noqa: E402

# Chromium and Playwright: the `browser` fixture of conftest.py skips without them.

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "spaniels.png"
JOB_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    """A server on the shipped models and, in --models-dir, a tiny arbitrary-style model whose
    output is (1 - alpha) * photo + alpha * (weighted mean colour of the styles)."""
    models = tmp_path_factory.mktemp("models")
    build_colour_mixer(models / "mixer.onnx")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "cli", "serve", "--port", str(port), "--device", "cpu", "--models-dir", str(models)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/models", timeout=2) as response:
                json.load(response)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"img2img serve did not start: {server.communicate()[1]}")
            time.sleep(0.2)
    yield url
    server.terminate()
    server.wait(timeout=30)



@pytest.fixture
def page(browser, server_url):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server_url)
    page.wait_for_function("document.querySelector('#model').options.length > 0")
    yield page
    context.close()
    assert errors == [], f"the page raised: {errors}"


def screenshot(page, task: str) -> None:
    folder = os.environ.get("IMG2IMG_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"serve-{task}.jpg"), full_page=True, type="jpeg", quality=85)


def run_and_wait(page) -> None:
    page.click("#run")
    page.wait_for_selector(".job[data-status=done], .job[data-status=failed]", timeout=JOB_TIMEOUT_MS)
    assert page.locator(".job[data-status=failed]").count() == 0, page.inner_text("#jobs")
    page.wait_for_function(
        "(() => { const image = document.querySelector('#result-image');"
        " return image.complete && image.naturalWidth > 0; })()"
    )


def result_size(page) -> list[int]:
    return page.eval_on_selector("#result-image", "image => [image.naturalWidth, image.naturalHeight]")


def test_superres_from_the_page_gives_the_photo_at_four_times_and_the_slider_moves(page):
    page.select_option("#task", "superres")
    page.select_option("#model", "superres-x4")
    page.set_input_files("#file-input", str(EXAMPLE))
    run_and_wait(page)
    assert result_size(page) == [1024, 768]
    screenshot(page, "superres")

    slider = page.locator("#compare-slider")
    clip_before = page.eval_on_selector("#input-image", "image => getComputedStyle(image).clipPath")
    box = slider.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] / 2)
    value = float(slider.input_value())
    assert 15 <= value <= 35
    split = page.eval_on_selector(".compare", "element => getComputedStyle(element).getPropertyValue('--split')")
    assert split.strip() == f"{slider.input_value()}%"
    assert page.eval_on_selector("#input-image", "image => getComputedStyle(image).clipPath") != clip_before


def test_painting_a_mask_and_inpainting_changes_only_the_painted_pixels(page):
    pixels = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    page.select_option("#task", "inpaint")
    page.set_input_files("#file-input", str(EXAMPLE))
    canvas = page.locator("#mask-canvas")
    canvas.wait_for(state="visible")
    box = canvas.bounding_box()
    # A stroke across the lower dog's nose.
    page.mouse.move(box["x"] + box["width"] * 0.52, box["y"] + box["height"] * 0.72)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.62, box["y"] + box["height"] * 0.74, steps=8)
    page.mouse.up()
    run_and_wait(page)
    screenshot(page, "inpaint")

    painted = np.array(page.eval_on_selector(
        "#mask-canvas",
        "canvas => Array.from(canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data"
        ".filter((_, index) => index % 4 === 3))",
    )).reshape(pixels.shape[:2]) > 0
    assert 0 < painted.sum() < painted.size / 2
    page.select_option("#download-format", "png")
    response = page.request.get(page.eval_on_selector("#download", "link => link.href"))
    filled = np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"))
    assert np.array_equal(filled[~painted], pixels[~painted])
    assert not np.array_equal(filled[painted], pixels[painted])


@pytest.mark.parametrize(("task", "model"), [("style", "style-starry-night"), ("translate", "emoji-google2twitter")])
def test_image_tasks_run_from_the_page(page, task, model):
    page.select_option("#task", task)
    page.select_option("#model", model)
    page.set_input_files("#file-input", str(EXAMPLE))
    run_and_wait(page)
    assert result_size(page) == [256, 192]
    screenshot(page, task)


def test_faces_from_the_page_make_a_grid_of_the_seeds(page):
    page.select_option("#task", "faces")
    page.fill("#seeds", "0-8")
    page.fill("#columns", "3")
    run_and_wait(page)
    width, height = result_size(page)
    assert width == height > 3 * 64
    screenshot(page, "faces")


def test_a_face_morph_plays_as_an_animation(page):
    page.select_option("#task", "faces")
    page.fill("#seeds", "3,4")
    page.check("#morph")
    page.fill("#morph-steps", "3")
    run_and_wait(page)
    assert "format=gif" in page.get_attribute("#result-image", "src")
    assert "format=gif" in page.get_attribute("#download", "href")
    response = page.request.get(page.eval_on_selector("#download", "link => link.href"))
    assert Image.open(io.BytesIO(response.body())).n_frames == 4


def test_an_arbitrary_style_model_takes_paintings_and_a_strength(page, tmp_path):
    red = tmp_path / "red.png"
    Image.fromarray(np.full((16, 16, 3), (255, 0, 0), np.uint8)).save(red)
    page.select_option("#task", "style")
    page.select_option("#model", "style-starry-night")
    assert page.locator("#style-images").is_hidden()  # a per-style model takes no paintings
    page.select_option("#model", "mixer")
    page.set_input_files("#style-images", str(red))
    page.locator("#style-alpha").fill("0.5")
    page.set_input_files("#file-input", str(EXAMPLE))
    run_and_wait(page)
    response = page.request.get(page.eval_on_selector("#download", "link => link.href"))
    styled = np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB")).astype(float)
    photo = np.asarray(Image.open(EXAMPLE).convert("RGB")).astype(float)
    np.testing.assert_allclose(styled, 0.5 * photo + 0.5 * np.array([255, 0, 0]), atol=1)


def test_several_images_queue_and_a_running_one_can_be_cancelled(page, tmp_path):
    # A photo large enough for many tiles comes first, so it is still running when cancelled.
    large = tmp_path / "large.png"
    Image.open(EXAMPLE).convert("RGB").resize((1024, 768)).save(large)
    small = []
    for index in range(2):
        path = tmp_path / f"small{index}.png"
        Image.fromarray(np.full((64, 64, 3), index * 60, np.uint8)).save(path)
        small.append(str(path))
    page.select_option("#task", "superres")
    page.select_option("#model", "superres-x4")
    page.fill("#tile", "64")
    page.set_input_files("#file-input", [str(large), *small])
    page.click("#run")
    page.wait_for_function("document.querySelectorAll('.job').length === 3")
    first = page.locator(".job").last  # the newest job is listed first
    first.locator(".job-status").filter(has_text="tiles").wait_for(timeout=JOB_TIMEOUT_MS)
    first.locator(".cancel").click()
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.job')).every(job => ['done', 'cancelled'].includes(job.dataset.status))",
        timeout=JOB_TIMEOUT_MS,
    )
    assert first.get_attribute("data-status") == "cancelled"
    assert page.locator(".job[data-status=done]").count() == 2
