"""Distribution metrics over sets of image features: FID, KID and Inception Score.

Everything here is numpy in float64; the features come from `InceptionFeatures` (pool features,
(N, 2048)) and the class logits from a `LogitsHead` on top of them.

- FID (Heusel et al., 2017): the Frechet distance between two Gaussians fitted to the feature
  sets, ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)). Lower is better; 0 for
  identical statistics. Biased by the number of images: compare FIDs computed on equal counts.
- KID (Binkowski et al., 2018): the unbiased squared MMD between the feature sets with the
  cubic polynomial kernel k(x, y) = (x . y / D + 1)^3, averaged over random subsets. Unbiased,
  so it can be slightly negative, and usable on small sets.
- IS (Salimans et al., 2016): exp(E_x KL(p(y|x) || p(y))) of the class predictions, from 1 (all
  predictions identical) to K (K classes used equally, each image predicted with certainty).

Example:
    >>> rng = np.random.default_rng(0)
    >>> a = FeatureSet.from_features(rng.normal(size=(500, 4)))
    >>> b = FeatureSet.from_features(rng.normal(size=(500, 4)) + 1.0)
    >>> frechet_distance(a, a) < 1e-9, round(frechet_distance(a, b))
    (True, 4)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from img2img.errors import Img2ImgError
from img2img.files.atomic import write_atomically

_NPZ_KEYS = ("features", "mean", "covariance", "settings")


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """Features of a set of images and the Gaussian FID fits to them.

    Attributes:
        features: (N, D) float32, kept for KID (which works on the samples, not the fit).
        mean: (D,) float64.
        covariance: (D, D) float64, unbiased (divided by N - 1).
        settings: how the features were made (extractor, resize, image count, ...), stored with
            the set so that a saved file can be checked against what is asked of it.
    """

    features: np.ndarray
    mean: np.ndarray
    covariance: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        dim = self.mean.shape[0] if self.mean.ndim == 1 else None
        if dim is None or self.covariance.shape != (dim, dim):
            raise ValueError(
                f"mean must be (D,) and covariance (D, D), got {self.mean.shape} and "
                f"{self.covariance.shape}"
            )
        if self.features.ndim != 2 or self.features.shape[1] != dim:
            raise ValueError(f"features must be (N, {dim}), got {self.features.shape}")

    @property
    def count(self) -> int:
        """N, the number of feature vectors."""
        return self.features.shape[0]

    @classmethod
    def from_features(
        cls, features: np.ndarray, settings: dict[str, Any] | None = None
    ) -> FeatureSet:
        """Fit mean and unbiased covariance (float64) to `features` (N, D), N >= 2, any real
        dtype, kept as float32."""
        features = np.asarray(features)
        if features.ndim != 2:
            raise ValueError(f"features must be a (N, D) array, got shape {features.shape}")
        if features.shape[0] < 2:
            raise ValueError(
                f"a covariance needs at least 2 feature vectors, got {features.shape[0]}; "
                "score more images"
            )
        if not np.isfinite(features).all():
            raise ValueError("features hold NaN or inf; check the images and the extractor")
        kept = features.astype(np.float32)
        # Fitted to the float32 values kept, so that the samples and statistics agree exactly.
        as64 = kept.astype(np.float64)
        return cls(
            features=kept,
            mean=as64.mean(axis=0),
            covariance=np.cov(as64, rowvar=False, ddof=1),
            settings=dict(settings or {}),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the set to `path` as an uncompressed `.npz` (atomically), returning the path.

        Keys: features, mean, covariance, and settings as a JSON string (settings must be
        JSON-serialisable).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        settings = json.dumps(self.settings, sort_keys=True)

        def write(temp: Path) -> None:
            # Through a file object: given a name, np.savez would append ".npz" to it.
            with temp.open("wb") as file:
                np.savez(
                    file,
                    features=self.features,
                    mean=self.mean,
                    covariance=self.covariance,
                    settings=np.array(settings),
                )

        write_atomically(path, write)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureSet:
        """Read a set written by `save`.

        Raises:
            Img2ImgError: the file is missing, unreadable or not a feature set.
        """
        path = Path(path)
        if not path.is_file():
            raise Img2ImgError(f"feature file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [key for key in _NPZ_KEYS if key not in data.files]
                if missing:
                    raise Img2ImgError(
                        f"{path} is not a feature set (missing {', '.join(missing)}); "
                        "write one with FeatureSet.save"
                    )
                arrays = {key: data[key] for key in _NPZ_KEYS}
            return cls(
                features=arrays["features"].astype(np.float32),
                mean=arrays["mean"].astype(np.float64),
                covariance=arrays["covariance"].astype(np.float64),
                settings=json.loads(str(arrays["settings"])),
            )
        except Img2ImgError:
            raise
        except (OSError, ValueError, EOFError) as error:  # zip, npy and JSON errors
            raise Img2ImgError(
                f"cannot read the feature set {path} ({error}); write it again with FeatureSet.save"
            ) from None


def _check_pair(a: FeatureSet, b: FeatureSet) -> None:
    if a.mean.shape != b.mean.shape:
        raise ValueError(
            f"feature sets of different dimensions ({a.mean.shape[0]} and {b.mean.shape[0]}) "
            "cannot be compared; compute both with the same extractor"
        )


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (float64)."""
    values, vectors = np.linalg.eigh(matrix)
    # Rounding leaves eigenvalues of about -1e-16 * trace where the true value is 0 (any
    # covariance of fewer than D + 1 samples is singular).
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _factor_width(s: FeatureSet) -> int:
    """Columns of the factor `_covariance_factor` returns for `s`."""
    dim = s.mean.shape[0]
    return s.count if 2 <= s.count <= dim else dim


def _covariance_factor(s: FeatureSet) -> np.ndarray:
    """F (D, r) with F F^T = covariance: the centred samples over sqrt(N - 1) when there are no
    more samples than dimensions (r = N, cheap), else the symmetric square root (r = D)."""
    if _factor_width(s) == s.count:
        samples = s.features.astype(np.float64)
        return (samples - samples.mean(axis=0)).T / np.sqrt(s.count - 1)
    return _psd_sqrt(s.covariance)


def frechet_distance(a: FeatureSet, b: FeatureSet) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets (FID on Inception
    features).

    ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)), in float64. The trace of the
    square root is the sum of the square roots of the eigenvalues of the symmetric positive
    semi-definite F^T S_b F, where S_a = F F^T: S_a S_b and F^T S_b F have the same non-zero
    eigenvalues. F is S_a^(1/2) (an eigendecomposition), or, when a set has no more samples than
    dimensions, its centred samples over sqrt(N - 1): then F^T S_b F is only N x N, which makes
    FID of a few hundred validation images cheap. Either way this avoids the complex results and
    failures of a general matrix square root on singular covariances, so FID(a, a) comes out 0
    within rounding and FID(a, b) = FID(b, a).

    The set's `features` must be the samples its mean and covariance were fitted to (as
    `FeatureSet.from_features` makes them).

    Returns:
        The distance, >= 0 (a rounding residue below 0 is returned as 0).
    """
    _check_pair(a, b)
    # The trace is symmetric in a and b: factor the set that gives the smaller matrix.
    first, second = (a, b) if _factor_width(a) <= _factor_width(b) else (b, a)
    factor = _covariance_factor(first)
    middle = factor.T @ second.covariance @ factor
    # Symmetrise what rounding made slightly asymmetric, since eigvalsh reads one triangle only.
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    diff = a.mean - b.mean
    distance = diff @ diff + np.trace(a.covariance) + np.trace(b.covariance) - 2.0 * trace_sqrt
    return max(float(distance), 0.0)


def _cubic_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two samples of equal size m with the cubic kernel (float64)."""
    m = x.shape[0]
    k_xx, k_yy, k_xy = _cubic_kernel(x, x), _cubic_kernel(y, y), _cubic_kernel(x, y)
    # Within-set sums leave out the diagonal (i == j): that is what makes the estimate unbiased.
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    a: FeatureSet | np.ndarray,
    b: FeatureSet | np.ndarray,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD^2 with k(x, y) = (x . y / D + 1)^3.

    Each of `subsets` rounds draws m = min(subset_size, N_a, N_b) vectors without replacement
    from each set and computes the unbiased MMD^2 between them; the result is the mean over
    rounds. The draws come from `numpy.random.default_rng(seed)`, so a call is reproducible.

    Args:
        a, b: FeatureSets or raw (N, D) features; N >= 2 each.
        subsets: number of random subset pairs, >= 1.
        subset_size: vectors per subset (capped by the smaller set).
        seed: seed of the subset draws.

    Returns:
        (mean, std_error). std_error = std(values, ddof=1) / sqrt(subsets) is the standard error
        of the mean over subset draws: it measures the spread due to which subsets were drawn,
        not how the score would vary with other images from the same distributions. It is 0
        when the subsets are the whole sets (every draw is the same), NaN for one subset.
        Report KID as mean ± std_error.
    """
    x = a.features if isinstance(a, FeatureSet) else np.asarray(a)
    y = b.features if isinstance(b, FeatureSet) else np.asarray(b)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D, got {x.shape} and {y.shape}")
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"need subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < 2:
        raise ValueError(
            f"KID needs at least 2 feature vectors per set, got {x.shape[0]} and {y.shape[0]}"
        )
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for index in range(subsets):
        pick_x = rng.choice(x.shape[0], size=m, replace=False)
        pick_y = rng.choice(y.shape[0], size=m, replace=False)
        values[index] = _unbiased_mmd2(x[pick_x].astype(np.float64), y[pick_y].astype(np.float64))
    std_error = values.std(ddof=1) / np.sqrt(subsets) if subsets > 1 else float("nan")
    return float(values.mean()), float(std_error)


def inception_score(logits: np.ndarray, *, splits: int = 10) -> tuple[float, float]:
    """Inception Score of class logits: exp(mean over images of KL(p(y|x) || p(y))).

    p(y|x) is the softmax of each row (float64), p(y) its mean over the split. The images are
    cut into `splits` consecutive parts of near-equal size (at most N parts) and the score is
    computed on each, as in the original code, so the images should be in no particular order.

    Args:
        logits: (N, K) class logits (before softmax), e.g. from `LogitsHead`.
        splits: number of parts, >= 1; clipped to N.

    Returns:
        (mean, std) over the parts (std with ddof=0, as the original code reports it). The
        score lies in [1, K].
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise ValueError(f"logits must be (N, K) with N >= 1, got shape {logits.shape}")
    if splits < 1:
        raise ValueError(f"splits must be >= 1, got {splits}")
    if not np.isfinite(logits).all():
        raise ValueError("logits hold NaN or inf; check the images and the classifier head")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    scores = []
    for part_p, part_log_p in zip(
        np.array_split(p, min(splits, len(p))), np.array_split(log_p, min(splits, len(p)))
    ):
        # A probability that underflowed to 0 contributes 0 * log 0 = 0 to the KL sum; the
        # discarded branch of the `where` may be NaN there, hence the silenced warnings.
        with np.errstate(divide="ignore", invalid="ignore"):
            log_marginal = np.log(part_p.mean(axis=0))
            terms = np.where(part_p > 0, part_p * (part_log_p - log_marginal), 0.0)
        scores.append(np.exp(terms.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))
