"""`img2img import FILE -o model.onnx`: read a community upscaler, write it as img2img ONNX models."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from img2img.contract import ModelInfo, precision_variant
from img2img.errors import ModelError, OutputError
from img2img.export import describe_net, export_onnx
from img2img.importing.checkpoint import net_from_state_dict, read_checkpoint
from img2img.importing.ncnn_files import NCNN_BINARY_PARAM_MAGIC, NCNN_MAGIC
from img2img.importing.ncnn_graph import NCNN_PARITY_TOLERANCE, ncnn_parity_error, read_ncnn
from img2img.importing.nets import SUPPORTED, ImportedNet, MirroredBorder, file_records


def sniff_format(path: Path) -> str:
    """"pytorch", "safetensors" or "ncnn" (a text .param), from the file's first bytes.

    Raises:
        ModelError: the file is missing, a folder, or none of these.
    """
    if path.is_dir():
        raise ModelError(f"{path} is a folder; pass the checkpoint file (.pth, .safetensors) or the ncnn .param")
    try:
        with path.open("rb") as file:
            head = file.read(16)
    except FileNotFoundError:
        raise ModelError(f"{path} does not exist; pass a .pth, .safetensors or ncnn .param file") from None
    except OSError as error:
        raise ModelError(f"cannot read {path} ({error.strerror})") from None
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):  # a zip (torch.save) or a pickle
        return "pytorch"
    if head.startswith(NCNN_MAGIC.encode()):
        return "ncnn"
    if len(head) >= 9 and head[8:9] == b"{":  # 8 bytes of header length, then the JSON header
        return "safetensors"
    if head.startswith(NCNN_BINARY_PARAM_MAGIC):
        raise ModelError(f"{path} is a binary ncnn .param; img2img reads the text .param (ncnn2mem's input)")
    hint = "; pass the .param beside it" if path.suffix == ".bin" else ""
    raise ModelError(
        f"{path} is not a PyTorch checkpoint, a .safetensors file or an ncnn text .param{hint}; {SUPPORTED}"
    )


def read_source(path: Path, bin_path: Path | None = None) -> ImportedNet:
    """Whatever `path` holds, rebuilt as a project net behind a `MirroredBorder` (an ncnn .param
    takes its weights from `bin_path`, default the .bin beside it).

    Raises:
        ModelError: the file cannot be read or is not a supported upscaler.
    """
    kind = sniff_format(path)
    if kind == "ncnn":
        weights = bin_path or path.with_suffix(".bin")
        if not weights.is_file():
            raise ModelError(f"no ncnn weights at {weights}; pass the .bin with --bin")
        imported = read_ncnn(path, weights)
    elif bin_path is not None:
        raise ModelError(f"--bin gives an ncnn .param its weights; {path} is a {kind} file, drop --bin")
    else:
        net, layout, description = net_from_state_dict(read_checkpoint(path, kind), str(path))
        provenance = {"format": kind, "layout": layout, "files": file_records(path)}
        imported = ImportedNet(net=net, scale=net.scale, description=description, provenance=provenance)
    bordered = MirroredBorder(imported.net, scale=imported.scale).eval()
    return replace(imported, net=bordered)


def import_info(imported: ImportedNet, *, name: str, license: str, origin: str) -> ModelInfo:
    """The descriptor of an imported superres model: that of `img2img export` (`describe_net`),
    with its "source" (`origin`, where the model comes from) and the import's provenance in place
    of a training config."""
    net = imported.net
    config = {
        "task": "superres",
        "imported": imported.provenance,
        "net": type(net).__name__,
        "net_args": net.hparams,
    }
    return describe_net(
        net,
        config=config,
        task="superres",
        name=name,
        data="unrecorded (imported)",
        license=license or "unstated (give it with `img2img import --license`)",
        source=origin,
    )


def import_command(
    *,
    source: Path,
    output: Path,
    bin_path: Path | None = None,
    name: str | None = None,
    license: str = "",
    origin: str = "",
    opset: int = 18,
    fp16: bool = True,
) -> dict[str, float]:
    """`img2img import FILE -o model.onnx`: converts the community upscaler in `source`, writes
    `output` (and with `fp16` its float16 variant beside it) and prints one line; returns the
    parity max abs error per check ("fp32", "fp16", and "ncnn" when the ncnn package ran the
    original). `origin` (--source) says where the model comes from.

    Either every file is written or none: the models are exported into a scratch folder beside
    `output` and moved into place once every check passed.

    Raises:
        ModelError: the source cannot be imported, or a parity check failed.
        OutputError: `output` does not end in .onnx or would overwrite a source file.
    """
    started = time.perf_counter()
    source, output = Path(source), Path(output)
    if output.suffix != ".onnx":
        raise OutputError(f"{output} must end in .onnx")
    targets = [output, precision_variant(output, "fp16")] if fp16 else [output]
    # A default .bin beside the .param cannot be hit: the targets end in .onnx.
    inputs = [source, *([bin_path] if bin_path else [])]
    for target in targets:
        if any(target.resolve() == path.resolve() for path in inputs):
            raise OutputError(f"-o {output} would overwrite the input {target}; choose another output path")
    imported = read_source(source, bin_path)
    info = import_info(imported, name=name or output.stem, license=license, origin=origin)
    net = imported.net
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.stem}.") as scratch:
        written = [Path(scratch) / target.name for target in targets]
        errors = {"fp32": export_onnx(net, written[0], info=info, opset=opset)}
        if imported.ncnn is not None:
            side = -(-(net.min_size + 2) // net.multiple_of) * net.multiple_of
            size = (side + net.multiple_of, side)
            ncnn_error = ncnn_parity_error(imported.ncnn, written[0], size, imported.scale)
            if ncnn_error is not None and not ncnn_error < NCNN_PARITY_TOLERANCE:
                raise ModelError(
                    f"the ONNX model differs from ncnn running {imported.ncnn.param.name} by {ncnn_error:.2e} "
                    f"(limit {NCNN_PARITY_TOLERANCE}); nothing was written"
                )
            if ncnn_error is not None:
                errors["ncnn"] = ncnn_error
        if fp16:
            try:
                errors["fp16"] = export_onnx(net, written[1], info=info, opset=opset, precision="fp16")
            except ModelError as error:
                raise ModelError(f"{error}; pass --no-fp16 to write the float32 model alone") from None
        for scratch_file, target in zip(written, targets, strict=True):
            shutil.move(scratch_file, target)
    parity = ", ".join(f"{check} {error:.2e}" for check, error in errors.items())
    print(
        f"imported {source} ({imported.description}) -> {' and '.join(map(str, targets))} "
        f"(parity max abs error {parity}, {time.perf_counter() - started:.1f} s)"
    )
    return errors
