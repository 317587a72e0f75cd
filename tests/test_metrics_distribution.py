import math

import numpy as np
import pytest

from img2img.errors import Img2ImgError
from img2img.metrics import (
    FeatureSet,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
)


def gaussian_set(n, mean, std, seed):
    """FeatureSet of n samples of independent normals with the given per-dimension mean and std."""
    rng = np.random.default_rng(seed)
    mean, std = np.asarray(mean, float), np.asarray(std, float)
    return FeatureSet.from_features(rng.normal(size=(n, mean.size)) * std + mean)


def stats_only(mean, covariance):
    """A FeatureSet with given statistics and no samples (enough for FID)."""
    mean = np.asarray(mean, float)
    return FeatureSet(np.zeros((0, mean.size), np.float32), mean, np.asarray(covariance, float))


def diagonal_fid(mu1, var1, mu2, var2):
    """FID of two Gaussians with diagonal covariances, written out per dimension."""
    return sum(
        (m1 - m2) ** 2 + s1 + s2 - 2 * math.sqrt(s1 * s2)
        for m1, s1, m2, s2 in zip(mu1, var1, mu2, var2)
    )


def test_from_features_fits_mean_and_unbiased_covariance():
    features = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]])
    fitted = FeatureSet.from_features(features)
    assert fitted.features.dtype == np.float32
    assert fitted.mean.dtype == np.float64 and fitted.covariance.dtype == np.float64
    np.testing.assert_allclose(fitted.mean, [2.0, 2.0])
    # Deviations: x (-2, 0, 2), y (-1, -1, 2); sums of products divided by N - 1 = 2.
    np.testing.assert_allclose(fitted.covariance, [[4.0, 3.0], [3.0, 3.0]])
    assert fitted.count == 3


def test_from_features_needs_two_vectors():
    with pytest.raises(ValueError, match="at least 2"):
        FeatureSet.from_features(np.ones((1, 4)))


@pytest.mark.parametrize(("n", "dim"), [(300, 16), (10, 64)])  # the second covariance is singular
def test_fid_of_a_set_with_itself_is_zero(n, dim):
    features = np.random.default_rng(0).gamma(2.0, size=(n, dim))
    fitted = FeatureSet.from_features(features)
    scale = 2 * np.trace(fitted.covariance)
    assert abs(frechet_distance(fitted, fitted)) < 1e-6 * scale


def test_fid_from_few_samples_equals_fid_from_their_statistics():
    """With N <= D the samples factor the covariance; the statistics alone take the square root
    path. Both must give the same number."""
    rng = np.random.default_rng(13)
    a = FeatureSet.from_features(rng.normal(size=(6, 20)))
    b = FeatureSet.from_features(rng.gamma(2.0, size=(9, 20)))
    c = FeatureSet.from_features(rng.normal(size=(40, 20)))
    for x, y in ((a, b), (a, c), (c, b)):
        from_stats = frechet_distance(
            stats_only(x.mean, x.covariance), stats_only(y.mean, y.covariance)
        )
        # The square-root path takes square roots of eigenvalues that rounding left at ~1e-15
        # instead of 0, which adds ~1e-8 each: agreement is to about 1e-8, not 1e-15.
        assert frechet_distance(x, y) == pytest.approx(from_stats, rel=1e-7)


def test_fid_is_symmetric():
    a = gaussian_set(200, np.zeros(12), np.linspace(0.5, 2.0, 12), seed=1)
    b = FeatureSet.from_features(np.random.default_rng(2).exponential(size=(150, 12)))
    forward, backward = frechet_distance(a, b), frechet_distance(b, a)
    assert forward > 1.0
    assert forward == pytest.approx(backward, rel=1e-9)


def test_fid_matches_the_closed_form_for_diagonal_gaussians():
    mu1, var1 = [0.0, 1.0, -2.0, 0.5], [1.0, 4.0, 0.25, 9.0]
    mu2, var2 = [1.0, 1.0, 0.0, 0.0], [4.0, 1.0, 0.25, 1.0]
    expected = diagonal_fid(mu1, var1, mu2, var2)
    # 1 + 0 + 4 + 0.25 for the means, (1-2)^2 + (2-1)^2 + 0 + (3-1)^2 for the standard deviations.
    assert expected == pytest.approx(11.25)
    a, b = stats_only(mu1, np.diag(var1)), stats_only(mu2, np.diag(var2))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)


def test_fid_is_unchanged_by_rotating_both_sets():
    """A rotation makes the covariances full matrices; the distance must not change."""
    mu1, var1 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 4.0, 0.25])
    mu2, var2 = np.array([1.0, 0.0, 0.0]), np.array([9.0, 1.0, 1.0])
    rotation, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))
    a = stats_only(rotation @ mu1, rotation @ np.diag(var1) @ rotation.T)
    b = stats_only(rotation @ mu2, rotation @ np.diag(var2) @ rotation.T)
    assert frechet_distance(a, b) == pytest.approx(diagonal_fid(mu1, var1, mu2, var2), rel=1e-9)


def test_fid_of_large_samples_approaches_the_closed_form():
    mu1, std1 = np.array([0.0, 0.0, 1.0]), np.array([1.0, 2.0, 0.5])
    mu2, std2 = np.array([0.5, 0.0, 0.0]), np.array([1.0, 1.0, 1.0])
    a = gaussian_set(20_000, mu1, std1, seed=4)
    b = gaussian_set(20_000, mu2, std2, seed=5)
    expected = diagonal_fid(mu1, std1**2, mu2, std2**2)  # 0.25 + 1 + 1 + 0.25 = 2.5
    assert frechet_distance(a, b) == pytest.approx(expected, abs=0.08)


def test_fid_falls_as_two_gaussians_converge():
    reference = gaussian_set(2000, np.zeros(6), np.ones(6), seed=6)
    values = [
        frechet_distance(reference, gaussian_set(2000, np.full(6, shift), 1 + np.full(6, shift), 7))
        for shift in (2.0, 1.0, 0.5, 0.25, 0.0)
    ]
    assert values == sorted(values, reverse=True)
    assert values[-1] < 0.05 < values[-2]


def test_fid_refuses_different_dimensions():
    with pytest.raises(ValueError, match="same extractor"):
        frechet_distance(stats_only(np.zeros(3), np.eye(3)), stats_only(np.zeros(4), np.eye(4)))


def brute_force_kid(x, y):
    """Unbiased MMD^2 with k(u, v) = (u . v / d + 1)^3, written as plain loops."""
    d = len(x[0])

    def k(u, v):
        return (sum(ui * vi for ui, vi in zip(u, v)) / d + 1) ** 3

    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


@pytest.mark.parametrize("dim", [2, 3, 4])
def test_kid_matches_a_brute_force_double_loop(dim):
    rng = np.random.default_rng(dim)
    x = rng.normal(size=(6, dim))
    y = rng.normal(size=(6, dim)) + 0.7
    mean, std_error = kernel_inception_distance(x, y, subsets=3, subset_size=50)
    assert mean == pytest.approx(brute_force_kid(x.tolist(), y.tolist()), rel=1e-6)
    # Every subset is the whole set, so there is no spread between subsets.
    assert std_error == pytest.approx(0.0, abs=1e-12)


def test_kid_is_near_zero_for_one_distribution_and_falls_with_the_shift():
    rng = np.random.default_rng(8)
    reference = rng.normal(size=(400, 8))
    def kid(other):
        return kernel_inception_distance(reference, other, subsets=20, subset_size=200)

    same, same_error = kid(rng.normal(size=(400, 8)))
    shifted = [kid(rng.normal(size=(400, 8)) + shift)[0] for shift in (1.0, 0.5, 0.25)]
    assert abs(same) < 0.01 < shifted[-1]
    assert same_error > 0
    assert shifted == sorted(shifted, reverse=True)


def test_kid_is_reproducible_with_a_seed_and_takes_feature_sets():
    rng = np.random.default_rng(9)
    a = FeatureSet.from_features(rng.normal(size=(60, 5)))
    b = FeatureSet.from_features(rng.normal(size=(40, 5)) + 0.3)
    first = kernel_inception_distance(a, b, subsets=10, subset_size=20, seed=1)
    assert kernel_inception_distance(a, b, subsets=10, subset_size=20, seed=1) == first
    assert kernel_inception_distance(a, b, subsets=10, subset_size=20, seed=2) != first
    mean, std_error = first
    assert mean > 0 and 0 < std_error < mean


def test_kid_std_error_is_the_standard_error_of_the_mean_over_subsets():
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(60, 3)), rng.normal(size=(60, 3)) + 0.5
    _, error_100 = kernel_inception_distance(a, b, subsets=100, subset_size=10)
    _, error_400 = kernel_inception_distance(a, b, subsets=400, subset_size=10)
    # The spread of single-subset values stays put, so 4x the subsets halves the error.
    assert error_100 / error_400 == pytest.approx(2.0, rel=0.2)
    assert math.isnan(kernel_inception_distance(a, b, subsets=1, subset_size=10)[1])


def test_kid_refuses_mismatched_or_too_small_sets():
    rng = np.random.default_rng(12)
    with pytest.raises(ValueError, match="same D"):
        kernel_inception_distance(rng.normal(size=(30, 3)), rng.normal(size=(30, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        kernel_inception_distance(rng.normal(size=(1, 3)), rng.normal(size=(30, 3)))


def test_inception_score_is_one_for_identical_predictions():
    logits = np.tile([2.0, -1.0, 0.5, 3.0], (12, 1))
    mean, std = inception_score(logits, splits=3)
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("classes", [2, 5, 10])
def test_inception_score_is_k_for_k_classes_used_equally(classes):
    # Each of the 2 splits holds every class once, predicted with certainty.
    logits = np.tile(50.0 * np.eye(classes), (2, 1))
    mean, std = inception_score(logits, splits=2)
    assert mean == pytest.approx(classes, rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_of_soft_predictions_by_hand():
    p = np.array([[0.75, 0.25], [0.25, 0.75]])
    # p(y) = (0.5, 0.5); both rows have KL = 0.75 ln(1.5) + 0.25 ln(0.5).
    expected = math.exp(0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    mean, _ = inception_score(np.log(p) + 7.0, splits=1)  # logits are defined up to a constant
    assert mean == pytest.approx(expected, rel=1e-12)


def test_inception_score_clips_splits_to_the_image_count():
    # 3 images in at most 3 splits of one image each: every split has p(y|x) = p(y), so IS = 1.
    mean, std = inception_score(50.0 * np.eye(3), splits=10)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0)


def test_save_and_load_round_trip(tmp_path):
    fitted = FeatureSet.from_features(
        np.random.default_rng(11).normal(size=(5, 3)), {"extractor": "x", "images": 5}
    )
    path = fitted.save(tmp_path / "sub" / "reference.npz")
    assert path == tmp_path / "sub" / "reference.npz"
    assert [p.name for p in path.parent.iterdir()] == ["reference.npz"]  # no temporary left
    loaded = FeatureSet.load(path)
    np.testing.assert_array_equal(loaded.features, fitted.features)
    np.testing.assert_array_equal(loaded.mean, fitted.mean)
    np.testing.assert_array_equal(loaded.covariance, fitted.covariance)
    assert loaded.settings == {"extractor": "x", "images": 5}
    assert frechet_distance(loaded, fitted) == pytest.approx(0.0, abs=1e-12)


def test_load_explains_what_is_wrong(tmp_path):
    with pytest.raises(Img2ImgError, match="not found"):
        FeatureSet.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", mu=np.zeros(3))
    with pytest.raises(Img2ImgError, match="missing features, mean, covariance, settings"):
        FeatureSet.load(tmp_path / "other.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(Img2ImgError, match="cannot read"):
        FeatureSet.load(tmp_path / "broken.npz")
