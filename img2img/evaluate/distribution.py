"""`img2img eval fid | kid | is`: distribution metrics of image folders on the FID Inception-v3.

A folder's Inception features are cached (see `img2img.metrics.folders`), so a reference set is
computed once; a `.npz` written with `--save-features` can stand in for a folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from img2img.errors import Img2ImgError
from img2img.evaluate.scoring import format_table
from img2img.metrics import (
    INCEPTION_RESIZE,
    InceptionFeatures,
    LogitsHead,
    folder_features,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
)


@dataclass
class DistributionResult:
    """Named values (e.g. {"fid": 12.3}) and the settings that produced them."""

    title: str
    values: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        rows = [[name, value] for name, value in self.values.items()]
        settings = [f"{key}: {value}" for key, value in self.settings.items()]
        return "\n".join([self.title, format_table(["metric", "value"], rows), *settings])

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, **self.values, "settings": self.settings}


class FeatureSource:
    """Computes (or reads from the cache) the Inception features of folders, one net for all."""

    def __init__(
        self,
        *,
        device: torch.device,
        batch_size: int = 32,
        cache: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise Img2ImgError(f"--batch-size must be at least 1, got {batch_size}")
        self.device = device
        self.batch_size = batch_size
        self.cache = cache
        self.progress = progress
        self._extractor: InceptionFeatures | None = None

    @property
    def extractor(self) -> InceptionFeatures:
        if self._extractor is None:
            self._extractor = InceptionFeatures().to(self.device)
        return self._extractor

    def features(self, folder: Path, head: LogitsHead | None = None):
        return folder_features(
            folder,
            self.extractor,
            batch_size=self.batch_size,
            device=self.device,
            cache=self.cache,
            head=head,
            progress=self.progress,
        )

    def settings(self, **counts: int) -> dict[str, Any]:
        return {
            "feature_extractor": "FID Inception-v3 (TF 2015-12-05 port), 2048-d pool features",
            "resize": INCEPTION_RESIZE,
            **{f"{name}_images": count for name, count in counts.items()},
        }


def _count(computed) -> int:
    return computed.features.count


def evaluate_fid(real: Path, fake: Path, source: FeatureSource) -> DistributionResult:
    """Frechet Inception Distance between two folders (or saved feature files)."""
    real_features, fake_features = source.features(real), source.features(fake)
    value = frechet_distance(real_features.features, fake_features.features)
    return DistributionResult(
        f"FID: {fake} against {real}",
        {"fid": value},
        source.settings(real=_count(real_features), fake=_count(fake_features)),
    )


def evaluate_kid(
    real: Path, fake: Path, source: FeatureSource, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> DistributionResult:
    """Kernel Inception Distance between two folders, with its standard error over subsets."""
    real_features, fake_features = source.features(real), source.features(fake)
    mean, std_error = kernel_inception_distance(
        real_features.features.features,
        fake_features.features.features,
        subsets=subsets,
        subset_size=subset_size,
        seed=seed,
    )
    used = min(subset_size, _count(real_features), _count(fake_features))
    settings = source.settings(real=_count(real_features), fake=_count(fake_features))
    settings.update(
        kernel="cubic polynomial (x.y/2048 + 1)^3, unbiased MMD^2",
        subsets=f"{subsets} of {used} images from each set, seed {seed}",
        kid_std_error="standard deviation over subsets / sqrt(subsets)",
    )
    return DistributionResult(f"KID: {fake} against {real}", {"kid": mean, "kid_std_error": std_error}, settings)


def evaluate_inception_score(
    folder: Path, source: FeatureSource, *, head: Path, splits: int = 10
) -> DistributionResult:
    """Inception Score of a folder; the class logits come from a user-supplied head file."""
    logits_head = LogitsHead.from_file(head).to(source.device)
    computed = source.features(folder, head=logits_head)
    mean, std = inception_score(computed.logits, splits=splits)
    settings = source.settings(images=_count(computed))
    settings.update(classifier_head=str(head), splits=min(splits, _count(computed)))
    return DistributionResult(f"Inception Score: {folder}", {"is": mean, "is_std": std}, settings)
