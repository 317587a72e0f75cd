"""The table of networks: architecture classes and named presets.

Two kinds of names live in `NETS`:

- architectures, spelled like their class (`SRVGGNet`, `UNetGenerator`, ...): the class itself,
  so `rebuild_net(net.arch, net.hparams)` gives the same architecture back;
- presets, in snake_case (`srvgg_compact`, `unet_256`, ...): functions `name(**overrides)` that
  fill in a configuration of one architecture.

Example:
    >>> from img2img.nets import build_net, rebuild_net
    >>> net = build_net("srvgg_tiny", scale=2)
    >>> twin = rebuild_net(net.arch, net.hparams)
    >>> twin.load_state_dict(net.state_dict())
    <All keys matched successfully>
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from img2img.registry import Registry

NETS: Registry[Callable[..., nn.Module]] = Registry("net")


def build_net(name: str, **overrides: Any) -> nn.Module:
    """Build the preset or architecture `name`; overrides whose value is None are dropped, so an
    unset option keeps the preset's value."""
    return NETS.get(name)(**{key: value for key, value in overrides.items() if value is not None})


def rebuild_net(arch: str, hparams: dict[str, Any]) -> nn.Module:
    """The net a checkpoint describes: the architecture `arch` built with its recorded `hparams`."""
    return NETS.get(arch)(**hparams)
