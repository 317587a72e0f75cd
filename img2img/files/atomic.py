"""Atomic file writes: readers see the old file or the complete new one, never half of it.

Every writer in img2img (images, reports, sheets, feature caches, checkpoints, exported models)
goes through `write_atomically`: the data is written to a temporary file beside the destination
and renamed over it when complete.

Example:
    >>> write_bytes_atomically(Path("runs/report.html"), page.encode())  # doctest: +SKIP
    >>> write_atomically(Path("model.onnx"), lambda temp: onnx.save(model, str(temp)))  # doctest: +SKIP
"""

from __future__ import annotations

import glob
import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from img2img.errors import OutputError

# A file being written is named `.<name>.<16 hex digits>.img2img.tmp` beside its destination; a
# run killed mid-write leaves one behind, and the next write of the same name removes it.
TEMP_SUFFIX = ".img2img.tmp"
_TEMP_TOKEN_BYTES = 8
# The longest file name most file systems take (ext4, XFS, APFS, NTFS: 255 bytes or UTF-16 units).
NAME_MAX_BYTES = 255
# What a temporary name adds to its destination's: two dots, the random token and TEMP_SUFFIX.
_TEMP_OVERHEAD_BYTES = 2 + 2 * _TEMP_TOKEN_BYTES + len(TEMP_SUFFIX)


def write_atomically(path: Path, write: Callable[[Path], None], *, remove_stale: bool = False) -> None:
    """Run `write(temp)` on a fresh temporary file beside `path`, then rename it to `path`.

    Readers see the old file or the complete new one, never half of it; on any failure the
    temporary file is removed. With `remove_stale`, temporary files a killed earlier write to
    `path` left behind are removed first.

    Raises:
        OutputError: the folder is not writable, or the write or rename fails.
    """
    folder = path.parent
    if remove_stale:
        remove_stale_temp_files(path)
    # The temporary file sits in the destination folder so os.replace is a same-filesystem
    # rename, which is atomic: readers never see a half-written image.
    temp = folder / f".{temp_key(path.name)}.{secrets.token_hex(_TEMP_TOKEN_BYTES)}{TEMP_SUFFIX}"
    try:
        # O_EXCL: the name is ours alone. Mode 0o666 less the umask, like any new file.
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as error:
        raise OutputError(
            f"cannot write into {folder}: {error.strerror or error}; pick another output folder"
        ) from None
    try:
        write(temp)
        os.replace(temp, path)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def temp_key(name: str) -> str:
    """The part of a temporary file's name that stands for its destination `name`.

    The name itself where `.<name>.<16 hex digits>.img2img.tmp` fits in NAME_MAX_BYTES; a longer
    name (any name up to the limit is legal for the destination) is cut and given 12 hex digits
    of its SHA-1, so the temporary file fits wherever the destination does and still belongs to
    exactly one destination.
    """
    encoded = os.fsencode(name)
    if len(encoded) + _TEMP_OVERHEAD_BYTES <= NAME_MAX_BYTES:
        return name
    digest = hashlib.sha1(encoded).hexdigest()[:12]
    keep = NAME_MAX_BYTES - _TEMP_OVERHEAD_BYTES - len(digest) - 1
    # surrogateescape decodes any byte cut: a split UTF-8 sequence becomes escaped bytes.
    return os.fsdecode(encoded[:keep]) + "~" + digest


def temp_file_pattern(path: str | os.PathLike[str]) -> str:
    """The glob pattern (relative to its folder) matching temporary files of writes to `path`.

    It matches `.<key>.<16 hex digits>.img2img.tmp` (see `temp_key`) for exactly this name,
    never the temporary files of another destination in the same folder.
    """
    return f".{glob.escape(temp_key(Path(path).name))}.{'[0-9a-f]' * 2 * _TEMP_TOKEN_BYTES}{TEMP_SUFFIX}"


def stale_temp_files(path: str | os.PathLike[str]) -> list[Path]:
    """Temporary files that writes to `path` left behind (a killed run), sorted."""
    path = Path(path)
    return sorted(path.parent.glob(temp_file_pattern(path)))


def remove_stale_temp_files(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files earlier writes to `path` left behind; returns those deleted.

    Only call it when no other process writes `path` at the same time: its temporary file
    would be taken for a leftover.
    """
    removed = []
    for temp in stale_temp_files(path):
        try:
            temp.unlink()
        except OSError:
            # Gone already, or not ours to remove: neither stops a write, whose rename replaces
            # only the destination.
            continue
        removed.append(temp)
    return removed



def write_bytes_atomically(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (see `write_atomically`), creating its folder first.

    Returns:
        `path`.

    Raises:
        OutputError: the folder cannot be created or written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create {path.parent}: {error.strerror or error}; pick another output folder") from None
    write_atomically(path, lambda temp: temp.write_bytes(data))
    return path
