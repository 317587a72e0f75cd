"""Folders of images as training and validation data.

Any folder of photos works: ``list_images`` finds them, ``HRCropDataset`` serves random
high-resolution training crops and ``ValidationImages`` fixed centre crops. The degradation
that turns a high-resolution crop into its low-resolution input runs later, on the batch (see
``img2img.data.degradations``), so it can use the GPU.
"""

from __future__ import annotations

import random
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from img2img.errors import ImageReadError, TrainingError
from img2img.files.decode import load_image
from img2img.files.listing import IMAGE_SUFFIXES, image_files
from img2img.files.pixels import composite, quantize


# Decoded images a dataset keeps in memory, per process, when asked to decide by itself: small
# sets (emoji, a few hundred photos) skip decoding after the first pass; large ones decode on
# each access in the loader's workers instead of filling the memory.
CACHE_LIMIT_BYTES = 2 * 1024**3


def decoded_bytes(paths: list[Path]) -> int:
    """What the images take decoded as 8-bit RGB, read from their headers (nothing is decoded);
    an unreadable file counts 0 here and is reported when it is loaded."""
    total = 0
    for path in paths:
        try:
            with Image.open(path) as image:
                total += image.width * image.height * 3
        except (OSError, ValueError):
            pass
    return total


def cache_decision(paths: list[Path], cache: bool | None) -> bool:
    """`cache` itself, or for None whether the decoded images fit in CACHE_LIMIT_BYTES."""
    return decoded_bytes(paths) <= CACHE_LIMIT_BYTES if cache is None else cache


def list_images(root: str | Path, recursive: bool = True) -> list[Path]:
    """Returns the image files under ``root``, as the runtime lists them (see
    ``img2img.files.listing.image_files``: suffixes, hidden files and links alike), sorted by path.

    Raises ``TrainingError`` when ``root`` is not a folder or holds no image.

    Example:
        >>> list_images("data/photos/train")[:1]  # doctest: +SKIP
        [PosixPath('data/photos/train/gcompris-clickgame-sea1.png')]
    """
    root = Path(root)
    searched = "and its subfolders " if recursive else ""
    extensions = ", ".join(IMAGE_SUFFIXES)
    if not root.is_dir():
        raise TrainingError(
            f"image folder {root} does not exist; point the data path at a folder of images "
            f"({extensions})"
        )
    files = image_files(root, recursive=recursive)
    if not files:
        raise TrainingError(
            f"no images found in {root} {searched}(looked for {extensions}); add images or "
            "point the data path at another folder"
        )
    return files


def read_rgb(path: str | Path, *, background: tuple[int, int, int] | None = None) -> np.ndarray:
    """Decodes an image file to a uint8 array (H, W, 3) through ``img2img.files.decode.load_image``,
    the decoder inference uses, so training sees the pixels inference will: upright by EXIF orientation, 16-bit samples rounded
    to 8 bits, CMYK through its colour profile, gray and palette as RGB.

    Args:
        path: the image file.
        background: (R, G, B) in 0..255 that transparent pixels are composited onto; None drops
            the alpha channel, keeping the colour stored under it.

    Raises ``TrainingError`` naming the file when it cannot be decoded.
    """
    try:
        image = load_image(path)
    except ImageReadError as err:
        raise TrainingError(f"cannot read image {path} ({err}); replace or remove the file") from None
    rgb = image.rgb if background is None else composite(image.rgb, image.alpha, background)
    return quantize(rgb, np.uint8, in_place=True)


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div_(255.0)


class HRCropDataset(Dataset):
    """Random square crops of the images in a folder: the high-resolution side of training pairs.

    Item ``i`` is a random ``patch_size`` crop of image ``i`` as a float32 tensor
    (3, patch_size, patch_size) in [0, 1]. With ``augment`` the crop is also flipped and rotated by
    multiples of 90 degrees, which keeps every pixel value, so it adds no interpolation blur.
    Images smaller than the patch are reflect-padded up to it.

    The length is the number of images: a training loop draws indices with replacement (an
    infinite random sampler), so each image is revisited with a fresh random crop.

    The randomness of ``__getitem__`` comes from torch's global generator, which a
    ``DataLoader`` seeds differently in every worker; ``torch.manual_seed`` therefore fixes the
    crops.

    Args:
        root: folder of images, searched recursively.
        patch_size: side of the square crop in pixels.
        augment: random flips and 90-degree rotations on top of the random crop.
        cache: decode every image once, here, and keep the uint8 arrays in memory (about
            3 bytes per pixel: 300 MB for 150 photos of 1000x700). Decoding up front also finds a
            corrupt file before training starts. False: each item decodes its file. None (the
            default): cache when the decoded set fits in CACHE_LIMIT_BYTES.
        scale_range: (low, high): resize each image by a random factor in this range (area
            interpolation) before cropping, so a crop holds more of the scene than the same
            crop at full resolution (inpainting learns scene structure, not only texture).
            None keeps the pixels as they are (super-resolution's default: shrinking makes a
            photo sharper per pixel than the held-out ones).
        short_side_range: (low, high) in pixels, instead of `scale_range`: resize each image so
            its shorter side is a random whole number of pixels in this range (area
            interpolation when shrinking), so every crop shows about as much of a scene as a
            held-out image resized to a shorter side of `low` and centre-cropped (inpainting's
            validation); `low` must be at least `patch_size`.
        upright: augment with horizontal flips only, so scenes keep their sky at the top (for
            tasks that learn scene layout).
        zoom_out_range: (low, high) with high <= 1, instead of `scale_range`: a random square
            whose side is drawn uniformly from patch_size / high to patch_size / low pixels,
            shrunk to patch_size (area interpolation): a crop as from the image shrunk by a
            factor in the range, at the cost of shrinking the crop alone (multi-scale
            super-resolution training). An image smaller than the largest square is padded by
            reflection first, as for the plain crop.

    Example:
        >>> data = HRCropDataset(root="data/photos/train", patch_size=128)  # doctest: +SKIP
        >>> data[0].shape  # doctest: +SKIP
        torch.Size([3, 128, 128])
    """

    def __init__(
        self,
        *,
        root: str | Path,
        patch_size: int,
        augment: bool = True,
        cache: bool | None = None,
        scale_range: tuple[float, float] | None = None,
        upright: bool = False,
        short_side_range: tuple[int, int] | None = None,
        zoom_out_range: tuple[float, float] | None = None,
    ) -> None:
        if patch_size < 1:
            raise ValueError(f"patch_size must be a positive number of pixels, got {patch_size}")
        if scale_range is not None and not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}")
        if sum(option is not None for option in (scale_range, short_side_range, zoom_out_range)) > 1:
            raise ValueError(
                "give one of scale_range, short_side_range and zoom_out_range: each sets how much an image is resized"
            )
        if zoom_out_range is not None and not 0 < zoom_out_range[0] <= zoom_out_range[1] <= 1:
            raise ValueError(f"zoom_out_range must be (low, high) with 0 < low <= high <= 1, got {zoom_out_range}")
        if short_side_range is not None and not patch_size <= short_side_range[0] <= short_side_range[1]:
            raise ValueError(
                f"short_side_range must be (low, high) with patch_size ({patch_size}) <= low <= high, "
                f"got {short_side_range}"
            )
        self.root = Path(root)
        self.patch_size = patch_size
        self.augment = augment
        self.paths = list_images(self.root)
        self.cache = cache_decision(self.paths, cache)
        self._arrays = [read_rgb(p) for p in self.paths] if self.cache else None
        steps = []
        if scale_range is not None:
            low, high = scale_range
            steps.append(A.RandomScale(scale_limit=(low - 1.0, high - 1.0), interpolation=cv2.INTER_AREA, p=1.0))
        if short_side_range is not None:
            low, high = short_side_range
            steps.append(A.SmallestMaxSize(max_size=list(range(low, high + 1)), interpolation=cv2.INTER_AREA, p=1.0))
        # The side of the square cut from the image before it is shrunk to patch_size (none: cut
        # patch_size itself).
        sides = (patch_size, patch_size)
        if zoom_out_range is not None:
            sides = (round(patch_size / zoom_out_range[1]), round(patch_size / zoom_out_range[0]))
        steps += [
            # Reflection continues the picture's own texture, where a constant border would
            # teach the model flat edges.
            A.PadIfNeeded(min_height=sides[1], min_width=sides[1], border_mode=cv2.BORDER_REFLECT_101),
            A.RandomCrop(height=patch_size, width=patch_size)
            if zoom_out_range is None
            else A.RandomSizedCrop(min_max_height=sides, size=(patch_size, patch_size), interpolation=cv2.INTER_AREA),
        ]
        if augment:
            steps.append(A.HorizontalFlip(p=0.5))
            if not upright:
                steps += [A.VerticalFlip(p=0.5), A.RandomRotate90(p=1.0)]
        self._transform = A.Compose(steps)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        array = self._arrays[index] if self._arrays is not None else read_rgb(self.paths[index])
        # albumentations keeps its own generators; reseed them from torch's so the crop follows
        # torch.manual_seed and differs between DataLoader workers. One generator shared by all
        # steps keeps their draws independent (per-step seeding would flip H and V together).
        seed = int(torch.randint(0, 2**62, ()).item())
        self._transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
        return to_tensor(self._transform(image=array)["image"])


class ValidationImages(Dataset):
    """Fixed centre crops of the images in a folder, for validation.

    Item ``i`` is the centre crop of the ``i``-th image in path order, as a float32 tensor
    (3, H, W) in [0, 1], with H and W at most ``max_size`` and multiples of ``scale`` (so the
    low-resolution input has exactly H/scale x W/scale pixels). The name of item ``i`` is
    ``names[i]``. Crops are decoded once and kept in memory.

    Args:
        root: folder of images, searched recursively.
        scale: the super-resolution factor the crop sizes must be multiples of.
        max_size: largest crop side in pixels (large crops make validation slow).
    """

    def __init__(self, *, root: str | Path, scale: int, max_size: int = 256) -> None:
        if scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        if max_size < scale:
            raise ValueError(f"max_size ({max_size}) must be at least scale ({scale})")
        self.root = Path(root)
        self.scale = scale
        self.max_size = max_size
        self.paths = list_images(self.root)
        self.names = [str(p.relative_to(self.root)) for p in self.paths]
        self._crops = [self._centre_crop(p) for p in self.paths]

    def _centre_crop(self, path: Path) -> np.ndarray:
        array = read_rgb(path)
        height, width = (
            min(side, self.max_size) // self.scale * self.scale for side in array.shape[:2]
        )
        if height == 0 or width == 0:
            raise TrainingError(
                f"validation image {path} ({array.shape[1]}x{array.shape[0]}) is smaller than the "
                f"scale {self.scale}; remove it from {self.root}"
            )
        top = (array.shape[0] - height) // 2
        left = (array.shape[1] - width) // 2
        # A copy, so the decoded full image is freed.
        return array[top : top + height, left : left + width].copy()

    def __len__(self) -> int:
        return len(self._crops)

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_tensor(self._crops[index])


class ScaledPairDataset(Dataset):
    """Aligned crops of LR/HR image pairs whose sizes differ by ``scale``: super-resolution
    trained on given pairs (a camera's two focal lengths, or a teacher model's outputs for
    degraded inputs) instead of LR made from HR on the batch.

    An LR image and its HR image share a file stem (``lr/0001.png`` with ``hr/0001.png``, any
    suffix) and the HR side is exactly ``scale`` times the LR side. Item ``i`` is a pair of
    float32 tensors in [0, 1]: a random (3, p/scale, p/scale) LR crop and the (3, p, p) HR crop
    over the same scene, with ``p = patch_size``, flipped and rotated alike. The randomness
    follows torch's global generator, as in ``HRCropDataset``; pairs are decoded once and kept
    in memory (uint8).

    Raises ``TrainingError`` for an LR image without its HR twin (and the reverse), a pair whose
    sizes do not differ by ``scale``, or an LR image smaller than the LR crop.
    """

    def __init__(self, *, lr_root: str | Path, hr_root: str | Path, scale: int, patch_size: int, augment: bool = True) -> None:
        if patch_size % scale:
            raise ValueError(f"patch_size {patch_size} must be a multiple of scale {scale}")
        self.scale, self.patch_size, self.augment = scale, patch_size, augment
        lr_files = {path.stem: path for path in list_images(lr_root, recursive=False)}
        hr_files = {path.stem: path for path in list_images(hr_root, recursive=False)}
        unpaired = sorted(set(lr_files) ^ set(hr_files))
        if unpaired:
            raise TrainingError(
                f"{len(unpaired)} images of {lr_root} and {hr_root} have no twin of the same name in the other "
                f"folder (first: {unpaired[0]}); every LR image needs its HR image"
            )
        self.names = sorted(lr_files)
        self._pairs = [self._load(lr_files[name], hr_files[name]) for name in self.names]

    def _load(self, lr_path: Path, hr_path: Path) -> tuple[np.ndarray, np.ndarray]:
        lr, hr = read_rgb(lr_path), read_rgb(hr_path)
        if hr.shape[0] != lr.shape[0] * self.scale or hr.shape[1] != lr.shape[1] * self.scale:
            raise TrainingError(
                f"{hr_path} is {hr.shape[1]}x{hr.shape[0]}, not {self.scale} times {lr_path} "
                f"({lr.shape[1]}x{lr.shape[0]}); pair each LR image with its x{self.scale} HR image"
            )
        lr_patch = self.patch_size // self.scale
        if min(lr.shape[:2]) < lr_patch:
            raise TrainingError(
                f"{lr_path} ({lr.shape[1]}x{lr.shape[0]}) is smaller than the LR crop ({lr_patch} px); "
                "use larger pairs or a smaller patch_size"
            )
        return lr, hr

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        lr, hr = self._pairs[index]
        lr_patch = self.patch_size // self.scale
        top = int(torch.randint(0, lr.shape[0] - lr_patch + 1, ()).item())
        left = int(torch.randint(0, lr.shape[1] - lr_patch + 1, ()).item())
        lr = lr[top : top + lr_patch, left : left + lr_patch]
        s = self.scale
        hr = hr[top * s : (top + lr_patch) * s, left * s : (left + lr_patch) * s]
        if self.augment:
            # Flips and quarter turns move pixels without resampling: both sides stay aligned.
            flip_h, flip_v = (bool(v) for v in torch.randint(0, 2, (2,)))
            turns = int(torch.randint(0, 4, ()).item())
            if flip_h:
                lr, hr = lr[:, ::-1], hr[:, ::-1]
            if flip_v:
                lr, hr = lr[::-1], hr[::-1]
            lr, hr = np.rot90(lr, turns), np.rot90(hr, turns)
        return to_tensor(lr), to_tensor(hr)
