"""`img2img eval ...`, `img2img compare` and `img2img plot`: measure models and show results.

All of them need the train extra (torch, the FID Inception and VGG19 weights, matplotlib). Each
eval command prints a table, or JSON with `--json`; `--report FILE.html` also writes a
self-contained HTML report and `--sheet FILE.png` a comparison sheet where the command has images
to show.
"""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import parse_tile, train_extra_errors
from cli.image_command import PrecisionOption
from img2img.errors import Img2ImgError

eval_app = typer.Typer(
    name="eval",
    help="Measure images and models: FID, KID, IS, PSNR/SSIM, VGG feature distance.",
    no_args_is_help=True,
)

DeviceOption = Annotated[str, typer.Option(help="auto (CUDA, else MPS, if available), cpu, cuda or mps.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ReportOption = Annotated[
    Path | None, typer.Option(help="Also write a self-contained HTML report (table, sheet, settings).")
]
BatchSizeOption = Annotated[int, typer.Option(help="Images per Inception batch.")]
CacheOption = Annotated[
    bool, typer.Option("--cache/--no-cache", help="Reuse cached folder features (recomputed when files change).")
]
PerceptualOption = Annotated[
    bool, typer.Option("--perceptual/--no-perceptual", help="Also compute the VGG19 feature distance (slow on CPU).")
]
SheetOption = Annotated[Path | None, typer.Option(help="Also write a comparison sheet PNG of the first --count images.")]
CountOption = Annotated[int, typer.Option(help="Images on the comparison sheet.")]
FolderArgument = Annotated[Path, typer.Argument(show_default=False)]


def _progress(total_hint: str):
    """A callback printing the image being scored on stderr, when stderr is a terminal."""
    if not sys.stderr.isatty():
        return None
    seen = [0]

    def show(name: str) -> None:
        seen[0] += 1
        typer.echo(f"\r{total_hint} {seen[0]}: {name[-60:]:<60}", err=True, nl=False)

    return show


def _print(result: Any, as_json: bool) -> None:
    if sys.stderr.isatty():
        typer.echo("\r" + " " * 80 + "\r", err=True, nl=False)
    typer.echo(json.dumps(result.to_json(), indent=2) if as_json else result.render())


def _distribution_source(device: str, batch_size: int, cache: bool):
    from img2img.evaluate.distribution import FeatureSource
    from img2img.engine.device import resolve_device

    progress = None
    if sys.stderr.isatty():

        def progress(done: int, total: int) -> None:
            typer.echo(f"\rInception features: {done}/{total} images", err=True, nl=done == total)

    return FeatureSource(device=resolve_device(device, option="--device"), batch_size=batch_size, cache=cache, progress=progress)


def _distribution_report(report: Path | None, result: Any) -> None:
    if report is None:
        return
    from img2img.evaluate.report import ReportTable, write_html_report

    table = ReportTable(result.title, ["metric", "value"], [[name, value] for name, value in result.values.items()])
    write_html_report(report, title=result.title, tables=[table], sheets=[], settings=result.settings)
    typer.echo(f"wrote {report}", err=True)


@eval_app.command()
def fid(
    real: Annotated[Path, typer.Argument(help="Folder of real images, or a .npz of their features.", show_default=False)],
    fake: Annotated[Path, typer.Argument(help="Folder of generated images, or a .npz.", show_default=False)],
    device: DeviceOption = "auto",
    batch_size: BatchSizeOption = 32,
    cache: CacheOption = True,
    as_json: JsonOption = False,
    report: ReportOption = None,
) -> None:
    """Frechet Inception Distance between two image sets (lower is better; 0 for equal sets)."""
    with train_extra_errors("evaluating"):
        from img2img.evaluate.distribution import evaluate_fid

        result = evaluate_fid(real, fake, _distribution_source(device, batch_size, cache))
        _print(result, as_json)
        _distribution_report(report, result)


@eval_app.command()
def kid(
    real: Annotated[Path, typer.Argument(help="Folder of real images, or a .npz of their features.", show_default=False)],
    fake: Annotated[Path, typer.Argument(help="Folder of generated images, or a .npz.", show_default=False)],
    subsets: Annotated[int, typer.Option(help="Random subsets the MMD is averaged over.")] = 100,
    subset_size: Annotated[int, typer.Option(help="Images per subset (capped by the smaller set).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the subset draws.")] = 0,
    device: DeviceOption = "auto",
    batch_size: BatchSizeOption = 32,
    cache: CacheOption = True,
    as_json: JsonOption = False,
    report: ReportOption = None,
) -> None:
    """Kernel Inception Distance (unbiased, with its standard error); good for small sets."""
    with train_extra_errors("evaluating"):
        from img2img.evaluate.distribution import evaluate_kid

        result = evaluate_kid(
            real, fake, _distribution_source(device, batch_size, cache), subsets=subsets, subset_size=subset_size, seed=seed
        )
        _print(result, as_json)
        _distribution_report(report, result)


@eval_app.command(name="is")
def inception_score(
    folder: Annotated[Path, typer.Argument(help="Folder of generated images.", show_default=False)],
    head: Annotated[
        Path,
        typer.Option(
            help="Classifier head of the FID Inception: a state dict with fc.weight (K, 2048) and fc.bias "
            "(e.g. the 1008-class layer of pt_inception-2015-12-05). The packaged Inception ends at its pool.",
            show_default=False,
        ),
    ],
    splits: Annotated[int, typer.Option(help="The set is split this many ways; mean and std over splits.")] = 10,
    device: DeviceOption = "auto",
    batch_size: BatchSizeOption = 32,
    cache: CacheOption = True,
    as_json: JsonOption = False,
    report: ReportOption = None,
) -> None:
    """Inception Score of a set of generated images (higher is better)."""
    with train_extra_errors("evaluating"):
        from img2img.evaluate.distribution import evaluate_inception_score

        result = evaluate_inception_score(folder, _distribution_source(device, batch_size, cache), head=head, splits=splits)
        _print(result, as_json)
        _distribution_report(report, result)


@eval_app.command()
def features(
    folder: Annotated[Path, typer.Argument(help="Folder of images (searched recursively).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .npz file to write.", show_default=False)],
    device: DeviceOption = "auto",
    batch_size: BatchSizeOption = 32,
) -> None:
    """Save a folder's Inception features to a .npz that `eval fid` and `eval kid` accept.

    Compute a reference set once and share the file in place of the folder.
    """
    with train_extra_errors("evaluating"):
        if output.suffix != ".npz":
            raise Img2ImgError(f"--output must end in .npz, got {output}")
        computed = _distribution_source(device, batch_size, cache=True).features(folder)
        computed.features.save(output)
        typer.echo(f"wrote {output} ({computed.features.features.shape[0]} images)")


def _table_outputs(table: Any, report: Path | None, sheet_image: Any, sheet: Path | None) -> None:
    """Writes the sheet and the HTML report of a pair/superres evaluation."""
    if sheet is not None and sheet_image is not None:
        from img2img.evaluate.sheets import save_sheet

        save_sheet(sheet_image, sheet)
        typer.echo(f"wrote {sheet}", err=True)
    if report is not None:
        from img2img.evaluate.report import ReportTable, write_html_report

        summary_columns, summary_rows = table.summary_rows()
        image_columns, image_rows = table.image_rows()
        tables = [ReportTable("Mean over images", summary_columns, summary_rows)]
        tables.append(ReportTable("Per image", image_columns, image_rows))
        if table.failures:
            tables.append(ReportTable("Not scored", ["image", "reason"], [list(item) for item in table.failures]))
        sheets = [("Comparison", sheet_image)] if sheet_image is not None else []
        write_html_report(report, title=table.title, tables=tables, sheets=sheets, settings=table.settings)
        typer.echo(f"wrote {report}", err=True)


@eval_app.command()
def pair(
    pred_dir: Annotated[Path, typer.Argument(help="Folder of predictions.", show_default=False)],
    target_dir: Annotated[Path, typer.Argument(help="Folder of targets, same relative paths.", show_default=False)],
    crop_border: Annotated[int, typer.Option(help="Pixels dropped on every side before PSNR/SSIM.")] = 0,
    perceptual: PerceptualOption = True,
    device: DeviceOption = "auto",
    as_json: JsonOption = False,
    report: ReportOption = None,
    sheet: SheetOption = None,
    count: CountOption = 4,
) -> None:
    """PSNR/SSIM (Y and RGB) and VGG feature distance of predictions against their targets.

    Files are matched by relative path (extensions may differ). Exits with 1 if any pair could
    not be scored.
    """
    with train_extra_errors("evaluating"):
        from img2img.evaluate.compare import folder_sheet
        from img2img.engine.device import resolve_device
        from img2img.evaluate.scoring import PairScorer, evaluate_pairs

        scorer = PairScorer(crop_border=crop_border, perceptual=perceptual, device=resolve_device(device, option="--device"))
        table = evaluate_pairs(pred_dir, target_dir, scorer, on_image=_progress("scoring"))
        _print(table, as_json)
        sheet_image = None
        if (sheet is not None or report is not None) and table.images:
            sheet_image = folder_sheet([pred_dir], target_dir, labels=["prediction"], count=count, scorer=scorer)
        _table_outputs(table, report, sheet_image, sheet)
    if table.failures:
        raise typer.Exit(code=1)


@eval_app.command()
def superres(
    model: Annotated[str, typer.Argument(help="Shipped model name or path to an .onnx file.", show_default=False)],
    hr_dir: Annotated[Path, typer.Argument(help="Folder of high-resolution images.", show_default=False)],
    scale: Annotated[int | None, typer.Option(help="Upscaling factor (default: the model's).")] = None,
    max_size: Annotated[int, typer.Option(help="Centre-crop HR images to at most this side (0: whole).")] = 0,
    perceptual: PerceptualOption = True,
    device: DeviceOption = "auto",
    tile: Annotated[str, typer.Option(help="Model tile size, 'auto' or 0 (whole image).")] = "auto",
    precision: PrecisionOption = "auto",
    as_json: JsonOption = False,
    report: ReportOption = None,
    sheet: SheetOption = None,
    count: CountOption = 4,
    protocol: Annotated[
        str,
        typer.Option(
            help="How LR is made: 'clean' (bicubic downscale) or 'degraded' (blur, resize, noise, JPEG; "
            "seeded by each image's name, the same in every run).",
        ),
    ] = "clean",
) -> None:
    """Degrade HR images (bicubic, or --protocol degraded), upscale them with MODEL and with
    bicubic, score both.

    Exits with 1 if any image could not be scored.
    """
    with train_extra_errors("evaluating"):
        from img2img.engine.device import resolve_device
        from img2img.evaluate.scoring import PairScorer
        from img2img.evaluate.superres import evaluate_superres, superres_sheet
        from img2img.runtime.api import Model

        torch_device = resolve_device(device, option="--device")
        # The same choice for both: "auto" lets onnxruntime take a GPU provider if it has one.
        net = Model(model, task="superres", scale=scale, device=device, tile=parse_tile(tile), precision=precision)
        factor = net.info.scale
        # The grid a pixel-shuffle upscaler can draw repeats at the scale.
        grid = factor if factor >= 2 else 0
        scorer = PairScorer(crop_border=factor, perceptual=perceptual, device=torch_device, grid_period=grid)
        wants_pictures = sheet is not None or report is not None
        table, examples = evaluate_superres(
            net,
            hr_dir,
            scale=factor,
            scorer=scorer,
            model_name=model,
            max_size=max_size,
            sheet_count=count if wants_pictures else 0,
            on_image=_progress("upscaling and scoring"),
            protocol=protocol,
            precision=net.info.precision,
        )
        _print(table, as_json)
        sheet_image = superres_sheet(examples) if examples else None
        _table_outputs(table, report, sheet_image, sheet)
    if table.failures:
        raise typer.Exit(code=1)


def compare(
    columns: Annotated[
        list[Path], typer.Argument(help="Folders to show side by side (e.g. inputs/ bicubic/ model/).", show_default=False)
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Sheet PNG to write.", show_default=False)],
    target: Annotated[
        Path | None, typer.Option(help="Folder of targets: shown last, and metrics under each same-size tile.")
    ] = None,
    labels: Annotated[str | None, typer.Option(help="Column titles, comma-separated (default: folder names).")] = None,
    count: CountOption = 4,
    zoom: Annotated[bool, typer.Option("--zoom/--no-zoom", help="Show the most detailed crop, magnified.")] = False,
    tile_size: Annotated[int, typer.Option(help="Tile side in pixels.")] = 256,
    device: DeviceOption = "auto",
) -> None:
    """Draw a comparison sheet of image folders matched by relative path.

    One row per image (the first --count), one column per folder, then --target; PSNR/SSIM and
    VGG feature distance against the target under each tile of its size.
    """
    with train_extra_errors("drawing a comparison sheet"):
        from img2img.evaluate.compare import folder_sheet
        from img2img.engine.device import resolve_device
        from img2img.evaluate.scoring import PairScorer
        from img2img.evaluate.sheets import save_sheet

        names = labels.split(",") if labels else [folder.name for folder in columns]
        if len(names) != len(columns):
            raise Img2ImgError(f"--labels gives {len(names)} titles for {len(columns)} folders")
        scorer = PairScorer(perceptual=True, device=resolve_device(device, option="--device")) if target is not None else None
        image = folder_sheet(
            columns, target, labels=names, count=count, scorer=scorer, zoom=zoom, tile_size=tile_size
        )
        save_sheet(image, output)
        typer.echo(f"wrote {output} ({image.width}x{image.height})")


def plot(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="Run folder written by `img2img train`.", show_default=False)],
) -> None:
    """Plot a run's training curves (losses, validation metrics) to RUN/plots/*.png."""
    with train_extra_errors("plotting"):
        from img2img.engine.curves import plot_run

        for path in plot_run(run):
            typer.echo(f"wrote {path}")
