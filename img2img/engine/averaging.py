"""Parameter averages the engine keeps beside the trained nets.

- `ema_model`: the exponential moving average of the generator (Karras et al.), the weights that
  are validated, sampled and exported.
- `HistoricalAverage`: the running mean of all past parameters, whose distance to the current
  ones is penalised (Salimans et al. 2016, "historical averaging") to damp oscillation.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def ema_model(model: nn.Module, decay: float) -> AveragedModel:
    """An EMA copy of `model`; buffers (e.g. BatchNorm statistics) are averaged too."""
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    ema.requires_grad_(False)
    return ema


class HistoricalAverage(nn.Module):
    """Running mean of a module's parameters and the penalty ||theta - mean(theta)||^2.

    The mean is kept as buffers so it travels with `state_dict` and a resumed run continues
    exactly.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self._model = [model]  # a list so the tracked net is not registered as a submodule
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        for index, param in enumerate(model.parameters()):
            self.register_buffer(f"mean_{index}", param.detach().clone())

    def _pairs(self):
        for index, param in enumerate(self._model[0].parameters()):
            yield param, getattr(self, f"mean_{index}")

    def penalty(self) -> torch.Tensor:
        """Sum over parameters of the squared distance to their historical mean (scalar)."""
        return sum(((param - mean) ** 2).sum() for param, mean in self._pairs())

    @torch.no_grad()
    def update(self) -> None:
        """Folds the current parameters into the mean (call after each optimizer step)."""
        self.count += 1
        weight = 1.0 / (self.count.item() + 1)
        for param, mean in self._pairs():
            mean.lerp_(param.detach(), weight)
