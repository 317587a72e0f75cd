import inspect
import io
import json
import warnings

import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from img2img.nets import NETS, build_net, rebuild_net
from img2img.nets.adain import AdaINNet
from img2img.nets.cycle import CycleDiscriminators, CycleGenerators
from img2img.nets.rrdb import RRDBNet
from img2img.nets.srvgg import SRVGGNet

# (preset, overrides, (H, W) meeting the net's size rule). Odd and non-square on purpose.
GENERATOR_CASES = [
    *[("srvgg_tiny", {"scale": scale}, (7, 5)) for scale in (1, 2, 3, 4)],
    *[("rrdb_tiny", {"scale": scale}, (7, 5)) for scale in (1, 2, 4)],
    ("srvgg_tiny", {"act": "leaky_relu"}, (3, 6)),
    ("unet_tiny", {}, (16, 24)),
    ("unet_tiny", {"upsample": "resize", "norm": "instance", "use_dropout": True}, (8, 32)),
    ("unet_tiny", {"self_attention": True}, (24, 16)),
    ("resnet_tiny", {}, (8, 12)),
    ("resnet_tiny", {"padding": "zero", "upsample": "resize"}, (4, 8)),
    ("resnet_tiny", {"padding": "replicate", "self_attention": True, "use_dropout": True}, (12, 8)),
    ("unet_tiny", {"residual": True}, (16, 8)),
    ("resnet_tiny", {"residual": True, "upsample": "resize"}, (8, 12)),
]
CASE_IDS = [
    f"{name}-{'-'.join(f'{k}={v}' for k, v in overrides.items())}" for name, overrides, _ in GENERATOR_CASES
]


def _input(net, size, batch=2):
    low, high = net.input_range
    return torch.rand(batch, net.in_channels, *size) * (high - low) + low


def _meta_build(name, **overrides):
    # Construction on the meta device allocates nothing, so even the largest presets are cheap.
    with torch.device("meta"):
        return build_net(name, **overrides)


# CycleGAN's pairs hold other nets and are built from their members; tested below.
PAIRS = ("CycleGenerators", "CycleDiscriminators")


@pytest.mark.parametrize("name", [name for name in NETS.names() if name not in PAIRS])
def test_every_net_rebuilds_from_its_hparams(name):
    net = _meta_build(name)
    assert NETS.get(net.arch) is type(net)
    # hparams go into checkpoints and ONNX metadata as JSON.
    assert json.loads(json.dumps(net.hparams)) == net.hparams
    # Nets whose channels are settable record them; the rest (VGG-based AdaIN) are RGB only.
    settable = inspect.signature(type(net)).parameters
    for side in ("in_channels", "out_channels"):
        if hasattr(net, side):
            assert getattr(net, side) == (net.hparams[side] if side in settable else 3)
    assert net.min_size >= 1
    with torch.device("meta"):
        twin = rebuild_net(net.arch, net.hparams)
    assert twin.hparams == net.hparams
    assert {k: v.shape for k, v in twin.state_dict().items()} == {
        k: v.shape for k, v in net.state_dict().items()
    }
    if hasattr(net, "input_range"):  # generators describe what the runtime must feed them
        assert net.scale >= 1 and net.multiple_of >= 1 and net.min_size % net.multiple_of == 0
        # Super-resolution and VGG-based style nets take [0, 1]; the rest work in the tanh range.
        expected_range = (0.0, 1.0) if isinstance(net, (SRVGGNet, RRDBNet, AdaINNet)) else (-1.0, 1.0)
        assert net.input_range == expected_range


def test_preset_sizes():
    assert sum(p.numel() for p in _meta_build("srvgg_compact").parameters()) == 621_424
    assert sum(p.numel() for p in _meta_build("rrdb_esrgan").parameters()) == 16_697_987
    assert _meta_build("unet_256").multiple_of == 256
    assert _meta_build("unet_128").multiple_of == 128
    assert len(_meta_build("resnet_6blocks").bottleneck) == 7  # 6 blocks + the attention slot
    # pix2pix: dropout in the three full-width decoder levels below the bottleneck (CD512).
    dropouts = [
        m for m in _meta_build("unet_256", use_dropout=True).modules() if isinstance(m, torch.nn.Dropout)
    ]
    assert len(dropouts) == 3


@pytest.mark.parametrize("name, overrides, size", GENERATOR_CASES, ids=CASE_IDS)
def test_generator_output_shape_and_range(name, overrides, size):
    torch.manual_seed(0)
    net = build_net(name, **overrides)
    out = net(_input(net, size))
    assert out.shape == (2, net.out_channels, size[0] * net.scale, size[1] * net.scale)
    assert torch.isfinite(out).all()
    if net.input_range == (-1.0, 1.0):
        assert out.abs().max() <= 1.0


def test_unet_non_square_at_preset_depth():
    # unet_128 has 7 levels: 128x256 gives a 1x2 bottleneck. Thin channels keep it cheap.
    torch.manual_seed(0)
    net = build_net("unet_128", base_channels=2)
    assert net(torch.rand(1, 3, 128, 256) * 2 - 1).shape == (1, 3, 128, 256)


@pytest.mark.parametrize("name, overrides, size", GENERATOR_CASES, ids=CASE_IDS)
def test_generator_backward_gives_finite_grads(name, overrides, size):
    torch.manual_seed(0)
    net = build_net(name, **overrides).train()
    net(_input(net, size)).square().mean().backward()
    for param_name, param in net.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name


@pytest.mark.parametrize("name, overrides, size", GENERATOR_CASES, ids=CASE_IDS)
def test_generator_state_dict_round_trip(name, overrides, size):
    torch.manual_seed(0)
    net = build_net(name, **overrides)
    # A training step moves BatchNorm statistics away from their defaults, so the round trip
    # must carry buffers too.
    net.train()(_input(net, size))
    twin = rebuild_net(net.arch, net.hparams)
    twin.load_state_dict(net.state_dict())
    x = _input(net, size)
    assert torch.equal(net.eval()(x), twin.eval()(x))


def test_unknown_name_lists_valid_ones():
    with pytest.raises(KeyError, match=r"srvgg_tiny.*unet_256"):
        build_net("unet_512")


def test_none_overrides_are_dropped():
    default = build_net("srvgg_tiny", scale=None, act=None)
    assert default.hparams == build_net("srvgg_tiny").hparams
    assert default.scale == 4
    net = build_net("srvgg_tiny", scale=2, num_conv=None)
    assert net.scale == 2 and net.hparams["num_conv"] == 2


def test_presets_accept_overrides():
    net = build_net("srvgg_small", scale=2)
    assert net.hparams == dict(
        in_channels=3, out_channels=3, num_features=32, num_conv=12, scale=2, act="prelu"
    )
    assert build_net("unet_tiny", norm="instance").hparams["norm"] == "instance"


@pytest.mark.parametrize(
    "call",
    [
        lambda: SRVGGNet(scale=5),
        lambda: SRVGGNet(in_channels=1, out_channels=3),
        lambda: RRDBNet(scale=3),
        lambda: build_net("unet_tiny", num_downs=0),
        lambda: build_net("unet_tiny", residual=True, in_channels=1),
        lambda: build_net("resnet_tiny", residual=True, out_channels=1),
    ],
)
def test_invalid_hparams_raise(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize(
    "name, bad_size, message",
    [("unet_tiny", (12, 16), "multiples of 8"), ("resnet_tiny", (4, 4), "at least 8x8")],
)
def test_size_rule_violations_raise(name, bad_size, message):
    net = build_net(name)
    with pytest.raises(ValueError, match=message):
        net(torch.rand(1, 3, *bad_size))


def test_wrong_channel_count_raises():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        build_net("srvgg_tiny")(torch.rand(1, 1, 8, 8))


def test_srvgg_adds_the_nearest_upsampled_input():
    torch.manual_seed(0)
    net = build_net("srvgg_tiny", scale=3)
    last_conv = net.body[-2]
    torch.nn.init.zeros_(last_conv.weight)
    torch.nn.init.zeros_(last_conv.bias)
    x = torch.rand(1, 3, 5, 4)
    assert torch.equal(net(x), F.interpolate(x, scale_factor=3, mode="nearest"))


@pytest.mark.parametrize("name", ["unet_tiny", "resnet_tiny"])
def test_self_attention_starts_as_identity(name):
    torch.manual_seed(0)
    with_attention = build_net(name, self_attention=True).eval()
    plain = build_net(name).eval()
    plain_keys = plain.state_dict().keys()
    plain.load_state_dict({k: v for k, v in with_attention.state_dict().items() if k in plain_keys})
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.equal(with_attention(x), plain(x))
    gammas = [p for n, p in with_attention.named_parameters() if n.endswith("gamma")]
    assert len(gammas) == 1
    with torch.no_grad():
        gammas[0].fill_(1.0)
    assert not torch.allclose(with_attention(x), plain(x))


@pytest.mark.parametrize("name", ["unet_tiny", "resnet_tiny"])
def test_a_residual_generator_starts_as_identity_and_learns_a_change(name):
    torch.manual_seed(0)
    net = build_net(name, residual=True)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(net(x), x)
    # Darker everywhere, and at -1 where the input is already dark.
    target = (x - 0.3).clamp(-1.0, 1.0)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    before = F.l1_loss(net(x), target).item()
    for _ in range(20):
        optimizer.zero_grad()
        F.l1_loss(net(x), target).backward()
        optimizer.step()
    assert F.l1_loss(net(x), target).item() < 0.5 * before


# (preset, overrides, export size, check size): the check size differs to prove the axes are dynamic.
ONNX_CASES = [
    ("srvgg_tiny", {}, (8, 8), (7, 5)),
    ("srvgg_tiny", {"scale": 3}, (6, 6), (5, 9)),
    ("rrdb_tiny", {"scale": 2}, (8, 8), (7, 5)),
    ("unet_tiny", {}, (16, 16), (24, 8)),
    ("unet_tiny", {"upsample": "resize", "self_attention": True}, (16, 16), (8, 32)),
    ("resnet_tiny", {}, (12, 12), (8, 16)),
    ("resnet_tiny", {"self_attention": True}, (8, 8), (16, 12)),
    ("unet_tiny", {"residual": True}, (16, 16), (24, 8)),
    ("resnet_tiny", {"residual": True}, (12, 12), (8, 16)),
]


@pytest.mark.parametrize(
    "name, overrides, export_size, check_size",
    ONNX_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(ONNX_CASES)],
)
def test_onnx_export_matches_torch_on_another_size(name, overrides, export_size, check_size):
    torch.manual_seed(0)
    net = build_net(name, **overrides).eval()
    if overrides.get("residual"):  # a zero last layer would export only the identity
        torch.nn.init.normal_(net.ups[0][1].weight if name.startswith("unet") else net.decoder[-1].weight, std=0.1)
    buffer = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        # The exporter's own deprecation and constant-folding notices are not ours to fix.
        warnings.simplefilter("ignore")
        # A TracerWarning means a Python value was frozen into the graph: sizes would not be dynamic.
        warnings.filterwarnings("error", category=torch.jit.TracerWarning, module="img2img")
        torch.onnx.export(
            net,
            (_input(net, export_size, batch=1),),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": axes, "output": axes},
        )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    x = _input(net, check_size, batch=2)
    (onnx_out,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        torch_out = net(x)
    assert onnx_out.shape == tuple(torch_out.shape)
    assert abs(torch.from_numpy(onnx_out) - torch_out).max().item() < 1e-4


def test_cycle_pairs_rebuild_with_their_members_and_weights():
    pair = CycleGenerators.from_nets(build_net("resnet_tiny"), build_net("unet_tiny"))
    critics = CycleDiscriminators.from_nets(build_net("patchgan_tiny"), build_net("pixelgan"))
    for net in (pair, critics):
        assert json.loads(json.dumps(net.hparams)) == net.hparams
        twin = rebuild_net(net.arch, net.hparams)
        twin.load_state_dict(net.state_dict())
        for (key, x), (_, y) in zip(net.state_dict().items(), twin.state_dict().items()):
            assert torch.equal(x, y), key
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.equal(pair(image), pair.G(image))  # the pair runs as G (A -> B)
    assert pair.direction("b2a") is pair.F
    with pytest.raises(ValueError, match="a2b or b2a"):
        pair.direction("sideways")


def test_a_widened_srvgg_net_computes_what_the_narrower_one_did_and_can_learn_more():
    narrow = build_net("srvgg_tiny", scale=2, act="leaky_relu")
    for parameter in narrow.parameters():  # trained-looking weights, not the initial ones
        torch.nn.init.normal_(parameter, std=0.2)
    wide = build_net("srvgg_tiny", scale=2, act="leaky_relu", num_features=12)
    wide.widen_from(narrow)
    lr = torch.rand(2, 3, 9, 7)
    torch.testing.assert_close(wide(lr), narrow(lr))
    # The new channels are live: the weights reading them into the output get a gradient.
    wide(lr).square().mean().backward()
    last_conv = wide.body[-2]
    assert last_conv.weight.grad[:, 8:].abs().sum() > 0


def test_a_widened_prelu_net_keeps_the_trained_slopes():
    narrow = build_net("srvgg_tiny", scale=3)
    for parameter in narrow.parameters():
        torch.nn.init.normal_(parameter, std=0.2)
    wide = build_net("srvgg_tiny", scale=3, num_features=10)
    wide.widen_from(narrow)
    lr = torch.rand(1, 3, 6, 6)
    torch.testing.assert_close(wide(lr), narrow(lr))


@pytest.mark.parametrize(
    "narrow_options",
    [{"num_features": 16}, {"num_conv": 3}, {"scale": 4}, {"act": "leaky_relu"}],
    ids=["wider", "deeper", "other-scale", "other-activation"],
)
def test_widening_refuses_a_net_that_is_not_a_narrower_twin(narrow_options):
    wide = build_net("srvgg_tiny", scale=2, num_features=12)
    with pytest.raises(ValueError, match="differs only in fewer num_features"):
        wide.widen_from(build_net("srvgg_tiny", **({"scale": 2} | narrow_options)))
