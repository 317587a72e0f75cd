"""The inference runtime: ONNX models, the shipped weights, and whole folders.

Imports numpy, Pillow and (when a model is opened) onnxruntime; never torch. Image files are
read and written by `img2img.files` (EXIF, ICC, alpha, 16 bits), which training shares.

- `api`: `Model` / `load`, any task's model callable on PIL images and numpy arrays;
- `tiling`: seam-free tiled inference within a memory budget;
- `batch`: whole folders, mirrored, never losing work (`batch_options`, `batch_plan`,
  `batch_report` hold its options, its plan and its report);
- `onnx_model`: one onnxruntime session per model, driven by its metadata.

Example:
    >>> from img2img.runtime import BatchOptions, Model, load_image, run_batch, write_output
    >>> model = Model("superres-x4", tile="auto")
    >>> image = load_image("photo.png")
    >>> write_output(image, model.process(image), "photo_x4.png")
    >>> run_batch("photos", model.process, BatchOptions(output_dir=Path("photos_x4")))
"""

from img2img.contract import ModelInfo
from img2img.files.atomic import TEMP_SUFFIX, remove_stale_temp_files, stale_temp_files, temp_file_pattern
from img2img.files.decode import DEFAULT_MAX_PIXELS, LoadedImage, load_image
from img2img.files.encode import check_output_path, output_format, save_image
from img2img.files.pixels import resize_alpha
from img2img.runtime.api import Model, load
from img2img.runtime.batch import ProcessedImage, Processor, run_batch, write_output
from img2img.runtime.batch_options import BatchOptions, parse_shard, shard_of
from img2img.runtime.batch_plan import find_inputs, output_path_for
from img2img.runtime.batch_report import BatchReport, FileRecord
from img2img.runtime.onnx_model import DEVICES, OnnxModel, select_providers
from img2img.runtime.shipped import (
    ShippedModel,
    load_manifest,
    resolve_model,
    verify_sha256,
    weights_dir,
)

__all__ = [
    "BatchOptions",
    "BatchReport",
    "DEFAULT_MAX_PIXELS",
    "DEVICES",
    "FileRecord",
    "LoadedImage",
    "Model",
    "ModelInfo",
    "OnnxModel",
    "ProcessedImage",
    "Processor",
    "ShippedModel",
    "TEMP_SUFFIX",
    "check_output_path",
    "find_inputs",
    "load",
    "load_image",
    "load_manifest",
    "output_format",
    "output_path_for",
    "parse_shard",
    "remove_stale_temp_files",
    "resize_alpha",
    "resolve_model",
    "run_batch",
    "save_image",
    "select_providers",
    "shard_of",
    "stale_temp_files",
    "temp_file_pattern",
    "verify_sha256",
    "weights_dir",
    "write_output",
]
