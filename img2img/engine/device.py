"""The torch device training and evaluation run on, from a setting ("auto", "cuda", "mps", "cpu")."""

from __future__ import annotations

import torch

from img2img.errors import ConfigError

DEVICE_NAMES = ("auto", "cuda", "mps", "cpu")


def resolve_device(name: str, *, option: str = "engine.device") -> torch.device:
    """"auto" picks cuda, then mps, then cpu; an explicit device that is missing is an error.

    Args:
        name: one of DEVICE_NAMES.
        option: where `name` came from ("engine.device", "--device"), named in the errors.

    Raises:
        ConfigError: an unknown name, or a device this machine does not have.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{option}=cuda but no CUDA GPU is visible; use {option}=auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{option}=mps but MPS is not available; use {option}=auto or cpu")
    if name not in DEVICE_NAMES:
        raise ConfigError(f"{option} must be auto, cuda, mps or cpu, not {name!r}")
    return torch.device(name)
