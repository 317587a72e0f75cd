"""Import pretrained upscalers from the community as img2img ONNX models (`img2img import`).

Two families are read, each from PyTorch checkpoints (.pth, .safetensors) and from ncnn
.param/.bin pairs:

- ESRGAN's RRDBNet, in BasicSR's key layout (conv_first, body.N.rdb1.conv1, ..., conv_body,
  conv_up1, conv_up2, conv_hr, conv_last: Real-ESRGAN x4plus and x2plus and the community models
  built on them) or in the original ESRGAN's (model.0, model.1.sub.N.RDB1.conv1.0, ...). Real-
  ESRGAN's x2 and x1 models fold the input with a pixel unshuffle before conv_first; the folding
  factor shows in conv_first's input channels.
- Real-ESRGAN's SRVGGNetCompact with PReLU (realesr-general-x4v3, realesr-animevideov3).

The architecture and every size (scale, width, depth, growth channels) are read from the
weights, and the net is rebuilt as the project's own `RRDBNet` or `SRVGGNet`, behind the mirrored
border Real-ESRGAN's runners give it (`MirroredBorder`).

A model file is untrusted input. Nothing in it runs as code: PyTorch files are opened with
`torch.load(weights_only=True)`, which refuses any pickle that needs more than tensors and plain
containers, and ncnn files are parsed here. Nothing is allocated for a size a file merely
declares: a .bin is read with every size checked against the bytes it holds, a zip checkpoint
that would inflate far beyond its size is refused before torch inflates it, and the net is
sized on the meta device and holds real memory only once every weight it needs was found with
its shape. An ncnn graph is accepted only when it computes exactly the architecture its
convolutions describe (`_Structure`), so every weight lands where ncnn uses it.

The ONNX file is written by `img2img.export.export_onnx` (the graph contract and parity check of
`img2img export`), with its float16 variant beside it; an ncnn source is also compared with the
`ncnn` package running the original files, when that package is installed.

Modules: `nets` (the rebuilt net, its border and the sizing helpers), `checkpoint` (PyTorch
files), `ncnn_files` (.param and .bin parsing), `ncnn_graph` (ncnn graphs checked and rebuilt,
and the ncnn parity check), `command` (`img2img import`).
"""

from img2img.importing.checkpoint import net_from_state_dict, read_checkpoint
from img2img.importing.command import import_command, import_info, read_source, sniff_format
from img2img.importing.ncnn_files import NCNN_FP16_TAG, NCNN_FP32_TAGS, NCNN_INT8_TAG, NcnnLayer, parse_ncnn_param
from img2img.importing.ncnn_graph import ncnn_parity_error, read_ncnn
from img2img.importing.nets import BORDER, ImportedNet, MirroredBorder, NcnnFiles, ResizedUpscaler

__all__ = [
    "BORDER",
    "NCNN_FP16_TAG",
    "NCNN_FP32_TAGS",
    "NCNN_INT8_TAG",
    "ImportedNet",
    "MirroredBorder",
    "NcnnFiles",
    "NcnnLayer",
    "ResizedUpscaler",
    "import_command",
    "import_info",
    "ncnn_parity_error",
    "net_from_state_dict",
    "parse_ncnn_param",
    "read_checkpoint",
    "read_ncnn",
    "read_source",
    "sniff_format",
]
