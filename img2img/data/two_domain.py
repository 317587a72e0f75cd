"""Two folders of images as the domains A and B of a translation (CycleGAN, pix2pix).

A translation learns G: A -> B (and, for CycleGAN, F: B -> A). The datasets here serve float32
(C, crop_size, crop_size) tensors in [0, 1], C = 3 (RGB) or 1 (gray):

- ``UnalignedDataset``: two unrelated folders; each A image is paired with a random B image,
  so the pairs change every epoch (CycleGAN).
- ``PairedDataset``: two folders whose files correspond by name (pix2pix, or paired evaluation
  of an unpaired model).
- ``AlignedDataset``: one folder of A|B images side by side (the pix2pix data sets' layout).
- ``SingleDataset``: one folder, for translating or showing samples.

Transparent pixels are composited onto a background colour when an image is decoded (emoji and
icons are RGBA; the nets see opaque images). Augmentation follows pytorch-CycleGAN-and-pix2pix's
``resize_and_crop`` preprocessing: a square resize to ``load_size``, a random ``crop_size`` crop
and a random horizontal flip; paired images get the same crop and flip.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from img2img.data.folder import cache_decision, list_images, read_rgb, to_tensor
from img2img.errors import ConfigError, TrainingError
from img2img.files.pixels import luma

BACKGROUND_NAMES = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
}
DIRECTIONS = ("AtoB", "BtoA")
_BACKGROUND_FORMS = 'one of "white", "black", "gray", "#rrggbb" or "r,g,b" (each 0..255)'


def parse_background(text: str) -> tuple[int, int, int]:
    """Reads a background colour: ``"white"``, ``"black"``, ``"gray"``, ``"#rrggbb"`` or
    ``"r,g,b"`` with integers 0..255. Case and surrounding spaces are ignored.

    Raises ``ConfigError`` listing the accepted forms when ``text`` is none of them.

    Example:
        >>> parse_background("#ff8000"), parse_background("0, 128, 255")
        ((255, 128, 0), (0, 128, 255))
    """
    value = text.strip().lower()
    if value in BACKGROUND_NAMES:
        return BACKGROUND_NAMES[value]
    if re.fullmatch(r"#[0-9a-f]{6}", value):
        return tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
    parts = [p.strip() for p in value.split(",")]
    if len(parts) == 3 and all(p.isdigit() and int(p) <= 255 for p in parts):
        return tuple(int(p) for p in parts)  # type: ignore[return-value]
    raise ConfigError(f"background {text!r} is not a colour; use {_BACKGROUND_FORMS}")


def _check_channels(channels: int) -> None:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {channels}")


def _check_background(background: tuple[int, int, int]) -> None:
    if len(background) != 3 or not all(0 <= int(v) <= 255 for v in background):
        raise ValueError(f"background must be 3 integers 0..255 (R, G, B), got {background}")


def load_domain_image(
    path: str | Path, *, channels: int, background: tuple[int, int, int]
) -> np.ndarray:
    """Decodes an image to an opaque uint8 array (H, W, channels), channels 3 (RGB) or 1 (gray).

    Decoded as inference decodes (``img2img.data.folder.read_rgb``). An image with transparency
    (RGBA, LA, or a palette or grey image with a transparent colour) is composited onto
    ``background`` (RGB, 0..255) as the runtime composites it, which rounds to
    ``round((colour * alpha + background * (255 - alpha)) / 255)`` per channel.
    Gray output is the composited RGB's luma (ITU-R 601-2, as Pillow's "L" conversion).

    Raises ``TrainingError`` naming the file when it cannot be decoded.

    Example:
        >>> load_domain_image("data/emoji/google/train/1f600.png", channels=3,
        ...                   background=(255, 255, 255)).shape  # doctest: +SKIP
        (64, 64, 3)
    """
    _check_channels(channels)
    _check_background(background)
    rgb = read_rgb(path, background=background)
    return rgb if channels == 3 else luma(rgb)


def translation_transform(
    *, load_size: int, crop_size: int, augment: bool, paired: bool = False
) -> A.Compose:
    """The albumentations pipeline for uint8 (H, W, C) images: a square bicubic resize to
    ``load_size``, a random ``crop_size`` crop and a random horizontal flip; with
    ``augment=False`` a square resize to ``crop_size`` only (validation).

    With ``paired`` the pipeline takes a second image as ``image_b`` and gives it the same crop
    and flip as ``image``; the two may differ in size, since both are resized first.
    """
    if crop_size < 1:
        raise ValueError(f"crop_size must be a positive number of pixels, got {crop_size}")
    if augment and load_size < crop_size:
        raise ValueError(f"load_size ({load_size}) must be at least crop_size ({crop_size})")
    if augment:
        steps = [
            # Bicubic, as the reference implementation resizes.
            A.Resize(load_size, load_size, interpolation=cv2.INTER_CUBIC),
            A.RandomCrop(crop_size, crop_size),
            A.HorizontalFlip(p=0.5),
        ]
    else:
        steps = [A.Resize(crop_size, crop_size, interpolation=cv2.INTER_CUBIC)]
    if not paired:
        return A.Compose(steps)
    # The shape check would refuse A and B of different sizes, which the resize makes equal.
    return A.Compose(steps, additional_targets={"image_b": "image"}, is_check_shapes=False)


def reseed_transform(transform: A.Compose) -> None:
    # albumentations keeps its own generators; reseed them from torch's so the augmentation
    # follows torch.manual_seed (and the engine's seeded_example) and differs between workers.
    seed = int(torch.randint(0, 2**62, ()).item())
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))


def _domain_images(root: str | Path, role: str) -> list[Path]:
    try:
        return list_images(root)
    except TrainingError as err:
        raise TrainingError(f"{role}: {err}") from None


def _name(path: Path, root: Path) -> str:
    """The path relative to ``root`` without its extension, with "/" separators."""
    return path.relative_to(root).with_suffix("").as_posix()


class _Images:
    """The decoded images of one folder, cached as uint8 arrays or decoded on each access."""

    def __init__(
        self,
        paths: list[Path],
        *,
        channels: int,
        background: tuple[int, int, int],
        cache: bool | None,
    ) -> None:
        self.paths = paths
        self.channels = channels
        self.background = background
        self._arrays = [self._load(p) for p in paths] if cache_decision(paths, cache) else None

    def _load(self, path: Path) -> np.ndarray:
        return load_domain_image(path, channels=self.channels, background=self.background)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return self._arrays[index] if self._arrays is not None else self._load(self.paths[index])


class _TwoDomainBase(Dataset):
    """Settings shared by the datasets: image decoding and the augmentation pipeline."""

    def __init__(
        self,
        *,
        load_size: int,
        crop_size: int,
        channels: int,
        background: tuple[int, int, int],
        augment: bool,
        cache: bool | None,
        paired: bool,
    ) -> None:
        _check_channels(channels)
        _check_background(background)
        self.load_size = load_size
        self.crop_size = crop_size
        self.channels = channels
        self.background = tuple(background)
        self.augment = augment
        self.cache = cache
        self._transform = translation_transform(
            load_size=load_size, crop_size=crop_size, augment=augment, paired=paired
        )

    def _images(self, paths: list[Path]) -> _Images:
        return _Images(paths, channels=self.channels, background=self.background, cache=self.cache)

    def _one(self, array: np.ndarray) -> torch.Tensor:
        reseed_transform(self._transform)
        return to_tensor(self._transform(image=array)["image"])

    def _pair(self, a: np.ndarray, b: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        reseed_transform(self._transform)
        out = self._transform(image=a, image_b=b)
        return to_tensor(out["image"]), to_tensor(out["image_b"])


class UnalignedDataset(_TwoDomainBase):
    """Unpaired images of two domains, for CycleGAN.

    Item ``i`` is ``{"a": A[i % len(A)], "b": B[j]}`` with ``j`` drawn at random on each access,
    so A images meet different B images every epoch; each is a float32 tensor
    (channels, crop_size, crop_size) in [0, 1], augmented independently. The length is
    ``max(len(A), len(B))``.

    Randomness (B's index, crops, flips) comes from torch's global generator only, so
    ``torch.manual_seed`` or the engine's ``seeded_example`` make an item reproducible.

    Args:
        root_a, root_b: folders of the A and B images, searched recursively.
        load_size: side of the square the images are resized to before the random crop.
        crop_size: side of the square crop served.
        channels: 3 for RGB, 1 for gray.
        background: RGB colour (0..255) that transparent pixels are composited onto.
        augment: random crop and flip; without it, a resize to ``crop_size`` only.
        cache: decode every image once, here, and keep the uint8 arrays (64x64 RGB: 12 KB
            each); False: each item decodes its files; None (the default): cache when the
            decoded images fit in `img2img.data.folder.CACHE_LIMIT_BYTES`.

    Example:
        >>> data = UnalignedDataset("data/emoji/google/train", "data/emoji/twitter/train",
        ...                         load_size=72, crop_size=64)  # doctest: +SKIP
        >>> data[0]["a"].shape, data[0]["b"].shape  # doctest: +SKIP
        (torch.Size([3, 64, 64]), torch.Size([3, 64, 64]))
    """

    def __init__(
        self,
        root_a: str | Path,
        root_b: str | Path,
        *,
        load_size: int,
        crop_size: int,
        channels: int = 3,
        background: tuple[int, int, int] = (255, 255, 255),
        augment: bool = True,
        cache: bool | None = None,
    ) -> None:
        super().__init__(
            load_size=load_size,
            crop_size=crop_size,
            channels=channels,
            background=background,
            augment=augment,
            cache=cache,
            paired=False,
        )
        self.root_a, self.root_b = Path(root_a), Path(root_b)
        self.images_a = self._images(_domain_images(root_a, "domain A (root_a)"))
        self.images_b = self._images(_domain_images(root_b, "domain B (root_b)"))

    def __len__(self) -> int:
        return max(len(self.images_a), len(self.images_b))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        b_index = int(torch.randint(len(self.images_b), ()).item())
        return {
            "a": self._one(self.images_a[index % len(self.images_a)]),
            "b": self._one(self.images_b[b_index]),
        }


class PairedDataset(_TwoDomainBase):
    """Corresponding images of two domains in two folders, for pix2pix or paired evaluation.

    Files correspond when their paths relative to ``root_a`` and ``root_b``, without the
    extension, are equal (``x/cat.png`` and ``x/cat.jpg``); files without a counterpart are
    left out. Item ``i`` is ``{"a", "b", "name"}``: the ``i``-th pair in name order as float32
    tensors (channels, crop_size, crop_size) in [0, 1] that got the same crop and flip, and
    their shared name (``"x/cat"``).

    Raises ``TrainingError`` when a folder is missing or empty, when no name is in both, or when
    two files of one folder share a name.

    Arguments as ``UnalignedDataset``.
    """

    def __init__(
        self,
        root_a: str | Path,
        root_b: str | Path,
        *,
        load_size: int,
        crop_size: int,
        channels: int = 3,
        background: tuple[int, int, int] = (255, 255, 255),
        augment: bool = True,
        cache: bool | None = None,
    ) -> None:
        super().__init__(
            load_size=load_size,
            crop_size=crop_size,
            channels=channels,
            background=background,
            augment=augment,
            cache=cache,
            paired=True,
        )
        self.root_a, self.root_b = Path(root_a), Path(root_b)
        by_name_a = self._by_name(self.root_a, "domain A (root_a)")
        by_name_b = self._by_name(self.root_b, "domain B (root_b)")
        self.names = sorted(by_name_a.keys() & by_name_b.keys())
        if not self.names:
            raise TrainingError(
                f"no image in {self.root_a} has a counterpart in {self.root_b}; paired images "
                "must have the same path without the extension (a/x.png and b/x.jpg), or train "
                "on unpaired data"
            )
        self.images_a = self._images([by_name_a[n] for n in self.names])
        self.images_b = self._images([by_name_b[n] for n in self.names])

    @staticmethod
    def _by_name(root: Path, role: str) -> dict[str, Path]:
        by_name: dict[str, Path] = {}
        for path in _domain_images(root, role):
            name = _name(path, root)
            if name in by_name:
                raise TrainingError(
                    f"{role}: {by_name[name]} and {path} have the same name, so which one pairs "
                    "is ambiguous; remove or rename one"
                )
            by_name[name] = path
        return by_name

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        a, b = self._pair(self.images_a[index], self.images_b[index])
        return {"a": a, "b": b, "name": self.names[index]}


class AlignedDataset(_TwoDomainBase):
    """Pairs stored as one image each, A on the left half and B on the right (width 2W).

    With ``direction="BtoA"`` the halves swap roles. An odd width leaves its last column out,
    so both halves are W wide. Item ``i`` is ``{"a", "b", "name"}`` as in ``PairedDataset``:
    the halves of the ``i``-th image in path order got the same crop and flip.

    Arguments as ``UnalignedDataset``, with one folder ``root``, plus ``direction``.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        load_size: int,
        crop_size: int,
        direction: str = "AtoB",
        channels: int = 3,
        background: tuple[int, int, int] = (255, 255, 255),
        augment: bool = True,
        cache: bool | None = None,
    ) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        super().__init__(
            load_size=load_size,
            crop_size=crop_size,
            channels=channels,
            background=background,
            augment=augment,
            cache=cache,
            paired=True,
        )
        self.root = Path(root)
        self.direction = direction
        paths = _domain_images(self.root, "aligned A|B images (root)")
        self.names = [_name(p, self.root) for p in paths]
        self.images = self._images(paths)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        both = self.images[index]
        half = both.shape[1] // 2
        if half == 0:
            raise TrainingError(
                f"{self.images.paths[index]} is 1 pixel wide, so it holds no A|B pair; remove it"
            )
        left, right = both[:, :half], both[:, half : 2 * half]
        a, b = (left, right) if self.direction == "AtoB" else (right, left)
        a, b = self._pair(a, b)
        return {"a": a, "b": b, "name": self.names[index]}


class SingleDataset(_TwoDomainBase):
    """The images of one folder: item ``i`` is ``{"a", "name"}``, the ``i``-th image in path
    order as a float32 tensor (channels, crop_size, crop_size) in [0, 1] and its name (the
    relative path without the extension).

    Arguments as ``UnalignedDataset``, with one folder ``root``.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        load_size: int,
        crop_size: int,
        channels: int = 3,
        background: tuple[int, int, int] = (255, 255, 255),
        augment: bool = True,
        cache: bool | None = None,
    ) -> None:
        super().__init__(
            load_size=load_size,
            crop_size=crop_size,
            channels=channels,
            background=background,
            augment=augment,
            cache=cache,
            paired=False,
        )
        self.root = Path(root)
        paths = _domain_images(self.root, "images (root)")
        self.names = [_name(p, self.root) for p in paths]
        self.images = self._images(paths)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"a": self._one(self.images[index]), "name": self.names[index]}
