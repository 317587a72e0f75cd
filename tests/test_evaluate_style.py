import numpy as np
import pytest

from img2img.errors import Img2ImgError
from img2img.evaluate.style import StyleScores, compare_with_peer, mean_absolute_error


def scores(content: float, style: float) -> StyleScores:
    return StyleScores(content_distance=content, style_distance=style)


def test_each_painting_counts_through_its_ratio_to_the_peer():
    # The second painting's distances are 1,000 times the first's; a mean of raw distances
    # would let it decide alone.
    results = {
        "quiet": {"ours-adain": scores(50.0, 20.0), "peer-arbitrary": scores(100.0, 10.0)},
        "loud": {"ours-adain": scores(150_000.0, 5_000.0), "peer-arbitrary": scores(100_000.0, 10_000.0)},
    }
    summary = compare_with_peer(results)
    assert summary["content_vs_peer"] == pytest.approx((0.5 + 1.5) / 2)
    assert summary["style_vs_peer"] == pytest.approx((2.0 + 0.5) / 2)
    # Better than the peer on both only when the worse ratio is below 1.
    assert summary["worse_vs_peer"] == pytest.approx(1.25)
    assert summary["content_distance"] == pytest.approx(75_025.0)
    assert summary["style_distance"] == pytest.approx(2_510.0)


def test_comparison_needs_both_methods_on_every_painting():
    with pytest.raises(Img2ImgError, match="both ours-adain and peer-arbitrary"):
        compare_with_peer({"starry": {"ours-adain": scores(1.0, 1.0)}})
    with pytest.raises(Img2ImgError, match="no painting"):
        compare_with_peer({})


def test_mean_absolute_error_is_zero_for_the_photo_back_and_in_unit_range():
    photos = [np.full((4, 6, 3), 100, np.uint8), np.full((2, 2, 3), 0, np.uint8)]
    assert mean_absolute_error(lambda photo: photo, photos) == 0.0
    # 51 levels off on the first photo, the whole range on the second.
    shifted = mean_absolute_error(lambda photo: np.full_like(photo, 151) if photo.mean() else np.full_like(photo, 255), photos)
    assert shifted == pytest.approx((51 / 255 + 1.0) / 2)
