"""Errors a user can act on. The CLI prints their message on one line and exits with code 2.

No torch here: the inference path imports this module.
"""


class Img2ImgError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class ImageReadError(Img2ImgError):
    """An input image is missing, empty, truncated or not an image."""


class ModelError(Img2ImgError):
    """A model name or file cannot be resolved, loaded or run."""


class InferenceMemoryError(ModelError):
    """The execution provider ran out of memory on an input; a smaller tile may fit."""


class ConfigError(Img2ImgError):
    """A configuration file or `--set key=value` override is invalid."""


class OutputError(Img2ImgError):
    """An output path is unusable (for example it would overwrite the input)."""


class TrainingError(Img2ImgError):
    """Training cannot start or continue (no data, non-finite loss, bad resume folder)."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (or its type's name): what a one-line message quotes
    of a library's multi-line errors."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
