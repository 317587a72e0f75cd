"""`img2img faces generate` and `img2img faces interpolate`: run a face generator.

Both run an exported noise-to-image model (the shipped faces-emoji by default) with
onnxruntime, numpy and Pillow only. A seed names one latent, so the same seed gives the same face
everywhere; see `img2img.runtime.faces` for the rules.
"""

from pathlib import Path
from typing import Annotated

import typer

from cli.common import user_errors
from img2img.errors import Img2ImgError

faces_app = typer.Typer(
    name="faces",
    help="Generate faces from random seeds with a face generator (default: the shipped faces-emoji).",
    no_args_is_help=True,
)

ModelOption = Annotated[
    str | None, typer.Option(help="Shipped faces model name (see `img2img models`) or a path to an .onnx file.")
]
DeviceOption = Annotated[str, typer.Option(help="auto (CUDA if available), cpu or cuda.")]
TruncationOption = Annotated[
    float, typer.Option(help="Scale latents towards the mean face: 1 = full variety, 0.7 = more typical faces, 0 = the mean face.")
]
LabelOption = Annotated[
    str | None,
    typer.Option(help="Class-conditional models: the class to draw (see `img2img info MODEL`); default: drawn per seed."),
]
ZoomOption = Annotated[int, typer.Option(min=1, max=16, help="Enlarge each pixel to ZOOM x ZOOM (nearest neighbour).")]


def _open(model: str | None, device: str):
    from img2img import load_faces

    return load_faces(model, device=device)


@faces_app.command()
def generate(
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Grid image (.png, .jpg, .webp) or a folder for one seedNNNN.png per face.", show_default=False
        ),
    ],
    count: Annotated[int, typer.Option("-n", "--count", min=1, help="Number of faces: seeds SEED to SEED+N-1.")] = 64,
    seed: Annotated[int, typer.Option(min=0, help="First seed.")] = 0,
    seeds: Annotated[
        str | None, typer.Option(help="Explicit seeds instead of -n/--seed, e.g. 3,7,42 or 0-15.", show_default=False)
    ] = None,
    truncation: TruncationOption = 1.0,
    label: LabelOption = None,
    columns: Annotated[int | None, typer.Option(min=1, help="Grid columns (default: square-ish).")] = None,
    zoom: ZoomOption = 1,
    model: ModelOption = None,
    device: DeviceOption = "auto",
) -> None:
    """Generate faces from seeds into a grid image or a folder of files."""
    with user_errors():
        from img2img.runtime.faces import MAX_SEED, check_sample_count, parse_seeds, write_samples

        try:
            if seeds is None:
                check_sample_count(count)
                if seed + count - 1 > MAX_SEED:
                    raise ValueError(f"seeds {seed} to {seed + count - 1} go past the largest seed, {MAX_SEED}")
            chosen = parse_seeds(seeds) if seeds is not None else list(range(seed, seed + count))
            if columns is not None and columns > len(chosen):
                raise ValueError(f"{columns:,} grid columns for {len(chosen)} faces; use 1 to {len(chosen)}")
            generator = _open(model, device)
            images = generator.generate(generator.latents(chosen, truncation), generator.labels_for(chosen, label))
        except ValueError as error:
            raise Img2ImgError(str(error)) from None
        written = write_samples(images, chosen, output, columns=columns, zoom=zoom)
    where = output if len(written) == 1 else f"{len(written)} files in {output}"
    typer.echo(f"generated {len(chosen)} faces (seeds {_span(chosen)}, truncation {truncation:g}) -> {where}")


@faces_app.command()
def interpolate(
    seeds: Annotated[str, typer.Option(help="Keyframe seeds in order, e.g. 1,2,3.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Animated GIF to write.", show_default=False)],
    steps: Annotated[int, typer.Option(min=1, help="Frames from each seed to the next.")] = 16,
    fps: Annotated[float, typer.Option(min=0.1, help="Frames per second of the GIF.")] = 12.0,
    truncation: TruncationOption = 1.0,
    label: LabelOption = None,
    zoom: ZoomOption = 1,
    model: ModelOption = None,
    device: DeviceOption = "auto",
) -> None:
    """Morph between the faces of several seeds (spherical interpolation of their latents) into a GIF."""
    with user_errors():
        import numpy as np

        from img2img.runtime.faces import check_sample_count, interpolation_path, parse_seeds, save_frames_gif

        try:
            keyframes = parse_seeds(seeds)
            check_sample_count((len(keyframes) - 1) * steps + 1, "frames")
            generator = _open(model, device)
            path = interpolation_path(generator.latents(keyframes, truncation), steps)
            labels = generator.labels_for(keyframes, label)
            if labels is not None:
                # A class per keyframe, held until the next keyframe; one --label holds throughout.
                labels = np.append(np.repeat(labels[:-1], steps), labels[-1])
            frames = generator.generate(path, labels)
            save_frames_gif(frames, output, fps=fps, zoom=zoom)
        except ValueError as error:
            raise Img2ImgError(str(error)) from None
    typer.echo(f"interpolated seeds {seeds} in {len(frames)} frames -> {output}")


def _span(seeds: list[int]) -> str:
    """"0-63" for a consecutive run, else the seeds comma-separated (shortened past 8)."""
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 1:
        return f"{seeds[0]}-{seeds[-1]}"
    shown = ",".join(map(str, seeds[:8]))
    return shown + (",..." if len(seeds) > 8 else "")
