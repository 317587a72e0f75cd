"""A batch stream that is a pure function of the step number, so a resumed run sees the same data.

Step t's batch is drawn from a generator seeded with (seed, t): which examples, and the seed of
each example's random crop/augmentation. Nothing depends on worker count or on what ran before,
which is what makes `--resume` exact and lets DataLoader workers build batches ahead.

Under torchrun every rank draws the same global batch of `batch_size x ranks` examples and keeps
its own contiguous slice, so N processes at batch b see exactly the examples (and augmentation
seeds) that one process at batch N x b sees. This plays DistributedSampler's part (disjoint
shards, reshuffled as training goes on) but reshuffles every step rather than every epoch, which
keeps the stream a function of the step.

Any map-style dataset works whose randomness comes from torch's global generator: each example is
drawn inside `torch.random.fork_rng` with the global generator seeded for it, so the caller's
random state is left untouched.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def seeded_example(examples: Dataset, index: int, seed: int) -> Any:
    """`examples[index]` with torch's global generator seeded by `seed`, restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return examples[index]


class StepBatches(Dataset):
    """Item t is a list of `draws` collated batches of `batch_size` examples for training step t,
    this rank's slice of the step's batch over `ranks` processes."""

    def __init__(
        self, examples: Dataset, *, batch_size: int, seed: int, draws: int = 1, rank: int = 0, ranks: int = 1
    ) -> None:
        if not 0 <= rank < ranks:
            raise ValueError(f"rank {rank} is outside 0..{ranks - 1}")
        self.examples = examples
        self.batch_size = batch_size
        self.seed = seed
        self.draws = draws
        self.rank = rank
        self.ranks = ranks

    def __len__(self) -> int:  # DataLoader asks; the real range comes from the sampler
        return 2**62

    def __getitem__(self, step: int) -> list[Any]:
        rng = np.random.default_rng([self.seed, step])
        batches = []
        mine = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        for _ in range(self.draws):
            indices = rng.integers(len(self.examples), size=self.batch_size * self.ranks)[mine]
            seeds = rng.integers(2**31, size=self.batch_size * self.ranks)[mine]
            samples = [seeded_example(self.examples, int(i), int(s)) for i, s in zip(indices, seeds)]
            batches.append(torch.utils.data.default_collate(samples))
        return batches


def step_loader(batches: StepBatches, *, start: int, stop: int, num_workers: int, pin_memory: bool) -> DataLoader:
    """Iterates the batches of steps start..stop-1 in order, built ahead by `num_workers` processes."""
    return DataLoader(
        batches,
        sampler=range(start, stop),
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=2 if num_workers > 0 else None,
    )


def step_generator(seed: int, step: int, device: torch.device, rank: int = 0) -> torch.Generator:
    """A torch generator for on-device randomness of step `step` (e.g. batch degradations, the
    latents of a noise-to-image GAN); each rank gets its own stream, so ranks never draw the same
    noise for their slices of the batch."""
    generator = torch.Generator(device=device)
    entropy = [seed, step, 1] if rank == 0 else [seed, step, 1, rank]
    generator.manual_seed(int(np.random.default_rng(entropy).integers(2**62)))
    return generator
