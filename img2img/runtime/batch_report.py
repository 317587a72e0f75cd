"""What a batch did: a record per file, the JSON report, the progress line and the log."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from img2img.runtime.batch_options import BatchOptions


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


class Progress:
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


def log_outcome(report: BatchReport, log: Callable[[str], None]) -> None:
    for record in report.failures:
        log(f"failed: {record.input}: {record.reason}")
    for record in report.files:
        for warning in record.warnings:
            log(f"warning: {record.input}: {warning}")
    log(report.summary())
