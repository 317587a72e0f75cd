"""Run an exported face generator: latents from seeds, truncation, labels, grids and morphs.

A noise-to-image model (`img2img train faces`, exported) takes "z" float32 (N, latent_dim) and,
when class-conditional, "label" int64 (N,); it returns (N, 3, R, R) RGB in [0, 1]. Its metadata
gives latent_dim, the resolution and the class names. Everything around the graph lives here and
uses numpy only:

- a seed names one latent, z = default_rng(seed).standard_normal(latent_dim), so `--seed 7` is
  the same face on every machine and in every app that follows this rule;
- truncation psi scales z towards the mean latent 0 (z' = psi * z): psi = 1 samples the full
  distribution, smaller values trade variety for typical faces, psi = 0 gives the mean-latent
  image G(0) for every seed;
- interpolation follows great circles between the seeds' latents (slerp), which keeps the
  latents at the norm a Gaussian sample has, so midpoints look like samples too.

Example:
    >>> generator = FaceGenerator("weights/faces-emoji.onnx", device="cpu")
    >>> generator.generate(generator.latents([0, 1, 2]), generator.labels_for([0, 1, 2], "smiley")).shape
    (3, 64, 64, 3)
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from img2img.contract import ModelInfo
from img2img.errors import ModelError, OutputError
from img2img.files.atomic import write_atomically
from img2img.files.encode import output_format, save_image
from img2img.files.pixels import quantize
from img2img.runtime.onnx_model import open_session

GRID_PADDING = 2  # pixels of white between grid cells


class FaceGenerator:
    """An exported noise-to-image model and the numpy helpers around it.

    Args:
        path: the .onnx file.
        device: "auto", "cpu" or "cuda".
        threads: onnxruntime intra-op threads; None: all cores.

    Raises:
        ModelError: the file is missing, not loadable, or not a noise-to-image model.
    """

    def __init__(self, path: str | os.PathLike[str], *, device: str = "auto", threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file {self.path} does not exist; pass an .onnx file or a shipped model name")
        self.session = open_session(self.path, device=device, threads=threads, precision="fp32")
        self.info = ModelInfo.from_metadata(self.session.get_modelmeta().custom_metadata_map, source=str(self.path))
        if not self.info.generates or not self.info.latent_dim:
            raise ModelError(
                f"{self.path} is a {self.info.task or 'image-to-image'} model, not a face generator; "
                "pick a faces model (see `img2img models`)"
            )
        self.latent_dim = self.info.latent_dim
        self.labels = self.info.labels
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name

    @property
    def conditional(self) -> bool:
        return bool(self.labels)

    # --------------------------------------------------------------- inputs
    def latents(self, seeds: list[int], truncation: float = 1.0) -> np.ndarray:
        """(len(seeds), latent_dim) float32: one standard-normal latent per seed, times `truncation`.

        Raises:
            ValueError: a negative seed or a truncation outside [0, 1].
        """
        if not 0.0 <= truncation <= 1.0:
            raise ValueError(f"truncation must be between 0 (the mean face) and 1 (no truncation), got {truncation}")
        if any(seed < 0 for seed in seeds):
            raise ValueError(f"seeds must be 0 or more, got {min(seeds)}")
        rows = [np.random.default_rng(seed).standard_normal(self.latent_dim) for seed in seeds]
        return (truncation * np.stack(rows)).astype(np.float32) if rows else np.zeros((0, self.latent_dim), np.float32)

    def labels_for(self, seeds: list[int], name: str | None = None) -> np.ndarray | None:
        """(len(seeds),) int64 labels for a conditional model: `name`'s index for every sample, or
        with no name a label drawn from each seed (after its latent, so seeds stay reproducible);
        None for an unconditional model.

        Raises:
            ValueError: a name the model does not know, or a name for an unconditional model.
        """
        if not self.conditional:
            if name is not None:
                raise ValueError(f"{self.path.name} is unconditional: it takes no --label")
            return None
        if name is not None:
            if name not in self.labels:
                raise ValueError(f"unknown label {name!r}; {self.path.name} knows {', '.join(self.labels)}")
            return np.full(len(seeds), self.labels.index(name), dtype=np.int64)
        drawn = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            rng.standard_normal(self.latent_dim)
            drawn.append(rng.integers(len(self.labels)))
        return np.asarray(drawn, dtype=np.int64)

    # --------------------------------------------------------------- running
    def generate(self, z: np.ndarray, labels: np.ndarray | None = None, *, batch_size: int = 64) -> np.ndarray:
        """Images (N, R, R, 3) float32 in [0, 1] for latents z (N, latent_dim) (and labels (N,))."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (N, {self.latent_dim}), got {z.shape}")
        if self.conditional and (labels is None or np.shape(labels) != (len(z),)):
            raise ValueError(f"{self.path.name} is class-conditional: pass one label per latent")
        out = []
        for start in range(0, len(z), batch_size):
            feed = {self.input_names[0]: z[start : start + batch_size]}
            if self.conditional:
                feed[self.input_names[1]] = np.asarray(labels[start : start + batch_size], dtype=np.int64)
            (images,) = self.session.run([self.output_name], feed)
            out.append(images.transpose(0, 2, 3, 1))
        side = self.info.resolution
        return np.concatenate(out) if out else np.zeros((0, side, side, 3), np.float32)


# --------------------------------------------------------------- around the model

# Faces (or frames) one command makes: 10,000 64 px faces are 500 MB of float pixels, and a grid
# of them a 6,500-pixel-wide image; more is a typo, not a request.
MAX_SAMPLES = 10_000
# Seeds are numpy's: any non-negative integer works, but below 2**63 they are also portable.
MAX_SEED = 2**63 - 1


def check_sample_count(count: int, what: str = "faces") -> None:
    """Raises ValueError when `count` is not 1 to MAX_SAMPLES."""
    if not 1 <= count <= MAX_SAMPLES:
        raise ValueError(f"{count:,} {what} asked; one run makes 1 to {MAX_SAMPLES:,}, run several for more")


def parse_seeds(text: str) -> list[int]:
    """"1,2,3" or "0-7" or a mix ("0-3,9") -> seeds in order, each 0 to MAX_SEED, at most
    MAX_SAMPLES of them.

    Raises:
        ValueError: anything else, with the accepted forms and bounds.
    """
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        try:
            if dash:
                first, last = int(low), int(high)
                if last < first:
                    raise ValueError
            else:
                first = last = int(part)
        except ValueError:
            raise ValueError(f"cannot read seeds {text!r}; write them as 1,2,3 or 0-7 (or both: 0-3,9)") from None
        if last > MAX_SEED:
            raise ValueError(f"seed {last} is too large; seeds go from 0 to {MAX_SEED}")
        # Counted before the range is built: "0-99999999999" must not fill memory first.
        check_sample_count(len(seeds) + last - first + 1, "seeds")
        seeds.extend(range(first, last + 1))
    return seeds


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation from a (t = 0) to b (t = 1) of two latent vectors; linear when they
    are (anti)parallel."""
    cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    angle = math.acos(min(1.0, max(-1.0, cos)))
    if angle < 1e-6 or abs(angle - math.pi) < 1e-6:
        return ((1 - t) * a + t * b).astype(a.dtype)
    return ((math.sin((1 - t) * angle) * a + math.sin(t * angle) * b) / math.sin(angle)).astype(a.dtype)


def interpolation_path(keyframes: np.ndarray, steps: int) -> np.ndarray:
    """Latents (steps * (K - 1) + 1, D) through K keyframe latents (K, D): `steps` frames from each
    keyframe towards the next, then the last keyframe."""
    if len(keyframes) < 2:
        raise ValueError("interpolation needs at least two seeds, e.g. --seeds 1,2")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    frames = [slerp(keyframes[k], keyframes[k + 1], i / steps) for k in range(len(keyframes) - 1) for i in range(steps)]
    return np.stack([*frames, keyframes[-1]])


def image_grid(images: np.ndarray, columns: int | None = None) -> np.ndarray:
    """(N, H, W, 3) images in [0, 1] as one (rows, columns) grid image on white, with
    GRID_PADDING pixels between and around cells; columns default to ceil(sqrt(N))."""
    count, height, width, _ = images.shape
    if columns is not None and not 1 <= columns <= max(count, 1):
        raise ValueError(f"{columns:,} grid columns for {count} images; use 1 to {count}")
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    pad = GRID_PADDING
    grid = np.ones((rows * (height + pad) + pad, columns * (width + pad) + pad, 3), np.float32)
    for index, image in enumerate(images):
        top, left = pad + (index // columns) * (height + pad), pad + (index % columns) * (width + pad)
        grid[top : top + height, left : left + width] = image
    return grid


def save_frames_gif(frames: np.ndarray, path: str | os.PathLike[str], *, fps: float = 12.0, zoom: int = 1) -> None:
    """Writes (N, H, W, 3) frames in [0, 1] as a looping GIF, atomically, each pixel `zoom` x
    `zoom` (nearest neighbour, so a 64 px face stays crisp when shown larger)."""
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise OutputError(f"cannot write {path.name!r} as an animation; name it .gif")
    if fps <= 0:
        raise ValueError(f"fps must be above 0, got {fps}")
    pictures = [Image.fromarray(quantize(frame, np.uint8)) for frame in frames]
    if zoom > 1:
        pictures = [picture.resize((picture.width * zoom, picture.height * zoom), Image.NEAREST) for picture in pictures]
    write_atomically(
        path,
        lambda temp: pictures[0].save(
            temp, format="GIF", save_all=True, append_images=pictures[1:], duration=round(1000 / fps), loop=0
        ),
        remove_stale=True,
    )


def zoomed(image: np.ndarray, zoom: int) -> np.ndarray:
    """(H, W, 3) repeated `zoom` times along height and width (nearest neighbour)."""
    return image.repeat(zoom, axis=0).repeat(zoom, axis=1) if zoom > 1 else image


def write_samples(
    images: np.ndarray, seeds: list[int], output: str | os.PathLike[str], *, columns: int | None = None, zoom: int = 1
) -> list[Path]:
    """Writes generated images: one grid when `output` names an image file (.png, .jpg, .webp),
    else one `seed0042.png` per seed in the folder `output` (created). Every file is written
    atomically. Returns the written paths."""
    output = Path(output)
    if output.suffix:
        output_format(output)  # an unknown suffix fails before anything is written
        if not output.parent.is_dir():
            raise OutputError(f"folder {output.parent} does not exist; create it or pick another -o")
        save_image(zoomed(image_grid(images, columns), zoom), output)
        return [output]
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output} is a file; give -o a folder, or an image name for a grid")
    output.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed, image in zip(seeds, images):
        path = output / f"seed{seed:04d}.png"
        save_image(zoomed(image, zoom), path, remove_stale=False)
        paths.append(path)
    return paths
