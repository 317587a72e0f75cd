"""The local web app's HTTP side: a single page and a small JSON API over the runtime.

    GET  /                        the page (static files under /static, shipped in the wheel)
    GET  /api/models              the models offered, by task, and the server's limits
    POST /api/jobs                an image task: form fields image, task, model, tile, mask,
                                  mask_from_alpha, preserve_color, and for an arbitrary-style
                                  model style_image (1 to 4), style_weights, alpha
                                  -> 202 {"id", "status", "position"}
    POST /api/faces               a face grid: form fields model, seeds, truncation, label,
                                  columns; with morph_steps a GIF morphing through the seeds
    GET  /api/jobs/{id}           status, tiles done, ETA, error, result size
    POST /api/jobs/{id}/cancel    stop a queued or running job
    GET  /api/jobs/{id}/result    the result as ?format=png (default), jpg or webp; a morph as gif

Every error is JSON {"error": "what went wrong and what to do"} with a 4xx status (5xx only for
the server's own faults). What a request sends is untrusted: a model is looked up by name in the
catalogue, never opened by a path the client gives; an upload larger than `max_upload_bytes` is
refused while it arrives and is held in memory, not spooled to the system's temporary folder
(a few requests are read at a time, so that memory stays bounded);
an image decodes only under the decompression-bomb guard of the command line (`max_pixels`).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import threading
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from img2img.errors import Img2ImgError
from img2img.files import DEFAULT_MAX_PIXELS
from img2img.files.decode import load_image
from img2img.files.encode import save_image
from img2img.serve.catalogue import OfferedModel
from img2img.serve.jobs import Job, JobQueue, QueueFull, job_view

IMAGE_TASKS = ("superres", "translate", "inpaint", "style")
FORMATS = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}
MAX_STYLE_IMAGES = 4
# Requests whose bodies are read at the same time (each up to max_upload_bytes in memory).
MAX_UPLOADS_AT_ONCE = 4
# Variants of one model kept open (one per set of options: the tile size is fixed when it opens).
OPEN_MODELS_PER_WORKER = 2
# Form fields other than the files: short values only.
MAX_FIELD_BYTES = 4096


class RequestError(Exception):
    """A request the server refuses: its HTTP status and the message the page shows."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def static_folder() -> Path:
    return Path(str(resources.files("img2img.serve").joinpath("static")))


def create_app(
    catalogue: dict[str, OfferedModel],
    jobs: JobQueue,
    *,
    max_upload_bytes: int = 50 * 1024**2,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    device: str = "auto",
    threads: int | None = None,
) -> Starlette:
    """The app serving `catalogue`'s models through `jobs`.

    Args:
        catalogue: the models offered, by name (`build_catalogue`).
        jobs: the queue every job runs through; its work folder holds every file written.
        max_upload_bytes: the largest request body taken (image and mask together).
        max_pixels: the decompression-bomb guard; None for no limit.
        device, threads: how models run (as the command line's --device and --threads).
    """
    runner = _Runner(device=device, threads=threads, max_pixels=max_pixels)
    # Uploads are held in memory while they arrive: a few at a time keeps that bounded.
    receiving = anyio.Semaphore(MAX_UPLOADS_AT_ONCE)

    async def read_form(request: Request) -> FormData:
        async with receiving:
            return await _read_form(request, max_upload_bytes)

    async def page(request: Request) -> Response:
        return FileResponse(static_folder() / "index.html")

    async def models(request: Request) -> Response:
        return JSONResponse({
            "models": [model.describe() for model in catalogue.values()],
            "limits": {"max_upload_bytes": max_upload_bytes, "max_pixels": max_pixels, "max_queued": jobs.max_queued},
        })

    async def submit_image(request: Request) -> Response:
        form = await read_form(request)
        task = _field(form, "task", choices=IMAGE_TASKS)
        model = _model(catalogue, _field(form, "model"), task)
        image = _upload(form, "image", required=True)
        mask = _upload(form, "mask")
        styles = [value for value in form.getlist("style_image") if isinstance(value, UploadFile)]
        options = {
            "tile": _tile(_field(form, "tile", default="auto")),
            "mask_from_alpha": _flag(form, "mask_from_alpha"),
            "preserve_color": _flag(form, "preserve_color"),
            "alpha": _number(form, "alpha", default=1.0, low=0.0, high=1.0),
            "style_weights": _weights(_field(form, "style_weights", default=""), len(styles)),
        }
        if model.takes_style_images and not 1 <= len(styles) <= MAX_STYLE_IMAGES:
            raise RequestError(400, f"{model.name} paints in the style of images you give: add 1 to {MAX_STYLE_IMAGES} style images")
        if not model.takes_style_images and (styles or options["alpha"] != 1.0 or options["style_weights"]):
            raise RequestError(400, f"{model.name} renders one fixed style; style images, weights and alpha are for arbitrary-style models")
        if task == "inpaint" and (mask is None) == (not options["mask_from_alpha"]):
            raise RequestError(400, "inpainting needs a mask: paint one, or tick 'mask from alpha' (not both)")
        if task != "inpaint" and (mask is not None or options["mask_from_alpha"]):
            raise RequestError(400, f"a mask is for inpainting, not {task}")
        folder = jobs.new_folder()
        input_path = folder / ("input" + _suffix(image.filename))
        input_path.write_bytes(await image.read())
        mask_path = None
        if mask is not None:
            mask_path = folder / "mask.png"
            mask_path.write_bytes(await mask.read())
        options["style_paths"] = []
        for index, style in enumerate(styles):
            options["style_paths"].append(folder / f"style{index}{_suffix(style.filename)}")
            options["style_paths"][-1].write_bytes(await style.read())
        job = Job(model=model, folder=folder, run=lambda job: runner.image(job, input_path, mask_path, options))
        return _accepted(jobs, job)

    async def submit_faces(request: Request) -> Response:
        form = await read_form(request)
        model = _model(catalogue, _field(form, "model"), "faces")
        options = {
            "seeds": _field(form, "seeds", default="0-7"),
            "truncation": _number(form, "truncation", default=1.0, low=0.0, high=1.0),
            "label": _field(form, "label", default="") or None,
            "columns": int(_number(form, "columns", default=0, low=0, high=10_000)) or None,
            "morph_steps": int(_number(form, "morph_steps", default=0, low=0, high=120)),
        }
        job = Job(model=model, folder=jobs.new_folder(), run=lambda job: runner.faces(job, options))
        return _accepted(jobs, job)

    async def status(request: Request) -> Response:
        return JSONResponse(job_view(_job(jobs, request), jobs))

    async def cancel(request: Request) -> Response:
        job = _job(jobs, request)
        if not jobs.cancel(job):
            raise RequestError(409, f"job {job.id} has already {job.status}; there is nothing to cancel")
        return JSONResponse({"id": job.id, "status": "cancelled"})

    async def result(request: Request) -> Response:
        job = _job(jobs, request)
        if job.status != "done" or job.result is None:
            raise RequestError(409, f"job {job.id} is {job.status}; its result is not ready")
        native = job.result.suffix.lstrip(".")
        fmt = request.query_params.get("format", native)
        if native == "gif" and fmt != "gif":
            raise RequestError(400, "this result is an animation: ask for format=gif")
        if fmt not in FORMATS or fmt == "gif" and native != "gif":
            raise RequestError(400, f"format must be one of png, jpg, webp, not {fmt!r}")
        # Encoding takes a while for a large result: off the event loop, which serves everyone.
        path = job.result if fmt == native else await run_in_threadpool(runner.convert, job.result, fmt)
        filename = f"{job.model.name}-{job.id}.{fmt}"
        return FileResponse(path, media_type=FORMATS[fmt], filename=filename)

    routes = [
        Route("/", page),
        Route("/api/models", models),
        Route("/api/jobs", submit_image, methods=["POST"]),
        Route("/api/faces", submit_faces, methods=["POST"]),
        Route("/api/jobs/{job_id}", status),
        Route("/api/jobs/{job_id}/cancel", cancel, methods=["POST"]),
        Route("/api/jobs/{job_id}/result", result),
        Mount("/static", StaticFiles(directory=static_folder()), name="static"),
    ]
    handlers = {
        RequestError: lambda request, error: JSONResponse({"error": str(error)}, status_code=error.status),
        QueueFull: lambda request, error: JSONResponse({"error": str(error)}, status_code=429),
        Img2ImgError: lambda request, error: JSONResponse({"error": " ".join(str(error).split())}, status_code=400),
        HTTPException: lambda request, error: JSONResponse({"error": error.detail}, status_code=error.status_code),
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        jobs.close()  # the workers stop and the work folder goes with the server

    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)


class _InMemoryParser(MultiPartParser):
    """Multipart parsing that keeps uploads in memory (the body is already bounded), so nothing
    lands in the system's temporary folder."""

    spool_max_size = 2**62


async def _read_form(request: Request, limit: int) -> FormData:
    """The request's multipart form, refused with 413 once the body passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, _too_large(limit))
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise RequestError(415, "send a form: multipart/form-data (with the image) or application/x-www-form-urlencoded")

    async def bounded() -> AsyncIterator[bytes]:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise RequestError(413, _too_large(limit))
            yield chunk

    if content_type.startswith("multipart/form-data"):
        parser: Any = _InMemoryParser(
            request.headers, bounded(), max_files=2 + MAX_STYLE_IMAGES, max_fields=16, max_part_size=MAX_FIELD_BYTES
        )
    else:
        parser = FormParser(request.headers, bounded())
    try:
        return await parser.parse()
    except MultiPartException as error:
        raise RequestError(400, f"the form could not be read: {error}") from None


def _too_large(limit: int) -> str:
    return f"the upload is larger than this server takes ({limit / 1024**2:.0f} MB); send a smaller image"


def _field(form: FormData, name: str, *, default: str | None = None, choices: tuple[str, ...] = ()) -> str:
    value = form.get(name)
    if isinstance(value, UploadFile):
        raise RequestError(400, f"{name} must be a form field, not a file")
    if value is None or value == "":
        if default is None:
            raise RequestError(400, f"the form has no {name}")
        return default
    if choices and value not in choices:
        raise RequestError(400, f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _flag(form: FormData, name: str) -> bool:
    return _field(form, name, default="false", choices=("true", "false")) == "true"


def _number(form: FormData, name: str, *, default: float, low: float, high: float) -> float:
    text = _field(form, name, default=str(default))
    try:
        value = float(text)
    except ValueError:
        raise RequestError(400, f"{name} must be a number, not {text!r}") from None
    if not low <= value <= high:
        raise RequestError(400, f"{name} must be between {low:g} and {high:g}, not {text}")
    return value


def _weights(text: str, count: int) -> list[float] | None:
    """style_weights: one non-negative number per style image, comma-separated; "" for equal."""
    if not text:
        return None
    try:
        weights = [float(part) for part in text.split(",")]
    except ValueError:
        raise RequestError(400, f"style_weights must be numbers separated by commas, not {text!r}") from None
    if len(weights) != count or any(not 0 <= weight < float("inf") for weight in weights) or not sum(weights):
        raise RequestError(400, f"style_weights needs one non-negative weight per style image ({count}), not all 0")
    return weights


def _tile(text: str) -> int | str | None:
    if text == "auto":
        return "auto"
    if not text.isdigit() or int(text) > 16_384:
        raise RequestError(400, f"tile must be 'auto', 0 (whole image) or a size up to 16384 pixels, not {text!r}")
    return int(text) or None


def _upload(form: FormData, name: str, *, required: bool = False) -> UploadFile | None:
    value = form.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, UploadFile):
        raise RequestError(400, f"the form has no {name} file" if value is None else f"{name} must be a file")
    return value


def _suffix(filename: str | None) -> str:
    """The upload's suffix, if it is a plain one (the name is the client's: nothing else of it
    is used); decoding goes by content, not by suffix."""
    suffix = Path(filename or "").suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".img"


def _model(catalogue: dict[str, OfferedModel], name: str, task: str) -> OfferedModel:
    model = catalogue.get(name)
    if model is None or model.task != task:
        offered = ", ".join(m.name for m in catalogue.values() if m.task == task) or "none"
        raise RequestError(400, f"no {task} model named {name!r} on this server; it offers: {offered}")
    return model


def _job(jobs: JobQueue, request: Request) -> Job:
    job_id = request.path_params["job_id"]
    job = jobs.get(job_id) if re.fullmatch(r"[0-9a-f]{16}", job_id) else None
    if job is None:
        raise RequestError(404, f"no job {job_id!r}: it never existed or its result has expired")
    return job


def _accepted(jobs: JobQueue, job: Job) -> Response:
    try:
        ahead = jobs.submit(job)
    except QueueFull:
        shutil.rmtree(job.folder, ignore_errors=True)
        raise
    return JSONResponse({"id": job.id, "status": job.status, "position": ahead}, status_code=202)


class _Runner:
    """Runs jobs through the runtime, the way the command line does."""

    def __init__(self, *, device: str, threads: int | None, max_pixels: int | None) -> None:
        self.device, self.threads, self.max_pixels = device, threads, max_pixels
        self._open: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()  # workers of different models open models at once

    def _model(self, model: OfferedModel, **options: Any) -> Any:
        """The runtime's Model for `model` with these options, opened once and kept (each model
        has one worker thread, so an open model never serves two jobs at once)."""
        from img2img.runtime.api import Model

        key = (model.name, *sorted(options.items()))
        with self._lock:
            opened = self._open.get(key)
        if opened is None:
            opened = Model(str(model.path), task=model.task, device=self.device, threads=self.threads, **options)
            with self._lock:
                same_model = [other for other in self._open if other[0] == model.name]
                for stale in same_model[: max(0, len(same_model) - OPEN_MODELS_PER_WORKER + 1)]:
                    del self._open[stale]  # the longest open of this model's variants
                self._open[key] = opened
        return opened

    def image(self, job: Job, input_path: Path, mask_path: Path | None, options: dict[str, Any]) -> Path:
        from img2img.runtime.api import Model
        from img2img.runtime.inpaint import check_mask, mask_from_alpha, read_mask

        image = load_image(input_path, max_pixels=self.max_pixels)
        model = job.model
        settings: dict[str, Any] = {"tile": options["tile"]}
        if model.task == "style":
            settings["preserve_color"] = options["preserve_color"]
        if model.task == "inpaint" and options["mask_from_alpha"]:
            settings["alpha"] = "drop"
        if model.takes_style_images:
            # The styles are this job's own: such a model is opened for the job, not kept.
            net = Model(
                str(model.path), task=model.task, device=self.device, threads=self.threads,
                style=[str(path) for path in options["style_paths"]], style_weights=options["style_weights"],
                style_alpha=options["alpha"], **settings,
            )
        else:
            net = self._model(model, **settings)
        mask = None
        if model.task == "inpaint":
            if options["mask_from_alpha"]:
                mask = mask_from_alpha(image.alpha, name="the image")
            else:
                mask = read_mask(mask_path, max_pixels=self.max_pixels)
                check_mask(mask, *image.rgb.shape[:2], name="the image")
        output = job.folder / "result.png"
        saved = net.save(image, output, mask=mask, on_tile=job.tile_done)
        job.result_size = (saved.width, saved.height)
        input_path.unlink(missing_ok=True)
        return output

    def faces(self, job: Job, options: dict[str, Any]) -> Path:
        """A grid of the seeds' faces (result.png), or with morph_steps a GIF that morphs from
        each seed's face to the next's (result.gif), as `img2img faces generate/interpolate`."""
        from img2img.runtime.faces import (
            FaceGenerator, check_sample_count, interpolation_path, parse_seeds, save_frames_gif, write_samples,
        )

        steps = options["morph_steps"]
        try:
            seeds = parse_seeds(options["seeds"])
            columns = options["columns"]
            if columns is not None and columns > len(seeds):
                raise ValueError(f"{columns} grid columns for {len(seeds)} faces; use 1 to {len(seeds)}")
            generator = FaceGenerator(job.model.path, device=self.device, threads=self.threads)
            latents = generator.latents(seeds, options["truncation"])
            labels = generator.labels_for(seeds, options["label"])
            if steps:
                check_sample_count((len(seeds) - 1) * steps + 1, "frames")
                latents = interpolation_path(latents, steps)
                if labels is not None:  # each keyframe's class holds until the next keyframe
                    labels = np.append(np.repeat(labels[:-1], steps), labels[-1])
            images = generator.generate(latents, labels)
        except ValueError as error:
            raise Img2ImgError(str(error)) from None
        if steps:
            output = job.folder / "result.gif"
            save_frames_gif(images, output, zoom=2)
            job.result_size = (images.shape[2] * 2, images.shape[1] * 2)
        else:
            output = job.folder / "result.png"
            write_samples(images, seeds, output, columns=columns, zoom=1)
            loaded = load_image(output)
            job.result_size = (loaded.rgb.shape[1], loaded.rgb.shape[0])
        job.tile_done(1, 1)
        return output

    def convert(self, result: Path, fmt: str) -> Path:
        """The PNG result as JPEG or WebP beside it (made once), with its EXIF and ICC profile."""
        target = result.with_suffix(f".{fmt}")
        if not target.is_file():
            image = load_image(result, max_pixels=None)
            save_image(
                image.rgb, target, alpha=image.alpha, grayscale=image.grayscale,
                icc_profile=image.icc_profile, exif=image.exif,
            )
        return target
