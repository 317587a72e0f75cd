"""Checkpoint files: atomic writes, the random-number state that makes a resume exact, and the
generator records (run checkpoints and shipped .safetensors) that rebuild a trained net."""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from img2img.errors import ModelError, TrainingError
from img2img.nets import rebuild_net

CHECKPOINT_FORMAT = 1


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save into a temp file beside `path`, then rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


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
