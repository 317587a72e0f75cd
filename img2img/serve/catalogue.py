"""The models a server offers: the shipped ones and the .onnx files of --models-dir, by name.

A client names a model; the server looks the name up here. A path never comes from the client,
so a request cannot make the server open a file of its choosing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from img2img.contract import ModelInfo, variant_precision
from img2img.errors import ModelError
from img2img.runtime.onnx_model import open_session
from img2img.runtime.shipped import load_manifest

TASKS = ("superres", "translate", "inpaint", "style", "faces")


@dataclass(frozen=True)
class OfferedModel:
    """One model the server runs.

    Attributes:
        name: what clients call it (a shipped name, or a --models-dir file's stem).
        task: superres, translate, inpaint, style or faces.
        path: the .onnx file.
        scale: output size / input size.
        use_for: one line on when to pick it ("" when not known).
        source: "shipped" or "models-dir".
        style: the painting a per-style model renders ("" for others).
        takes_style_images: an arbitrary-style (AdaIN) model: it renders the style images it is
            given, with a strength (alpha).
        classes: a class-conditional face model's labels.
    """

    name: str
    task: str
    path: Path
    scale: int
    use_for: str = ""
    source: str = "shipped"
    style: str = ""
    takes_style_images: bool = False
    classes: tuple[str, ...] = ()

    def describe(self) -> dict[str, object]:
        """The JSON the page lists it with."""
        return {
            "name": self.name,
            "task": self.task,
            "scale": self.scale,
            "use_for": self.use_for or None,
            "source": self.source,
            "style": self.style or None,
            "takes_style_images": self.takes_style_images,
            "classes": list(self.classes),
        }


def read_info(path: Path) -> ModelInfo:
    """The model contract in `path`'s metadata (a CPU session reads it; nothing runs)."""
    session = open_session(path, device="cpu", threads=1, precision="fp32")
    return ModelInfo.from_metadata(session.get_modelmeta().custom_metadata_map, source=str(path))


def task_of(info: ModelInfo) -> str:
    """The server's task for a model: faces for noise-to-image models, else its recorded task."""
    return "faces" if info.latent_dim else info.task


def build_catalogue(models_dir: Path | None = None) -> dict[str, OfferedModel]:
    """Every shipped model and every .onnx file of `models_dir` (float16 variants aside), by name.

    Raises:
        ModelError: a file of `models_dir` is not a model of a task the server runs, or its name
            is taken by a shipped model (rename the file).
    """
    offered: dict[str, OfferedModel] = {}
    for shipped in load_manifest():
        info = read_info(shipped.path)
        offered[shipped.name] = OfferedModel(
            name=shipped.name, task=task_of(info), path=shipped.path, scale=shipped.scale,
            use_for=shipped.use_for, style=info.style, takes_style_images="style" in info.inputs,
            classes=tuple(info.labels),
        )
    if models_dir is not None:
        if not models_dir.is_dir():
            raise ModelError(f"--models-dir {models_dir} is not a folder")
        for path in sorted(models_dir.glob("*.onnx")):
            if variant_precision(path) != "fp32":  # another precision's file of a model listed here
                continue
            name = path.stem
            if name in offered:
                raise ModelError(f"{path} is named like the shipped model {name!r}; rename the file")
            info = read_info(path)
            task = task_of(info)
            if task not in TASKS:
                raise ModelError(f"{path} is a {info.task or 'unknown'} model; the server runs {', '.join(TASKS)}")
            offered[name] = OfferedModel(
                name=name, task=task, path=path, scale=info.scale, source="models-dir",
                style=info.style, takes_style_images="style" in info.inputs, classes=tuple(info.labels),
            )
    return offered
