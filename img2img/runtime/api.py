"""The Python API on exported models: `img2img.load(...)` and the `Model` it returns.

A `Model` runs any img2img ONNX model the way its metadata says (task, scale, inputs, size
multiple), tiling large images, on PIL images and numpy arrays alike, and hands the batch runner
a `Processor` for whole folders. An inpainting model (one whose inputs include a mask) fills only
the mask's pixels, through a crop around the hole (see `img2img.runtime.inpaint`); every other
pixel comes back exactly as it went in.

Example:
    >>> import img2img
    >>> upscale = img2img.load("superres-x4")            # a shipped name, or "path/to/model.onnx"
    >>> big = upscale(Image.open("photo.jpg"))            # PIL in, PIL out (mode kept, alpha kept)
    >>> big = upscale(np.asarray(Image.open("photo.jpg"))) # uint8 (H, W, 3) in, uint8 (4H, 4W, 3) out
    >>> to_twitter = img2img.load("emoji.onnx", task="translate", alpha="drop")
    >>> flat = to_twitter(Image.open("emoji.png"))          # RGBA in: composited, RGB out
    >>> fill = img2img.load("inpaint")
    >>> clean = fill(Image.open("photo.jpg"), Image.open("mask.png"))  # white in the mask = fill
    >>> starry = img2img.load("style-starry-night")(Image.open("photo.jpg"))
    >>> mixed = img2img.load("adain.onnx", style=["kiss.png", "starry.jpg"], style_weights=[0.7, 0.3],
    ...                      style_alpha=0.8)(Image.open("photo.jpg"))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from img2img.contract import PRECISIONS, ModelInfo
from img2img.errors import ModelError
from img2img.files.decode import GRAY_MODES, LoadedImage, from_pil
from img2img.files.encode import output_format, save_png_bands, streams_png, to_pil
from img2img.files.pixels import composite, quantize, resize_alpha, unit_float
from img2img.runtime.batch import ProcessedImage, write_output
from img2img.runtime.inpaint import as_mask, check_mask, fill_holes
from img2img.runtime.memory import check_fits
from img2img.runtime.onnx_model import OnnxModel, automatic_precision
from img2img.runtime.shipped import resolve_model
from img2img.runtime.style import load_styles, preserve_color
from img2img.runtime.tiling import DEFAULT_OVERLAP, check_tiling, run_with_fallback, stream_with_fallback

ALPHA_MODES = ("auto", "bicubic", "model", "drop")
# More threads than any machine has cores.
MAX_THREADS = 1_024


@dataclass(frozen=True)
class SavedImage:
    """What `Model.save` wrote: the result's size in pixels, and notes for the user."""

    width: int
    height: int
    warnings: tuple[str, ...] = ()


class Model:
    """An exported model, callable on images.

    Args:
        model: a shipped model name (see `img2img models`) or a path to an .onnx file.
        task: the task the caller expects ("superres", "translate", ...); a model of another task
            is refused. None accepts any.
        scale: for `model=None`, picks the shipped default of `task` with this scale; otherwise
            checked against the model's own scale.
        device: "auto", "cpu" or "cuda".
        precision: "auto" (the model's 8-bit variant on the CPU where it has one, else float32;
            see `automatic_precision`), "fp32", "fp16" (the model's float16 variant; NaN tiles
            rerun in float32) or "int8" (its 8-bit variant, `img2img quantize`; faster on a CPU).
            `info.precision` says which one runs.
        tile: tile size in input pixels, "auto" (from the image size and free memory) or None
            (whole image at once). For a model whose metadata says `whole_image` (instance
            normalisation), "auto" runs every image whole, and a size still tiles but warns that
            the result may differ from the whole-image one.
        tile_overlap: input pixels shared by neighbouring tiles.
        batch_size: tiles per model call; None: 4 on a GPU, 1 on the CPU (where batching does not
            speed anything up but costs memory).
        alpha: what becomes of transparency: "auto" is "drop" for a model whose metadata says
            it paints over transparent areas (`opaque_output`: a colouring of line art), else
            "bicubic"; "bicubic" keeps the input's opacity plane, resized
            smoothly to the output size; "model" upscales the plane through the model as a gray
            image (edges as sharp as the colours'; a same-size model keeps the plane as it is,
            since nothing needs resizing and a translator would restyle opacity as if it were an
            image); "drop" writes no alpha, the output is opaque. A model with a `background`
            first composites transparent pixels onto it, as its training data was.
        threads: onnxruntime intra-op threads (None: all cores).
        full: inpainting models: run the whole image at its own size (tiled as `tile` says)
            instead of a crop around the hole at the model's resolution.
        style: arbitrary-style (AdaIN) models: the style images, as file paths or
            (H, W, 3) arrays (uint8, or float in [0, 1]); several are mixed by `style_weights`.
        style_weights: one non-negative weight per style image (default: equal); normalised.
        style_alpha: arbitrary-style models: 0 gives the content back, 1 full style.
        preserve_color: keep the input's colours and take only the luminance from the model
            (luminance-only style transfer); for same-size models.

    Raises:
        ModelError: unknown name or file, wrong task or scale, unusable device or precision, a
            model that takes a mask but changes the image's size, style images for a model
            that takes none (or none for one that needs them), or a style weight, alpha or
            preserve_color the model cannot use.
        ImageReadError: a style image file cannot be read.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        task: str | None = None,
        scale: int | None = None,
        device: str = "auto",
        precision: str = "auto",
        tile: int | str | None = "auto",
        tile_overlap: int = DEFAULT_OVERLAP,
        batch_size: int | None = None,
        alpha: str = "auto",
        threads: int | None = None,
        full: bool = False,
        style: Sequence[str | os.PathLike[str] | np.ndarray] | None = None,
        style_weights: Sequence[float] | None = None,
        style_alpha: float = 1.0,
        preserve_color: bool = False,
    ) -> None:
        if alpha not in ALPHA_MODES:
            raise ModelError(f"unknown alpha mode {alpha!r}; choose one of: {', '.join(ALPHA_MODES)}")
        check_tiling(tile, tile_overlap)
        if threads is not None and not 1 <= threads <= MAX_THREADS:
            raise ModelError(
                f"threads must be 1 to {MAX_THREADS}, got {threads:,}; leave it out to use every core"
            )
        name = None if model is None else os.fspath(model)
        if precision == "auto":
            precision = automatic_precision(resolve_model(name, task=task, scale=scale, verify=False), device)
        elif precision not in PRECISIONS:
            raise ModelError(f"unknown precision {precision!r}; choose one of: auto, {', '.join(PRECISIONS)}")
        self.path = resolve_model(name, task=task, scale=scale, precision=precision)
        self.onnx = OnnxModel(self.path, device=device, threads=threads, precision=precision)
        self.info.require(task=task, scale=scale, channels=3)
        if self.fills_holes and self.info.scale != 1:
            # The fill is pasted into the input pixel for pixel.
            raise ModelError(
                f"model {self.info.name!r} takes a mask but scales x{self.info.scale}; inpainting models "
                "must keep the image's size, re-export it with scale 1"
            )
        self._set_styles(style, style_weights, style_alpha)
        if preserve_color and self.info.scale != 1:
            raise ModelError(f"preserve_color keeps the input's colours pixel for pixel; {self.info.name} scales x{self.info.scale}")
        self.preserve_color = preserve_color
        self.full = full
        self.tile = tile
        self.tile_overlap = tile_overlap
        self.batch_size = batch_size or (4 if self.onnx.on_gpu else 1)
        if alpha == "auto":
            alpha = "drop" if self.info.opaque_output else "bicubic"
        self.alpha = alpha

    @property
    def info(self) -> ModelInfo:
        return self.onnx.info

    def _set_styles(
        self,
        style: Sequence[str | os.PathLike[str] | np.ndarray] | None,
        weights: Sequence[float] | None,
        alpha: float,
    ) -> None:
        """Hands the style images to an arbitrary-style model; refuses style options elsewhere."""
        name = self.info.name
        if not self.onnx.takes_style:
            if style is not None or weights is not None or alpha != 1.0:
                fixed = f" ({self.info.style})" if self.info.style else ""
                raise ModelError(
                    f"{name} renders one fixed style{fixed} and takes no style images, weights or alpha; "
                    "use an arbitrary-style (AdaIN) model for those"
                )
            return
        if not style:
            raise ModelError(f"{name} renders the style images it is given; pass at least one (--style-image PATH)")
        if weights is not None and len(weights) != len(style):
            raise ModelError(f"got {len(weights)} style weights for {len(style)} style images; give one weight per image")
        size = self.info.style_size or 256
        squares = load_styles(style, size)
        self.onnx.set_styles(squares, np.ones(len(squares)) if weights is None else weights, alpha)

    @property
    def fills_holes(self) -> bool:
        """An inpainting model: it takes a mask with the image."""
        return "mask" in self.info.inputs

    def __repr__(self) -> str:
        return (
            f"Model({self.info.name!r}, task={self.info.task!r}, scale={self.info.scale}, "
            f"providers={self.onnx.providers})"
        )

    def __call__(
        self, image: Image.Image | np.ndarray, mask: Image.Image | np.ndarray | None = None
    ) -> Image.Image | np.ndarray:
        """Run the model on one image of any size, returned in the form it came in.

        Args:
            image: a PIL image (any mode: RGB, RGBA, L, P, I;16, CMYK, ...), or a numpy array
                (H, W), (H, W, 3) or (H, W, 4) of uint8 (0-255), uint16 (0-65535) or float
                ([0, 1]).
            mask: for models that take one: a PIL image or an (H, W), (H, W, 3) or (H, W, 4) array
                of the image's size; nonzero (not black) pixels are filled.

        Returns:
            The same kind of object: a PIL image of the same mode family, or an array of the same
            dtype and channel layout, `scale` times larger (without alpha when `alpha` is "drop").
            An inpainting model changes only the mask's pixels.

        Raises:
            ImageReadError: the mask's size differs from the image's, or it marks no pixel.
        """
        masks = None if mask is None else as_mask(mask)
        if isinstance(image, Image.Image):
            result = self.process(from_pil(image), mask=masks)
            return to_pil(result.pixels, alpha=result.alpha, grayscale=image.mode in GRAY_MODES)
        if isinstance(image, np.ndarray):
            return self._call_array(image, masks)
        raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")

    def process(
        self,
        image: LoadedImage,
        *,
        mask: np.ndarray | None = None,
        on_tile: Callable[[int, int], None] | None = None,
        output_format: str | None = None,
    ) -> ProcessedImage:
        """Run the model on a decoded image file; the batch runner's processor.

        Output pixels are uint16 for a 16-bit source, else uint8, so a large result never exists
        as a float image. Transparent pixels are composited onto the model's background (if it
        has one) before the net; the output's transparency is what `alpha` says. An inpainting
        model needs `mask`, (H, W) float32 in {0, 1} with 1 = fill, and changes only its pixels.

        `output_format` ("PNG", "JPEG", "WEBP"), where the caller knows it, makes the memory check
        count what that encoder holds; without it, the costliest.

        Raises:
            ImageReadError: the mask's size differs from the image's, or it marks no pixel.
            InferenceMemoryError: the result cannot fit in the memory there is (checked first).
        """
        warnings: list[str] = []
        retries = self.onnx.fp32_retries
        out_dtype = np.uint16 if image.bit_depth == 16 else np.uint8
        self._check_memory(image, output_format=output_format, streamed=False)
        if self.fills_holes:
            mask = self._require_mask(mask, image.rgb)
            box, filled = self._fill(image.rgb, image.alpha, mask, warnings.append, on_tile)
            # Integer sources round-trip exactly through their float32 pixels, so the kept pixels
            # are the file's own values.
            pixels = quantize(image.rgb, out_dtype)
            hole = mask[box] > 0
            pixels[box][hole] = quantize(filled[hole], out_dtype)
        elif self.preserve_color:
            rgb = self._composited(image.rgb, image.alpha)
            stylised = self._run(rgb, mask, np.float32, warnings.append, on_tile)
            pixels = quantize(preserve_color(stylised, rgb), out_dtype)
        else:
            rgb = self._composited(image.rgb, image.alpha)
            pixels = self._run(rgb, mask, out_dtype, warnings.append, on_tile)
        alpha = None
        if image.alpha is not None and self.alpha != "drop":
            alpha = self._resize_alpha(image.alpha, pixels.shape[:2], out_dtype, warnings.append)
        self._note_fp32_retries(retries, warnings)
        # The opacity plane may go through the net too and would repeat a tiling warning.
        return ProcessedImage(pixels=pixels, alpha=alpha, warnings=tuple(dict.fromkeys(warnings)))

    def save(
        self,
        image: LoadedImage,
        path: str | os.PathLike[str],
        *,
        mask: np.ndarray | None = None,
        quality: int = 95,
        on_tile: Callable[[int, int], None] | None = None,
    ) -> SavedImage:
        """Run the model on a decoded image file and write the result to `path` atomically, as
        `write_output` writes what `process` returns (bit depth, gray, colour profile, EXIF).

        A PNG that would be encoded band by band anyway (16-bit, or STREAMED_PNG_PIXELS and
        more) is encoded here as the tiles make it, so the result is never held whole: a
        12000x12000 photo at x4 needs its input and one row of tiles, not a 6.9 GB buffer. That
        holds wherever the net's output goes straight to the file; inpainting and
        `preserve_color` combine it with the input, and kept opacity is a second plane, so those
        results are made whole first.

        Raises:
            ImageReadError: the mask's size differs from the image's, or it marks no pixel.
            InferenceMemoryError: the run cannot fit in the memory there is (checked first).
            OutputError: the file cannot be written (nothing is left at `path`).
        """
        height, width = image.rgb.shape[:2]
        scale, bit_depth = self.info.scale, 16 if image.bit_depth == 16 else 8
        kept_alpha = image.alpha is not None and self.alpha != "drop"
        streamed = (
            mask is None and not (self.fills_holes or self.preserve_color or kept_alpha)
            and streams_png(path, height * scale, width * scale, bit_depth)
        )
        if not streamed:
            result = self.process(image, mask=mask, on_tile=on_tile, output_format=output_format(Path(path)))
            written = write_output(image, result, path, quality=quality)
            out_height, out_width = result.pixels.shape[:2]
            return SavedImage(out_width, out_height, tuple(dict.fromkeys(result.warnings + written)))

        self._check_memory(image, output_format="PNG", streamed=True)
        warnings: list[str] = []
        retries = self.onnx.fp32_retries

        def encode(bands: Iterator[tuple[int, np.ndarray]]) -> None:
            save_png_bands(
                path, bands, height=height * scale, width=width * scale, bit_depth=bit_depth,
                grayscale=image.grayscale, icc_profile=image.icc_profile, exif=image.exif,
            )

        stream_with_fallback(
            self.onnx,
            self._composited(image.rgb, image.alpha),
            encode,
            tile=self._tile_for(height, width, warnings.append),
            overlap=self.tile_overlap,
            batch_size=self.batch_size,
            out_dtype=np.uint16 if bit_depth == 16 else np.uint8,
            on_gpu=self.onnx.on_gpu,
            warn=warnings.append,
            on_tile=on_tile,
        )
        self._note_fp32_retries(retries, warnings)
        return SavedImage(width * scale, height * scale, tuple(dict.fromkeys(warnings)))

    def _check_memory(self, image: LoadedImage, *, output_format: str | None, streamed: bool) -> None:
        """`memory.check_fits` for running this model on `image` (see `process` and `save`)."""
        height, width = image.rgb.shape[:2]
        scale = self.info.scale
        # One row of tiles in float32 at output resolution (auto tiles keep it within 2 GiB).
        rows = height if self.tile is None else min(height, self.tile if isinstance(self.tile, int) else 512)
        check_fits(
            height, width, scale=scale, bit_depth=16 if image.bit_depth == 16 else 8,
            alpha=image.alpha is not None and self.alpha != "drop",
            strip_bytes=min(rows * scale * width * scale * 3 * 4, 2 << 30), output_format=output_format,
            streamed=streamed,
        )

    def _note_fp32_retries(self, before: int, warnings: list[str]) -> None:
        """Warn when tiles were rerun in fp32 since the session's count was `before`."""
        if self.onnx.fp32_retries > before:
            warnings.append(f"{self.onnx.fp32_retries - before} tile(s) overflowed in fp16 and were rerun in fp32")

    def _require_mask(self, mask: np.ndarray | None, rgb: np.ndarray) -> np.ndarray:
        """The (H, W) float32 {0, 1} mask an inpainting model runs with (nonzero = 1), checked
        against the (H, W, 3) image."""
        if mask is None:
            raise ModelError(f"{self.info.name} fills a masked region; pass a mask with the image")
        check_mask(mask, *rgb.shape[:2])
        return (mask > 0).astype(np.float32)

    def _fill(
        self,
        rgb: np.ndarray,
        alpha: np.ndarray | None,
        mask: np.ndarray,
        warn: Callable[[str], None],
        on_tile: Callable[[int, int], None] | None = None,
    ) -> tuple[tuple[slice, slice], np.ndarray]:
        """The inpainting model's (h, w, 3) float32 pixels over a region (rows, columns) of the
        (H, W, 3) image around the hole of the (H, W) mask; see `inpaint.fill_holes`."""

        def run(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
            return self._run(image, hole, np.float32, warn, on_tile)

        return fill_holes(
            run, self._composited(rgb, alpha), mask, resolution=self.info.resolution, full=self.full
        )

    def _composited(self, rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
        """(H, W, 3) float RGB in [0, 1] laid over the model's background with (H, W) opacity
        `alpha` in [0, 1]; unchanged without alpha or background.

        Nets trained on composited images never saw the colour hidden under transparent pixels,
        which is often arbitrary (black, or leftovers of an editor).
        """
        if self.info.background is None:
            return rgb
        return composite(rgb, alpha, self.info.background)

    def _run(
        self,
        rgb: np.ndarray,
        mask: np.ndarray | None,
        out_dtype: type[np.generic],
        warn: Callable[[str], None],
        on_tile: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        return run_with_fallback(
            self.onnx,
            rgb,
            tile=self._tile_for(*rgb.shape[:2], warn),
            overlap=self.tile_overlap,
            mask=mask,
            batch_size=self.batch_size,
            out_dtype=out_dtype,
            on_gpu=self.onnx.on_gpu,
            warn=warn,
            on_tile=on_tile,
        )

    def _tile_for(self, height: int, width: int, warn: Callable[[str], None]) -> int | str | None:
        """The tile to run a (height, width) image with: `tile`, except that a whole-image model
        runs whole under "auto", and warns when an explicit tile does cut the image."""
        if not self.info.whole_image:
            return self.tile
        if self.tile == "auto":
            return None
        if isinstance(self.tile, int) and self.tile < max(height, width):
            warn(
                f"{self.info.name} normalises over the whole image, so {self.tile}-pixel tiles may give "
                "a different result; use --tile auto or 0 to run the image whole"
            )
        return self.tile

    def _resize_alpha(
        self, alpha: np.ndarray, size: tuple[int, int], out_dtype: type[np.generic], warn: Callable[[str], None]
    ) -> np.ndarray:
        """(H, W) float opacity -> (H', W') of `out_dtype` at the output size."""
        height, width = size
        if alpha.shape == (height, width):
            plane = alpha
        elif self.alpha == "model":
            gray = np.repeat(alpha[:, :, None], 3, axis=2)
            return self._run(gray, None, out_dtype, warn).mean(axis=2).round().astype(out_dtype)
        else:
            plane = resize_alpha(alpha, (width, height))
        return quantize(plane, out_dtype)

    def _call_array(self, array: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """numpy in, numpy out, with the caller's dtype and channel layout ((H, W, 4) comes back
        as (H, W, 3) when `alpha` is "drop")."""
        if array.ndim not in (2, 3) or array.ndim == 3 and array.shape[2] not in (3, 4):
            raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {array.shape}")
        if array.dtype not in (np.uint8, np.uint16) and not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"expected uint8, uint16 or float pixels, got dtype {array.dtype}")
        floats = unit_float(array)
        gray = array.ndim == 2
        rgb = np.repeat(floats[:, :, None], 3, axis=2) if gray else floats[:, :, :3]
        alpha = floats[:, :, 3] if floats.ndim == 3 and floats.shape[2] == 4 else None
        out_dtype = array.dtype.type if array.dtype in (np.uint8, np.uint16) else np.float32
        warnings: list[str] = []
        if self.fills_holes:
            source = floats if out_dtype == np.float32 else array
            return self._inpaint_array(source, rgb, alpha, mask, warnings.append)
        pixels = self._run(self._composited(rgb, alpha), mask, out_dtype, warnings.append)
        if gray:
            plane = pixels.mean(axis=2)
            return plane if out_dtype == np.float32 else plane.round().astype(out_dtype)
        if alpha is None or self.alpha == "drop":
            return pixels
        plane = self._resize_alpha(alpha, pixels.shape[:2], out_dtype, warnings.append)
        return np.concatenate([pixels, plane[:, :, None]], axis=2)

    def _inpaint_array(
        self,
        array: np.ndarray,
        rgb: np.ndarray,
        alpha: np.ndarray | None,
        mask: np.ndarray | None,
        warn: Callable[[str], None],
    ) -> np.ndarray:
        """`array` (uint8, uint16, or float32 clipped to [0, 1]; (H, W), (H, W, 3) or (H, W, 4))
        with the hole filled from its (H, W, 3) float RGB `rgb` and opacity `alpha`; every other
        value is copied as it is."""
        mask = self._require_mask(mask, rgb)
        box, filled = self._fill(rgb, alpha, mask, warn)
        hole = mask[box] > 0
        values = filled[hole]  # (holes, 3)
        out = array.copy()
        region = out[box]
        if out.ndim == 2:
            region[hole] = quantize(values.mean(axis=1), out.dtype.type)
            return out
        region[hole, :3] = quantize(values, out.dtype.type)
        if out.shape[2] == 4 and self.alpha == "drop":
            return np.ascontiguousarray(out[:, :, :3])
        return out


def load(
    model: str | os.PathLike[str] | None = None,
    *,
    task: str | None = None,
    **options: object,
) -> Model:
    """Open an exported model for inference: `img2img.load("superres-x4")` or `load("m.onnx")`.

    Keyword options are those of `Model` (scale, device, precision, tile, tile_overlap,
    batch_size, alpha, threads, full, style, style_weights, style_alpha, preserve_color).
    """
    return Model(model, task=task, **options)  # type: ignore[arg-type]
