"""Run an image processor over a folder tree: the same tree of results in another folder.

Inputs are found recursively in a fixed sorted order, decoded ahead in a small thread pool, run
through the processor in the calling thread and written back by the pool, so file I/O overlaps
the model while at most a handful of images sit in memory. Every output is written atomically, so
a killed run leaves only complete files behind and a rerun with `skip_existing` picks up where it
stopped. A file that cannot be read, processed or written is recorded and the batch goes on; the
JSON report lists every file with its outcome.

With a mask folder (inpainting), each image's mask is the file at the same relative path there,
whatever its image suffix (photo.jpg <-> photo.png); it is decoded with the image and handed to
the processor with it, and an image without a mask is a failed file like any other.

The options live in `batch_options`, the list of files and their outputs in `batch_plan`, the
records and the JSON report in `batch_report`; this module runs the pipeline.

Example:
    >>> options = BatchOptions(output_dir=Path("upscaled"), ext="webp", skip_existing=True)
    >>> report = run_batch("photos", upscale, options)
    >>> report.written, report.skipped, report.failed
    (12, 3, 1)
    >>> run_batch("photos", inpaint.process, BatchOptions(output_dir=Path("filled"), masks=Path("masks")))
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol, TypeAlias

import numpy as np

from img2img.errors import Img2ImgError, OutputError
from img2img.files.atomic import write_bytes_atomically
from img2img.files.decode import LoadedImage, load_image
from img2img.files.encode import save_image
from img2img.files.listing import IMAGE_SUFFIXES, check_folder
from img2img.runtime.batch_options import BatchOptions
from img2img.runtime.batch_plan import Item, check_mask_dir, check_report_path, plan_items, remove_stale_temps
from img2img.runtime.batch_report import BatchReport, FileRecord, Progress, log_outcome
from img2img.runtime.inpaint import check_mask, read_mask


@dataclass(frozen=True)
class ProcessedImage:
    """What a processor makes of one LoadedImage.

    Attributes:
        pixels: (H', W', 3) RGB, uint8 or uint16 (matching the source's bit depth) or float32 in
            [0, 1].
        alpha: (H', W') opacity of the same dtype family as `pixels`, or None.
        warnings: notes for the report, e.g. that the image was processed in tiles.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    warnings: tuple[str, ...] = ()


Processor: TypeAlias = Callable[[LoadedImage], ProcessedImage]


class MaskedProcessor(Protocol):
    """A processor for a batch with a mask folder: `processor(image, mask=mask)`, the mask (H, W)
    float32 in {0, 1} with 1 = fill, of the image's size and marking at least one pixel."""

    def __call__(self, image: LoadedImage, *, mask: np.ndarray) -> ProcessedImage: ...


def write_output(
    image: LoadedImage,
    result: ProcessedImage,
    path: str | os.PathLike[str],
    *,
    quality: int = 95,
    remove_stale: bool = True,
) -> tuple[str, ...]:
    """Save `result` atomically the way `image` was stored; returns warnings about what the
    output format could not keep (see `save_image`).

    Keeps the source's bit depth (16 bits survive only in PNG; JPEG and WebP get 8), grayscale,
    colour profile and EXIF. Integer pixels keep their own depth (uint8: 8 bits, uint16: 16); float
    pixels take the source's. `remove_stale` deletes leftover temporary files of `path` first
    (run_batch does that for all its outputs at once, and passes False).

    Raises:
        OutputError: the file cannot be written.
        ValueError: `result` does not hold (H, W, 3) pixels with a matching (H, W) alpha.
    """
    pixels = result.pixels
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"processor returned pixels of shape {pixels.shape}, expected (H, W, 3)")
    if result.alpha is not None and result.alpha.shape != pixels.shape[:2]:
        raise ValueError(f"processor returned alpha of shape {result.alpha.shape}, not {pixels.shape[:2]}")
    if pixels.dtype == np.uint16:
        bit_depth = 16
    elif pixels.dtype == np.uint8:
        bit_depth = 8
    else:
        bit_depth = image.bit_depth
    return save_image(
        pixels,
        path,
        alpha=result.alpha,
        bit_depth=bit_depth,
        grayscale=image.grayscale,
        quality=quality,
        icc_profile=image.icc_profile,
        exif=image.exif,
        remove_stale=remove_stale,
    )


def _print_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_batch(
    input_dir: str | os.PathLike[str],
    processor: Processor | MaskedProcessor,
    options: BatchOptions,
    *,
    progress: bool | None = None,
    log: Callable[[str], None] = _print_to_stderr,
) -> BatchReport:
    """Process every image under `input_dir` into `options.output_dir`, mirroring the tree.

    Files that fail (unreadable, a processor error, unwritable) are recorded with their reason and
    the batch goes on. Ctrl-C, or SIGTERM when called from the main thread, stops the run: the
    images already handed to the writers are finished, nothing half-written is left, the report is
    written and returned with `interrupted` set. At the end `log` gets the failures, the warnings
    and a summary line, and the report is written as JSON (not in a dry run).

    Args:
        input_dir: folder of images, walked recursively.
        processor: turns each LoadedImage into a ProcessedImage; runs in the calling thread, in
            sorted order. With `options.masks` it is called as processor(image, mask=mask).
        options: see BatchOptions.
        progress: show a progress line on stderr; None shows it when stderr is a terminal.
        log: receives whole lines (dry-run listing, failures, warnings, summary).

    Raises:
        ImageReadError: `input_dir` is missing, not a folder or cannot be listed; the mask folder
            is missing, not a folder, or the input folder itself.
        OutputError: the output folder is the input folder or cannot be created, or the report
            cannot be written (after the summary has been logged).
    """
    clock = time.perf_counter()
    root = check_folder(input_dir)
    output_dir = options.output_dir
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(f"output folder {output_dir} is a file; pass a folder")
    if output_dir.resolve() == root.resolve():
        raise OutputError(
            f"the output folder {output_dir} is the input folder; results would mix with the inputs "
            "and could replace them: pass another output folder"
        )
    if options.masks is not None:
        check_mask_dir(options.masks, root, output_dir)
    report = BatchReport(
        input_dir=root.absolute(),
        output_dir=output_dir.absolute(),
        options=options,
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    records: dict[int, FileRecord] = {}
    plan, listing_failures = plan_items(root, options, records)
    check_report_path(options, plan)
    if not plan and not listing_failures:
        log(f"no images to process in {root} ({' '.join(IMAGE_SUFFIXES)}, after include/exclude/shard)")

    if options.dry_run:
        for index, item in enumerate(plan):
            record = records.get(index) or FileRecord(item.relative, item.output_relative, "planned")
            records[index] = record
            if record.status == "planned":
                log(f"would write {item.output} (from {item.relative})")
            elif record.status == "skipped":
                log(f"would skip {item.output} (exists)")
        report.files = listing_failures + [records[index] for index in range(len(plan))]
        report.seconds = time.perf_counter() - clock
        log_outcome(report, log)
        return report

    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(
            f"cannot create the output folder {output_dir}: {error.strerror or error}"
        ) from None
    todo = [index for index in range(len(plan)) if index not in records]
    skipped = [index for index, record in records.items() if record.status == "skipped"]
    remove_stale_temps([plan[index].output for index in todo + skipped] + [options.report_path])

    shown = progress if progress is not None else sys.stderr.isatty()
    meter = Progress(total=len(plan), already=len(records), stream=sys.stderr if shown else None)
    try:
        with _sigterm_as_interrupt():
            _pipeline(plan, todo, processor, options, records, meter)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        meter.close()
    report.files = listing_failures + [records[index] for index in range(len(plan)) if index in records]
    report.not_done = len(plan) - len(records)
    report.seconds = time.perf_counter() - clock
    try:
        write_bytes_atomically(options.report_path, report.to_json().encode("utf-8"))
    except (OSError, OutputError) as error:
        log_outcome(report, log)
        raise OutputError(
            f"cannot write the report {options.report_path}: {getattr(error, 'strerror', None) or error}; "
            "the images are written, pass another report path"
        ) from None
    report.report_path = options.report_path
    log_outcome(report, log)
    return report


def _load_item(item: Item, max_pixels: int | None) -> tuple[LoadedImage, np.ndarray | None]:
    """Decode an input, and its mask when it has one (checked against the image's size)."""
    image = load_image(item.source, max_pixels=max_pixels)
    if item.mask is None:
        return image, None
    mask = read_mask(item.mask, max_pixels=max_pixels)
    check_mask(mask, *image.rgb.shape[:2], name=item.relative)
    return image, mask


def _reason(error: Exception) -> str:
    """One line; unexpected errors (bugs) carry their type."""
    text = " ".join(line.strip() for line in str(error).splitlines())
    if isinstance(error, Img2ImgError):
        return text
    if isinstance(error, MemoryError):
        return "ran out of memory; nothing was written for it: shrink the image or free memory"
    kind = f"unexpected {type(error).__name__}"
    return f"{kind}: {text}" if text else kind


def _pipeline(
    plan: list[Item],
    todo: list[int],
    processor: Processor | MaskedProcessor,
    options: BatchOptions,
    records: dict[int, FileRecord],
    meter: Progress,
) -> None:
    """Decode ahead in the pool, process here, encode in the pool; fill `records` as files finish.

    At most io_threads + 1 decoded images wait for the processor and at most io_threads results
    wait for (or are in) the writers, so memory stays bounded whatever the folder's size.
    """
    lookahead = options.io_threads + 1
    pending: Iterator[int] = iter(todo)
    decoding: deque[tuple[int, Future[tuple[LoadedImage, np.ndarray | None]]]] = deque()
    # (index, write, warnings, processor seconds)
    encoding: deque[tuple[int, Future[tuple[str, ...]], tuple[str, ...], float]] = deque()

    def refill() -> None:
        while len(decoding) < lookahead:
            index = next(pending, None)
            if index is None:
                return
            decoding.append((index, pool.submit(_load_item, plan[index], options.max_pixels)))

    def finish_oldest_write() -> None:
        # Left in the queue until done, so an interrupt while waiting still finishes it.
        index, future, warnings, seconds = encoding[0]
        item = plan[index]
        try:
            warnings += future.result()
        except Exception as error:
            status, reason = "failed", _reason(error)
        else:
            status, reason = "written", None
        records[index] = FileRecord(item.relative, item.output_relative, status, reason, warnings, seconds)
        encoding.popleft()
        meter.update(written=status == "written", name=item.relative)

    def write(image: LoadedImage, result: ProcessedImage, output: Path) -> tuple[str, ...]:
        output.parent.mkdir(parents=True, exist_ok=True)
        return write_output(image, result, output, quality=options.quality, remove_stale=False)

    pool = ThreadPoolExecutor(max_workers=options.io_threads, thread_name_prefix="img2img-io")
    try:
        refill()
        while decoding:
            index, decoded = decoding.popleft()
            refill()
            item = plan[index]
            meter.show(item.relative)
            warnings: tuple[str, ...] = ()
            try:
                image, mask = decoded.result()
                warnings = image.warnings
                start = time.perf_counter()
                result = processor(image) if mask is None else processor(image, mask=mask)  # type: ignore[call-arg]
                warnings += result.warnings
            except Exception as error:
                records[index] = FileRecord(
                    item.relative, item.output_relative, "failed", _reason(error), warnings
                )
                meter.update(written=False, name=item.relative)
                continue
            seconds = time.perf_counter() - start
            while len(encoding) >= options.io_threads:
                finish_oldest_write()
            encoding.append((index, pool.submit(write, image, result, item.output), warnings, seconds))
        while encoding:
            finish_oldest_write()
    except KeyboardInterrupt:
        for _, decoded in decoding:
            decoded.cancel()
        # Results already handed to the writers are finished: each becomes a complete file.
        while encoding:
            finish_oldest_write()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (main thread only: signal handlers can
    only be installed there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        # None: the old handler was installed outside Python; the default is the closest.
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
