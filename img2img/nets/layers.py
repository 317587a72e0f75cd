"""Building blocks shared by the generators and discriminators.

- Normalisation and activation factories (`get_norm_layer`, `get_act_layer`) and the upsampling
  factory (`get_upsample_layer`), each backed by a `Registry`, so a net takes plain strings that
  go into its recorded hyperparameters.
- `init_weights`: the weight initialisations of pix2pix/CycleGAN (Isola et al., 2017, "Image-to-Image
  Translation with Conditional Adversarial Networks"; Zhu et al., 2017, "Unpaired Image-to-Image
  Translation using Cycle-Consistent Adversarial Networks").
- `SelfAttention`: the block of SAGAN (Zhang et al., 2019, "Self-Attention Generative Adversarial
  Networks").
- `spectral_norm_if`: spectral normalisation (Miyato et al., 2018, "Spectral Normalization for
  Generative Adversarial Networks") behind a switch.
- `check_image_size`: the input check every net runs at its boundary.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from img2img.registry import Registry

NORM_LAYERS: Registry[Callable[[int], nn.Module]] = Registry("norm layer")
ACT_LAYERS: Registry[Callable[[int], nn.Module]] = Registry("activation")
WEIGHT_INITS: Registry[Callable[[Tensor, float], None]] = Registry("weight init")
UPSAMPLE_LAYERS: Registry[Callable[[int, int, bool], nn.Module]] = Registry("upsampling")


# --- normalisation -------------------------------------------------------------------------------


@NORM_LAYERS.register("batch")
def _batch_norm(channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels)


@NORM_LAYERS.register("instance")
def _instance_norm(channels: int) -> nn.Module:
    # pix2pix/CycleGAN: no affine parameters and no running statistics, so train and eval modes
    # normalise each image the same way.
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


@NORM_LAYERS.register("none")
def _no_norm(channels: int) -> nn.Module:
    return nn.Identity()


def get_norm_layer(name: str | None, channels: int) -> nn.Module:
    """A 2-d normalisation layer over `channels` channels: "batch", "instance" or "none"/None.

    Example:
        >>> norm = get_norm_layer("instance", 8)
        >>> norm.affine, norm.track_running_stats
        (False, False)
    """
    return NORM_LAYERS.get("none" if name is None else name)(channels)


def conv_bias(norm: str | None) -> bool:
    """Whether a convolution followed by `norm` needs a bias.

    A normalisation layer subtracts the per-channel mean, which cancels any bias before it.
    """
    return norm in (None, "none")


# --- activations ---------------------------------------------------------------------------------


@ACT_LAYERS.register("relu")
def _relu(channels: int) -> nn.Module:
    return nn.ReLU()


@ACT_LAYERS.register("leaky_relu")
def _leaky_relu(channels: int) -> nn.Module:
    # The 0.2 slope of DCGAN, pix2pix and ESRGAN.
    return nn.LeakyReLU(0.2)


@ACT_LAYERS.register("prelu")
def _prelu(channels: int) -> nn.Module:
    return nn.PReLU(num_parameters=channels)


@ACT_LAYERS.register("gelu")
def _gelu(channels: int) -> nn.Module:
    return nn.GELU()


@ACT_LAYERS.register("silu")
def _silu(channels: int) -> nn.Module:
    return nn.SiLU()


@ACT_LAYERS.register("tanh")
def _tanh(channels: int) -> nn.Module:
    return nn.Tanh()


@ACT_LAYERS.register("none")
def _no_act(channels: int) -> nn.Module:
    return nn.Identity()


def get_act_layer(name: str | type[nn.Module] | None, channels: int = 1) -> nn.Module:
    """A new activation module from a name, an `nn.Module` class (built without arguments) or None.

    Names: relu, leaky_relu (slope 0.2), prelu (one slope per channel, hence `channels`), gelu,
    silu, tanh, none. None and "none" give `nn.Identity`.

    Example:
        >>> get_act_layer("leaky_relu")
        LeakyReLU(negative_slope=0.2)
        >>> get_act_layer(nn.GELU)
        GELU(approximate='none')
    """
    if isinstance(name, type):
        if not issubclass(name, nn.Module):
            raise TypeError(f"activation class must subclass nn.Module, got {name.__name__}")
        return name()
    return ACT_LAYERS.get("none" if name is None else name)(channels)


# --- upsampling ----------------------------------------------------------------------------------


@UPSAMPLE_LAYERS.register("transpose")
def _transpose_upsample(in_channels: int, out_channels: int, bias: bool) -> nn.Module:
    # Kernel 4 with stride 2 gives every output pixel the same number of kernel taps, which keeps
    # checkerboard artefacts weaker than kernel 3 (Odena et al., 2016).
    return nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=bias)


@UPSAMPLE_LAYERS.register("resize")
def _resize_upsample(in_channels: int, out_channels: int, bias: bool) -> nn.Module:
    # Nearest-neighbour resize then convolution: free of checkerboard artefacts by construction.
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
    )


def get_upsample_layer(name: str, in_channels: int, out_channels: int, *, bias: bool = True) -> nn.Module:
    """A layer that doubles height and width: "transpose" (strided transposed conv) or "resize"
    (nearest upsampling + 3x3 conv). Maps (B, in_channels, H, W) to (B, out_channels, 2H, 2W)."""
    return UPSAMPLE_LAYERS.get(name)(in_channels, out_channels, bias)


# --- weight initialisation -----------------------------------------------------------------------


@WEIGHT_INITS.register("normal")
def _init_normal(weight: Tensor, gain: float) -> None:
    nn.init.normal_(weight, 0.0, gain)


@WEIGHT_INITS.register("xavier")
def _init_xavier(weight: Tensor, gain: float) -> None:
    nn.init.xavier_normal_(weight, gain=gain)


@WEIGHT_INITS.register("kaiming")
def _init_kaiming(weight: Tensor, gain: float) -> None:
    # As in pix2pix, `gain` does not apply: the scale comes from fan-in and the ReLU gain.
    nn.init.kaiming_normal_(weight, a=0.0, mode="fan_in")


@WEIGHT_INITS.register("orthogonal")
def _init_orthogonal(weight: Tensor, gain: float) -> None:
    nn.init.orthogonal_(weight, gain=gain)


_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm)


@torch.no_grad()
def init_weights(module: nn.Module, kind: str = "normal", gain: float = 0.02) -> nn.Module:
    """Re-initialise every conv/linear layer of `module` in place and return `module`.

    - conv/linear/embedding weights: "normal" N(0, gain), "xavier" (normal, gain), "kaiming"
      (normal, fan-in, `gain` unused) or "orthogonal" (gain); their biases are set to 0 (an
      embedding table left at torch's N(0, 1) would dominate a projection discriminator's
      logit at the start);
    - affine normalisation layers: weight N(1, gain), bias 0.

    Spectrally normalised layers get their raw weight initialised and their singular-vector
    estimates recomputed, so the normalised weight is right at once, in eval mode too.

    Example:
        >>> net = init_weights(nn.Conv2d(3, 8, 3), "xavier", gain=1.0)
    """
    init = WEIGHT_INITS.get(kind)
    for layer in module.modules():
        if isinstance(layer, _WEIGHTED):
            if parametrize.is_parametrized(layer, "weight"):
                weight = layer.parametrizations.weight.original
                init(weight, gain)
                _refresh_spectral_norm(layer)
            else:
                init(layer.weight, gain)
            if getattr(layer, "bias", None) is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, _NORMS) and layer.weight is not None:
            nn.init.normal_(layer.weight, 1.0, gain)
            nn.init.zeros_(layer.bias)
    return module


def zero_init(module: nn.Module) -> nn.Module:
    """Set every parameter of `module` to 0 and return it: the last layer of a net that
    predicts a residual, so the untrained net adds nothing to its input."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


def check_residual(residual: bool, in_channels: int, out_channels: int) -> None:
    """Raise ValueError where a generator asked to add its output to its input (`residual`)
    has different input and output channels."""
    if residual and in_channels != out_channels:
        raise ValueError(
            f"residual needs as many output channels as input channels, got {in_channels} in and "
            f"{out_channels} out; set residual = false"
        )


def _refresh_spectral_norm(layer: nn.Module) -> None:
    # Spectral norm keeps power-iteration estimates of the weight's top singular vectors and in
    # training mode refines them by one step per forward; after a re-initialisation they describe
    # the old weight. Rerun the 15 iterations torch does when the parametrisation is created.
    original = layer.parametrizations.weight.original
    for parametrization in layer.parametrizations.weight:
        if hasattr(parametrization, "_power_method"):
            parametrization._power_method(parametrization._reshape_weight_to_matrix(original), 15)


# --- spectral normalisation ----------------------------------------------------------------------


def spectral_norm_if(module: nn.Module, enabled: bool) -> nn.Module:
    """`module` with its weight spectrally normalised when `enabled`, else `module` unchanged.

    Uses `torch.nn.utils.parametrizations.spectral_norm`; the state dict then holds
    `parametrizations.weight.original` instead of `weight`.
    """
    return spectral_norm(module) if enabled else module


# --- self-attention ------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    """SAGAN self-attention: every position attends to every other one.

    out = x + gamma * attention(x), with gamma initialised to 0 so the block starts as the
    identity and the net learns how much non-local evidence to use. Memory grows as (H*W)^2, so
    place it at a low resolution.

    Args:
        channels: C of the input; queries and keys use max(1, C // 8) channels.
        spectral_norm: spectrally normalise the three 1x1 convolutions (for discriminators).

    Shape:
        (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, *, spectral_norm: bool = False) -> None:
        super().__init__()
        inner = max(1, channels // 8)
        self.query = spectral_norm_if(nn.Conv2d(channels, inner, 1), spectral_norm)
        self.key = spectral_norm_if(nn.Conv2d(channels, inner, 1), spectral_norm)
        self.value = spectral_norm_if(nn.Conv2d(channels, channels, 1), spectral_norm)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        query = self.query(x).flatten(2)  # (B, C', N)
        key = self.key(x).flatten(2)  # (B, C', N)
        value = self.value(x).flatten(2)  # (B, C, N)
        # Row i of `attention` is the distribution over positions that position i reads from.
        attention = torch.softmax(query.transpose(1, 2) @ key, dim=-1)  # (B, N, N)
        out = value @ attention.transpose(1, 2)  # (B, C, N)
        return x + self.gamma * out.reshape_as(x)


# --- input checks --------------------------------------------------------------------------------


def check_image_size(
    net: nn.Module, x: Tensor, *, channels: int, multiple_of: int = 1, min_size: int = 1
) -> None:
    """Raise ValueError unless `x` is (B, channels, H, W) with H and W multiples of `multiple_of`
    and at least `min_size`.

    Skipped while tracing (ONNX export), where sizes are symbolic and a Python check would be
    frozen into the graph.
    """
    if torch.jit.is_tracing():
        return
    name = type(net).__name__
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{name} expects a (B, {channels}, H, W) tensor, got shape {tuple(x.shape)}")
    height, width = x.shape[-2:]
    if height % multiple_of or width % multiple_of:
        raise ValueError(
            f"{name} needs height and width that are multiples of {multiple_of}, got {height}x{width}; "
            f"pad or crop the image to a multiple of {multiple_of}"
        )
    if height < min_size or width < min_size:
        raise ValueError(
            f"{name} needs images of at least {min_size}x{min_size} pixels, got {height}x{width}; "
            "use larger images or crops"
        )
