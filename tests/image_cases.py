"""A folder of images as people have them, good and bad, with what a correct run must produce.

`write_image_cases(root)` writes one small file per case (at most 48x40 pixels) under `root`, in
nested folders and with a unicode name, and returns the cases keyed by their path relative to
`root` in posix form:

    >>> cases = write_image_cases(tmp_path)
    >>> cases["a/b/rgb16.png"].expect["bit_depth"]
    16

Good cases load and must produce an output; bad cases must fail with `reason_contains` in their
error message; `notes.txt` is not an image at all and a batch must leave it alone.

`Case.expect` keys (every good case has all of them):
    size: (width, height) of the upright image, so an output scaled by s is (s*width, s*height).
    stored_size: (width, height) as stored in the file (swapped when EXIF rotates by 90 degrees).
    mode: the Pillow mode the file is stored in (LoadedImage.mode).
    bit_depth: 8 or 16, the bits per sample a PNG output keeps.
    grayscale: the output is written as gray.
    alpha: the output keeps an alpha channel (for PNG and WebP).
    icc: the output carries an ICC profile.
    exif: the output carries an EXIF block (always with orientation 1 or none).
    warning: a substring of one of LoadedImage.warnings, or None when none is expected.
    png_mode: the mode Pillow reports when it opens a PNG output written like the source.
    probes: ((fx, fy), (r, g, b), tolerance) triples: at fractional position (fx, fy) of the
        upright image (so also of any scaled output), RGB on the 8-bit scale within tolerance.
    alpha_probes: ((fx, fy), opacity, tolerance) triples, opacity on the 8-bit scale.
The ignored case has expect == {"ignored": True}.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageCms

MAX_WIDTH, MAX_HEIGHT = 48, 40

RED, GREEN, BLUE, YELLOW = (220, 30, 40), (30, 200, 60), (40, 60, 210), (240, 220, 30)
CORNERS = ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75))  # TL, TR, BL, BR centres

UNICODE_NAME = "a/fötö_照片.png"


@dataclass(frozen=True)
class Case:
    """What a correct run does with one file.

    Attributes:
        good: the file decodes and must produce an output.
        reason_contains: for a bad file, a substring of its error message; None for good and
            ignored files.
        expect: properties of the decoded image and of its output (see the module docstring).
    """

    good: bool
    reason_contains: str | None
    expect: dict = field(default_factory=dict)


def quadrants(width: int, height: int, colours: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """(height, width, C) uint8 image of four flat blocks: top-left, top-right, bottom-left, bottom-right."""
    image = np.empty((height, width, len(colours[0])), np.uint8)
    top, left = height // 2, width // 2
    image[:top, :left], image[:top, left:] = colours[0], colours[1]
    image[top:, :left], image[top:, left:] = colours[2], colours[3]
    return image


def cmyk_profile(ink_to_rgb: tuple[int, int, int] = (0, 1, 2)) -> bytes:
    """A minimal ICC v2 CMYK output profile (lut8 A2B0 from CMYK to Lab on a 2-point grid).

    Ink `ink_to_rgb[i]` of C, M, Y absorbs red, green or blue respectively: the identity gives
    the textbook CMYK to RGB mapping at the grid corners, a permutation a profile whose colours
    differ visibly from that naive mapping.
    """
    corners = np.array(
        [[c, m, y, k] for c in (0, 1) for m in (0, 1) for y in (0, 1) for k in (0, 1)], np.float64
    )
    inks = corners[:, :3][:, np.argsort(ink_to_rgb)]
    rgb = np.rint(255 * (1 - inks) * (1 - corners[:, 3:])).astype(np.uint8)
    to_lab = ImageCms.buildTransform(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
    )
    lab = np.asarray(ImageCms.applyTransform(Image.fromarray(rgb[None]), to_lab))[0].copy()
    # Pillow stores a* and b* as signed bytes; ICC 8-bit Lab stores them offset by 128.
    lab[:, 1:] ^= 0x80

    identity = bytes(range(256))
    lut = (
        b"mft1" + bytes(4) + bytes([4, 3, 2, 0])
        + struct.pack(">9i", *(65536 if row == column else 0 for row in range(3) for column in range(3)))
        + identity * 4 + lab.tobytes() + identity * 3
    )
    text = b"img2img test CMYK\0"
    description = (
        b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67)
    )
    white = b"XYZ " + bytes(4) + struct.pack(">3i", *(round(v * 65536) for v in (0.9642, 1.0, 0.8249)))
    tags = [(b"desc", description), (b"wtpt", white), (b"A2B0", lut)]

    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (
        struct.pack(">I", size) + bytes(4) + struct.pack(">I", 0x02100000)
        + b"prtrCMYKLab " + bytes(12) + b"acsp" + bytes(24) + struct.pack(">I", 0)
        + struct.pack(">3i", 63190, 65536, 54061) + bytes(48)
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def huge_header_png() -> bytes:
    """A well-formed PNG header claiming 100000x100000 RGB pixels, followed by almost no data."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(bytes(64))) + png_chunk(b"IEND", b"")
    )


def _probes(colours: tuple[tuple[int, ...], ...], tolerance: int) -> tuple:
    return tuple((corner, tuple(colour[:3]), tolerance) for corner, colour in zip(CORNERS, colours))


def _expect(size: tuple[int, int], mode: str, **overrides: object) -> dict:
    expect = {
        "size": size,
        "stored_size": size,
        "mode": mode,
        "bit_depth": 8,
        "grayscale": False,
        "alpha": False,
        "icc": False,
        "exif": False,
        "warning": None,
        "png_mode": "RGB",
        "probes": (),
        "alpha_probes": (),
    }
    assert overrides.keys() <= expect.keys(), overrides.keys() - expect.keys()
    expect.update(overrides)
    return expect


def write_image_cases(root: Path) -> dict[str, Case]:
    """Write every case under `root` (created if needed) and return {relative posix path: Case}."""
    root = Path(root)
    cases: dict[str, Case] = {}

    def place(relative: str) -> Path:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    colours = (RED, GREEN, BLUE, YELLOW)

    # 8-bit RGB.
    Image.fromarray(quadrants(40, 30, colours)).save(place("rgb8.png"))
    cases["rgb8.png"] = Case(True, None, _expect((40, 30), "RGB", probes=_probes(colours, 0)))

    # RGBA whose opacity ramps from 0 to 255 over the middle columns; under the transparent part
    # hides magenta, which must not show once the image is flattened for JPEG.
    rgb = quadrants(40, 32, ((255, 0, 255), GREEN, (255, 0, 255), YELLOW))
    alpha = np.clip((np.arange(40) - 12) * 16, 0, 255).astype(np.uint8)
    Image.fromarray(np.dstack([rgb, np.broadcast_to(alpha, (32, 40))])).save(place("a/rgba.png"))
    cases["a/rgba.png"] = Case(
        True,
        None,
        _expect(
            (40, 32),
            "RGBA",
            alpha=True,
            png_mode="RGBA",
            probes=(((0.9, 0.25), GREEN, 0), ((0.9, 0.75), YELLOW, 0)),
            alpha_probes=(((0.1, 0.5), 0, 0), ((0.9, 0.5), 255, 0), ((0.5, 0.5), 128, 24)),
        ),
    )

    # 8-bit gray, and gray with alpha.
    gray = np.tile(np.linspace(0, 255, 36).astype(np.uint8), (28, 1))
    Image.fromarray(gray).save(place("a/gray.png"))
    cases["a/gray.png"] = Case(
        True,
        None,
        _expect(
            (36, 28), "L", grayscale=True, png_mode="L",
            probes=(((0.0, 0.5), (0, 0, 0), 0), ((0.99, 0.5), (255, 255, 255), 0)),
        ),
    )
    Image.fromarray(np.dstack([gray, gray[:, ::-1]])).save(place("a/gray_alpha.png"))
    cases["a/gray_alpha.png"] = Case(
        True,
        None,
        _expect(
            (36, 28), "LA", grayscale=True, alpha=True, png_mode="LA",
            alpha_probes=(((0.0, 0.5), 255, 0), ((0.99, 0.5), 0, 0)),
        ),
    )

    # 16-bit gray: a ramp over the full range whose low bytes are not copies of the high bytes.
    ramp16 = np.tile(np.linspace(0, 65535, 40).astype(np.uint16), (30, 1))
    ramp16[:, 1:-1] += 77
    Image.fromarray(ramp16).save(place("a/b/gray16.png"))
    cases["a/b/gray16.png"] = Case(
        True,
        None,
        _expect(
            (40, 30), "I;16", bit_depth=16, grayscale=True, png_mode="I;16",
            probes=(((0.0, 0.5), (0, 0, 0), 0), ((0.99, 0.5), (255, 255, 255), 0)),
        ),
    )

    # 16-bit RGB and RGBA, written by OpenCV (Pillow cannot write them).
    rgb16 = quadrants(40, 30, colours).astype(np.uint16) * 257
    rgb16 += np.arange(30, dtype=np.uint16)[:, None, None] * 3  # distinct low bytes
    cv2.imwrite(str(place("a/b/rgb16.png")), np.ascontiguousarray(rgb16[:, :, ::-1]))
    cases["a/b/rgb16.png"] = Case(
        True, None, _expect((40, 30), "RGB;16", bit_depth=16, probes=_probes(colours, 1))
    )
    alpha16 = np.broadcast_to(np.linspace(0, 65535, 40).astype(np.uint16), (30, 40))
    bgra16 = np.dstack([rgb16[:, :, ::-1], alpha16])
    cv2.imwrite(str(place("a/b/rgba16.png")), bgra16)
    cases["a/b/rgba16.png"] = Case(
        True,
        None,
        _expect(
            (40, 30), "RGBA;16", bit_depth=16, alpha=True, png_mode="RGBA",
            probes=_probes(colours, 1), alpha_probes=(((0.0, 0.5), 0, 0), ((0.99, 0.5), 255, 0)),
        ),
    )

    # Palette, opaque and with per-entry transparency (entry 1 fully, entry 2 half transparent).
    indices = quadrants(32, 24, ((0,), (1,), (2,), (3,)))[:, :, 0]
    palette = [value for colour in colours for value in colour]
    image = Image.frombytes("P", (32, 24), indices.tobytes())
    image.putpalette(palette)
    image.save(place("palette.png"))
    cases["palette.png"] = Case(True, None, _expect((32, 24), "P", probes=_probes(colours, 0)))
    image.save(place("a/palette_transparent.png"), transparency=bytes([255, 0, 128, 255]))
    cases["a/palette_transparent.png"] = Case(
        True,
        None,
        _expect(
            (32, 24), "P", alpha=True, png_mode="RGBA",
            probes=(_probes(colours, 0)[0], _probes(colours, 0)[3]),
            alpha_probes=tuple(zip(CORNERS, (255, 0, 128, 255), (0, 0, 0, 0))),
        ),
    )

    # CMYK JPEG (Pillow writes Adobe-inverted CMYK) with an embedded CMYK profile: the loader
    # converts it to sRGB and drops the profile. Inks: C, M, Y, none.
    inks = quadrants(40, 32, ((255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 0)))
    Image.frombytes("CMYK", (40, 32), inks.tobytes()).save(place("b/cmyk.jpg"), quality=95, icc_profile=cmyk_profile())
    cmyk_rgb = ((0, 255, 255), (255, 0, 255), (255, 255, 0), (255, 255, 255))
    cases["b/cmyk.jpg"] = Case(True, None, _expect((40, 32), "CMYK", probes=_probes(cmyk_rgb, 24)))

    # JPEG stored sideways (EXIF orientation 6: turn 90 degrees clockwise to view) with an sRGB
    # profile. Stored 48x32 becomes 32x48 upright; the stored top-left block ends up top-right.
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "img2img test camera"
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(quadrants(48, 32, colours)).save(
        place("photos/exif_rotated.jpg"), quality=95, exif=exif, icc_profile=srgb
    )
    upright = (BLUE, RED, YELLOW, GREEN)
    cases["photos/exif_rotated.jpg"] = Case(
        True,
        None,
        _expect((32, 48), "RGB", stored_size=(48, 32), icc=True, exif=True, probes=_probes(upright, 12)),
    )

    # Animated GIF: only the first frame is used, with a warning.
    frames = [Image.fromarray(quadrants(24, 20, colours[shift:] + colours[:shift])) for shift in range(3)]
    frames[0].save(place("multiframe.gif"), save_all=True, append_images=frames[1:], duration=100, loop=0)
    cases["multiframe.gif"] = Case(
        True, None, _expect((24, 20), "P", warning="3 frames", probes=_probes(colours, 0))
    )

    # A unicode file name.
    Image.fromarray(quadrants(20, 16, colours)).save(place(UNICODE_NAME))
    cases[UNICODE_NAME] = Case(True, None, _expect((20, 16), "RGB", probes=_probes(colours, 0)))

    # Bad files.
    place("bad/corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    cases["bad/corrupt.png"] = Case(False, "corrupt", {})
    noise = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG", quality=95)
    place("bad/truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    cases["bad/truncated.jpg"] = Case(False, "truncated", {})
    place("bad/empty.png").write_bytes(b"")
    cases["bad/empty.png"] = Case(False, "empty", {})
    place("bad/text.png").write_text("this is a note, not a picture\n")
    cases["bad/text.png"] = Case(False, "not an image", {})
    place("bad/huge_header.png").write_bytes(huge_header_png())
    cases["bad/huge_header.png"] = Case(False, "max-pixels", {})

    # Not an image suffix: not an input at all.
    place("notes.txt").write_text("holiday photos, sorted\n")
    cases["notes.txt"] = Case(False, None, {"ignored": True})
    return cases


# Helpers the image-file tests share.

ORIENTATION, MAKE = 0x0112, 0x010F


def noise(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, channels), dtype=np.uint8)


def noise16(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, size=(height, width, channels), dtype=np.uint16)


def bgr(values: np.ndarray) -> np.ndarray:
    """RGB(A) -> OpenCV's BGR(A) order."""
    order = [2, 1, 0, 3][: values.shape[2]]
    return np.ascontiguousarray(values[:, :, order])


def to8(values: np.ndarray) -> np.ndarray:
    return np.rint(values * 255).astype(np.uint8)


def to16(values: np.ndarray) -> np.ndarray:
    return np.rint(values * 65535).astype(np.uint16)
