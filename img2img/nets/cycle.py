"""The two generators and the two discriminators of CycleGAN, each pair held as one module.

Paper-to-code map (Zhu et al., 2017): domain A is the paper's X, domain B its Y.
G: A -> B and F: B -> A are `CycleGenerators.G` and `.F`; D_Y (judges B images: real B against
G(a)) and D_X (judges A images: real A against F(b)) are `CycleDiscriminators.D_Y` and `.D_X`.
Holding each pair in one module lets the training engine treat them as its one generator and
one discriminator: one optimizer, one EMA and one checkpoint record per pair, as the reference
implementation chains the parameters of both nets into one optimizer.

Both containers rebuild from their record (`rebuild_net(net.arch, net.hparams)`): the hparams
hold each member's own (arch, hparams).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from img2img.nets.registry import NETS, rebuild_net


def _record(net: nn.Module) -> dict[str, Any]:
    return {"arch": net.arch, "hparams": net.hparams}


@NETS.register("CycleGenerators")
class CycleGenerators(nn.Module):
    """G: A -> B and F: B -> A.

    Args:
        G, F: records {"arch": ..., "hparams": ...} of the two generators (see `from_nets`).

    forward(x): G(x), so code that runs "the generator" on an A image gets the A -> B direction.
    Shape and range are the members': (B, C, H, W) in [-1, 1] for the ResNet/U-Net generators.
    """

    arch = "CycleGenerators"

    def __init__(self, *, G: dict[str, Any], F: dict[str, Any]) -> None:
        super().__init__()
        self.G = rebuild_net(G["arch"], G["hparams"])
        self.F = rebuild_net(F["arch"], F["hparams"])
        self.hparams: dict[str, Any] = {"G": _record(self.G), "F": _record(self.F)}

    @classmethod
    def from_nets(cls, G: nn.Module, F: nn.Module) -> CycleGenerators:
        """The pair of two freshly built generators (their initial weights kept)."""
        pair = cls(G=_record(G), F=_record(F))
        pair.G.load_state_dict(G.state_dict())
        pair.F.load_state_dict(F.state_dict())
        return pair

    def direction(self, name: str) -> nn.Module:
        """"a2b" -> G, "b2a" -> F."""
        nets = {"a2b": self.G, "b2a": self.F}
        if name not in nets:
            raise ValueError(f"unknown direction {name!r}; choose a2b or b2a")
        return nets[name]

    def forward(self, x: Tensor) -> Tensor:
        return self.G(x)


@NETS.register("CycleDiscriminators")
class CycleDiscriminators(nn.Module):
    """D_Y judges domain B, D_X judges domain A.

    Args:
        D_Y, D_X: records {"arch": ..., "hparams": ...} of the two discriminators.
    """

    arch = "CycleDiscriminators"

    def __init__(self, *, D_Y: dict[str, Any], D_X: dict[str, Any]) -> None:
        super().__init__()
        self.D_Y = rebuild_net(D_Y["arch"], D_Y["hparams"])
        self.D_X = rebuild_net(D_X["arch"], D_X["hparams"])
        self.hparams: dict[str, Any] = {"D_Y": _record(self.D_Y), "D_X": _record(self.D_X)}

    @classmethod
    def from_nets(cls, D_Y: nn.Module, D_X: nn.Module) -> CycleDiscriminators:
        pair = cls(D_Y=_record(D_Y), D_X=_record(D_X))
        pair.D_Y.load_state_dict(D_Y.state_dict())
        pair.D_X.load_state_dict(D_X.state_dict())
        return pair
