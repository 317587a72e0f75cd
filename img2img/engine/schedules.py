"""Learning-rate schedules as multipliers of the base rate (torch LambdaLR).

Example:
    >>> factor = lr_factor(ScheduleConfig(kind="cosine", warmup_steps=10), total_steps=100)
    >>> factor(0), factor(10), round(factor(100), 6)
    (0.1, 1.0, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from img2img.engine.config import ScheduleConfig
from img2img.errors import ConfigError
from img2img.registry import Registry

# Each entry maps (config, total_steps) to the post-warm-up multiplier of step t.
SCHEDULES: Registry[Callable[[ScheduleConfig, int], Callable[[int], float]]] = Registry("schedule")


@SCHEDULES.register("constant")
def _constant(config: ScheduleConfig, total_steps: int) -> Callable[[int], float]:
    return lambda step: 1.0


@SCHEDULES.register("linear")
def _linear(config: ScheduleConfig, total_steps: int) -> Callable[[int], float]:
    span = max(1, total_steps - config.decay_start)

    def factor(step: int) -> float:
        progress = min(1.0, max(0, step - config.decay_start) / span)
        return 1.0 - (1.0 - config.min_ratio) * progress

    return factor


@SCHEDULES.register("cosine")
def _cosine(config: ScheduleConfig, total_steps: int) -> Callable[[int], float]:
    span = max(1, total_steps - config.warmup_steps)

    def factor(step: int) -> float:
        progress = min(1.0, max(0, step - config.warmup_steps) / span)
        return config.min_ratio + (1.0 - config.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def lr_factor(config: ScheduleConfig, total_steps: int) -> Callable[[int], float]:
    """The multiplier of the base learning rate at each step, warm-up included."""
    try:
        after_warmup = SCHEDULES.get(config.kind)(config, total_steps)
    except KeyError as error:
        raise ConfigError(f"schedule.kind: {error.args[0]}") from None

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            # Linear ramp that reaches the full rate on the last warm-up step.
            return (step + 1) / config.warmup_steps
        return after_warmup(step)

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: ScheduleConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, total_steps))
