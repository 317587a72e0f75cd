"""A folder of images, optionally labelled by subfolder, at one square resolution.

The training data of noise-to-image generators: aligned face crops (CelebA, FFHQ style) or the
face emoji of `scripts/build_faces.py`. Every image under the root is used, searched
recursively; for a class-conditional model the label of an image is the first subfolder below the
root it sits in (`root/smiley/x.png` has label "smiley"), and classes are numbered in sorted name
order. Images that are not square are centre-cropped; all are resized to `resolution` with area
averaging (antialiased), and transparent pixels are composited onto `background`.
"""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from img2img.data.folder import list_images
from img2img.data.two_domain import load_domain_image, reseed_transform
from img2img.errors import ConfigError


def class_names(root: str | Path) -> list[str]:
    """The labels of a class-labelled folder: its subfolders that hold images, sorted.

    Raises ConfigError when fewer than two subfolders hold images, or when images lie directly in
    the root (they would have no label).
    """
    root = Path(root)
    images = list_images(root)
    loose = [path for path in images if path.parent == root]
    if loose:
        raise ConfigError(
            f"{root} holds images outside any class subfolder (e.g. {loose[0].name}); a conditional "
            "model needs every image in root/<label>/, or train without --conditional"
        )
    names = sorted({path.relative_to(root).parts[0] for path in images})
    if len(names) < 2:
        raise ConfigError(
            f"{root} has {len(names)} class subfolder(s) with images; a conditional model needs at least two "
            "(root/<label>/*.png), or train without --conditional"
        )
    return names


class LabelledImages(Dataset):
    """Images under `root` as training examples.

    Args:
        root: folder searched recursively.
        resolution: side of the square examples.
        labels: class names (subfolders of `root`) for a conditional model, numbered in this
            order; None: unlabelled, every label is 0. Images outside these folders are skipped.
        flip: random horizontal flip (faces are nearly symmetric: it doubles the set).
        background: (R, G, B) 0..255 for transparent pixels.

    Returns per item:
        {"image": (3, resolution, resolution) float32 in [0, 1], "label": int64 scalar}.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        resolution: int,
        labels: list[str] | None = None,
        flip: bool = True,
        background: tuple[int, int, int] = (255, 255, 255),
    ) -> None:
        root = Path(root)
        self.labels = labels
        self.background = background
        paths = list_images(root)
        if labels is None:
            self.items = [(path, 0) for path in paths]
        else:
            index = {name: number for number, name in enumerate(labels)}
            self.items = [
                (path, index[path.relative_to(root).parts[0]])
                for path in paths
                if len(path.relative_to(root).parts) > 1 and path.relative_to(root).parts[0] in index
            ]
            missing = sorted(set(labels) - {labels[label] for _, label in self.items})
            if missing:
                raise ConfigError(f"{root} has no images for label(s) {', '.join(missing)}; add root/<label>/ folders")
        steps = [
            A.SmallestMaxSize(resolution, interpolation=cv2.INTER_AREA),
            A.CenterCrop(resolution, resolution),
        ]
        if flip:
            steps.append(A.HorizontalFlip(p=0.5))
        self.transform = A.Compose(steps)

    def __len__(self) -> int:
        return len(self.items)

    def label_counts(self) -> np.ndarray:
        """(num_classes,) number of images per label (one entry when unlabelled)."""
        return np.bincount([label for _, label in self.items], minlength=len(self.labels or [0]))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path, label = self.items[index]
        image = load_domain_image(path, channels=3, background=self.background)
        reseed_transform(self.transform)
        image = self.transform(image=image)["image"]
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
        return {"image": tensor, "label": torch.tensor(label, dtype=torch.long)}
