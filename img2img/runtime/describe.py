"""What a model file says about itself, for `img2img info`."""

from __future__ import annotations

from pathlib import Path

from img2img.contract import ModelInfo, variant_precision
from img2img.runtime.faces import FaceGenerator
from img2img.runtime.onnx_model import OnnxModel, open_session


def describe(path: Path) -> dict[str, object]:
    """Everything a model file says about itself, for `img2img info`."""
    session = open_session(path, device="cpu", threads=None, precision="fp32")
    metadata = session.get_modelmeta().custom_metadata_map
    takes_latent = ModelInfo.from_metadata(metadata, source=str(path)).latent_dim
    # The file itself, whichever precision its name declares (not its float32 twin).
    onnx_model = (
        FaceGenerator(path, device="cpu")
        if takes_latent
        else OnnxModel(path, device="cpu", precision=variant_precision(path))
    )
    info = onnx_model.info
    noise_rows = {"latent_dim": info.latent_dim, "labels": ",".join(info.labels) or "none (unconditional)"}
    return {
        "file": str(path),
        "task": info.task,
        "name": info.name,
        "scale": info.scale,
        "inputs": ",".join(info.inputs),
        "channels": info.channels,
        "multiple_of": info.multiple_of,
        "min_size": info.min_size,
        "range": f"{info.range[0]:g},{info.range[1]:g}",
        "precision": info.precision,
        "license": info.license,
        # Where an imported model comes from (`img2img import --source`).
        "source": metadata.get("source", ""),
        "data": info.data,
        "version": info.version,
        "domains": info.domains,
        "background": "none" if info.background is None else ",".join(map(str, info.background)),
        "whole_image": "yes" if info.whole_image else "no",
        "opaque_output": "yes" if info.opaque_output else "no",
        "resolution": info.resolution or "any",
        "style": info.style or ("any (style images)" if "style" in info.inputs else "none"),
        "style_size": info.style_size or "none",
        **(noise_rows if takes_latent else {}),
        "graph inputs": ", ".join(
            f"{node.name} {node.type} {node.shape}" for node in onnx_model.session.get_inputs()
        ),
        "graph output": ", ".join(
            f"{node.name} {node.type} {node.shape}" for node in onnx_model.session.get_outputs()
        ),
    }
