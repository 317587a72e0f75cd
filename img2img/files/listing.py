"""Which files are images, and the one way folders of them are listed.

Training, evaluation, metrics and the batch runner all list folders here, so they take the same
files in the same order.

Example:
    >>> image_files("photos")[:2]  # doctest: +SKIP
    [PosixPath('photos/a.jpg'), PosixPath('photos/trip/b.tif')]
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from img2img.errors import ImageReadError

# Suffixes (lower case) read as images; every other file is left alone.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def is_image_name(name: str) -> bool:
    """Whether a file named `name` is listed as an image: its suffix (any case) is one of
    IMAGE_SUFFIXES and it is not hidden (a leading "."), which also leaves out half-written
    temporary files."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def check_folder(root: str | os.PathLike[str]) -> Path:
    """`root` as a Path, once it is known to be a folder that can be listed.

    Raises:
        ImageReadError: `root` is missing, a file, or cannot be listed.
    """
    root = Path(root)
    if not root.exists():
        raise ImageReadError(f"{root}: no such folder; check the path")
    if not root.is_dir():
        raise ImageReadError(f"{root} is a file, not a folder; pass the folder that holds the images")
    try:
        with os.scandir(root):
            pass
    except OSError as error:
        raise ImageReadError(f"cannot list {root}: {error.strerror or error}; check its permissions") from None
    return root


def image_files(
    root: str | os.PathLike[str],
    *,
    recursive: bool = True,
    enter: Callable[[Path], bool] | None = None,
    errors: list[OSError] | None = None,
) -> list[Path]:
    """The image files (see `is_image_name`) under `root`, sorted by path components.

    Hidden folders are not entered and symlinked folders not followed (a link can loop, or lead
    out of the tree); symlinked files are listed.

    Args:
        root: the folder to list.
        recursive: descend into subfolders.
        enter: called with each subfolder's path; False leaves it (and all below it) out.
        errors: subfolders that cannot be listed are appended here and skipped; None raises.

    Raises:
        ImageReadError: `root` is missing, a file, or cannot be listed.
        OSError: a subfolder cannot be listed and `errors` is None.
    """
    root = check_folder(root)

    def failed(error: OSError) -> None:
        if errors is None:
            raise error
        errors.append(error)

    found: list[Path] = []
    for folder, dirnames, filenames in os.walk(root, onerror=failed):
        here = Path(folder)
        dirnames[:] = [
            name
            for name in dirnames
            if recursive and not name.startswith(".") and (enter is None or enter(here / name))
        ]
        found.extend(here / name for name in filenames if is_image_name(name))
    return sorted(found, key=lambda path: path.relative_to(root).parts)
