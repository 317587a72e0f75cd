"""How a batch over a folder runs: its options, and the split of a folder between machines.

Example:
    >>> options = BatchOptions(output_dir=Path("upscaled"), ext="webp", skip_existing=True, shard=parse_shard("0/4"))
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from img2img.errors import ConfigError, OutputError
from img2img.files.decode import DEFAULT_MAX_PIXELS

OUTPUT_EXTS = ("png", "jpg", "webp")
REPORT_NAME = "img2img-report.json"


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


def shard_of(relative_posix_path: str, n: int) -> int:
    """The shard (0 to n-1) a file belongs to, from its path relative to the input folder.

    A SHA-1 of the path, so the split is the same on every machine and Python run (the built-in
    hash() is salted per process). The path is NFC-normalised first: macOS spells accented names
    decomposed, and a shared folder must split alike from either side.
    """
    # surrogateescape: a name that is not UTF-8 hashes as its own bytes.
    key = unicodedata.normalize("NFC", relative_posix_path).encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.sha1(key).digest()[:8], "big") % n
