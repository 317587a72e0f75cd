"""The `img2img` command: parse the arguments, call the library, print one line.

Every error a user can act on (`img2img.errors.Img2ImgError`) is printed as one line
`error: <message>` on stderr with exit code 2 and no traceback. Heavy modules are imported inside
the commands that need them: onnxruntime for `superres`, `translate`, `inpaint`, `style` and
`faces` (in `cli/faces.py`), torch (the train extra) for `train`, `export`, `import`, `eval`,
`compare` and `plot` (in `cli/evaluate.py`), onnx (also the train extra's) for `quantize`, so
`img2img --help` and `img2img models` start fast and never touch torch.
"""

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import one_line_warnings, parse_tile, train_extra_errors, user_errors
from cli.evaluate import compare, eval_app, plot
from cli.faces import faces_app
from cli.image_command import (
    DeviceOption,
    ModelOption,
    PrecisionOption,
    RunOptions,
    ThreadsOption,
    TileOption,
    TileOverlapOption,
    image_command,
    run_image,
)
from img2img.errors import Img2ImgError, ModelError
from img2img.files import DEFAULT_MAX_PIXELS

one_line_warnings()

app = typer.Typer(
    name="img2img",
    help="GAN image-to-image toolkit: run the shipped ONNX models, train and export your own.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

@app.command()
@image_command
def superres(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="IN",
            help="Image to upscale (PNG, JPEG, WebP, BMP, TIFF, GIF), or a folder of them.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output image (.png, .jpg, .webp), or OUTDIR for a folder. "
            "Default: <stem>_x<scale>.png beside IN, or the folder <IN>_x<scale>.",
        ),
    ] = None,
    scale: Annotated[
        int | None, typer.Option(help="Upscaling factor, 2 or 4, picking the shipped model. Default: 4.")
    ] = None,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    tile: TileOption = "auto",
    tile_overlap: TileOverlapOption = 16,
    alpha: Annotated[
        str, typer.Option(help="Transparency upscaling: bicubic, or model (through the net as a gray image).")
    ] = "bicubic",
    threads: ThreadsOption = None,
    *,
    run: RunOptions,
) -> None:
    """Upscale an image, or every image in a folder (recursively, mirroring the tree into OUTDIR).

    Transparency, 16-bit depth, grayscale, EXIF and ICC profiles are kept; EXIF orientation is
    applied. A folder run reports bad files and goes on; it exits with 1 if any file failed.
    """
    with user_errors():
        from img2img.runtime.api import Model

        net = Model(
            model,
            task="superres",
            scale=scale,
            device=device,
            precision=precision,
            tile=parse_tile(tile),
            tile_overlap=tile_overlap,
            alpha=alpha,
            threads=threads,
        )
        run_image(source, output, net, run, suffix=f"_x{net.info.scale}")


@app.command()
@image_command
def translate(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="IN",
            help="Image to translate (PNG, JPEG, WebP, BMP, TIFF, GIF), or a folder of them.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output image (.png, .jpg, .webp), or OUTDIR for a folder. "
            "Default: <stem>_<model name>.png beside IN, or the folder <IN>_<model name>.",
        ),
    ] = None,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    tile: TileOption = "auto",
    tile_overlap: TileOverlapOption = 16,
    alpha: Annotated[
        str,
        typer.Option(
            help="Transparency: bicubic (keep the input's), drop (opaque output, as composited for the model), "
            "or auto (drop for a model that paints over transparent areas, such as a colouring model; else bicubic)."
        ),
    ] = "auto",
    threads: ThreadsOption = None,
    *,
    run: RunOptions,
) -> None:
    """Translate an image into another domain with a --model (required; e.g. one emoji style
    into another), or every image in a folder (recursively, mirroring the tree into OUTDIR).

    Transparent pixels are composited onto the background the model was trained on before the
    net sees them; the output keeps the input's transparency unless --alpha drop, or unless the
    model paints over transparent areas (a colouring model: `opaque_output` in `img2img info`),
    whose outputs are opaque unless --alpha bicubic. Models that
    normalise over the whole image run whole under --tile auto; an explicit --tile cuts them
    anyway, with a warning that the result may differ. A folder run reports bad files and goes
    on; it exits with 1 if any file failed.
    """
    with user_errors():
        if model is None:
            raise ModelError(
                "translate needs --model: there is no default translation model; "
                f"shipped ones: {_shipped_names('translate')} (see `img2img models`), "
                "or pass a path to an exported .onnx file"
            )
        from img2img.runtime.api import Model

        net = Model(
            model,
            task="translate",
            device=device,
            precision=precision,
            tile=parse_tile(tile),
            tile_overlap=tile_overlap,
            alpha=alpha,
            threads=threads,
        )
        # The name comes from the file's metadata: keep it from steering the output elsewhere.
        suffix = "_" + re.sub(r"[^\w.-]+", "-", net.info.name)
        run_image(source, output, net, run, suffix=suffix, label=net.info.domains or net.info.name)


@app.command()
@image_command
def inpaint(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="IN",
            help="Image with a region to fill (PNG, JPEG, WebP, BMP, TIFF, GIF), or a folder of them.",
            show_default=False,
        ),
    ],
    mask: Annotated[
        Path | None,
        typer.Option(
            help="Mask image of IN's size: nonzero (white) pixels are filled, black ones kept. For a folder "
            "IN, a folder of masks at the images' relative paths, any suffix (photo.jpg <-> photo.png).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output image (.png, .jpg, .webp), or OUTDIR for a folder. "
            "Default: <stem>_inpainted.png beside IN, or the folder <IN>_inpainted.",
        ),
    ] = None,
    model: ModelOption = None,
    mask_from_alpha: Annotated[
        bool,
        typer.Option(
            "--mask-from-alpha",
            help="Fill every pixel of IN that is not fully opaque, instead of --mask; the output is opaque.",
        ),
    ] = False,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Run the whole image at its own size (tiled), not a crop around the hole at the model's resolution.",
        ),
    ] = False,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    tile: TileOption = "auto",
    tile_overlap: TileOverlapOption = 16,
    threads: ThreadsOption = None,
    *,
    run: RunOptions,
) -> None:
    """Fill the masked region of an image from its surroundings, or of every image in a folder
    (recursively, mirroring the tree into OUTDIR, with --mask a mirrored folder of masks).

    Only the mask's pixels change: every other pixel, the transparency (unless
    --mask-from-alpha), EXIF and ICC profile are kept. The model (default: the shipped inpaint
    model) sees a crop around the hole, shrunk to the resolution it was trained at when larger.
    A folder run reports bad files and images without a mask and goes on; it exits with 1 if any
    file failed.
    """
    with user_errors():
        if mask is not None and mask_from_alpha:
            raise Img2ImgError("--mask and --mask-from-alpha both say where to fill; give only one of them")
        if mask is None and not mask_from_alpha:
            raise Img2ImgError(
                "say where to fill: --mask MASK.png (white = fill), or --mask-from-alpha to fill IN's "
                "transparent pixels"
            )
        folder = source.is_dir()
        if mask is not None and folder and not mask.is_dir():
            raise Img2ImgError(
                f"{source} is a folder, so --mask must be the folder of its masks (same relative paths); "
                f"{mask} is not a folder"
            )
        if mask is not None and not folder and mask.is_dir():
            raise Img2ImgError(f"--mask {mask} is a folder; give the mask image for {source}")
        from img2img.runtime import check_output_path
        from img2img.runtime.api import Model
        from img2img.runtime.inpaint import check_mask, read_mask
        from img2img.runtime.inpaint import mask_from_alpha as alpha_hole

        net = Model(
            model,
            task="inpaint",
            device=device,
            precision=precision,
            tile=parse_tile(tile),
            tile_overlap=tile_overlap,
            alpha="drop" if mask_from_alpha else "bicubic",
            threads=threads,
            full=full,
        )
        if not net.fills_holes:
            raise ModelError(
                f"model {net.info.name!r} takes no mask, so it cannot fill holes; pick an inpainting model"
            )

        def from_alpha(image: Any, **options: Any) -> Any:
            """A folder's image with its transparent pixels as the hole."""
            return net.process(image, mask=alpha_hole(image.alpha), **options)

        def masking(image: Any) -> Any:
            """The single image's hole: --mask, or its transparent pixels."""
            if mask is None:
                return alpha_hole(image.alpha, name=str(source))
            hole = read_mask(mask, max_pixels=run.pixel_limit)
            check_mask(hole, *image.rgb.shape[:2], name=str(source))
            return hole

        if not folder:
            output = output or source.with_name(f"{source.stem}_inpainted.png")
            if mask is not None:
                check_output_path(mask, output)
        run_image(
            source, output, net, run, suffix="_inpainted", masking=masking,
            processor=net.process if mask is not None else from_alpha, masks=mask,
        )


@app.command()
@image_command
def style(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="IN",
            help="Photo to restyle (PNG, JPEG, WebP, BMP, TIFF, GIF), or a folder of them.",
            show_default=False,
        ),
    ],
    style_name: Annotated[
        str | None,
        typer.Option(
            "--style",
            help="A shipped per-style network by its style, e.g. starry-night or the-kiss (model style-<STYLE>).",
            show_default=False,
        ),
    ] = None,
    style_image: Annotated[
        list[Path] | None,
        typer.Option(
            "--style-image",
            help="Any painting to render IN in, through an arbitrary-style model (--model, default the shipped style-adain); "
            "repeat to mix several.",
            show_default=False,
        ),
    ] = None,
    style_weight: Annotated[
        list[float] | None,
        typer.Option(
            "--style-weight",
            help="With several --style-image: one weight each, in the same order (default: equal).",
            show_default=False,
        ),
    ] = None,
    strength: Annotated[
        float,
        typer.Option("--alpha", help="With --style-image: 0 keeps the content, 1 is full style.", min=0.0, max=1.0),
    ] = 1.0,
    preserve_color: Annotated[
        bool,
        typer.Option("--preserve-color", help="Keep IN's colours; take only the brightness pattern from the style."),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output image (.png, .jpg, .webp), or OUTDIR for a folder. "
            "Default: <stem>_<style>.png beside IN, or the folder <IN>_<style>.",
        ),
    ] = None,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    tile: TileOption = "auto",
    tile_overlap: TileOverlapOption = 16,
    threads: ThreadsOption = None,
    *,
    run: RunOptions,
) -> None:
    """Render a photo in the style of a painting, or every photo in a folder (recursively,
    mirroring the tree into OUTDIR).

    --style NAME runs that style's fast network; --style-image runs the arbitrary-style model on
    any painting, with --alpha for the strength and several --style-image to mix styles. The
    image runs whole (the nets normalise over it), padded to the size the net needs and cropped
    back. A folder run reports bad files and goes on; it exits with 1 if any file failed.
    """
    with user_errors():
        if style_name is not None and style_image:
            raise Img2ImgError("--style picks a trained style and --style-image gives a painting; use one of them")
        if style_name is None and not style_image and model is None:
            raise Img2ImgError(
                f"say which style: --style NAME (shipped: {_shipped_names('style')}), or --style-image PAINTING"
            )
        if style_weight and not style_image:
            raise Img2ImgError("--style-weight weighs --style-image paintings; give the images too")
        if strength != 1.0 and not style_image:
            raise Img2ImgError("--alpha sets the strength of --style-image styles; per-style networks have none")
        if style_name is not None and model is None:
            model = f"style-{style_name}"
        elif style_image and model is None:
            if "style-adain" not in _shipped_names("style").split(", "):
                raise Img2ImgError(
                    "--style-image needs an arbitrary-style model and none is shipped yet; train one "
                    "(img2img train adain ...), export it and pass --model MODEL.onnx"
                )
            model = "style-adain"
        from img2img.runtime import check_output_path
        from img2img.runtime.api import Model

        if output is not None and not source.is_dir():
            for painting in style_image or ():
                check_output_path(painting, output)
        net = Model(
            model,
            task="style",
            device=device,
            tile=parse_tile(tile),
            tile_overlap=tile_overlap,
            alpha="bicubic",
            threads=threads,
            style=[str(path) for path in style_image] if style_image else None,
            style_weights=style_weight or None,
            style_alpha=strength,
            preserve_color=preserve_color,
        )
        label = net.info.style or "+".join(path.stem for path in style_image or ()) or net.info.name
        run_image(source, output, net, run, suffix="_" + re.sub(r"[^\w.-]+", "-", label), label=label)


def _shipped_names(task: str) -> str:
    """The shipped models of `task`, comma-separated, or "(none)" (also without a manifest)."""
    from img2img.runtime.shipped import load_manifest

    try:
        names = [entry.name for entry in load_manifest() if entry.task == task]
    except ModelError:
        names = []
    return ", ".join(names) or "(none)"


@app.command()
def info(
    model: Annotated[
        str, typer.Argument(metavar="MODEL", help="Shipped model name or path to an .onnx file.", show_default=False)
    ],
) -> None:
    """Print what a model file says about itself: task, scale, inputs, size rules, license, ..."""
    with user_errors():
        from img2img.runtime.describe import describe
        from img2img.runtime.shipped import resolve_model

        described = describe(resolve_model(model, task=None, scale=None))
    width = max(len(key) for key in described)
    for key, value in described.items():
        typer.echo(f"{key.ljust(width)}  {value}")


@app.command()
def models() -> None:
    """List the shipped models: name, task, scale, file, what each is for and its evaluation metrics."""
    with user_errors():
        from img2img.runtime.shipped import load_manifest, weights_dir

        shipped = load_manifest()
    rows = [("NAME", "TASK", "SCALE", "FILE", "USE FOR", "METRICS")]
    rows += [
        (entry.name, entry.task, f"x{entry.scale}", entry.path.name, entry.use_for or "-", _format_metrics(entry.metrics))
        for entry in shipped
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    for row in rows:
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)) + "  " + row[5]
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


def launch_torchrun(nproc: int, train_arguments: list[str]) -> int:
    """Runs `img2img train <train_arguments>` under torchrun on `nproc` local processes; returns
    torchrun's exit code (non-zero when any process failed; torchrun then stops the others)."""
    with train_extra_errors("training"):
        from img2img.engine.distributed import describe_command, launched_by_torchrun, torchrun_command

        if launched_by_torchrun():
            raise Img2ImgError("this process already runs under torchrun; drop --nproc")
        command = torchrun_command(nproc, train_arguments)
    typer.echo(f"launching: {describe_command(command)}", err=True)
    return subprocess.run(command, check=False).returncode


@app.command()
def train(
    task: Annotated[
        str, typer.Argument(metavar="TASK", help="Task to train: superres, inpaint, style, adain, faces, cyclegan or pix2pix.", show_default=False)
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder of training images (searched recursively); for pix2pix, A|B side-by-side images.",
            show_default=False,
        ),
    ] = None,
    data_a: Annotated[
        Path | None,
        typer.Option(help="Two-domain tasks (cyclegan, pix2pix): folder of domain A images.", show_default=False),
    ] = None,
    data_b: Annotated[
        Path | None,
        typer.Option(
            help="Two-domain tasks: folder of domain B images (pix2pix: same relative paths as A).",
            show_default=False,
        ),
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
    conditional: Annotated[
        bool,
        typer.Option(
            "--conditional", help="faces: class-conditional model, one label per subfolder of --data."
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved config and stop.")] = False,
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc",
            min=1,
            help="Train on N processes of this machine (one per GPU; gloo processes on a CPU): "
            "starts torchrun --standalone --nproc-per-node N for you.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train a model for TASK into --out, or continue --resume RUN (needs the train extra)."""
    if conditional:
        overrides = [*(overrides or []), "conditional=true"]
    if nproc is not None:
        arguments = [task]
        for flag, value in (
            ("--data", data), ("--data-a", data_a), ("--data-b", data_b),
            ("--out", out), ("--config", config), ("--resume", resume),
        ):
            if value is not None:
                arguments += [flag, str(value)]
        for override in overrides or []:
            arguments += ["--set", override]
        if dry_run:
            arguments.append("--dry-run")
        raise typer.Exit(launch_torchrun(nproc, arguments))
    # The engine imports torch and friends lazily, so a missing package can surface during the
    # call as well as at import.
    with train_extra_errors("training"):
        from img2img.engine.distributed import launched_by_torchrun
        from img2img.train import train_command

        train_command(
            task=task,
            data=data,
            data_a=data_a,
            data_b=data_b,
            out=out,
            config_file=config,
            overrides=list(overrides or []),
            resume=resume,
            dry_run=dry_run,
        )
    if launched_by_torchrun():
        # The run is complete: checkpoints and logs are written and closed, and the process group
        # is gone. A torchrun worker leaves here without the interpreter's teardown, in which
        # gloo's C++ threads could abort the process ("terminate called without an active
        # exception") under load, and torchrun would report a finished run as failed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@app.command()
def export(
    run: Annotated[
        Path, typer.Argument(metavar="RUN", help="Run folder written by `img2img train`.", show_default=False)
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="ONNX file to write.", show_default=False)],
    checkpoint: Annotated[str, typer.Option(help="last, best, or a path to a checkpoint file.")] = "last",
    opset: Annotated[int, typer.Option(help="ONNX opset version (17 or newer).")] = 18,
    fp16: Annotated[
        bool, typer.Option("--fp16", help="Also write the float16 variant <name>.fp16.onnx (--precision fp16).")
    ] = False,
    direction: Annotated[
        str | None, typer.Option(help="CycleGAN runs: a2b (G, A to B) or b2a (F, B to A); one file each.")
    ] = None,
) -> None:
    """Export a trained run to an ONNX model the runtime can run (needs the train extra)."""
    with train_extra_errors("exporting"):
        from img2img.export import export_command

        export_command(run=run, output=output, checkpoint=checkpoint, opset=opset, fp16=fp16, direction=direction)


@app.command("import")
def import_model(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="ESRGAN/RRDBNet or Real-ESRGAN compact checkpoint (.pth, .safetensors), or an ncnn .param.",
            show_default=False,
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="ONNX file to write.", show_default=False)],
    bin_path: Annotated[
        Path | None,
        typer.Option("--bin", help="ncnn weights for a .param (default: the .bin beside it).", show_default=False),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Model name in the metadata (default: the output's stem).")] = None,
    license_text: Annotated[
        str, typer.Option("--license", help="The imported model's license, as its authors state it.")
    ] = "",
    origin: Annotated[str, typer.Option("--source", help="Where the model comes from, e.g. its release URL.")] = "",
    opset: Annotated[int, typer.Option(help="ONNX opset version (17 or newer).")] = 18,
    fp16: Annotated[
        bool, typer.Option("--fp16/--no-fp16", help="Also write the float16 variant <name>.fp16.onnx.")
    ] = True,
) -> None:
    """Convert a pretrained upscaler from the community into an ONNX model for `superres --model`
    (needs the train extra). The architecture and its sizes are read from the weights; checkpoints
    are read as weights only, never run as code; the result is checked against the source net."""
    with train_extra_errors("importing"):
        from img2img.importing import import_command

        import_command(
            source=checkpoint, output=output, bin_path=bin_path, name=name, license=license_text,
            origin=origin, opset=opset, fp16=fp16,
        )


@app.command()
def quantize(
    model: Annotated[
        Path, typer.Argument(metavar="MODEL", help="An img2img float32 model (.onnx) of one image input.", show_default=False)
    ],
    calibration: Annotated[
        Path,
        typer.Option(help="Folder of photos like those the model will see; their ranges calibrate the 8-bit activations.", show_default=False),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write (default: MODEL's name with .int8.onnx).", show_default=False),
    ] = None,
    count: Annotated[int, typer.Option(min=1, help="Calibration images to use (at most).")] = 32,
    min_psnr: Annotated[
        float, typer.Option(help="Refuse a variant whose outputs differ from the float32 model's by more (PSNR, dB).")
    ] = 35.0,
) -> None:
    """Write MODEL's 8-bit variant, MODEL.int8.onnx, for `--precision int8`: about twice as fast on a
    CPU. Convolutions run in int8 with activation ranges calibrated on your photos; the variant
    is checked against MODEL on them (needs the train extra's onnx package)."""
    with train_extra_errors("quantizing"):
        from img2img.quantize import quantize_model

        written, agreement = quantize_model(model, calibration, output=output, count=count, min_psnr=min_psnr)
    typer.echo(f"wrote {written} (outputs {agreement:.1f} dB PSNR from {model.name}'s on the calibration images)")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback lets others on the network in.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    models_dir: Annotated[
        Path | None, typer.Option(help="Folder of your own .onnx models to offer beside the shipped ones.", show_default=False)
    ] = None,
    max_upload_mb: Annotated[int, typer.Option(min=1, max=4096, help="Largest upload taken (image and mask), in MB.")] = 50,
    max_queued: Annotated[int, typer.Option(min=1, max=1000, help="Images that may wait or run at once.")] = 16,
    keep_minutes: Annotated[float, typer.Option(min=1, max=7 * 24 * 60, help="Minutes a result is kept for download.")] = 60,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    max_pixels: Annotated[
        int, typer.Option(help="Refuse images with more pixels than this (decompression-bomb guard); 0: no limit.")
    ] = DEFAULT_MAX_PIXELS,
) -> None:
    """Open the web app: every task in a browser page, run by this machine (needs the serve extra)."""
    import tempfile

    with user_errors():
        try:
            import uvicorn

            from img2img.serve.app import create_app
            from img2img.serve.catalogue import build_catalogue
            from img2img.serve.jobs import JobQueue
        except ModuleNotFoundError as error:
            if (error.name or "").partition(".")[0] in {"starlette", "uvicorn", "multipart", "python_multipart"}:
                raise Img2ImgError('img2img serve needs the serve extra: pip install "img2img[serve]"') from None
            raise
        if max_pixels < 0:
            raise Img2ImgError(f"--max-pixels must be positive (0: no limit), got {max_pixels}")
        if threads is not None and not 1 <= threads <= 1024:
            raise Img2ImgError(f"--threads must be between 1 and 1024, got {threads}")
        catalogue = build_catalogue(models_dir)
        jobs = JobQueue(Path(tempfile.mkdtemp(prefix="img2img-serve-")), max_queued=max_queued, result_ttl=keep_minutes * 60)
        web_app = create_app(
            catalogue, jobs, max_upload_bytes=max_upload_mb * 1024**2, max_pixels=max_pixels or None,
            device=device, threads=threads,
        )
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(
            f"warning: listening on {host}: anyone who can reach this machine on port {port} can use this server",
            err=True,
        )
    typer.echo(f"img2img serve: open http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port}/ "
               f"({len(catalogue)} models; Ctrl+C stops)")
    uvicorn.run(web_app, host=host, port=port, log_level="warning")


# Defined in cli/faces.py and cli/evaluate.py; registered last so `img2img --help` lists the
# image tasks first.
app.add_typer(faces_app)
app.add_typer(eval_app)
app.command()(compare)
app.command()(plot)
