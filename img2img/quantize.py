"""8-bit variants of exported models for fast CPU inference (`img2img quantize`).

ONNX Runtime's static quantization in QDQ form: the convolutions' weights become int8 per
output channel, and their input activations uint8 with a range calibrated on real images, so the
CPU runs them in 8-bit integer arithmetic (VNNI where the processor has it). Only convolutions
are quantized: the rest of the graph (the pre- and post-processing, the upsampled input a
super-resolution net adds back) stays float32, and so do the graph's edges, so an
`name.int8.onnx` file takes and returns what `name.onnx` does.

Two choices keep the 8-bit outputs close to the float32 ones (measured on the shipped upscalers,
benchmarks/RESULTS.md): each activation's range is its 0.001st to 99.999th percentile over the
calibration images rather than its extremes, so a few outliers do not coarsen every step; and
the first convolution (which reads the image: the percentile range, 0 to 0.9995 on photos, puts
its 8-bit levels slightly off the quantization grid) and the last (which writes the output,
where each rounding error lands in the result) stay float32.

Calibration images are the user's own photos: a centre crop of each, for an upscaler
downscaled by its scale with Pillow's antialiased bicubic filter (as its inputs would be).
The result is checked against the float32 model on those images and refused, with nothing
written, when their outputs differ by more than `min_psnr` allows.

Needs the `onnx` package (the train extra): ONNX Runtime's quantization tools import it.
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from img2img.contract import IMAGE, ModelInfo, precision_variant, variant_precision
from img2img.errors import ModelError, OutputError
from img2img.files.atomic import write_atomically
from img2img.files.listing import image_files

# Calibration crops: HR side of an upscaler's crop (its input is this / scale), or the side of
# an image-to-image model's input, rounded up to its size multiple.
CALIBRATION_SIDE = 256
MIN_CALIBRATION_IMAGES = 4
DEFAULT_MIN_PSNR = 35.0


def calibration_inputs(folder: Path, info: ModelInfo, count: int) -> list[np.ndarray]:
    """(1, 3, h, w) float32 inputs in [0, 1] from the first `count` usable images of `folder`.

    Raises:
        ModelError: fewer than MIN_CALIBRATION_IMAGES images are large enough.
    """
    side = max(CALIBRATION_SIDE, info.min_size * info.scale)
    # The model's input side must be a multiple of its size multiple.
    input_side = math.ceil(side / info.scale / info.multiple_of) * info.multiple_of
    side = input_side * info.scale
    inputs = []
    for path in image_files(folder) if folder.is_dir() else []:
        if len(inputs) == count:
            break
        try:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError):
            continue  # not an image after all: the other files still calibrate
        width, height = image.size
        if min(width, height) < side:
            continue
        left, top = (width - side) // 2, (height - side) // 2
        crop = image.crop((left, top, left + side, top + side))
        if info.scale > 1:
            crop = crop.resize((input_side, input_side), Image.Resampling.BICUBIC)
        inputs.append((np.asarray(crop, dtype=np.float32) / 255).transpose(2, 0, 1)[None].copy())
    if len(inputs) < MIN_CALIBRATION_IMAGES:
        raise ModelError(
            f"{folder} has {len(inputs)} image(s) of at least {side}x{side} pixels; calibration needs "
            f"{MIN_CALIBRATION_IMAGES} or more: give a folder of photos like those the model will see"
        )
    return inputs


def output_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two outputs in [0, 1]; inf when identical."""
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def quantize_model(
    source: Path,
    calibration: Path,
    *,
    output: Path | None = None,
    count: int = 32,
    min_psnr: float = DEFAULT_MIN_PSNR,
) -> tuple[Path, float]:
    """Writes the int8 variant of the float32 model `source`; returns its path and the mean PSNR
    (dB) of its outputs against the float32 model's on the calibration images.

    Args:
        source: an img2img float32 model (`name.onnx`) taking one image (upscalers, translation
            and per-style nets).
        calibration: folder of photos (searched recursively).
        output: where to write; default `name.int8.onnx` beside `source`, the name the runtime
            looks for with `--precision int8`.
        count: how many calibration images to use (at most).
        min_psnr: refuse the result when its outputs are further than this from the float32 ones.

    Raises:
        ModelError: `source` is not a float32 img2img model of one image input, calibration
            has too few images, or the int8 outputs are too far from the float32 ones.
        OutputError: `output` is not named as an int8 variant.
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, calibration = Path(source), Path(calibration)
    output = Path(output) if output is not None else precision_variant(source, "int8")
    if variant_precision(output) != "int8":
        raise OutputError(f"{output} must end in .int8.onnx: the runtime finds the variant by that name")
    if not source.is_file():
        raise ModelError(f"model file {source} does not exist; pass an img2img .onnx model")
    if not calibration.is_dir():
        raise ModelError(f"--calibration {calibration} is not a folder; give a folder of photos")
    if count < MIN_CALIBRATION_IMAGES:
        raise ModelError(
            f"--count {count} is too few; calibration needs at least {MIN_CALIBRATION_IMAGES} images"
        )
    try:
        model = onnx.load(str(source))
    except Exception as error:  # onnx raises DecodeError, ValueError, ... for a foreign file
        raise ModelError(f"{source} is not an ONNX model ({error}); pass an img2img .onnx model") from None
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    info = ModelInfo.from_metadata(metadata, source=str(source))
    if info.precision != "fp32":
        float32 = precision_variant(source, "fp32").name
        raise ModelError(f"{source} is a {info.precision} model; quantize its float32 variant {float32}")
    if info.inputs != IMAGE:
        raise ModelError(
            f"{source} takes {', '.join(info.inputs)}; int8 variants are made for models of one image input "
            "(super-resolution, translation, per-style nets)"
        )
    inputs = calibration_inputs(calibration, info, count)
    input_name = model.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{input_name: array} for array in inputs])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory() as scratch:
        prepared, quantized = Path(scratch) / "prepared.onnx", Path(scratch) / "int8.onnx"
        # Symbolic shape inference cannot follow a dynamic height and width through Resize;
        # the graph's own shape inference is enough for quantization.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        # ONNX lists nodes in topological order: the first convolution reads the image, the
        # last writes the output.
        convolutions = [node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Conv"]
        kept_float = [convolutions[0], convolutions[-1]] if len(convolutions) > 2 else []
        # The percentile calibrator prints its progress; the command's output is its own.
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(prepared), str(quantized), Reader(), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv"], per_channel=True, nodes_to_exclude=kept_float,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.Percentile, extra_options={"CalibPercentile": 99.999},
            )
        result = onnx.load(str(quantized))
        del result.metadata_props[:]
        onnx.helper.set_model_props(result, metadata | {"precision": "int8"})
        onnx.save(result, str(quantized))

        options = ort.SessionOptions()
        options.log_severity_level = 3
        reference = ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        candidate = ort.InferenceSession(str(quantized), options, providers=["CPUExecutionProvider"])
        # Identical outputs (inf dB) count as 100 dB, so one cannot hide the others in the mean.
        agreement = float(
            np.mean([
                min(100.0, output_psnr(*(net.run(None, {input_name: array})[0] for net in (candidate, reference))))
                for array in inputs
            ])
        )
        if agreement < min_psnr:
            raise ModelError(
                f"the int8 variant's outputs are {agreement:.1f} dB PSNR from the float32 model's on the calibration "
                f"images, under the {min_psnr:g} dB asked for; nothing was written. This model loses too much in "
                "8 bits: run it in fp32 (or fp16 on a GPU)"
            )
        output.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(output, lambda temp: temp.write_bytes(quantized.read_bytes()))
    return output, agreement
