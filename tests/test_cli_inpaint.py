"""`img2img inpaint` as users run it, in a separate process, with the tiny mean-colour inpainter."""

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from inpaint_fixture import blob_image, blob_mask, build_inpainter, ship_inpainter
from PIL import Image
from test_cli_superres import assert_one_line_error, python
from test_cli_superres import img2img as run_cli

import img2img

BACKGROUND = 90


@pytest.fixture
def inpainter(tmp_path: Path) -> Path:
    """Working at 48 pixels: on the 64-pixel-wide test image the crop around a hole is smaller."""
    return build_inpainter(tmp_path / "fill.onnx", name="fill", resolution=48)


@pytest.fixture
def photo(tmp_path: Path) -> tuple[Path, Path]:
    """A 40x32 noisy photo with a red blob, and its mask (white over the blob)."""
    pixels = np.random.default_rng(0).integers(60, 120, (32, 40, 3), dtype=np.uint8)
    pixels[10:16, 12:18] = (230, 20, 20)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    Image.fromarray(blob_mask(32, 40, top=10, left=12)).save(tmp_path / "photo_mask.png")
    return tmp_path / "photo.png", tmp_path / "photo_mask.png"


def listing(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))


def test_single_file_changes_only_the_hole_and_matches_the_python_api(
    weights: Path, photo: tuple[Path, Path], inpainter: Path
) -> None:
    source, mask = photo
    result = run_cli("inpaint", source, "--mask", mask, "--model", inpainter, weights=weights)
    assert result.returncode == 0, result.stderr
    output = source.with_name("photo_inpainted.png")
    assert result.stdout.startswith(f"wrote {output} (40x32, 64 pixels filled, ")
    before, hole = np.asarray(Image.open(source)), np.asarray(Image.open(mask)) > 0
    with Image.open(output) as written:
        assert written.mode == "RGB"
        after = np.asarray(written)
    np.testing.assert_array_equal(after[~hole], before[~hole])
    assert after[hole].max() < 130  # the red blob is gone
    api = img2img.load(inpainter)(before, np.asarray(Image.open(mask)))
    np.testing.assert_array_equal(after, api)


def test_alpha_is_kept_and_full_runs_the_whole_image(weights: Path, tmp_path: Path, inpainter: Path) -> None:
    pixels = blob_image(32, 64, background=BACKGROUND, top=12, left=52)
    pixels[:, :8] = 0  # black far from the hole: only the whole image sees it
    alpha = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (32, 1))
    Image.fromarray(np.concatenate([pixels, alpha[:, :, None]], axis=2)).save(tmp_path / "sprite.png")
    Image.fromarray(blob_mask(32, 64, top=12, left=52)).save(tmp_path / "mask.png")
    hole = blob_mask(32, 64, top=12, left=52) > 0
    runs = {"crop": (), "full": ("--full",)}
    for name, flags in runs.items():
        output = tmp_path / f"{name}.png"
        result = run_cli(
            "inpaint",
            tmp_path / "sprite.png",
            "--mask",
            tmp_path / "mask.png",
            "--model",
            inpainter,
            "-o",
            output,
            *flags,
            weights=weights,
        )
        assert result.returncode == 0, result.stderr
        with Image.open(output) as written:
            assert written.mode == "RGBA"
            runs[name] = np.asarray(written)
        np.testing.assert_array_equal(runs[name][:, :, 3], alpha)
        np.testing.assert_array_equal(runs[name][~hole, :3], pixels[~hole])
    assert (runs["crop"][hole, :3] == BACKGROUND).all()
    assert (runs["full"][hole, :3] < BACKGROUND - 10).all()


def test_mask_from_alpha_fills_the_transparent_pixels_and_writes_opaque(
    weights: Path, tmp_path: Path, inpainter: Path
) -> None:
    pixels = blob_image(24, 24, background=BACKGROUND, top=9, left=9)
    alpha = np.full((24, 24), 255, np.uint8)
    alpha[9:15, 9:15] = 0  # the blob is cut out
    alpha[9, 20] = 254  # not fully opaque: filled too
    Image.fromarray(np.concatenate([pixels, alpha[:, :, None]], axis=2)).save(tmp_path / "cut.png")
    result = run_cli("inpaint", tmp_path / "cut.png", "--mask-from-alpha", "--model", inpainter, weights=weights)
    assert result.returncode == 0, result.stderr
    assert "(24x24, 37 pixels filled, " in result.stdout
    with Image.open(tmp_path / "cut_inpainted.png") as written:
        assert written.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(written), np.full((24, 24, 3), BACKGROUND))


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("small mask", ("mask is 20x16 but", "photo.png is 40x32; give a mask of the image's size")),
        ("empty mask", ("mask marks no pixel to fill; paint the region to fill white",)),
        ("both", ("--mask and --mask-from-alpha", "only one")),
        ("neither", ("--mask MASK.png", "--mask-from-alpha")),
        ("no alpha", ("photo.png has no alpha channel", "--mask")),
    ],
)
def test_mask_errors_are_one_line_and_write_nothing(
    weights: Path, photo: tuple[Path, Path], inpainter: Path, case: str, fragments: tuple[str, ...]
) -> None:
    source, mask = photo
    folder = source.parent
    Image.fromarray(np.full((16, 20), 255, np.uint8)).save(folder / "small.png")
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(folder / "empty.png")
    before = listing(folder)
    flags = {
        "small mask": ("--mask", folder / "small.png"),
        "empty mask": ("--mask", folder / "empty.png"),
        "both": ("--mask", mask, "--mask-from-alpha"),
        "neither": (),
        "no alpha": ("--mask-from-alpha",),
    }[case]
    result = run_cli("inpaint", source, *flags, "--model", inpainter, weights=weights)
    assert_one_line_error(result, *fragments)
    assert listing(folder) == before


def test_folder_with_a_mask_folder_reports_a_missing_mask_and_goes_on(
    weights: Path, tmp_path: Path, inpainter: Path
) -> None:
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    for name in ("a.jpg", "trip/b.png", "c.png"):
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(blob_image(24, 24, background=BACKGROUND, top=8, left=8)).save(photos / name, quality=100)
    for name in ("a.png", "trip/b.webp"):  # masks may have another suffix; c.png has none
        (masks / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(blob_mask(24, 24, top=8, left=8)).save(masks / name, lossless=True)
    result = run_cli("inpaint", photos, "--mask", masks, "--model", inpainter, weights=weights)
    assert result.returncode == 1, result.stderr
    assert "failed: c.png: no mask for it:" in result.stderr
    assert "2 written, 0 skipped, 1 failed" in result.stderr
    outdir = tmp_path / "photos_inpainted"
    assert listing(outdir) == ["a.png", "img2img-report.json", "trip", "trip/b.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(outdir / "trip" / "b.png")), np.full((24, 24, 3), BACKGROUND))
    report = json.loads((outdir / "img2img-report.json").read_text())
    assert report["options"]["masks"] == str(masks)
    assert [record["status"] for record in report["files"]] == ["written", "failed", "written"]

    wrong = run_cli("inpaint", photos, "--mask", masks / "a.png", "--model", inpainter, weights=weights)
    assert_one_line_error(wrong, "is a folder, so --mask must be the folder of its masks")


def test_folder_with_mask_from_alpha_fails_only_the_images_without_alpha(
    weights: Path, tmp_path: Path, inpainter: Path
) -> None:
    sprites = tmp_path / "sprites"
    sprites.mkdir()
    pixels = blob_image(16, 16, background=BACKGROUND, top=5, left=5)
    alpha = np.full((16, 16, 1), 255, np.uint8)
    alpha[5:11, 5:11] = 0
    Image.fromarray(np.concatenate([pixels, alpha], axis=2)).save(sprites / "cut.png")
    Image.fromarray(pixels).save(sprites / "flat.png")
    outdir = tmp_path / "out"
    result = run_cli("inpaint", sprites, "--mask-from-alpha", "--model", inpainter, "-o", outdir, weights=weights)
    assert result.returncode == 1, result.stderr
    assert "failed: flat.png: the image has no alpha channel" in result.stderr
    with Image.open(outdir / "cut.png") as written:
        assert written.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(written), np.full((16, 16, 3), BACKGROUND))
    assert not (outdir / "flat.png").exists()


def test_default_model_is_the_shipped_inpaint_model(weights: Path, photo: tuple[Path, Path]) -> None:
    source, mask = photo
    assert_one_line_error(
        run_cli("inpaint", source, "--mask", mask, weights=weights), "no shipped inpaint model", "--model"
    )
    ship_inpainter(weights)
    result = run_cli("inpaint", source, "--mask", mask, weights=weights)
    assert result.returncode == 0, result.stderr
    assert source.with_name("photo_inpainted.png").is_file()
    refused = run_cli("inpaint", source, "--mask", mask, "--model", "superres-x2", weights=weights)
    assert_one_line_error(refused, "superres-x2", "superres model, not inpaint")


def test_inpaint_never_imports_torch_onnx_or_opencv(weights: Path, photo: tuple[Path, Path], inpainter: Path) -> None:
    source, mask = photo
    script = textwrap.dedent(
        f"""
        import sys
        from cli.main import app

        args = ["inpaint", {str(source)!r}, "--mask", {str(mask)!r}, "--model", {str(inpainter)!r}]
        code = app(args, standalone_mode=False)
        assert code is None, code
        heavy = sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "onnx", "cv2"))
        assert not heavy, heavy
        """
    )
    result = python("-c", script, weights=weights)
    assert result.returncode == 0, result.stderr
    assert source.with_name("photo_inpainted.png").is_file()
