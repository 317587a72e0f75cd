"""Training on several processes with PyTorch's own machinery: torchrun, a process group and
DistributedDataParallel.

`torchrun --nproc-per-node N -m cli train TASK ...` (or `img2img train TASK ... --nproc N`, which
builds that command) starts N copies of the trainer. Each one reads RANK, LOCAL_RANK and
WORLD_SIZE from the environment torchrun sets, joins the process group (NCCL on CUDA, gloo on
the CPU) and trains on its slice of every step's batch. DDP averages the gradients, so the ranks
keep identical weights; rank 0 alone logs, samples, validates and writes checkpoints.

Outside torchrun every helper here is the single-process identity: rank 0 of 1.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from img2img.errors import ConfigError


def launched_by_torchrun() -> bool:
    """True inside a process that torchrun (or a Slurm script exporting its variables) started."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def setup(device_name: str, timeout_minutes: float) -> torch.device:
    """Joins torchrun's process group when launched by it and returns this process's device.

    `device_name` is engine.device: "auto" picks cuda:LOCAL_RANK when CUDA is visible, else the
    CPU; the backend follows the device (NCCL for CUDA, gloo for the CPU). `timeout_minutes`
    bounds how long ranks wait for each other, e.g. for rank 0's validation between steps.
    """
    local_rank = int(os.environ["LOCAL_RANK"])
    if device_name not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"under torchrun engine.device must be auto, cuda or cpu, not {device_name!r}")
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise ConfigError("engine.device=cuda but no CUDA GPU is visible; use engine.device=auto or cpu")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"local rank {local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                "start at most that many processes per node (--nproc-per-node)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not is_distributed():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            timeout=datetime.timedelta(minutes=timeout_minutes),
            device_id=device if use_cuda else None,
        )
    return device


def shutdown(*, finished: bool = False) -> None:
    """Leaves the process group (a no-op outside torchrun).

    `finished`: every rank got here from a completed run, so they first wait for each other; a
    rank that tears gloo down while another still talks to it can abort at exit ("terminate
    called without an active exception"). After a failure there is no waiting: the others may
    be gone.
    """
    if is_distributed():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def lost_another_rank(error: BaseException) -> bool:
    """True for the communication errors a rank gets when another rank of the run has died."""
    if isinstance(error, getattr(dist, "DistError", ())):
        return True
    return any(sign in str(error) for sign in ("Connection closed by peer", "Connection reset by peer"))


def mean_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of `values` over all ranks (`values` itself on one process)."""
    if not is_distributed():
        return values
    total = values.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / world_size()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when `flag` is true on at least one rank; every rank gets the same answer."""
    if not is_distributed():
        return flag
    votes = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    return bool(votes.item())


def gather_objects(value: Any) -> list[Any]:
    """Every rank's `value` (picklable), indexed by rank; `[value]` on one process."""
    if not is_distributed():
        return [value]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


class _NetCall(nn.Module):
    """Runs `function(net, *args)` as its forward.

    Tasks call their nets in their own ways (CycleGAN calls the G and F inside one module, a
    discriminator loss calls D on real and fake images and differentiates for R1). DDP only arms
    its gradient hooks inside its own forward, so the task's whole function runs in it.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, function: Callable[..., Any], *args: Any) -> Any:
        return function(self.net, *args)


class NetRunner:
    """Calls a task's function of a net, through DistributedDataParallel under torchrun.

    `runner(function, *args)` returns `function(net, *args)`; under torchrun the backward of what
    it returns averages the net's gradients over the ranks. `runner.accumulating()` is the
    context for every micro-batch but the last one of a gradient-accumulation step: their
    backward passes add up locally and only the last one communicates.
    """

    def __init__(self, net: nn.Module, device: torch.device, *, find_unused_parameters: bool = False) -> None:
        self.net = net
        self.ddp = None
        if is_distributed():
            self.ddp = DistributedDataParallel(
                _NetCall(net),
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=find_unused_parameters,
            )

    def __call__(self, function: Callable[..., Any], *args: Any) -> Any:
        if self.ddp is None:
            return function(self.net, *args)
        return self.ddp(function, *args)

    def accumulating(self):
        return contextlib.nullcontext() if self.ddp is None else self.ddp.no_sync()


def convert_sync_batchnorm(net: nn.Module, device: torch.device) -> nn.Module:
    """`net` with every BatchNorm replaced by SyncBatchNorm (statistics over all ranks' batches)."""
    if device.type != "cuda":
        raise ConfigError("engine.sync_batchnorm needs CUDA GPUs (PyTorch's SyncBatchNorm has no CPU kernel); set it false")
    return nn.SyncBatchNorm.convert_sync_batchnorm(net)


def torchrun_command(nproc: int, train_arguments: Sequence[str], *, python: str | None = None) -> list[str]:
    """The command that runs `img2img train <train_arguments>` on `nproc` local processes.

    `--standalone` lets torchrun pick a free rendezvous port on this machine; several machines are
    launched with torchrun directly (see the README's multi-node recipe).
    """
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    return [
        python or sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "cli",
        "train",
        *train_arguments,
    ]


def describe_command(command: Sequence[str]) -> str:
    return " ".join(shlex.quote(part) for part in command)
