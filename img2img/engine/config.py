"""Typed run configuration: dataclasses filled from defaults, a TOML/JSON file and `key=value` overrides.

Every run is described by one task config dataclass (for example `SuperResConfig`) that embeds the
engine sections below. A file or an override only fills fields that exist: an unknown key is an
error that lists the valid ones, and a value of the wrong type is an error that names the field.

Example:
    >>> cfg = resolve_config(SuperResConfig, config_file=None, overrides=["engine.steps=10"])
    >>> cfg.engine.steps
    10
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from img2img.errors import ConfigError

ConfigT = TypeVar("ConfigT")


@dataclasses.dataclass
class OptimizerConfig:
    """Adam(W) settings for one network."""

    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0


@dataclasses.dataclass
class ScheduleConfig:
    """Learning-rate schedule, applied as a multiplier of each optimizer's `lr`.

    kind: "constant", "linear" (constant until `decay_start`, then linearly to `min_ratio` at the
    last step, as pix2pix/CycleGAN do) or "cosine" (from the end of warm-up to the last step).
    """

    kind: str = "constant"
    warmup_steps: int = 0
    decay_start: int = 0
    min_ratio: float = 0.0


@dataclasses.dataclass
class EngineConfig:
    """The training loop's own options, shared by every task."""

    steps: int = 10_000
    # Images per micro-batch on each process; a step updates on batch_size x accumulate x ranks.
    batch_size: int = 16
    accumulate: int = 1  # gradient accumulation: micro-batches per optimizer step
    num_workers: int = 2
    seed: int = 0
    device: str = "auto"  # auto | cuda | mps | cpu
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 elsewhere) | bf16 | fp32
    channels_last: bool = True  # only takes effect on CUDA
    # channels_last on the CPU too: oneDNN runs some nets faster in it (srvgg nets, see
    # benchmarks/RESULTS.md) and others slower, so a CPU recipe opts in where it measured a gain.
    channels_last_cpu: bool = False
    grad_clip: float = 0.0  # max global grad norm per network; 0 disables
    ema_decay: float = 0.999  # 0 disables the EMA generator
    ema_start: int = 0  # EMA starts tracking at this step (copies the weights then)
    n_critic: int = 1  # discriminator updates per generator update
    d_warmup_steps: int = 0  # the discriminator trains alone for this many steps
    historical_averaging: float = 0.0  # weight of Salimans et al.'s ||theta - mean(theta)||^2
    penalty_interval: int = 1  # apply the gradient penalty (R1/GP/DRAGAN) every k D updates
    log_every: int = 50
    sample_every: int = 500
    validate_every: int = 1000
    # FID and KID of generated against real images every N steps (0: never), on `fid_samples`
    # fixed inputs. Needs the FID Inception weights (train extra); ~0.1 s per image on a CPU core.
    fid_every: int = 0
    fid_samples: int = 1000
    checkpoint_every: int = 1000
    time_limit_minutes: float = 0.0  # stop cleanly (with a checkpoint) after this long; 0 = none
    init_generator: str = ""  # start G from a run folder, checkpoint or .safetensors file
    # Start D from a run folder, checkpoint or .safetensors file, so that fine-tuning a GAN does
    # not pit a trained G against a D that knows nothing.
    init_discriminator: str = ""
    fused_adam: bool = True  # the fused AdamW kernel (CUDA only)
    compile: bool = False  # torch.compile every net; the first steps pay for compiling
    # Under torchrun (several processes):
    sync_batchnorm: bool = False  # BatchNorm statistics over all ranks' batches (CUDA only)
    find_unused_parameters: bool = False  # DDP option for nets whose steps skip some weights
    dist_timeout_minutes: float = 60.0  # how long ranks wait for each other (rank 0 validating)


@dataclasses.dataclass
class RunConfig:
    """Sections every task config has; tasks subclass this and add their own fields."""

    engine: EngineConfig = dataclasses.field(default_factory=EngineConfig)
    optim_g: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    optim_d: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(cls: type[ConfigT], data: dict[str, Any], *, where: str = "") -> ConfigT:
    """Builds `cls` from defaults updated by `data`; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a table of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]}; valid keys{' in ' + where if where else ''}: "
            + ", ".join(sorted(fields))
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(hints[name], value, key)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Splits `a.b=value` into (["a", "b"], value); the value is read as TOML, else kept as text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. engine.steps=1000)")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip().split("."), value


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Reads a .toml or .json config file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:].upper()}: {error}") from None


def resolve_config(
    cls: type[ConfigT],
    *,
    base: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> ConfigT:
    """Defaults, then `base` (a saved run's config), then the file, then each `key=value` override."""
    merged: dict[str, Any] = {}
    for layer in (base or {}, load_config_file(config_file) if config_file else {}):
        _deep_update(merged, layer)
    for text in overrides:
        keys, value = parse_override(text)
        node = merged
        for part in keys[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
        node[keys[-1]] = value
    return config_from_dict(cls, merged)


def _deep_update(target: dict[str, Any], source: dict[str, Any]) -> None:
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Checks `value` against the field's type hint, converting only where no meaning is lost."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, where=key)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _coerce(option, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key}: {value!r} does not fit type {hint}")
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"config key {key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(arg, item, key) for arg, item in zip(args, value))
    if origin is dict:
        key_type, value_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key}: expected a table, got {value!r}")
        return {_coerce(key_type, k, key): _coerce(value_type, v, f"{key}.{k}") for k, v in value.items()}
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(f"config key {key}: expected nothing, got {value!r}")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is Any or (isinstance(hint, type) and isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        return value
    expected = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"config key {key}: expected {expected}, got {value!r}")
