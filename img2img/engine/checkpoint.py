"""Checkpoint files: atomic writes, the random-number state that makes a resume exact, the
layout of a run's last.pt/best.pt and how a resume restores it, and the generator records (run
checkpoints and shipped .safetensors) that rebuild a trained net.

A run checkpoint is a dict: format, task, step, config, generator / discriminator (net records:
arch, hparams, state_dict), generator_ema, optimizer_g/d, scheduler_g/d, historical_g/d, best,
task_state, metrics (best.pt: the scores that made it best), rng and, under torchrun, ranks and
rank_states (every rank's rng and task state, so that each rank resumes its own streams).
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from img2img.engine.config import config_to_dict
from img2img.errors import ModelError, TrainingError
from img2img.files.atomic import write_atomically
from img2img.nets import rebuild_net

if TYPE_CHECKING:
    from img2img.engine.trainer import Trainer

CHECKPOINT_FORMAT = 1


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save into a temp file beside `path`, then rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(temp: Path) -> None:
        with temp.open("wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            # On disk before the rename: a power cut must not leave last.pt empty after it.
            os.fsync(stream.fileno())

    write_atomically(path, write)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Loads a checkpoint written by the engine onto the CPU."""
    if not path.is_file():
        raise TrainingError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a truncated or foreign file: say which and stop
        raise TrainingError(f"checkpoint {path} cannot be read ({error}); is it an img2img checkpoint?") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not an img2img checkpoint (format {CHECKPOINT_FORMAT})")
    return checkpoint


def training_checkpoint(
    trainer: Trainer, *, metrics: dict[str, float] | None = None, rank_states: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Everything an exact resume of `trainer` needs, in the run checkpoint layout (these keys
    are the on-disk format: a checkpoint of an older run must keep loading)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "task": trainer.task.name,
        "step": trainer.step,
        "config": config_to_dict(trainer.config),
        "generator": net_record(trainer.G),
        "generator_ema": _state(trainer.G_ema),
        "discriminator": net_record(trainer.D) if trainer.D is not None else None,
        "optimizer_g": trainer.opt_g.state_dict(),
        "scheduler_g": trainer.sched_g.state_dict(),
        "optimizer_d": _state(trainer.opt_d),
        "scheduler_d": _state(trainer.sched_d),
        "historical_g": _state(trainer.hist_g),
        "historical_d": _state(trainer.hist_d),
        "best": trainer.best,
        "task_state": trainer.task.state_dict(),
        "metrics": metrics,
        "rng": rng_state(),
        "ranks": trainer.ranks,
        "rank_states": rank_states,
    }


def restore_training(trainer: Trainer, checkpoint: dict[str, Any]) -> None:
    """Puts `trainer` back where `training_checkpoint` found it: nets, EMA, optimizers,
    schedulers, historical averages, best, task state, step and this rank's random state."""
    if checkpoint["task"] != trainer.task.name:
        raise TrainingError(f"the checkpoint is from task {checkpoint['task']!r}, not {trainer.task.name!r}")
    trainer.G.load_state_dict(checkpoint["generator"]["state_dict"])
    trainer.opt_g.load_state_dict(checkpoint["optimizer_g"])
    trainer.sched_g.load_state_dict(checkpoint["scheduler_g"])
    if trainer.G_ema is not None and checkpoint["generator_ema"] is not None:
        trainer.G_ema.load_state_dict(checkpoint["generator_ema"])
    if trainer.D is not None:
        if checkpoint["discriminator"] is None:
            raise TrainingError(
                "the checkpoint has no discriminator; start a GAN stage as a new run "
                "with engine.init_generator pointing at it"
            )
        trainer.D.load_state_dict(checkpoint["discriminator"]["state_dict"])
        trainer.opt_d.load_state_dict(checkpoint["optimizer_d"])
        trainer.sched_d.load_state_dict(checkpoint["scheduler_d"])
    if trainer.hist_g is not None and checkpoint["historical_g"] is not None:
        trainer.hist_g.load_state_dict(checkpoint["historical_g"])
    if trainer.hist_d is not None and checkpoint["historical_d"] is not None:
        trainer.hist_d.load_state_dict(checkpoint["historical_d"])
    own = {"rng": checkpoint["rng"], "task_state": checkpoint.get("task_state")}
    rank_states = checkpoint.get("rank_states")
    if rank_states and len(rank_states) == trainer.ranks:
        own = rank_states[trainer.rank]
    elif checkpoint.get("ranks", 1) != trainer.ranks and trainer.is_main:
        engine = trainer.engine
        print(
            f"warning: this run was written by {checkpoint.get('ranks', 1)} process(es) and resumes on "
            f"{trainer.ranks}: each step now trains on {engine.batch_size * engine.accumulate * trainer.ranks} "
            "images and the random streams restart, so it will not repeat the original run",
            file=sys.stderr,
        )
    trainer.task.load_state_dict(own["task_state"] or {})
    trainer.best = checkpoint["best"]
    trainer.step = checkpoint["step"]
    restore_rng_state(own["rng"])


def _state(part: Any) -> dict[str, Any] | None:
    return part.state_dict() if part is not None else None


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def net_record(net: nn.Module) -> dict[str, Any]:
    """What rebuilds a net: its architecture name, hyperparameters and weights."""
    return {"arch": net.arch, "hparams": net.hparams, "state_dict": net.state_dict()}


class LoadedGenerator(NamedTuple):
    net: nn.Module  # CPU, eval mode
    config: dict[str, Any]  # the training config it was saved with
    task: str


def load_generator(source: str | Path, *, prefer_ema: bool = True) -> LoadedGenerator:
    """Rebuilds the generator of a run folder, a checkpoint file or a shipped .safetensors file."""
    source = Path(source)
    if source.is_dir():
        source = source / "checkpoints" / "last.pt"
    if source.suffix == ".safetensors":
        return load_safetensors_generator(source)
    return generator_from_checkpoint(load_checkpoint(source), prefer_ema=prefer_ema)


def generator_from_checkpoint(checkpoint: dict[str, Any], *, prefer_ema: bool = True) -> LoadedGenerator:
    """Rebuilds the generator (the EMA weights when kept) of a checkpoint already loaded."""
    record = checkpoint["generator"]
    net = rebuild_net(record["arch"], record["hparams"])
    state = record["state_dict"]
    if prefer_ema and checkpoint.get("generator_ema") is not None:
        # AveragedModel keeps the net under "module." plus an n_averaged counter.
        ema_state = checkpoint["generator_ema"]
        state = {k.removeprefix("module."): v for k, v in ema_state.items() if k.startswith("module.")}
    net.load_state_dict(state)
    return LoadedGenerator(net.eval(), checkpoint["config"], checkpoint["task"])


def load_discriminator(source: str | Path) -> nn.Module:
    """Rebuilds the discriminator of a run folder, a checkpoint file or a .safetensors file written
    by `save_safetensors_generator` from a discriminator; on the CPU, in eval mode."""
    source = Path(source)
    if source.is_dir():
        source = source / "checkpoints" / "last.pt"
    if source.suffix == ".safetensors":
        return load_safetensors_generator(source).net
    record = load_checkpoint(source)["discriminator"]
    if record is None:
        raise TrainingError(f"{source} has no discriminator (it was trained without one)")
    net = rebuild_net(record["arch"], record["hparams"])
    net.load_state_dict(record["state_dict"])
    return net.eval()


def safetensors_net_spec(path: Path) -> tuple[str, dict[str, Any]]:
    """(arch, hparams) of a net saved by `save_safetensors_generator`, read from the header only."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "arch" not in metadata:
        raise ModelError(f"{path} has no img2img metadata (arch, hparams); it was not written by img2img")
    return metadata["arch"], json.loads(metadata["hparams"])


def save_safetensors_generator(net: nn.Module, path: Path, *, task: str, config: dict[str, Any]) -> None:
    """Saves a net's weights with what rebuilds it (arch, hparams, task, training config); used
    for generators and, where a recipe fine-tunes a GAN, for its discriminator."""
    metadata = {"arch": net.arch, "hparams": json.dumps(net.hparams), "task": task, "config": json.dumps(config)}
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in net.state_dict().items()}
    save_file(state, str(path), metadata=metadata)


def load_safetensors_generator(path: Path) -> LoadedGenerator:
    """Rebuilds a generator saved by `save_safetensors_generator`."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "arch" not in metadata:
        raise ModelError(f"{path} has no img2img metadata (arch, hparams); it was not written by img2img")
    net = rebuild_net(metadata["arch"], json.loads(metadata["hparams"]))
    net.load_state_dict(load_file(str(path)))
    return LoadedGenerator(net.eval(), json.loads(metadata.get("config", "{}")), metadata.get("task", ""))
