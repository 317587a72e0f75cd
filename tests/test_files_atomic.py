"""Image writes are atomic (img2img.files.atomic): temporary files, failures, leftovers and
permissions."""

import fnmatch
import os
import re
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
from image_cases import noise16
from PIL import Image

from img2img.errors import OutputError
from img2img.files import png_stream
from img2img.files.atomic import TEMP_SUFFIX, remove_stale_temp_files, stale_temp_files, temp_file_pattern
from img2img.files.encode import save_image


def test_failed_save_leaves_no_file_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"previous result")

    def write_half_then_fail(
        self: Image.Image, fp: os.PathLike[str], *args: object, **kwargs: object
    ) -> None:
        Path(fp).write_bytes(b"\x89PNG partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", write_half_then_fail)
    with pytest.raises(OutputError, match="No space left"):
        save_image(np.zeros((2, 2, 3), np.float32), target)
    assert target.read_bytes() == b"previous result"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.png"]


def test_interrupted_save_removes_the_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(self: Image.Image, fp: os.PathLike[str], *args: object, **kwargs: object) -> None:
        Path(fp).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_image(np.zeros((2, 2, 3), np.float32), tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def current_umask() -> int:
    # The only portable way to read the umask is to set it and put it back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_saved_file_gets_normal_permissions(tmp_path: Path, bit_depth: int) -> None:
    save_image(np.zeros((2, 2, 3), np.float32), tmp_path / "out.png", bit_depth=bit_depth)
    mode = (tmp_path / "out.png").stat().st_mode & 0o777
    assert mode == 0o666 & ~current_umask()


# Atomic writes.

TEMP_NAME = re.compile(r"\.out\.png\.[0-9a-f]{16}\.img2img\.tmp")


def test_image_is_written_to_a_named_temporary_file_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    original_save = Image.Image.save

    def recording_save(self: Image.Image, fp: os.PathLike[str], *args: object, **kwargs: object) -> None:
        seen.append(Path(fp))
        original_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", recording_save)
    save_image(np.zeros((2, 2, 3), np.float32), tmp_path / "out.png")
    assert len(seen) == 1 and seen[0].parent == tmp_path and TEMP_NAME.fullmatch(seen[0].name)
    assert fnmatch.fnmatchcase(seen[0].name, temp_file_pattern(tmp_path / "out.png"))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.png"]


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_sixteen_bit_save_leaves_nothing_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"previous result")
    original = png_stream._write_chunk
    chunks = []

    def fail_at_image_data(file: BinaryIO, kind: bytes, body: bytes) -> None:
        chunks.append(kind)
        original(file, kind, body)
        if kind == b"IDAT":
            raise failure

    monkeypatch.setattr(png_stream, "_write_chunk", fail_at_image_data)
    with pytest.raises(OutputError if isinstance(failure, OSError) else KeyboardInterrupt):
        save_image(noise16(4, 4, 3), target, bit_depth=16)
    assert b"IDAT" in chunks
    assert target.read_bytes() == b"previous result"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.png"]


def test_leftover_temporary_files_of_the_same_name_are_removed(tmp_path: Path) -> None:
    token = "0123456789abcdef"
    stale = [tmp_path / f".out.png.{token}.img2img.tmp", tmp_path / f".out.png.{token[::-1]}.img2img.tmp"]
    kept = [
        tmp_path / f".out.png.x.png.{token}.img2img.tmp",  # a write to "out.png.x.png"
        tmp_path / f".other.png.{token}.img2img.tmp",
        tmp_path / ".out.png.notes",
    ]
    for path in stale + kept:
        path.write_bytes(b"partial")
    assert stale_temp_files(tmp_path / "out.png") == sorted(stale)
    save_image(np.zeros((2, 2, 3), np.float32), tmp_path / "out.png")
    assert sorted(tmp_path.iterdir()) == sorted([*kept, tmp_path / "out.png"])
    assert stale_temp_files(tmp_path / "out.png") == []


def test_temporary_file_pattern_escapes_glob_characters(tmp_path: Path) -> None:
    token = "0123456789abcdef"
    mine = tmp_path / f".shot [1].png.{token}{TEMP_SUFFIX}"
    theirs = tmp_path / f".shot 1.png.{token}{TEMP_SUFFIX}"
    mine.write_bytes(b"partial")
    theirs.write_bytes(b"partial")
    assert remove_stale_temp_files(tmp_path / "shot [1].png") == [mine]
    assert not mine.exists() and theirs.exists()
