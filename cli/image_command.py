"""What the image commands (superres, translate, inpaint, style) share: their common options,
and one body that runs a model on one file or on a whole folder.

A command declares only its own options and takes one `run: RunOptions` parameter;
`@image_command` puts the shared options into the signature typer reads and hands them to the
command gathered in that one object. `run_image` is the body after the model is built: a folder
goes to the folder runner, a file through the same `Model.save` the Python API uses.
"""

import functools
import inspect
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import default_folder_output
from img2img.files import DEFAULT_MAX_PIXELS

# Options every image command lists itself (their help differs little, but their place in the
# signature and the defaults of some do).
ModelOption = Annotated[
    str | None, typer.Option(help="Shipped model name (see `img2img models`) or a path to an .onnx file.")
]
DeviceOption = Annotated[str, typer.Option(help="auto (TensorRT/CUDA if available), cpu or cuda.")]
PrecisionOption = Annotated[
    str,
    typer.Option(
        help="auto: the model's 8-bit variant on a CPU where it has one (about twice as fast), else "
        "fp32; fp32: the float32 model; fp16: its float16 variant (NaN tiles rerun in fp32); int8: "
        "its 8-bit variant, shipped or from `img2img quantize`."
    ),
]
TileOption = Annotated[
    str,
    typer.Option(help="Tile size in input pixels, 'auto' (from image size and free memory) or 0 (whole image)."),
]
TileOverlapOption = Annotated[int, typer.Option(help="Input pixels neighbouring tiles share.")]
ThreadsOption = Annotated[int | None, typer.Option(help="onnxruntime threads (default: all cores).")]


@dataclass(frozen=True)
class RunOptions:
    """The options every image command takes after its own: the decode limit, the output quality
    and how a folder is run (filters, resuming, sharding, report, progress line)."""

    max_pixels: Annotated[
        int,
        typer.Option(help="Refuse inputs with more pixels than this (decompression-bomb guard); 0: no limit."),
    ] = DEFAULT_MAX_PIXELS
    ext: Annotated[str, typer.Option(help="Folder mode: output format, png, jpg or webp.")] = "png"
    quality: Annotated[int, typer.Option(help="JPEG/WebP quality, 1-100.")] = 95
    skip_existing: Annotated[
        bool, typer.Option("--skip-existing", help="Folder mode: leave outputs that already exist.")
    ] = False
    include: Annotated[
        list[str] | None, typer.Option("--include", help="Folder mode: only files matching this glob (repeatable).")
    ] = None
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Folder mode: skip files matching this glob (repeatable).")
    ] = None
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Folder mode: list what would be written, write nothing.")
    ] = False
    shard: Annotated[
        str | None,
        typer.Option(help="Folder mode: K/N, process only shard K (0-based) of N, e.g. a job array's index."),
    ] = None
    report: Annotated[Path | None, typer.Option(help="Folder mode: JSON report path (default: in OUTDIR).")] = None
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="Progress line (default: when on a terminal).")
    ] = None

    @property
    def pixel_limit(self) -> int | None:
        """--max-pixels as the decoder takes it: None for no limit."""
        return self.max_pixels or None

    def batch_options(self, output_dir: Path, *, masks: Path | None = None) -> Any:
        """The folder runner's options for a run into `output_dir`."""
        from img2img.runtime.batch_options import BatchOptions, parse_shard

        return BatchOptions(
            output_dir=output_dir,
            ext=self.ext,
            quality=self.quality,
            skip_existing=self.skip_existing,
            include=tuple(self.include or ()),
            exclude=tuple(self.exclude or ()),
            dry_run=self.dry_run,
            shard=None if self.shard is None else parse_shard(self.shard),
            max_pixels=self.pixel_limit,
            report=self.report,
            masks=masks,
        )


def image_command(command: Callable[..., None]) -> Callable[..., None]:
    """Give `command` the RunOptions options: typer sees them in the signature, after the
    command's own; the command receives them as one `run: RunOptions` argument."""
    signature = inspect.signature(command)
    own = [parameter for name, parameter in signature.parameters.items() if name != "run"]
    shared = [
        inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=field.default, annotation=field.type)
        for field in fields(RunOptions)
    ]
    names = [field.name for field in fields(RunOptions)]

    @functools.wraps(command)
    def wrapper(**arguments: Any) -> None:
        run = RunOptions(**{name: arguments.pop(name) for name in names})
        command(run=run, **arguments)

    wrapper.__signature__ = signature.replace(parameters=[*own, *shared])
    wrapper.__annotations__ = {
        **{name: value for name, value in command.__annotations__.items() if name != "run"},
        **{field.name: field.type for field in fields(RunOptions)},
    }
    return wrapper


def run_image(
    source: Path,
    output: Path | None,
    net: Any,
    run: RunOptions,
    *,
    suffix: str,
    label: str | None = None,
    processor: Callable[..., Any] | None = None,
    masking: Callable[[Any], Any] | None = None,
    masks: Path | None = None,
) -> None:
    """Run the built model `net` on `source`, a file or a folder.

    A file is written to `output`, default `<stem><suffix>.png` beside it; a folder goes through
    the folder runner into `output`, default the folder `<source><suffix>` beside it, with
    `processor` (default `net.process`) for each image and `masks` as the folder of masks.
    `label` says on the file's line what was done (default the scale, "x4"); `masking(image)`
    gives an inpainting model the image's mask.

    Raises typer.Exit(1) when files of a folder failed (130 when interrupted).
    """
    if source.is_dir():
        options = run.batch_options(output or default_folder_output(source, suffix), masks=masks)
        exit_code = _run_folder(source, processor or net.process, options, run.progress)
        if exit_code:
            raise typer.Exit(code=exit_code)
    else:
        output = output or source.with_name(f"{source.stem}{suffix}.png")
        _run_file(source, output, net, quality=run.quality, max_pixels=run.pixel_limit, label=label, masking=masking)


def _run_file(
    source: Path,
    output: Path,
    net: Any,
    *,
    quality: int,
    max_pixels: int | None,
    label: str | None = None,
    masking: Callable[[Any], Any] | None = None,
) -> None:
    """One image: read, run, write atomically, print one line; for an inpainting model the line
    counts the pixels filled."""
    from img2img.runtime import check_output_path, load_image, output_format

    output_format(output)
    check_output_path(source, output)
    image = load_image(source, max_pixels=max_pixels)
    for warning in image.warnings:
        typer.echo(f"warning: {warning}", err=True)
    start = time.perf_counter()
    # A large image takes minutes: on a terminal, show how far it got.
    progress = _TileProgress(source.name) if sys.stderr.isatty() else None
    try:
        if masking is None:
            saved = net.save(image, output, quality=quality, on_tile=progress)
        else:
            mask = masking(image)
            saved = net.save(image, output, mask=mask, quality=quality, on_tile=progress)
            label = f"{int(mask.sum()):,} pixels filled"
    finally:
        if progress is not None:
            progress.close()
    for warning in saved.warnings:
        typer.echo(f"warning: {warning}", err=True)
    seconds = time.perf_counter() - start
    # The 8-bit or float16 variant's name, where one ran (--precision auto picks int8 on a CPU).
    variant = "" if net.info.precision == "fp32" else f", {net.info.precision}"
    typer.echo(f"wrote {output} ({saved.width}x{saved.height}, {label or f'x{net.info.scale}'}{variant}, {seconds:.2f} s)")


class _TileProgress:
    """`on_tile` callback drawing `name: tiles 12/48` on stderr, for images of several tiles."""

    def __init__(self, name: str) -> None:
        self.name, self.shown = name, False

    def __call__(self, done: int, total: int) -> None:
        if total > 1:
            sys.stderr.write(f"\r{self.name}: tiles {done}/{total}")
            sys.stderr.flush()
            self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _run_folder(source: Path, processor: Callable[..., Any], options: Any, progress: bool | None) -> int:
    """A whole folder through `processor` (run_batch prints failures and the summary); returns
    the exit code: 0, 1 if any file failed, 130 if interrupted."""
    from img2img.runtime import output_format
    from img2img.runtime.batch import run_batch

    # The memory check counts what this output format's encoder holds.
    processor = functools.partial(processor, output_format=output_format(f"out.{options.ext}"))
    return run_batch(source, processor, options, progress=progress).exit_code
