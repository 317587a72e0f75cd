import numpy as np
import pytest
import torch
from PIL import Image

from img2img.data import folder
from img2img.data.folder import HRCropDataset, ScaledPairDataset, ValidationImages, list_images
from img2img.errors import TrainingError


def write_image(path, height, width, seed=0):
    """A random RGB PNG (lossless, so every decoded pixel is known) and its array."""
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return array


def as_uint8(tensor):
    return (tensor.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def find_window(image, crop, transforms=True):
    """True when `crop` is a window of `image`, possibly flipped and rotated by 90-degree steps."""
    candidates = [crop]
    if transforms:
        candidates = [np.rot90(c, k) for c in (crop, crop[:, ::-1]) for k in range(4)]
    size = crop.shape[0]
    for candidate in candidates:
        for top in range(image.shape[0] - size + 1):
            for left in range(image.shape[1] - size + 1):
                if np.array_equal(image[top : top + size, left : left + size], candidate):
                    return True
    return False


def test_list_images_sorted_recursive_and_case_insensitive(tmp_path):
    (tmp_path / "sub").mkdir()
    # Pillow picks the format from the extension, so these are real JPEG and WebP files.
    for name in ("b.png", "a.JPG", "sub/c.webp"):
        write_image(tmp_path / name, 4, 4)
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == [
        "a.JPG",
        "b.png",
        "sub/c.webp",
    ]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.JPG", "b.png"]


def test_list_images_missing_folder_names_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(TrainingError, match="nowhere.*does not exist"):
        list_images(missing)


def test_list_images_empty_folder_names_folder_and_extensions(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(TrainingError) as info:
        list_images(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    for extension in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
        assert extension in message


@pytest.mark.parametrize("cache", [True, False])
def test_crops_have_patch_shape_and_range(tmp_path, cache):
    write_image(tmp_path / "a.png", 40, 48, seed=1)
    write_image(tmp_path / "b.png", 33, 30, seed=2)
    data = HRCropDataset(root=tmp_path, patch_size=16, cache=cache)
    assert len(data) == 2
    torch.manual_seed(0)
    for index in range(2):
        crop = data[index]
        assert crop.shape == (3, 16, 16)
        assert crop.dtype == torch.float32
        assert 0.0 <= crop.min() and crop.max() <= 1.0


def test_augmented_crop_is_a_flipped_or_rotated_window_of_the_image(tmp_path):
    image = write_image(tmp_path / "a.png", 24, 28, seed=3)
    data = HRCropDataset(root=tmp_path, patch_size=8, augment=True)
    torch.manual_seed(0)
    crops = [as_uint8(data[0]) for _ in range(6)]
    for crop in crops:
        assert find_window(image, crop)
    # Over six draws at least one crop needs a flip or rotation to be found.
    assert not all(find_window(image, crop, transforms=False) for crop in crops)


def test_crop_without_augment_keeps_orientation(tmp_path):
    image = write_image(tmp_path / "a.png", 20, 22, seed=4)
    data = HRCropDataset(root=tmp_path, patch_size=8, augment=False)
    torch.manual_seed(0)
    for _ in range(4):
        assert find_window(image, as_uint8(data[0]), transforms=False)


def test_crops_follow_torch_seed(tmp_path):
    write_image(tmp_path / "a.png", 64, 64, seed=5)
    data = HRCropDataset(root=tmp_path, patch_size=16)
    torch.manual_seed(123)
    first = [data[0] for _ in range(3)]
    torch.manual_seed(123)
    second = [data[0] for _ in range(3)]
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], first[1])


def test_small_image_is_reflect_padded(tmp_path):
    image = write_image(tmp_path / "tiny.png", 6, 5, seed=6)
    data = HRCropDataset(root=tmp_path, patch_size=12, augment=False)
    crop = as_uint8(data[0])
    assert crop.shape == (12, 12, 3)
    # The whole image sits inside the padded patch, surrounded by its own reflection.
    top, left = 3, 3  # PadIfNeeded centres: (12 - 6) // 2 and (12 - 5) // 2
    assert np.array_equal(crop[top : top + 6, left : left + 5], image)
    # Reflected without repeating the edge row and column.
    assert np.array_equal(crop[top - 1, left : left + 5], image[1])
    assert np.array_equal(crop[top : top + 6, left - 1], image[:, 1])


def test_short_side_range_shows_a_crop_as_much_of_the_scene_as_a_held_out_image_of_that_size(tmp_path):
    """A 60x120 left-to-right ramp resized to a shorter side of 32 is 64 wide, so a 32-pixel
    crop spans half the ramp, where a crop of the photo as it is spans a quarter."""
    ramp = np.tile(np.linspace(0, 255, 120).round().astype(np.uint8)[None, :, None], (60, 1, 3))
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    resized = HRCropDataset(root=tmp_path, patch_size=32, augment=False, short_side_range=(32, 32))
    as_is = HRCropDataset(root=tmp_path, patch_size=32, augment=False)
    for _ in range(4):
        span = np.ptp(as_uint8(resized[0])[0, :, 0].astype(int))
        assert 110 <= span <= 135  # 31 of the resized 63 steps of 255/63
        assert abs(np.ptp(as_uint8(as_is[0])[0, :, 0].astype(int)) - 31 * 255 / 119) <= 1  # the ramp's rounding
    ranged = HRCropDataset(root=tmp_path, patch_size=32, augment=False, short_side_range=(32, 40))
    assert {as_uint8(ranged[0]).shape for _ in range(4)} == {(32, 32, 3)}


def test_short_side_range_below_the_patch_or_beside_scale_range_is_refused(tmp_path):
    write_image(tmp_path / "a.png", 64, 64)
    with pytest.raises(ValueError, match="patch_size"):
        HRCropDataset(root=tmp_path, patch_size=32, short_side_range=(24, 40))
    with pytest.raises(ValueError, match="give one of"):
        HRCropDataset(root=tmp_path, patch_size=32, scale_range=(0.5, 1.0), short_side_range=(32, 40))
    with pytest.raises(ValueError, match="give one of"):
        HRCropDataset(root=tmp_path, patch_size=32, scale_range=(0.5, 1.0), zoom_out_range=(0.5, 1.0))
    with pytest.raises(ValueError, match="zoom_out_range must be"):
        HRCropDataset(root=tmp_path, patch_size=32, zoom_out_range=(0.5, 2.0))


def test_corrupt_file_is_named(tmp_path):
    write_image(tmp_path / "good.png", 16, 16)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    with pytest.raises(TrainingError, match="broken.png"):
        HRCropDataset(root=tmp_path, patch_size=8)
    lazy = HRCropDataset(root=tmp_path, patch_size=8, cache=False)
    with pytest.raises(TrainingError, match="broken.png"):
        lazy[lazy.paths.index(tmp_path / "broken.png")]


def test_validation_images_are_centre_crops_multiple_of_scale(tmp_path):
    big = write_image(tmp_path / "b_big.png", 300, 270, seed=7)
    small = write_image(tmp_path / "a_small.png", 50, 37, seed=8)
    val = ValidationImages(root=tmp_path, scale=4, max_size=256)
    assert val.names == ["a_small.png", "b_big.png"]
    assert len(val) == 2
    assert val[0].shape == (3, 48, 36)
    assert val[1].shape == (3, 256, 256)
    assert np.array_equal(as_uint8(val[0]), small[1:49, 0:36])
    assert np.array_equal(as_uint8(val[1]), big[22:278, 7:263])


def test_validation_image_smaller_than_scale_is_rejected(tmp_path):
    write_image(tmp_path / "speck.png", 3, 3)
    with pytest.raises(TrainingError, match="speck.png"):
        ValidationImages(root=tmp_path, scale=4)


def test_small_sets_are_cached_and_large_ones_decoded_on_access(tmp_path, monkeypatch):
    """By default the decoded images stay in memory only while they fit the cache limit (per
    process), so a large photo folder does not fill the memory of every training process."""
    first = write_image(tmp_path / "a.png", 40, 48, seed=1)
    write_image(tmp_path / "b.png", 33, 30, seed=2)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    paths = [tmp_path / "a.png", tmp_path / "b.png", tmp_path / "broken.png"]
    assert folder.decoded_bytes(paths) == (40 * 48 + 33 * 30) * 3  # headers only; broken counts 0
    (tmp_path / "broken.png").unlink()
    assert HRCropDataset(root=tmp_path, patch_size=16).cache is True
    monkeypatch.setattr(folder, "CACHE_LIMIT_BYTES", 40 * 48 * 3)
    large = HRCropDataset(root=tmp_path, patch_size=40, augment=False)
    assert large.cache is False
    assert find_window(first, as_uint8(large[0]), transforms=False)  # read from the file on access
    assert HRCropDataset(root=tmp_path, patch_size=16, cache=True).cache is True  # an explicit choice wins


def write_pair(root, name, lr_size, scale, seed):
    """An LR image and an HR image `scale` times larger whose every HR block of scale x scale
    repeats one LR pixel, so an aligned pair of crops is recognisable."""
    lr = write_image(root / "lr" / f"{name}.png", *lr_size, seed=seed)
    hr = np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)
    Image.fromarray(hr).save(root / "hr" / f"{name}.png")
    return lr


def pair_folders(tmp_path):
    for side in ("lr", "hr"):
        (tmp_path / side).mkdir()
    return tmp_path / "lr", tmp_path / "hr"


def test_scaled_pairs_are_aligned_crops_transformed_alike(tmp_path):
    lr_root, hr_root = pair_folders(tmp_path)
    images = [write_pair(tmp_path, f"{i:03d}", (12, 14), 4, seed=i) for i in range(2)]
    data = ScaledPairDataset(lr_root=lr_root, hr_root=hr_root, scale=4, patch_size=24)
    assert len(data) == 2 and data.names == ["000", "001"]
    torch.manual_seed(0)
    for _ in range(6):
        lr, hr = data[1]
        assert lr.shape == (3, 6, 6) and hr.shape == (3, 24, 24)
        lr_pixels, hr_pixels = as_uint8(lr), as_uint8(hr)
        # The HR crop is the LR crop's pixels repeated: the two sides cover the same scene.
        assert np.array_equal(hr_pixels[::4, ::4], lr_pixels)
        assert find_window(images[1], lr_pixels)


@pytest.mark.parametrize("problem", ["missing twin", "wrong scale", "too small"])
def test_scaled_pairs_refuse_what_cannot_pair(tmp_path, problem):
    lr_root, hr_root = pair_folders(tmp_path)
    write_pair(tmp_path, "a", (12, 12), 4, seed=0)
    if problem == "missing twin":
        write_image(lr_root / "b.png", 12, 12)
        expected = "no twin"
    elif problem == "wrong scale":
        write_image(lr_root / "b.png", 12, 12)
        write_image(hr_root / "b.png", 36, 48)
        expected = "not 4 times"
    else:
        write_pair(tmp_path, "b", (4, 12), 4, seed=1)
        expected = "smaller than the LR crop"
    with pytest.raises(TrainingError, match=expected):
        ScaledPairDataset(lr_root=lr_root, hr_root=hr_root, scale=4, patch_size=24)
