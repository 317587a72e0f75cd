"""benchmarks/sr_peers.py: the ncnn peer runner's padding, cropping and rounding, its parameter
count, and (where the wheels are installed) two real peers against bicubic on a small photo."""

import importlib.util
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
ncnn = pytest.importorskip("ncnn")

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sr_peers():
    spec = importlib.util.spec_from_file_location("sr_peers", REPOSITORY / "benchmarks" / "sr_peers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sr_peers"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("sr_peers", None)


def make_peer(sr_peers, **options):
    """A peer description for a net written by the test; only the processing options matter."""
    return sr_peers.NcnnPeer(name="test", package="test", version="0", module="test", files={2: ("", "")},
                             licence="", description="", **options)


def random_image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def nearest_x2(image):
    return image.repeat(2, axis=0).repeat(2, axis=1)


def write_net(folder, layers, weights=b""):
    param, model = folder / "net.param", folder / "net.bin"
    param.write_text(f"7767517\n{len(layers) + 1} {len(layers) + 1}\nInput data 0 1 data\n" + "\n".join(layers) + "\n")
    model.write_bytes(weights)
    return param, model


def test_padded_output_is_cropped_back_to_the_image(sr_peers, tmp_path):
    # Nearest x2 of the padded input: after cutting prepadding * 2 pixels the result must be the
    # nearest x2 of the image itself, pixel for pixel, whatever the border mode put around it.
    param, model = write_net(tmp_path, ["Interp up 1 1 data output 0=1 1=2.0 2=2.0"])
    image = random_image(9, 13)
    for border in ("reflect", "edge"):
        peer = make_peer(sr_peers, prepadding=4, border=border)
        output = sr_peers.NcnnUpscaler(peer, param, model, scale=2, threads=1)(image)
        assert output.dtype == np.uint8 and output.shape == (18, 26, 3)
        np.testing.assert_array_equal(output, nearest_x2(image))


def test_net_that_consumes_its_border_keeps_the_origin(sr_peers, tmp_path):
    # A valid 3x3 depthwise convolution with only the centre tap (eats one pixel per side, as
    # waifu2x's nets eat their prepadding), then nearest x2; odd sizes get waifu2x's extra pixel.
    kernel = np.zeros((3, 3, 3), np.float32)
    kernel[:, 1, 1] = 1
    weights = struct.pack("4B", 0, 0, 0, 0) + kernel.tobytes()  # flag 0: raw float32 weights
    param, model = write_net(
        tmp_path,
        ["ConvolutionDepthWise centre 1 1 data centred 0=3 1=3 5=0 6=27 7=3",
         "Interp up 1 1 centred output 0=1 1=2.0 2=2.0"],
        weights,
    )
    peer = make_peer(sr_peers, prepadding=1, border="edge", even_size=True, consumes_border=True)
    image = random_image(7, 10, seed=1)
    output = sr_peers.NcnnUpscaler(peer, param, model, scale=2, threads=1)(image)
    np.testing.assert_array_equal(output, nearest_x2(image))


def test_extra_planes_follow_the_colour_planes(sr_peers):
    peer = next(peer for peer in sr_peers.PEERS if peer.name == "srmd")
    runner = sr_peers.NcnnUpscaler.__new__(sr_peers.NcnnUpscaler)
    runner.peer = peer
    image = random_image(5, 6)
    planes = runner.network_input(image)
    pad = peer.prepadding
    assert planes.shape == (18, 5 + 2 * pad, 6 + 2 * pad)
    np.testing.assert_allclose(planes[:3, pad:-pad, pad:-pad], image.transpose(2, 0, 1) / 255, rtol=1e-6)
    np.testing.assert_array_equal(planes[:3, 0, pad:-pad], planes[:3, pad, pad:-pad])  # edge repeated
    np.testing.assert_array_equal(planes[3:, 0, 0], sr_peers.SRMD_BICUBIC_KERNEL_CODE)
    np.testing.assert_array_equal(planes[3:, -1, -1], sr_peers.SRMD_BICUBIC_KERNEL_CODE)


def test_ncnn_parameter_count(sr_peers, tmp_path):
    param = tmp_path / "count.param"
    param.write_text(
        "7767517\n5 5\n"
        "Input in 0 1 data\n"
        "Convolution c1 1 1 data a 0=8 1=3 4=1 5=1 6=216 9=2 -23310=1,2.000000e-01\n"  # 216 + 8 bias
        "PReLU p 1 1 a b 0=8\n"  # 8 slopes
        "Deconvolution d 1 1 b c 0=3 1=4 3=2 4=3 5=0 6=384\n"  # 384, no bias
        "PixelShuffle ps 1 1 c out 0=2\n"
    )
    assert sr_peers.ncnn_parameter_count(param) == 216 + 8 + 8 + 384


@pytest.mark.parametrize("name,scale", [("srmd", 2), ("waifu2x-upconv7-photo", 2)])
def test_real_peer_beats_bicubic(sr_peers, tmp_path, name, scale):
    from img2img.evaluate.scoring import PairScorer
    from img2img.evaluate.superres import evaluate_superres

    peer = next(peer for peer in sr_peers.PEERS if peer.name == name)
    folder = sr_peers.package_folder(peer.module)
    if folder is None:
        pytest.skip(f"{peer.package} is not installed")
    photo = Image.open(REPOSITORY / "examples" / "spaniels.png").convert("RGB")
    # 74x98 HR: LR 37x49, odd on both sides.
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    photo.crop((60, 40, 158, 114)).save(hr_dir / "spaniels.png")
    param, weights = (folder / name for name in peer.files[scale])
    upscale = sr_peers.NcnnUpscaler(peer, param, weights, scale=scale, threads=1)
    lr = random_image(37, 49)
    assert upscale(lr).shape == (74, 98, 3)
    table, _ = evaluate_superres(upscale, hr_dir, scale=scale, scorer=PairScorer(crop_border=scale, perceptual=False),
                                 model_name=name)
    assert not table.failures
    means = table.summary()
    assert means["model"]["psnr_y"] > means["bicubic"]["psnr_y"] + 0.5
