"""Inception features of a folder of images, cached on disk.

A folder is read recursively (the files a batch run would take: image suffixes, hidden files
and folders left out), each image is resized to 299x299 on its own, so images of any sizes can
share a batch, and run through `InceptionFeatures`. The resulting `FeatureSet` is cached as
`<cache_dir()>/inception-features/<key>.npz`, where the key hashes the folder's resolved path,
every file's relative path, size and modification time, the network file and the resize: a
changed, added or removed image, or another network, gives another key, so a stale cache is
never read. Class logits for the Inception Score are computed from the cached features by the
(linear) `LogitsHead`, so they need no network run either.

A reference set computed once (for example the features of a dataset's test images) can be
saved with `FeatureSet.save` and passed instead of a folder.

Example:
    >>> inception = InceptionFeatures()
    >>> real = folder_features("data/test/hr", inception)
    >>> fake = folder_features("runs/x4/samples", inception)
    >>> frechet_distance(real.features, fake.features)
    12.7
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from img2img.errors import Img2ImgError
from img2img.losses.vgg import cache_dir
from img2img.metrics.distribution import FeatureSet
from img2img.metrics.inception import (
    INCEPTION_RESIZE,
    InceptionFeatures,
    LogitsHead,
    resize_for_inception,
)
from img2img.files.decode import load_image
from img2img.files.listing import IMAGE_SUFFIXES, image_files

CACHE_FOLDER = "inception-features"


@dataclass(frozen=True, eq=False)
class FolderFeatures:
    """What `folder_features` returns.

    Attributes:
        features: the Inception features of the images and their Gaussian fit.
        logits: (N, K) float32 class logits when a head was given, else None.
        cached: the features were read from the cache (or a saved `.npz`), not computed.
    """

    features: FeatureSet
    logits: np.ndarray | None
    cached: bool


def load_rgb(path: str | os.PathLike[str]) -> torch.Tensor:
    """One image file as (1, 3, H, W) float32 RGB in [0, 1].

    Decoded by `load_image`: EXIF orientation applied, 16-bit samples divided by 65535, gray
    repeated on three channels, alpha dropped.

    Raises:
        ImageReadError: the file is missing, corrupt or not an image (the message names it).
    """
    rgb = load_image(path).rgb
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0)


def _cache_key(root: Path, paths: list[Path], extractor: InceptionFeatures) -> str:
    files = []
    for path in paths:
        stat = path.stat()
        files.append([path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns])
    content = {
        "folder": str(root.resolve()),
        "files": files,
        "extractor": extractor.identity,
        "resize": INCEPTION_RESIZE,
    }
    return hashlib.sha1(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _read_cache(path: Path, settings: dict) -> FeatureSet | None:
    """The cached set at `path` if it is readable and was made with `settings`, else None."""
    if not path.is_file():
        return None
    try:
        cached = FeatureSet.load(path)
    except Img2ImgError:
        return None  # a damaged cache file is recomputed and overwritten
    return cached if cached.settings == settings else None


def _logits(
    features: FeatureSet, head: LogitsHead | None, device: str | torch.device
) -> np.ndarray | None:
    if head is None:
        return None
    head.to(device)
    return head(torch.from_numpy(features.features).to(device)).cpu().numpy()


def _compute(
    paths: list[Path],
    extractor: InceptionFeatures,
    batch_size: int,
    device: str | torch.device,
    progress: Callable[[int, int], None] | None,
) -> np.ndarray:
    chunks = []
    for start in range(0, len(paths), batch_size):
        batch = [resize_for_inception(load_rgb(path)) for path in paths[start : start + batch_size]]
        chunks.append(extractor(torch.cat(batch).to(device)).cpu().numpy())
        if progress is not None:
            progress(min(start + batch_size, len(paths)), len(paths))
    return np.concatenate(chunks)


def folder_features(
    folder: str | os.PathLike[str],
    extractor: InceptionFeatures,
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    cache: bool = True,
    head: LogitsHead | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FolderFeatures:
    """Inception features (and optionally class logits) of every image under `folder`.

    Args:
        folder: a folder of images (see `img2img.files.listing.image_files`), or a `.npz` written by
            `FeatureSet.save`, which is returned as it is (a precomputed reference set).
        extractor: the network; it and the head are moved to `device`.
        batch_size: images per network run.
        device: where the network runs.
        cache: read and write the feature cache (see the module docstring).
        head: a classifier for Inception Score logits, applied to the features.
        progress: called as progress(done, total) after each batch that runs the network.

    Raises:
        Img2ImgError: the folder is missing or holds fewer than 2 images, an image cannot be
            read (the message names it), or the `.npz` was made with another network or resize.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    folder = Path(folder)
    if folder.suffix.lower() == ".npz" and not folder.is_dir():
        saved = FeatureSet.load(folder)
        for name, expected in (("extractor", extractor.identity), ("resize", INCEPTION_RESIZE)):
            found = saved.settings.get(name, expected)
            if found != expected:
                raise Img2ImgError(
                    f"{folder} was computed with {name} {found!r}, not {expected!r}; FIDs across "
                    "them are not comparable: compute the reference set again"
                )
        return FolderFeatures(saved, _logits(saved, head, device), cached=True)

    paths = image_files(folder)
    if not paths:
        raise Img2ImgError(
            f"no images in {folder} (looked for {' '.join(IMAGE_SUFFIXES)}, hidden files aside)"
        )
    if len(paths) < 2:
        raise Img2ImgError(
            f"{folder} holds 1 image; FID and KID need at least 2 (thousands for stable values)"
        )

    key = _cache_key(folder, paths, extractor)
    settings = {
        "extractor": extractor.identity,
        "resize": INCEPTION_RESIZE,
        "images": len(paths),
        "folder": str(folder.resolve()),
        "key": key,
    }
    cache_path = cache_dir() / CACHE_FOLDER / f"{key}.npz"
    if cache:
        cached = _read_cache(cache_path, settings)
        if cached is not None:
            return FolderFeatures(cached, _logits(cached, head, device), cached=True)

    extractor.to(device)
    features = FeatureSet.from_features(
        _compute(paths, extractor, batch_size, device, progress), settings
    )
    if cache:
        features.save(cache_path)
    return FolderFeatures(features, _logits(features, head, device), cached=False)
