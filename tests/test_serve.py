"""`img2img serve`: the web app's HTTP API in-process, on the shipped models and tiny ones of a
--models-dir, and the command starting a real server."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from conftest import build_colour_mixer, build_upscaler  # noqa: E402
from img2img.serve.app import create_app  # noqa: E402
from img2img.serve.catalogue import build_catalogue  # noqa: E402
from img2img.serve.jobs import Job, JobQueue  # noqa: E402

DONE = ("done", "failed", "cancelled")


def png_bytes(pixels: np.ndarray, **save_options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", **save_options)
    return buffer.getvalue()


def photo(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """A nearest-neighbour x2 upscaler and an arbitrary-style model whose output is
    (1 - alpha) * photo + alpha * (weighted mean colour of the styles)."""
    folder = tmp_path_factory.mktemp("models")
    build_upscaler(folder / "nearest-x2.onnx", scale=2, name="nearest-x2")
    build_colour_mixer(folder / "mixer.onnx")
    return folder


@pytest.fixture(scope="module")
def catalogue(models_dir):
    return build_catalogue(models_dir)


@pytest.fixture
def server(catalogue, tmp_path):
    """(client, job queue) of an app on the shipped models and --models-dir, limits small."""
    jobs = JobQueue(tmp_path / "work", max_queued=4, result_ttl=600)
    app = create_app(catalogue, jobs, max_upload_bytes=200_000, max_pixels=1_000_000, device="cpu")
    with TestClient(app) as client:
        yield client, jobs


def submit(client, *, task="superres", model="superres-x4", image=None, mask=None, **fields):
    files = {"image": ("photo.png", png_bytes(photo()) if image is None else image, "image/png")}
    if mask is not None:
        files["mask"] = ("mask.png", mask, "image/png")
    return client.post("/api/jobs", data={"task": task, "model": model, **fields}, files=files)


def wait(client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["status"] in DONE:
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {status}")


def result_image(client, job_id: str, fmt: str = "png") -> Image.Image:
    response = client.get(f"/api/jobs/{job_id}/result", params={"format": fmt})
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content))


def test_the_page_and_its_static_files_are_served(server):
    client, _ = server
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/../app.py").status_code == 404


def test_models_lists_the_shipped_ones_and_the_models_dir_by_task(server):
    client, _ = server
    listing = client.get("/api/models").json()
    models = {model["name"]: model for model in listing["models"]}
    assert models["superres-x4"]["task"] == "superres" and models["superres-x4"]["source"] == "shipped"
    assert models["nearest-x2"] == {
        "name": "nearest-x2", "task": "superres", "scale": 2, "use_for": None, "source": "models-dir",
        "style": None, "takes_style_images": False, "classes": [],
    }
    assert models["mixer"]["task"] == "style" and models["mixer"]["takes_style_images"]
    assert models["faces-emoji"]["task"] == "faces" and models["style-starry-night"]["style"] == "starry-night"
    assert listing["limits"] == {"max_upload_bytes": 200_000, "max_pixels": 1_000_000, "max_queued": 4}


def test_superres_result_is_four_times_larger_in_every_format_with_its_profile_kept(server):
    client, _ = server
    profile = _srgb_profile()
    exif = Image.Exif()
    exif[0x010E] = "two spaniels"  # ImageDescription
    accepted = submit(client, image=png_bytes(photo(), icc_profile=profile, exif=exif.tobytes()))
    assert accepted.status_code == 202 and accepted.json()["status"] == "queued"
    status = wait(client, accepted.json()["id"])
    assert status["status"] == "done", status
    assert status["result"] == {"width": 128, "height": 96}
    for fmt, pillow_format in (("png", "PNG"), ("jpg", "JPEG"), ("webp", "WEBP")):
        image = result_image(client, status["id"], fmt)
        assert (image.format, image.size) == (pillow_format, (128, 96))
        assert image.info.get("icc_profile") == profile
        assert image.getexif().get(0x010E) == "two spaniels"


def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def test_inpainting_changes_only_the_painted_pixels(server):
    client, _ = server
    pixels = photo(48, 48, seed=1)
    hole = np.zeros((48, 48), np.uint8)
    hole[16:32, 20:36] = 255
    status = wait(client, submit(client, task="inpaint", model="inpaint", image=png_bytes(pixels), mask=png_bytes(hole)).json()["id"])
    assert status["status"] == "done", status
    filled = np.asarray(result_image(client, status["id"]).convert("RGB"))
    kept = hole == 0
    assert np.array_equal(filled[kept], pixels[kept])
    assert not np.array_equal(filled[~kept], pixels[~kept])


def test_inpainting_takes_the_hole_from_transparency(server):
    client, _ = server
    rgba = np.dstack([photo(40, 40, seed=2), np.full((40, 40), 255, np.uint8)])
    rgba[10:20, 10:20, 3] = 0
    status = wait(client, submit(client, task="inpaint", model="inpaint", image=png_bytes(rgba), mask_from_alpha="true").json()["id"])
    assert status["status"] == "done", status
    filled = np.asarray(result_image(client, status["id"]))
    assert filled.shape == (40, 40, 3)  # opaque: the hole is filled, not transparent
    assert np.array_equal(filled[25:, 25:], rgba[25:, 25:, :3])


def test_style_and_faces_jobs(server):
    client, _ = server
    styled = wait(client, submit(client, task="style", model="style-starry-night", preserve_color="true").json()["id"])
    assert styled["status"] == "done" and styled["result"] == {"width": 32, "height": 24}
    accepted = client.post("/api/faces", data={"model": "faces-emoji", "seeds": "0-3", "columns": "2", "truncation": "0.7"})
    assert accepted.status_code == 202, accepted.text
    faces = wait(client, accepted.json()["id"])
    assert faces["status"] == "done", faces
    assert faces["result"]["width"] == faces["result"]["height"] > 64  # a 2x2 grid


def test_an_arbitrary_style_model_paints_in_the_uploaded_styles_by_weight_and_alpha(server):
    client, _ = server
    pixels = photo(seed=3)
    red, blue = (np.zeros((8, 8, 3), np.uint8) for _ in range(2))
    red[..., 0], blue[..., 2] = 255, 255
    files = [
        ("image", ("photo.png", png_bytes(pixels), "image/png")),
        ("style_image", ("red.png", png_bytes(red), "image/png")),
        ("style_image", ("blue.png", png_bytes(blue), "image/png")),
    ]
    fields = {"task": "style", "model": "mixer", "alpha": "0.5", "style_weights": "3,1"}
    status = wait(client, client.post("/api/jobs", data=fields, files=files).json()["id"])
    assert status["status"] == "done", status
    styled = np.asarray(result_image(client, status["id"])).astype(float)
    np.testing.assert_allclose(styled, 0.5 * pixels + 0.5 * np.array([0.75 * 255, 0, 0.25 * 255]), atol=1)

    no_styles = client.post("/api/jobs", data=fields | {"style_weights": ""}, files=files[:1])
    assert no_styles.status_code == 400 and "add 1 to 4 style images" in no_styles.json()["error"]
    fixed = client.post("/api/jobs", data=fields | {"model": "style-starry-night"}, files=files)
    assert fixed.status_code == 400 and "renders one fixed style" in fixed.json()["error"]
    wrong_count = client.post("/api/jobs", data=fields | {"style_weights": "1"}, files=files)
    assert wrong_count.status_code == 400 and "one non-negative weight per style image (2)" in wrong_count.json()["error"]


def test_a_face_morph_is_an_animation(server):
    client, _ = server
    accepted = client.post("/api/faces", data={"model": "faces-emoji", "seeds": "1,2", "morph_steps": "4"})
    status = wait(client, accepted.json()["id"])
    assert status["status"] == "done", status
    animation = result_image(client, status["id"], "gif")
    assert animation.format == "GIF" and animation.n_frames == 5
    assert list(status["result"].values()) == list(animation.size)
    assert client.get(f"/api/jobs/{status['id']}/result", params={"format": "png"}).status_code == 400
    default = client.get(f"/api/jobs/{status['id']}/result")  # its own format
    assert default.headers["content-type"] == "image/gif"


@pytest.mark.parametrize(
    ("fields", "status", "words"),
    [
        ({"model": "../weights/superres-x4"}, 400, "no superres model named '../weights/superres-x4'"),
        ({"model": "/etc/passwd"}, 400, "no superres model named"),
        ({"model": "inpaint"}, 400, "no superres model named 'inpaint'"),
        ({"task": "delete"}, 400, "task must be one of"),
        ({"tile": "-5"}, 400, "tile must be"),
        ({"tile": "99999999"}, 400, "tile must be"),
        ({"mask_from_alpha": "true"}, 400, "a mask is for inpainting"),
        ({"mask_from_alpha": "yes"}, 400, "mask_from_alpha must be one of true, false"),
    ],
)
def test_bad_requests_get_a_json_error_in_words(server, fields, status, words):
    client, jobs = server
    response = submit(client, **fields)
    assert response.status_code == status and words in response.json()["error"]
    assert not any(jobs.work_dir.iterdir())  # nothing was kept of the refused request


def test_an_upload_over_the_limit_is_refused_while_it_arrives(server):
    client, jobs = server
    big = os.urandom(300_000)
    response = submit(client, image=big)
    assert response.status_code == 413 and "larger than this server takes" in response.json()["error"]

    def chunks():  # no Content-Length: the body is counted as it comes
        boundary = b"--x\r\n"
        yield boundary + b'Content-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        for _ in range(40):
            yield os.urandom(10_000)
        yield b"\r\n--x--\r\n"

    response = client.post(
        "/api/jobs", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert response.status_code == 413
    assert not any(jobs.work_dir.iterdir())


def test_an_image_that_is_not_one_or_too_large_fails_its_job_with_the_reason(server):
    client, jobs = server
    garbage = wait(client, submit(client, image=b"not an image at all").json()["id"])
    assert garbage["status"] == "failed" and garbage["error"]
    bomb = wait(client, submit(client, image=png_bytes(np.zeros((1200, 1000, 3), np.uint8))).json()["id"])
    assert bomb["status"] == "failed" and "pixels" in bomb["error"]
    assert not any(jobs.work_dir.iterdir())  # a failed job keeps nothing, its upload included


def test_unknown_jobs_and_results_not_ready(server):
    client, _ = server
    assert client.get("/api/jobs/0123456789abcdef").status_code == 404
    assert client.get("/api/jobs/..%2F..%2Fetc").status_code == 404
    status = wait(client, submit(client).json()["id"])
    assert client.post(f"/api/jobs/{status['id']}/cancel").status_code == 409
    assert client.get(f"/api/jobs/{status['id']}/result", params={"format": "gif"}).status_code == 400


def test_jobs_of_one_model_run_one_at_a_time_and_all_finish(server):
    client, jobs = server
    ids: list[str] = []

    def upload(seed: int) -> None:
        ids.append(submit(client, model="nearest-x2", image=png_bytes(photo(seed=seed))).json()["id"])

    threads = [threading.Thread(target=upload, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    finished = [wait(client, job_id) for job_id in ids]
    assert [status["status"] for status in finished] == ["done"] * 4
    spans = sorted((jobs.get(job_id).started, jobs.get(job_id).finished) for job_id in ids)
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:]))


def test_a_full_queue_refuses_more_and_a_queued_job_can_be_cancelled(server, catalogue):
    client, jobs = server
    # A job holding the x4 model's worker, so the uploads behind it stay queued.
    gate = threading.Event()
    blocker = Job(model=catalogue["superres-x4"], folder=jobs.new_folder(), run=lambda job: (gate.wait(60), job.folder)[1])
    jobs.submit(blocker)
    queued = [submit(client).json()["id"] for _ in range(3)]
    refused = submit(client)
    assert refused.status_code == 429 and "try again" in refused.json()["error"]
    assert client.get(f"/api/jobs/{queued[2]}").json()["position"] == 3
    assert client.post(f"/api/jobs/{queued[1]}/cancel").json() == {"id": queued[1], "status": "cancelled"}
    gate.set()
    assert [wait(client, job_id)["status"] for job_id in queued] == ["done", "cancelled", "done"]
    assert not jobs.get(queued[1]).folder.exists()  # a cancelled job keeps nothing


def test_results_expire(catalogue, tmp_path):
    jobs = JobQueue(tmp_path / "work", max_queued=4, result_ttl=0.2)
    app = create_app(catalogue, jobs, device="cpu")
    with TestClient(app) as client:
        status = wait(client, submit(client, model="nearest-x2").json()["id"])
        assert status["status"] == "done"
        time.sleep(0.4)
        assert client.get(f"/api/jobs/{status['id']}").status_code == 404
        assert not any(jobs.work_dir.iterdir())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_command_serves_the_app_and_warns_off_loopback(models_dir):
    port = free_port()
    command = [sys.executable, "-m", "cli", "serve", "--host", "0.0.0.0", "--port", str(port),
               "--models-dir", str(models_dir), "--device", "cpu"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/models", timeout=2) as response:
                    listing = json.load(response)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.communicate()
                time.sleep(0.2)
        assert "nearest-x2" in {model["name"] for model in listing["models"]}
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert "anyone who can reach this machine" in stderr


def test_the_server_never_imports_torch(tmp_path):
    script = (
        "import sys, io, time\n"
        "import numpy as np\n"
        "from PIL import Image\n"
        "from starlette.testclient import TestClient\n"
        "from img2img.serve.app import create_app\n"
        "from img2img.serve.catalogue import build_catalogue\n"
        "from img2img.serve.jobs import JobQueue\n"
        f"jobs = JobQueue(__import__('pathlib').Path({str(tmp_path / 'work')!r}))\n"
        "buffer = io.BytesIO(); Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format='PNG')\n"
        "with TestClient(create_app(build_catalogue(), jobs, device='cpu')) as client:\n"
        "    job = client.post('/api/jobs', data={'task': 'superres', 'model': 'superres-x2'},\n"
        "                      files={'image': ('a.png', buffer.getvalue(), 'image/png')}).json()['id']\n"
        "    while client.get(f'/api/jobs/{job}').json()['status'] != 'done': time.sleep(0.05)\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx')], 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
