"""The models shipped with img2img: where they live and how a name becomes a file.

weights/manifest.json lists them:
    {"models": [{"name": "superres-x4", "task": "superres", "scale": 4, "file": "superres-x4.onnx",
                 "sha256": "...", "checkpoint": "...", "card": "superres-x4.md",
                 "use_for": "clean or downscaled photos", "metrics": {...}}]}

The folder is, in order: $IMG2IMG_WEIGHTS if set; the installed copy (site-packages/img2img/weights,
mapped from the repository's weights/ by pyproject.toml) if it holds a manifest.json; otherwise
<repository>/weights, for a source checkout that is not installed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from img2img.contract import precision_variant
from img2img.errors import ModelError

WEIGHTS_ENV = "IMG2IMG_WEIGHTS"
MANIFEST = "manifest.json"

# The model used when the user names none and gives no scale.
DEFAULT_MODELS = {"superres": "superres-x4", "faces": "faces-emoji"}


@dataclass(frozen=True)
class ShippedModel:
    """One manifest entry. `path` is the .onnx file inside the weights folder."""

    name: str
    task: str
    scale: int
    path: Path
    sha256: str = ""
    fp16_sha256: str = ""
    int8_sha256: str = ""
    checkpoint: str = ""
    card: str = ""
    use_for: str = ""  # one line: what to pick this model for (`img2img models` shows it)
    metrics: dict[str, Any] = field(default_factory=dict)


def weights_dir() -> Path:
    """The folder holding manifest.json and the shipped .onnx files (see the module docstring)."""
    override = os.environ.get(WEIGHTS_ENV)
    if override:
        return Path(override)
    try:
        installed = resources.files("img2img.weights").joinpath(MANIFEST)
    except ModuleNotFoundError:  # a source checkout that is not installed
        installed = None
    if installed is not None and installed.is_file():
        return Path(str(installed)).parent
    return Path(__file__).resolve().parents[2] / "weights"


def load_manifest(folder: Path | None = None) -> list[ShippedModel]:
    """The shipped models, in manifest order, read from `folder` (default: `weights_dir()`).

    Raises:
        ModelError: the manifest is missing or malformed.
    """
    folder = weights_dir() if folder is None else folder
    manifest = folder / MANIFEST
    if not manifest.is_file():
        hint = f"check ${WEIGHTS_ENV}" if os.environ.get(WEIGHTS_ENV) else "reinstall img2img"
        raise ModelError(f"no shipped models: {manifest} does not exist; {hint}, or pass --model PATH.onnx")
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))["models"]
        return [
            ShippedModel(
                name=entry["name"],
                task=entry["task"],
                scale=int(entry["scale"]),
                path=folder / entry["file"],
                sha256=entry.get("sha256", ""),
                fp16_sha256=entry.get("fp16_sha256", ""),
                int8_sha256=entry.get("int8_sha256", ""),
                checkpoint=entry.get("checkpoint", ""),
                card=entry.get("card", ""),
                use_for=str(entry.get("use_for", "")),
                metrics=entry.get("metrics", {}),
            )
            for entry in entries
        ]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ModelError(
            f"{manifest} is malformed ({type(error).__name__}: {error}); reinstall img2img"
        ) from None


def resolve_model(
    model: str | None,
    *,
    task: str | None,
    scale: int | None,
    verify: bool = True,
    precision: str = "fp32",
) -> Path:
    """Turn what the user passed as --model into an .onnx file.

    Args:
        model: None for the shipped default, a shipped model name, or a path to an .onnx file.
        task: the task asking, e.g. "superres"; a shipped model of another task is refused.
            None accepts a model of any task (then `model` must be given).
        scale: picks the shipped default when `model` is None (None: `DEFAULT_MODELS[task]`).
            A named model or path is returned as is; its scale is in its ONNX metadata.
        verify: check a shipped file's sha256 against the manifest.
        precision: "fp16" or "int8" returns a shipped model's float16 or 8-bit variant
            (`name.fp16.onnx`, `name.int8.onnx`), checked against its own sha256; a path is
            returned as is (OnnxModel finds its variant).

    Raises:
        ModelError: unknown name, missing file, no shipped model for task/scale, or a checksum mismatch.
    """
    if model is not None and (model.endswith(".onnx") or os.sep in model or "/" in model):
        path = Path(model)
        if not path.is_file():
            raise ModelError(
                f"model file {path} does not exist; pass an existing .onnx file or a shipped model name"
            )
        return path

    shipped = load_manifest()
    if model is None and task is None:
        raise ModelError("name a model: a shipped model name (see `img2img models`) or a path to an .onnx file")
    if model is None:
        entry = _default_for(shipped, task=task, scale=scale)
    else:
        by_name = {entry.name: entry for entry in shipped}
        if model not in by_name:
            names = ", ".join(sorted(by_name)) or "(none)"
            raise ModelError(
                f"unknown model {model!r}; shipped models: {names}; or pass a path to an .onnx file"
            )
        entry = by_name[model]
        if task is not None and entry.task != task:
            raise ModelError(f"model {model!r} is a {entry.task} model, not {task}; see `img2img models`")
    path, digest = entry.path, entry.sha256
    if precision != "fp32":
        path = precision_variant(entry.path, precision)
        digest = entry.fp16_sha256 if precision == "fp16" else entry.int8_sha256
        if not path.is_file() and entry.path.is_file():
            raise ModelError(f"shipped model {entry.name!r} has no {precision} variant; use --precision fp32")
    if not path.is_file():
        raise ModelError(f"shipped model file {path} is missing; reinstall img2img or set ${WEIGHTS_ENV}")
    if verify and digest:
        verify_sha256(path, digest)
    return path


def _default_for(shipped: list[ShippedModel], *, task: str, scale: int | None) -> ShippedModel:
    matches = [entry for entry in shipped if entry.task == task]
    if scale is None and task in DEFAULT_MODELS:
        matches = [entry for entry in matches if entry.name == DEFAULT_MODELS[task]] or matches
    elif scale is not None:
        matches = [entry for entry in matches if entry.scale == scale]
    if not matches:
        available = ", ".join(f"{entry.name} (x{entry.scale})" for entry in shipped if entry.task == task)
        wanted = f"{task} model for x{scale}" if scale is not None else f"{task} model"
        raise ModelError(
            f"no shipped {wanted}; available: {available or '(none)'}; or pass --model PATH.onnx"
        )
    return matches[0]


def verify_sha256(path: Path, expected: str) -> None:
    """Check a file's SHA-256 (hex) digest.

    Raises:
        ModelError: the digest differs, so the file is damaged or was replaced.
    """
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected.lower():
        raise ModelError(
            f"{path} does not match the checksum in {MANIFEST}; the file is damaged or was replaced, "
            "reinstall img2img"
        )
