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

Example:
    >>> options = BatchOptions(output_dir=Path("upscaled"), ext="webp", skip_existing=True)
    >>> report = run_batch("photos", upscale, options)
    >>> report.written, report.skipped, report.failed
    (12, 3, 1)
    >>> run_batch("photos", inpaint.process, BatchOptions(output_dir=Path("filled"), masks=Path("masks")))
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import signal
import sys
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import numpy as np

from img2img.errors import ConfigError, ImageReadError, Img2ImgError, OutputError
from img2img.runtime.image_io import (
    DEFAULT_MAX_PIXELS,
    TEMP_SUFFIX,
    LoadedImage,
    load_image,
    save_image,
    temp_file_pattern,
    temp_key,
    write_atomically,
)
from img2img.runtime.inpaint import check_mask, read_mask

# Suffixes (lower case) read as images; every other file in the tree is left alone.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
OUTPUT_EXTS = ("png", "jpg", "webp")
REPORT_NAME = "img2img-report.json"


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


@dataclass(frozen=True)
class BatchOptions:
    """How a folder is processed.

    Attributes:
        output_dir: folder receiving the results, mirroring the input tree; created when missing.
        ext: output format and suffix: "png", "jpg" or "webp" ("jpeg" and a leading dot accepted).
        quality: JPEG/WebP quality, 1 to 100.
        skip_existing: leave outputs that already exist alone (writes are atomic, so an existing
            output is complete) and count them as skipped.
        include: glob patterns; when given, only files whose relative path (posix, e.g.
            "trip/img_01.jpg") or name matches one of them are taken. Case-sensitive, like a shell.
        exclude: glob patterns; files, and folders (which are then not entered), whose relative
            path or name matches one of them are left out.
        dry_run: list what would be written or skipped; write nothing, not even the report.
        shard: (k, n) to take only the k-th of n disjoint parts of the files (0 <= k < n), for
            several machines sharing one folder; see `shard_of`.
        max_pixels: refuse inputs with more pixels than this (decompression bombs); None disables.
        report: where the JSON report goes; default `output_dir/img2img-report.json`, or
            `img2img-report.shard-K-of-N.json` with a shard so that shards do not overwrite it.
        io_threads: threads decoding and encoding images while the processor runs.
        masks: folder of masks mirroring the input tree, for a processor that takes them (see
            MaskedProcessor); each image's mask is the image file there with the same relative
            path less the suffix (any image suffix; photo.jpg <-> photo.png). None: no masks.

    Raises:
        OutputError: unknown ext or quality out of range.
        ConfigError: bad shard, io_threads or max_pixels.
    """

    output_dir: Path
    ext: str = "png"
    quality: int = 95
    skip_existing: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    dry_run: bool = False
    shard: tuple[int, int] | None = None
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    report: Path | None = None
    io_threads: int = 2
    masks: Path | None = None

    def __post_init__(self) -> None:
        # Normalised in place (the dataclass is frozen) so that callers may pass strings and lists.
        ext = str(self.ext).lower().lstrip(".")
        ext = "jpg" if ext == "jpeg" else ext
        if ext not in OUTPUT_EXTS:
            raise OutputError(f"unknown output format {self.ext!r}; use one of {', '.join(OUTPUT_EXTS)}")
        if not 1 <= self.quality <= 100:
            raise OutputError(f"quality {self.quality} is out of range; pass a value from 1 to 100")
        if self.shard is not None:
            k, n = self.shard
            if not (n >= 1 and 0 <= k < n):
                raise ConfigError(f"shard {k}/{n} is invalid; pass K/N with 0 <= K < N, e.g. 0/4")
            object.__setattr__(self, "shard", (int(k), int(n)))
        if self.io_threads < 1:
            raise ConfigError(f"io_threads is {self.io_threads}; pass at least 1")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ConfigError(f"max_pixels is {self.max_pixels}; pass a positive number, or None for none")
        object.__setattr__(self, "ext", ext)
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        if self.report is not None:
            object.__setattr__(self, "report", Path(self.report))
        if self.masks is not None:
            object.__setattr__(self, "masks", Path(self.masks))

    @property
    def report_path(self) -> Path:
        """Where the JSON report is written (see `report`)."""
        if self.report is not None:
            return self.report
        if self.shard is None:
            return self.output_dir / REPORT_NAME
        k, n = self.shard
        return self.output_dir / f"img2img-report.shard-{k}-of-{n}.json"


def parse_shard(text: str) -> tuple[int, int]:
    """Parse "K/N" (as typed after --shard) into (k, n) with 0 <= k < n.

    Raises:
        ConfigError: not two whole numbers separated by "/", or k out of range.
    """
    k_text, slash, n_text = text.partition("/")
    try:
        if not slash:
            raise ValueError
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise ConfigError(f"--shard {text!r} is not K/N; pass e.g. 0/4 for the first of four parts") from None
    if not (n >= 1 and 0 <= k < n):
        raise ConfigError(f"--shard {text} is out of range; K counts from 0 to N-1, e.g. 0/{max(n, 1)}")
    return k, n


@dataclass(frozen=True)
class FileRecord:
    """The outcome for one input file.

    Attributes:
        input: path relative to the input folder, posix style ("trip/img_01.jpg"); a folder that
            could not be listed ends with "/".
        output: path relative to the output folder, or None when there is none.
        status: "written", "skipped", "failed", or "planned" (dry run: would be written).
        reason: why it failed or was skipped, one line; None when written.
        warnings: notes about the image (e.g. only the first of several frames was used).
        seconds: time the processor took on it (0 when not processed).
    """

    input: str
    output: str | None
    status: str
    reason: str | None = None
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "output": self.output,
            "status": self.status,
            "reason": self.reason,
            "warnings": list(self.warnings),
            "seconds": round(self.seconds, 4),
        }


@dataclass
class BatchReport:
    """What a batch did, file by file, in the sorted input order.

    Attributes:
        input_dir, output_dir: the folders, absolute.
        options: the options the batch ran with.
        files: one record per input file handled (files not reached after an interrupt have none).
        not_done: files of this run that were neither written, skipped nor failed (interrupt).
        interrupted: stopped early by Ctrl-C (KeyboardInterrupt) or SIGTERM.
        seconds: wall time of the whole run.
        report_path: where the JSON report was written, or None (dry run, or not written yet).
        started: UTC time the run started, ISO 8601.
    """

    input_dir: Path
    output_dir: Path
    options: BatchOptions
    files: list[FileRecord] = field(default_factory=list)
    not_done: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    report_path: Path | None = None
    started: str = ""

    def _count(self, status: str) -> int:
        return sum(record.status == status for record in self.files)

    @property
    def written(self) -> int:
        return self._count("written")

    @property
    def skipped(self) -> int:
        return self._count("skipped")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def planned(self) -> int:
        return self._count("planned")

    @property
    def warnings(self) -> int:
        """Number of files with at least one warning."""
        return sum(bool(record.warnings) for record in self.files)

    @property
    def failures(self) -> list[FileRecord]:
        return [record for record in self.files if record.status == "failed"]

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """130 when interrupted, 1 when any file failed, else 0."""
        if self.interrupted:
            return 130
        return 1 if self.failed else 0

    def summary(self) -> str:
        """One line, e.g. "12 written, 3 skipped, 1 failed in 4.2 s (2.9 images/s); report: PATH"."""
        if self.options.dry_run:
            return (
                f"dry run: {self.planned} to write, {self.skipped} to skip, {self.failed} failed; "
                f"nothing written"
            )
        line = (
            f"{self.written} written, {self.skipped} skipped, {self.failed} failed in {self.seconds:.1f} s "
            f"({self.images_per_second:.1f} images/s)"
        )
        if self.interrupted:
            line = f"interrupted: {line}, {self.not_done} not done"
        if self.report_path is not None:
            line += f"; report: {self.report_path}"
        return line

    def to_dict(self) -> dict[str, Any]:
        options = self.options
        return {
            "input_dir": str(self.input_dir),
            "output_dir": str(self.output_dir),
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 3),
            "interrupted": self.interrupted,
            "options": {
                "ext": options.ext,
                "quality": options.quality,
                "skip_existing": options.skip_existing,
                "include": list(options.include),
                "exclude": list(options.exclude),
                "dry_run": options.dry_run,
                "shard": list(options.shard) if options.shard else None,
                "max_pixels": options.max_pixels,
                "masks": None if options.masks is None else str(options.masks),
            },
            "counts": {
                "written": self.written,
                "skipped": self.skipped,
                "failed": self.failed,
                "warnings": self.warnings,
                "not_done": self.not_done,
            },
            "files": [record.to_dict() for record in self.files],
        }

    def to_json(self) -> str:
        """UTF-8 JSON; a file name whose bytes are not UTF-8 appears in its escaped form
        (`caf\\xe9.png`), see `printable_name`."""
        return json.dumps(_printable(self.to_dict()), indent=2, ensure_ascii=False) + "\n"


def printable_name(name: str | os.PathLike[str]) -> str:
    """A path as text that any UTF-8 stream takes: the bytes of a name that is not UTF-8 (the
    OS gives them as surrogate escapes) shown as `\\xNN`, e.g. b"caf\\xe9.png" -> "caf\\xe9.png"."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _printable(node: Any) -> Any:
    if isinstance(node, str):
        return printable_name(node)
    if isinstance(node, dict):
        return {key: _printable(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_printable(value) for value in node]
    return node


def shard_of(relative_posix_path: str, n: int) -> int:
    """The shard (0 to n-1) a file belongs to, from its path relative to the input folder.

    A SHA-1 of the path, so the split is the same on every machine and Python run (the built-in
    hash() is salted per process). The path is NFC-normalised first: macOS spells accented names
    decomposed, and a shared folder must split alike from either side.
    """
    # surrogateescape: a name that is not UTF-8 hashes as its own bytes.
    key = unicodedata.normalize("NFC", relative_posix_path).encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.sha1(key).digest()[:8], "big") % n


def find_inputs(input_dir: str | os.PathLike[str], options: BatchOptions) -> list[Path]:
    """The image files a batch over `input_dir` takes, in processing order.

    Walks the tree without following symlinked folders, skips hidden files and folders (names
    starting with "."), the output and mask folders when they lie inside `input_dir`, and files
    whose suffix is not in IMAGE_SUFFIXES; then applies include/exclude and the shard. Sorted by
    path components, so the order is the same everywhere.

    Raises:
        ImageReadError: `input_dir` is missing or not a folder.
    """
    root = _check_input_dir(input_dir)
    selected = _select(_scan(root, options, errors=[]), root, options)
    return [path for path in selected if _in_shard(path, root, options)]


def output_path_for(
    input_dir: str | os.PathLike[str], path: str | os.PathLike[str], options: BatchOptions
) -> Path:
    """Where the result for input `path` goes: the same relative place under output_dir, suffix ext.

    Raises:
        OutputError: `path` is not under `input_dir`, or the output would land outside
            output_dir (through a symlinked folder inside it).
    """
    root, path = Path(input_dir), Path(path)
    try:
        relative = path.relative_to(root)
    except ValueError:
        raise OutputError(f"{path} is not inside the input folder {root}") from None
    target = options.output_dir / relative.with_suffix(f".{options.ext}")
    real = target.parent.resolve() / target.name
    if not real.is_relative_to(options.output_dir.resolve()):
        raise OutputError(_outside_message(target, real, options))
    return target


def _outside_message(target: Path, real: Path, options: BatchOptions) -> str:
    return (
        f"its output {target} resolves to {real}, outside the output folder {options.output_dir} "
        "(a symlinked folder?); remove the link or pick another output folder"
    )


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
    root = _check_input_dir(input_dir)
    output_dir = options.output_dir
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(f"output folder {output_dir} is a file; pass a folder")
    if output_dir.resolve() == root.resolve():
        raise OutputError(
            f"the output folder {output_dir} is the input folder; results would mix with the inputs "
            "and could replace them: pass another output folder"
        )
    if options.masks is not None:
        _check_mask_dir(options.masks, root, output_dir)
    report = BatchReport(
        input_dir=root.absolute(),
        output_dir=output_dir.absolute(),
        options=options,
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    records: dict[int, FileRecord] = {}
    plan, listing_failures = _plan(root, options, records)
    _check_report_path(options, plan)
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
        _log_outcome(report, log)
        return report

    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(
            f"cannot create the output folder {output_dir}: {error.strerror or error}"
        ) from None
    todo = [index for index in range(len(plan)) if index not in records]
    skipped = [index for index, record in records.items() if record.status == "skipped"]
    _remove_stale_temps([plan[index].output for index in todo + skipped] + [options.report_path])

    shown = progress if progress is not None else sys.stderr.isatty()
    meter = _Progress(total=len(plan), already=len(records), stream=sys.stderr if shown else None)
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
        _write_text_atomically(options.report_path, report.to_json())
    except (OSError, OutputError) as error:
        _log_outcome(report, log)
        raise OutputError(
            f"cannot write the report {options.report_path}: {getattr(error, 'strerror', None) or error}; "
            "the images are written, pass another report path"
        ) from None
    report.report_path = options.report_path
    _log_outcome(report, log)
    return report


@dataclass(frozen=True)
class _Item:
    source: Path
    relative: str  # posix path under the input folder
    output: Path
    output_relative: str  # posix path under the output folder
    mask: Path | None = None  # its mask file, with a mask folder


def _check_mask_dir(masks: Path, root: Path, output_dir: Path) -> None:
    if not masks.is_dir():
        what = "is a file" if masks.exists() else "does not exist"
        raise ImageReadError(
            f"mask folder {masks} {what}; pass the folder holding one mask per image, at the images' "
            "relative paths"
        )
    if masks.resolve() == root.resolve():
        raise ImageReadError(
            f"the mask folder {masks} is the input folder, so every image would be its own mask; "
            "keep the masks in a folder of their own"
        )
    # Results written into the mask tree would replace masks (photo.png's result is the mask
    # photo.png's name); an output folder holding the mask folder is checked file by file.
    if output_dir.resolve().is_relative_to(masks.resolve()):
        raise OutputError(
            f"the output folder {output_dir} is inside the mask folder {masks}; results would replace "
            "the masks: pass another output folder"
        )


def _check_report_path(options: BatchOptions, plan: list[_Item]) -> None:
    """Refuses a report path that would replace a file this run reads or writes: an input, a
    mask or an output (where a later `skip_existing` run would take the report for a result)."""
    path = options.report_path
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise OutputError(f"the report {path} has an image suffix; the report is JSON: name it .json")
    real = path.parent.resolve() / path.name
    # Only files of the report's name can be it: the folders of the others are never resolved.
    for item in plan:
        for role, other in (("input", item.source), ("mask", item.mask), ("output", item.output)):
            if other is not None and other.name == path.name and other.parent.resolve() / other.name == real:
                raise OutputError(
                    f"the report {path} would replace the {role} {other}; pass another report path"
                )


def _check_input_dir(input_dir: str | os.PathLike[str]) -> Path:
    root = Path(input_dir)
    if not root.exists():
        raise ImageReadError(f"{root}: no such folder; check the path")
    if not root.is_dir():
        raise ImageReadError(f"{root} is a file, not a folder; pass the folder that holds the images")
    try:
        with os.scandir(root):
            pass
    except OSError as error:
        raise ImageReadError(
            f"cannot list {root}: {error.strerror or error}; check its permissions"
        ) from None
    return root


def _matches(patterns: Iterable[str], relative: str, name: str) -> bool:
    return any(fnmatch.fnmatchcase(relative, glob) or fnmatch.fnmatchcase(name, glob) for glob in patterns)


def _scan(root: Path, options: BatchOptions, errors: list[OSError]) -> list[Path]:
    """Every image file under root (hidden, excluded, output and mask folders aside), sorted."""
    skip = {options.output_dir.resolve()}
    if options.masks is not None:
        skip.add(options.masks.resolve())
    found: list[Path] = []
    for folder, dirnames, filenames in os.walk(root, onerror=errors.append):
        here = Path(folder)
        relative_here = here.relative_to(root)
        dirnames[:] = [
            name
            for name in dirnames
            if not name.startswith(".")
            and not _matches(options.exclude, (relative_here / name).as_posix(), name)
            and (here / name).resolve() not in skip
        ]
        found.extend(
            here / name
            for name in filenames
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
        )
    return sorted(found, key=lambda path: path.relative_to(root).parts)


def _select(paths: list[Path], root: Path, options: BatchOptions) -> list[Path]:
    """The paths passing include and exclude."""
    selected = []
    for path in paths:
        relative = path.relative_to(root).as_posix()
        if options.include and not _matches(options.include, relative, path.name):
            continue
        if _matches(options.exclude, relative, path.name):
            continue
        selected.append(path)
    return selected


def _in_shard(path: Path, root: Path, options: BatchOptions) -> bool:
    if options.shard is None:
        return True
    k, n = options.shard
    return shard_of(path.relative_to(root).as_posix(), n) == k


def _plan(
    root: Path, options: BatchOptions, records: dict[int, FileRecord]
) -> tuple[list[_Item], list[FileRecord]]:
    """This run's files in order, with the outcome already known for some of them.

    Fills `records` for files that fail before decoding (their output would clash with another
    file's, land inside the input tree or outside the output folder, or they have no mask in the
    mask folder) or are skipped. Returns the items and a failed record per folder that could not
    be listed.
    """
    listing_errors: list[OSError] = []
    selected = _select(_scan(root, options, listing_errors), root, options)
    listing_failures = [
        FileRecord(
            input=Path(os.path.relpath(error.filename or root, root)).as_posix() + "/",
            output=None,
            status="failed",
            reason=f"cannot list folder {error.filename}: {error.strerror or error}; its images were skipped",
        )
        for error in listing_errors
    ]
    real_input_root, real_output_root = root.resolve(), options.output_dir.resolve()
    # Outputs may only land inside the input tree when the output folder itself lies inside it
    # (that folder is never scanned); otherwise such an output could replace an input.
    outputs_may_land_in_input_tree = real_output_root.is_relative_to(real_input_root)
    real_mask_root = options.masks.resolve() if options.masks is not None else None
    real_folders: dict[Path, Path] = {}

    items: list[_Item] = []
    first_claim: dict[Path, str] = {}
    mask_listings: dict[Path, dict[str, list[str]]] = {}
    for path in selected:
        relative = path.relative_to(root).as_posix()
        output = options.output_dir / Path(relative).with_suffix(f".{options.ext}")
        output_relative = output.relative_to(options.output_dir).as_posix()
        if output.parent not in real_folders:
            real_folders[output.parent] = output.parent.resolve()
        # Only the folder is resolved: an atomic write replaces a link at the output's own name
        # rather than writing through it.
        real = real_folders[output.parent] / output.name
        refused = None
        if not real.is_relative_to(real_output_root):
            refused = _outside_message(output, real, options)
        elif not outputs_may_land_in_input_tree and real.is_relative_to(real_input_root):
            refused = (
                f"its output {output} lies inside the input folder {root} and could replace an input; "
                "pass an output folder outside it"
            )
        elif real_mask_root is not None and real.is_relative_to(real_mask_root):
            refused = (
                f"its output {output} lies inside the mask folder {options.masks} and could replace a mask; "
                "pass an output folder outside it"
            )
        elif real in first_claim:
            refused = (
                f"its output {output} is also the output of {first_claim[real]}; "
                "rename one of them or move it to another folder"
            )
        else:
            first_claim[real] = relative
        # Clashes are settled over all selected files before sharding, so that the same file wins
        # whichever shard looks.
        if not _in_shard(path, root, options):
            continue
        mask = None
        if options.masks is not None and refused is None:
            mask, refused = _find_mask(options.masks, relative, mask_listings)
        index = len(items)
        items.append(_Item(path, relative, output, output_relative, mask))
        if refused is not None:
            records[index] = FileRecord(relative, output_relative, "failed", reason=refused)
        elif options.skip_existing and output.is_file():
            records[index] = FileRecord(relative, output_relative, "skipped", reason="output exists")
    return items, listing_failures


def _find_mask(
    masks: Path, relative: str, listings: dict[Path, dict[str, list[str]]]
) -> tuple[Path | None, str | None]:
    """The mask of the input at `relative` (posix, under the input folder): (path, None), or
    (None, why there is none). `listings` caches each mask folder's image files by stem."""
    wanted = Path(relative)
    folder = masks / wanted.parent
    if folder not in listings:
        by_stem: dict[str, list[str]] = {}
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            names = []
        for name in names:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                by_stem.setdefault(Path(name).stem, []).append(name)
        listings[folder] = by_stem
    found = listings[folder].get(wanted.stem, [])
    if len(found) == 1:
        return folder / found[0], None
    if not found:
        return None, (
            f"no mask for it: {folder / wanted.stem}.* does not exist (any of {' '.join(IMAGE_SUFFIXES)}); "
            "add one, or exclude the image"
        )
    return None, f"several masks for it in {folder}: {', '.join(found)}; keep one"


def _load_item(item: _Item, max_pixels: int | None) -> tuple[LoadedImage, np.ndarray | None]:
    """Decode an input, and its mask when it has one (checked against the image's size)."""
    image = load_image(item.source, max_pixels=max_pixels)
    if item.mask is None:
        return image, None
    mask = read_mask(item.mask, max_pixels=max_pixels)
    check_mask(mask, *image.rgb.shape[:2], name=item.relative)
    return image, mask


def _remove_stale_temps(paths: list[Path]) -> None:
    """Delete temporary files a killed earlier run left for these destinations.

    Only temps of this run's own destinations go: another shard may be writing in the same folder.
    Each folder is listed once (save_image's own clean-up lists it per file), which keeps a rerun
    over a large folder with `skip_existing` fast.
    """
    by_folder: dict[Path, dict[str, str]] = {}
    for path in paths:
        by_folder.setdefault(path.parent, {})[temp_key(path.name)] = path.name
    for folder, destinations in by_folder.items():
        try:
            temps = [entry.name for entry in os.scandir(folder) if entry.name.endswith(TEMP_SUFFIX)]
        except OSError:
            continue
        for name in temps:
            # ".<key>.<random>.img2img.tmp", where the random part has no dot.
            destination = destinations.get(name[1 : -len(TEMP_SUFFIX)].rpartition(".")[0])
            if destination is not None and fnmatch.fnmatchcase(name, temp_file_pattern(destination)):
                try:
                    (folder / name).unlink()
                except OSError:
                    # Left for the write of that file to retry; a leftover never breaks a write.
                    pass


def _write_text_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda temp: temp.write_text(text, encoding="utf-8"))


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
    plan: list[_Item],
    todo: list[int],
    processor: Processor | MaskedProcessor,
    options: BatchOptions,
    records: dict[int, FileRecord],
    meter: _Progress,
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


class _Progress:
    """One stderr line rewritten in place: "  37/120 images  2.4 img/s  ETA 0:00:34  name.png"."""

    def __init__(self, *, total: int, already: int, stream: Any) -> None:
        self.total, self.done, self.written = total, already, 0
        self.stream = stream
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.width = 0

    def update(self, *, written: bool, name: str) -> None:
        self.done += 1
        self.written += written
        self.show(name)

    def show(self, name: str) -> None:
        if self.stream is None:
            return
        now = time.perf_counter()
        # A terminal redrawn thousands of times a second slows the batch down.
        if now - self.last_draw < 0.1 and self.done < self.total:
            return
        self.last_draw = now
        elapsed = now - self.start
        rate = self.written / elapsed if elapsed > 0 else 0.0
        if rate > 0:
            eta = int(round((self.total - self.done) / rate))
            eta_text = f"{eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}"
        else:
            eta_text = "-:--:--"
        digits = len(str(self.total))
        line = f"  {self.done:>{digits}}/{self.total} images  {rate:.1f} img/s  ETA {eta_text}  {name}"
        limit = shutil.get_terminal_size().columns - 1
        if len(line) > limit:
            line = line[: max(limit - 3, 0)] + "..."
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)

    def close(self) -> None:
        if self.stream is not None and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()


def _log_outcome(report: BatchReport, log: Callable[[str], None]) -> None:
    for record in report.failures:
        log(f"failed: {record.input}: {record.reason}")
    for record in report.files:
        for warning in record.warnings:
            log(f"warning: {record.input}: {warning}")
    log(report.summary())
