import numpy as np
import pytest
import torch
from PIL import Image

from img2img.data.two_domain import (
    AlignedDataset,
    PairedDataset,
    SingleDataset,
    UnalignedDataset,
    load_domain_image,
    parse_background,
)
from img2img.engine.batches import seeded_example
from img2img.errors import ConfigError, TrainingError

WHITE = (255, 255, 255)


def random_rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def save(array, path, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)
    return array


def as_uint8(tensor):
    return (tensor.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def windows(image, size):
    """Every size x size window of `image`, also mirrored left-right."""
    for top in range(image.shape[0] - size + 1):
        for left in range(image.shape[1] - size + 1):
            window = image[top : top + size, left : left + size]
            yield window
            yield window[:, ::-1]


# --------------------------------------------------------------------------------------------
# Backgrounds and decoding


@pytest.mark.parametrize(
    ("text", "colour"),
    [
        ("white", (255, 255, 255)),
        (" Black ", (0, 0, 0)),
        ("gray", (128, 128, 128)),
        ("#FF8000", (255, 128, 0)),
        ("0, 128,255", (0, 128, 255)),
    ],
)
def test_parse_background_forms(text, colour):
    assert parse_background(text) == colour


@pytest.mark.parametrize("text", ["purple", "#ff80", "#gg0000", "1,2", "0,0,256", "-1,0,0", ""])
def test_bad_background_lists_the_accepted_forms(text):
    with pytest.raises(ConfigError) as info:
        parse_background(text)
    message = str(info.value)
    for form in ("white", "black", "gray", "#rrggbb", "r,g,b"):
        assert form in message


def test_half_transparent_red_on_white_is_pink(tmp_path):
    pixels = np.zeros((2, 3, 4), dtype=np.uint8)
    pixels[...] = (255, 0, 0, 128)
    pixels[1, 2] = (10, 20, 30, 0)  # fully transparent: any colour becomes the background
    pixels[0, 0] = (10, 20, 30, 255)  # opaque: kept exactly
    save(pixels, tmp_path / "red.png", mode="RGBA")
    out = load_domain_image(tmp_path / "red.png", channels=3, background=WHITE)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert np.abs(out[0, 1].astype(int) - (255, 128, 128)).max() <= 1
    assert tuple(out[1, 2]) == WHITE
    assert tuple(out[0, 0]) == (10, 20, 30)
    on_black = load_domain_image(tmp_path / "red.png", channels=3, background=(0, 0, 0))
    assert np.abs(on_black[0, 1].astype(int) - (128, 0, 0)).max() <= 1


def test_composite_rounds_to_nearest(tmp_path):
    # Colour 1 at alpha 200: 1 * 200 / 255 = 0.78 on black, 55 + 0.78 on white; truncating
    # would give 0 and 55.
    save(np.array([[[1, 1, 1, 200]]], dtype=np.uint8), tmp_path / "x.png", mode="RGBA")
    on_black = load_domain_image(tmp_path / "x.png", channels=3, background=(0, 0, 0))
    assert on_black[0, 0].tolist() == [1, 1, 1]
    on_white = load_domain_image(tmp_path / "x.png", channels=3, background=WHITE)
    assert on_white[0, 0].tolist() == [56, 56, 56]


def test_palette_and_gray_alpha_images_are_composited(tmp_path):
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    palette.putdata([0, 1])
    palette.info["transparency"] = 0  # palette entry 0 (blue) is transparent
    palette.save(tmp_path / "p.png")
    out = load_domain_image(tmp_path / "p.png", channels=3, background=(9, 8, 7))
    assert out.tolist() == [[[9, 8, 7], [0, 255, 0]]]

    save(np.array([[[200, 0], [200, 255]]], dtype=np.uint8), tmp_path / "la.png", mode="LA")
    out = load_domain_image(tmp_path / "la.png", channels=3, background=(0, 0, 0))
    assert out.tolist() == [[[0, 0, 0], [200, 200, 200]]]


def test_gray_mode_is_the_luma_of_the_composite(tmp_path):
    pixels = np.zeros((4, 5, 4), dtype=np.uint8)
    pixels[..., 0] = 255
    pixels[..., 3] = 255
    pixels[0, 0, 3] = 0  # transparent on a white background: white
    save(pixels, tmp_path / "red.png", mode="RGBA")
    out = load_domain_image(tmp_path / "red.png", channels=1, background=WHITE)
    assert out.shape == (4, 5, 1)
    assert out[0, 0, 0] == 255
    assert abs(int(out[1, 1, 0]) - round(0.299 * 255)) <= 1  # pure red's luma


def test_exif_orientation_is_applied(tmp_path):
    array = random_rgb(2, 3)
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(tmp_path / "turned.png", exif=exif)
    out = load_domain_image(tmp_path / "turned.png", channels=3, background=WHITE)
    assert np.array_equal(out, np.rot90(array, k=-1))


def test_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(TrainingError, match="broken.png"):
        load_domain_image(tmp_path / "broken.png", channels=3, background=WHITE)


# --------------------------------------------------------------------------------------------
# Datasets


def test_gray_datasets_serve_one_channel(tmp_path):
    save(random_rgb(10, 12, seed=1), tmp_path / "a" / "x.png")
    save(random_rgb(9, 9, seed=2), tmp_path / "b" / "y.png")
    data = UnalignedDataset(tmp_path / "a", tmp_path / "b", load_size=10, crop_size=8, channels=1)
    item = data[0]
    assert item["a"].shape == (1, 8, 8) and item["b"].shape == (1, 8, 8)
    assert item["a"].dtype == torch.float32
    assert 0.0 <= item["a"].min() and item["a"].max() <= 1.0


def test_validation_resizes_to_crop_size_without_randomness(tmp_path):
    save(random_rgb(12, 20, seed=3), tmp_path / "x.png")
    data = SingleDataset(tmp_path, load_size=16, crop_size=8, augment=False)
    first, second = data[0]["a"], data[0]["a"]
    assert first.shape == (3, 8, 8)
    assert torch.equal(first, second)
    assert data[0]["name"] == "x"


def test_augmented_crop_is_a_window_of_the_resized_image(tmp_path):
    # load_size equal to the image size makes the resize an identity, so a crop must be an
    # exact (possibly mirrored) window of the file.
    image = save(random_rgb(12, 12, seed=4), tmp_path / "x.png")
    data = SingleDataset(tmp_path, load_size=12, crop_size=8, cache=False)
    torch.manual_seed(0)
    crops = [as_uint8(data[0]["a"]) for _ in range(6)]
    for crop in crops:
        assert any(np.array_equal(crop, w) for w in windows(image, 8))
    assert len({c.tobytes() for c in crops}) > 1  # the crop does move


def test_augmentation_flips_left_right_about_half_the_time(tmp_path):
    image = save(random_rgb(8, 8, seed=12), tmp_path / "x.png")
    data = SingleDataset(tmp_path, load_size=8, crop_size=8)  # no room to crop: only the flip
    crops = [as_uint8(seeded_example(data, 0, seed=s)["a"]) for s in range(20)]
    flipped = sum(np.array_equal(c, image[:, ::-1]) for c in crops)
    kept = sum(np.array_equal(c, image) for c in crops)
    assert flipped + kept == 20
    assert 3 <= flipped <= 17


def test_paired_crops_are_identical_for_equal_images(tmp_path):
    image = random_rgb(14, 14, seed=5)
    save(image, tmp_path / "a" / "sub" / "cat.png")
    save(image, tmp_path / "b" / "sub" / "cat.png")
    data = PairedDataset(tmp_path / "a", tmp_path / "b", load_size=14, crop_size=8)
    crops = [seeded_example(data, 0, seed=s) for s in range(6)]
    for item in crops:
        assert item["name"] == "sub/cat"
        assert torch.equal(item["a"], item["b"])
    assert len({as_uint8(i["a"]).tobytes() for i in crops}) > 1


def test_paired_images_get_the_same_crop_and_flip(tmp_path):
    image = random_rgb(14, 14, seed=6)
    save(image, tmp_path / "a" / "x.png")
    save(255 - image, tmp_path / "b" / "x.jpg.png")  # counterpart of "x.jpg", not of "x"
    save(255 - image, tmp_path / "b" / "x.bmp")
    save(image, tmp_path / "a" / "only_in_a.png")
    data = PairedDataset(tmp_path / "a", tmp_path / "b", load_size=14, crop_size=8)
    assert data.names == ["x"]
    for seed in range(4):
        item = seeded_example(data, 0, seed=seed)
        assert np.array_equal(as_uint8(item["b"]), 255 - as_uint8(item["a"]))


def test_paired_images_of_different_sizes_are_both_resized(tmp_path):
    save(random_rgb(10, 16, seed=7), tmp_path / "a" / "x.png")
    save(random_rgb(20, 12, seed=8), tmp_path / "b" / "x.png")
    item = PairedDataset(tmp_path / "a", tmp_path / "b", load_size=12, crop_size=8)[0]
    assert item["a"].shape == item["b"].shape == (3, 8, 8)


def test_paired_without_any_match_is_an_error(tmp_path):
    save(random_rgb(8, 8), tmp_path / "a" / "x.png")
    save(random_rgb(8, 8), tmp_path / "b" / "y.png")
    with pytest.raises(TrainingError, match="counterpart"):
        PairedDataset(tmp_path / "a", tmp_path / "b", load_size=8, crop_size=8)


def test_paired_with_two_files_of_one_name_is_an_error(tmp_path):
    save(random_rgb(8, 8), tmp_path / "a" / "x.png")
    save(random_rgb(8, 8), tmp_path / "a" / "x.bmp")
    save(random_rgb(8, 8), tmp_path / "b" / "x.png")
    with pytest.raises(TrainingError, match="same name"):
        PairedDataset(tmp_path / "a", tmp_path / "b", load_size=8, crop_size=8)


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_aligned_split_gives_left_and_right_halves(tmp_path, direction):
    left, right = random_rgb(8, 8, seed=9), random_rgb(8, 8, seed=10)
    # A ninth column on the right: an odd width drops its last column.
    extra = np.full((8, 1, 3), 7, dtype=np.uint8)
    save(np.concatenate([left, right, extra], axis=1), tmp_path / "pair.png")
    data = AlignedDataset(tmp_path, load_size=8, crop_size=8, direction=direction, augment=False)
    item = data[0]
    a, b = (left, right) if direction == "AtoB" else (right, left)
    assert np.array_equal(as_uint8(item["a"]), a)
    assert np.array_equal(as_uint8(item["b"]), b)
    assert item["name"] == "pair"


def test_aligned_augmentation_crops_both_halves_alike(tmp_path):
    left = random_rgb(10, 10, seed=11)
    save(np.concatenate([left, 255 - left], axis=1), tmp_path / "pair.png")
    data = AlignedDataset(tmp_path, load_size=10, crop_size=6)
    for seed in range(4):
        item = seeded_example(data, 0, seed=seed)
        assert np.array_equal(as_uint8(item["b"]), 255 - as_uint8(item["a"]))


def test_aligned_rejects_unknown_direction(tmp_path):
    save(random_rgb(4, 8), tmp_path / "pair.png")
    with pytest.raises(ValueError, match="AtoB"):
        AlignedDataset(tmp_path, load_size=4, crop_size=4, direction="AB")


def test_unaligned_length_and_a_order(tmp_path):
    for i in range(3):
        save(np.full((8, 8, 3), 10 * i, dtype=np.uint8), tmp_path / "a" / f"{i}.png")
    for i in range(5):
        save(np.full((8, 8, 3), 100 + 10 * i, dtype=np.uint8), tmp_path / "b" / f"{i}.png")
    data = UnalignedDataset(tmp_path / "a", tmp_path / "b", load_size=8, crop_size=8)
    assert len(data) == 5
    torch.manual_seed(0)
    # Flat images: crops and flips keep the value, which identifies the file.
    assert [int(as_uint8(data[i]["a"])[0, 0, 0]) for i in range(5)] == [0, 10, 20, 0, 10]
    b_values = {int(as_uint8(data[0]["b"])[0, 0, 0]) for _ in range(40)}
    assert b_values == {100, 110, 120, 130, 140}  # B is drawn at random on each access


def test_unaligned_is_reproducible_under_a_seed(tmp_path):
    for i in range(4):
        save(random_rgb(12, 12, seed=20 + i), tmp_path / "a" / f"{i}.png")
        save(random_rgb(12, 12, seed=30 + i), tmp_path / "b" / f"{i}.png")
    data = UnalignedDataset(tmp_path / "a", tmp_path / "b", load_size=12, crop_size=8)
    first = [seeded_example(data, i, seed=i) for i in range(4)]
    again = [seeded_example(data, i, seed=i) for i in range(4)]
    other = [seeded_example(data, i, seed=100 + i) for i in range(4)]
    for x, y in zip(first, again):
        assert torch.equal(x["a"], y["a"]) and torch.equal(x["b"], y["b"])
    assert any(not torch.equal(x["b"], z["b"]) for x, z in zip(first, other))


def test_cache_off_gives_the_same_items(tmp_path):
    save(random_rgb(12, 12, seed=40), tmp_path / "a" / "x.png")
    save(random_rgb(12, 12, seed=41), tmp_path / "b" / "x.png")
    cached = PairedDataset(tmp_path / "a", tmp_path / "b", load_size=12, crop_size=8)
    lazy = PairedDataset(tmp_path / "a", tmp_path / "b", load_size=12, crop_size=8, cache=False)
    x, y = seeded_example(cached, 0, seed=3), seeded_example(lazy, 0, seed=3)
    assert torch.equal(x["a"], y["a"]) and torch.equal(x["b"], y["b"])


def test_missing_or_empty_folder_says_which_domain(tmp_path):
    save(random_rgb(8, 8), tmp_path / "a" / "x.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingError, match=r"domain B \(root_b\).*nowhere.*does not exist"):
        UnalignedDataset(tmp_path / "a", tmp_path / "nowhere", load_size=8, crop_size=8)
    with pytest.raises(TrainingError, match=r"domain A \(root_a\).*no images found"):
        PairedDataset(tmp_path / "empty", tmp_path / "a", load_size=8, crop_size=8)
    with pytest.raises(TrainingError, match="root"):
        SingleDataset(tmp_path / "empty", load_size=8, crop_size=8)


def test_crop_larger_than_load_size_is_refused(tmp_path):
    save(random_rgb(8, 8), tmp_path / "x.png")
    with pytest.raises(ValueError, match="load_size"):
        SingleDataset(tmp_path, load_size=8, crop_size=16)
