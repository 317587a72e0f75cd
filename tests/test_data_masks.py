import numpy as np
import pytest
from PIL import Image

from img2img.data.masks import (
    MASK_KINDS,
    MaskSettings,
    random_mask,
    square_crop,
    validation_masks,
    validation_set,
)


def write_image(path, height, width, seed=0):
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize(("height", "width"), [(32, 32), (48, 64), (8, 8)])
def test_random_mask_is_binary_and_covers_the_range(kind, height, width):
    settings = MaskSettings(kinds=(kind,))
    coverages = []
    for seed in range(40):
        mask = random_mask(height, width, np.random.default_rng(seed), settings)
        assert mask.shape == (height, width) and mask.dtype == np.float32
        assert set(np.unique(mask)) <= {0.0, 1.0}
        coverages.append(mask.mean())
    assert min(coverages) >= 0.10 and max(coverages) <= 0.60
    # Targets are drawn across the range, not piled up just above its minimum.
    assert np.mean(coverages) > 0.2


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_random_mask_honours_a_narrow_range(kind):
    settings = MaskSettings(min_coverage=0.3, max_coverage=0.35, kinds=(kind,))
    for seed in range(20):
        assert 0.3 <= random_mask(32, 40, np.random.default_rng(seed), settings).mean() <= 0.35


def test_random_mask_meets_a_single_coverage_exactly():
    # 0.25 of 32x32 is 256 pixels: random shapes rarely land on it, the fallback block does.
    settings = MaskSettings(min_coverage=0.25, max_coverage=0.25)
    for seed in range(5):
        assert random_mask(32, 32, np.random.default_rng(seed), settings).sum() == 256


def test_random_mask_is_fixed_by_the_generator_state():
    first = random_mask(48, 40, np.random.default_rng(7))
    assert np.array_equal(first, random_mask(48, 40, np.random.default_rng(7)))
    rng = np.random.default_rng(7)
    assert not np.array_equal(random_mask(48, 40, rng), random_mask(48, 40, rng))


def test_random_mask_rejects_tiny_sizes_and_impossible_ranges():
    with pytest.raises(ValueError, match="at least 8x8"):
        random_mask(7, 32, np.random.default_rng(0))
    # 0.1 of 9x9 = 8.1 pixels: no whole number of pixels has that coverage.
    with pytest.raises(ValueError, match="widen the coverage range"):
        random_mask(9, 9, np.random.default_rng(0), MaskSettings(min_coverage=0.1, max_coverage=0.1))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_coverage": 0.0}, "0 < min_coverage <= max_coverage < 1"),
        ({"min_coverage": 0.5, "max_coverage": 0.4}, "0 < min_coverage <= max_coverage < 1"),
        ({"max_coverage": 1.0}, "0 < min_coverage <= max_coverage < 1"),
        ({"kinds": ()}, "at least one mask kind"),
        ({"kinds": ("thin", "blob")}, r"unknown mask kinds \['blob'\]"),
        ({"kinds": ("box", "box")}, "repeat a kind"),
        ({"kind_weights": (1.0, 2.0)}, "2 kind_weights for 5 kinds"),
        ({"kinds": ("thin", "box"), "kind_weights": (1.0, -1.0)}, "non-negative and not all zero"),
        ({"kinds": ("thin", "box"), "kind_weights": (0, 0)}, "non-negative and not all zero"),
    ],
)
def test_mask_settings_errors(options, message):
    with pytest.raises(ValueError, match=message):
        MaskSettings(**options)


def test_mask_settings_store_sequences_as_tuples():
    settings = MaskSettings(kinds=["thin", "box"], kind_weights=[1, 3])
    assert settings.kinds == ("thin", "box") and settings.kind_weights == (1.0, 3.0)
    assert settings.probabilities.tolist() == [0.25, 0.75]
    hash(settings)


def test_validation_masks_are_fixed_and_depend_on_the_seed():
    masks = validation_masks(6, 32, 40, seed=3)
    assert masks.shape == (6, 32, 40) and masks.dtype == np.float32
    assert np.array_equal(masks, validation_masks(6, 32, 40, seed=3))
    # Mask i depends on i, not on how many were asked for.
    assert np.array_equal(masks[:4], validation_masks(4, 32, 40, seed=3))
    other = validation_masks(6, 32, 40, seed=4)
    assert not any(np.array_equal(a, b) for a, b in zip(masks, other))
    assert all(0.10 <= mask.mean() <= 0.60 for mask in masks)
    assert validation_masks(0, 32, 32).shape == (0, 32, 32)


def test_validation_masks_cycle_through_every_kind():
    masks = validation_masks(2 * len(MASK_KINDS), 32, 32)
    for index in range(2 * len(MASK_KINDS)):
        kind = MASK_KINDS[index % len(MASK_KINDS)]
        alone = validation_masks(index + 1, 32, 32, settings=MaskSettings(kinds=(kind,)))
        assert np.array_equal(masks[index], alone[index]), kind


def test_validation_masks_skip_kinds_without_weight():
    weighted = MaskSettings(kinds=("thin", "box"), kind_weights=(0, 1))
    assert np.array_equal(
        validation_masks(3, 32, 32, settings=weighted),
        validation_masks(3, 32, 32, settings=MaskSettings(kinds=("box",))),
    )


def test_validation_masks_rejects_a_negative_count():
    with pytest.raises(ValueError, match="count must be >= 0"):
        validation_masks(-1, 32, 32)


@pytest.mark.parametrize(("height", "width"), [(32, 48), (48, 32)])
def test_square_crop_of_an_image_already_at_size_is_its_centre(height, width):
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    crop = square_crop(image, 32)
    top, left = (height - 32) // 2, (width - 32) // 2
    assert np.array_equal(crop, image[top : top + 32, left : left + 32])


def test_square_crop_resizes_the_shorter_side():
    image = np.zeros((40, 80, 3), dtype=np.uint8)
    image[:, 20:60] = 200  # the centre square, which alone survives the crop
    crop = square_crop(image, 20)
    assert crop.shape == (20, 20, 3) and crop.dtype == np.uint8
    assert np.all(np.abs(crop[:, 2:-2].astype(int) - 200) <= 2)
    assert square_crop(image, 60).shape == (60, 60, 3)


def test_square_crop_errors():
    with pytest.raises(ValueError, match="uint8 RGB"):
        square_crop(np.zeros((8, 8), np.uint8), 4)
    with pytest.raises(ValueError, match="uint8 RGB"):
        square_crop(np.zeros((8, 8, 3), np.float32), 4)
    with pytest.raises(ValueError, match="positive"):
        square_crop(np.zeros((8, 8, 3), np.uint8), 0)


def test_validation_set_pairs_sorted_crops_with_the_fixed_masks(tmp_path):
    arrays = {
        "b.png": write_image(tmp_path / "b.png", 32, 32, seed=1),
        "a.png": write_image(tmp_path / "a.png", 40, 56, seed=2),
        "sub/c.png": write_image(tmp_path / "sub" / "c.png", 64, 48, seed=3),
    }
    items = validation_set(tmp_path, 32, seed=5)
    assert [name for name, _, _ in items] == ["a.png", "b.png", "sub/c.png"]
    masks = validation_masks(3, 32, 32, seed=5)
    for index, (name, crop, mask) in enumerate(items):
        assert np.array_equal(crop, square_crop(arrays[name], 32))
        assert np.array_equal(mask, masks[index])


def test_validation_set_without_images_says_so(tmp_path):
    (tmp_path / "notes.txt").write_text("no image")
    with pytest.raises(ValueError, match=f"no images under {tmp_path}"):
        validation_set(tmp_path, 32)
    with pytest.raises(ValueError, match="no images under"):
        validation_set(tmp_path / "missing", 32)
