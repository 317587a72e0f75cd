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
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

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

    kind: Literal["constant", "linear", "cosine"] = "constant"
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
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on CUDA, fp32 elsewhere
    channels_last: bool = True  # only takes effect on CUDA
    # channels_last on the CPU too: oneDNN runs some nets faster in it (srvgg nets, see
    # benchmarks/RESULTS.md) and others slower, so a CPU recipe opts in where it measured a gain.
    channels_last_cpu: bool = False
    grad_clip: float = 0.0  # max global grad norm per network; 0 disables
    ema_decay: float = 0.999  # 0 disables the EMA generator
    ema_start: int = 0  # EMA starts tracking at this step (copies the weights then)
    n_critic: int = 1  # discriminator updates per generator update
    # The discriminator trains alone for this many steps, so that a fresh D does not judge a
    # trained G blind; none where init_discriminator gives D trained weights already.
    d_warmup_steps: int = 0
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
    # Conditions ("METRIC <= NUMBER" or "METRIC >= NUMBER") a validation must meet to become
    # best.pt, so that a model ranked on one figure is not kept where it fails another: a
    # real-world SR model ranked on degraded LR must still beat bicubic on clean LR.
    best_requires: list[str] = dataclasses.field(default_factory=list)
    # The validation metric that ranks best.pt and whether higher or lower is better; empty: the
    # task's own (PSNR-Y for superres, FID for faces). A GAN-stage SR model ranked by PSNR would
    # keep its blurriest checkpoint. Changing it on --resume ranks from that step on.
    best_metric: str = ""
    best_goal: Literal["", "max", "min"] = ""
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

    @property
    def discriminator_warmup_steps(self) -> int:
        """Steps at the start in which D trains alone: d_warmup_steps, or 0 where D starts from
        trained weights (init_discriminator)."""
        return 0 if self.init_discriminator else self.d_warmup_steps

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "accumulate", "n_critic", "penalty_interval"):
            require(getattr(self, name) >= 1, f"engine.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("log_every", "sample_every", "validate_every", "fid_every", "checkpoint_every", "d_warmup_steps"):
            require(getattr(self, name) >= 0, f"engine.{name} must be 0 or more, got {getattr(self, name)}")
        require(0 <= self.ema_decay < 1, f"engine.ema_decay must be in [0, 1), got {self.ema_decay}")
        for condition in self.best_requires:
            parse_condition(condition, where="engine.best_requires")
        require(
            bool(self.best_metric) == bool(self.best_goal),
            "engine.best_metric and engine.best_goal go together (e.g. best_metric = \"vgg_distance\", best_goal = \"min\")",
        )


@dataclasses.dataclass
class GanConfig:
    """The adversarial objective of a task that trains a discriminator (the [gan] section).

    loss: minimax, nonsaturating, lsgan, wgan or hinge (img2img.losses.ADVERSARIAL_LOSSES).
    penalty: none, or the gradient penalty wgan-gp, dragan or r1 (img2img.losses.PENALTIES),
    applied every `engine.penalty_interval` D updates.
    """

    loss: Literal["minimax", "nonsaturating", "lsgan", "wgan", "hinge"] = "nonsaturating"
    weight: float = 0.1  # weight of G's adversarial term
    real_label: float = 1.0  # D's target for real samples; below 1 is one-sided label smoothing
    penalty: Literal["none", "wgan-gp", "dragan", "r1"] = "none"
    penalty_weight: float = 10.0  # R1 is E||grad||^2: pass gamma / 2
    clip: float = 0.0  # WGAN weight clipping after each D step; 0 disables

    def __post_init__(self) -> None:
        require(self.weight >= 0, f"gan.weight must be 0 or more, got {self.weight}")
        require(0 < self.real_label <= 1, f"gan.real_label must be in (0, 1], got {self.real_label}")
        require(self.penalty_weight >= 0, f"gan.penalty_weight must be 0 or more, got {self.penalty_weight}")
        require(self.clip >= 0, f"gan.clip must be 0 or more, got {self.clip}")


def require(condition: bool, message: str) -> None:
    """Raises ConfigError(message) unless `condition`: the check a config section makes when it
    is built, so `train --dry-run` refuses what training would."""
    if not condition:
        raise ConfigError(message)


CONDITION = re.compile(r"\s*([\w.\-]+)\s*(<=|>=)\s*(-?\d+(?:\.\d*)?(?:e-?\d+)?)\s*")


def parse_condition(text: str, *, where: str = "condition") -> tuple[str, str, float]:
    """Splits "vgg_distance <= 0.43" into ("vgg_distance", "<=", 0.43); anything else raises ConfigError."""
    match = CONDITION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(f"{where}: {text!r} is not of the form 'METRIC <= NUMBER' or 'METRIC >= NUMBER'")
    key, operator, bound = match.groups()
    return key, operator, float(bound)


def condition_holds(condition: tuple[str, str, float], value: float | None) -> bool:
    """Whether `value` meets a parsed condition; a missing value (None) never does."""
    _, operator, bound = condition
    if value is None:
        return False
    return value <= bound if operator == "<=" else value >= bound


@dataclasses.dataclass
class RunConfig:
    """Sections every task config has; tasks subclass this and add their own fields.

    `renamed_keys` maps keys of earlier releases to where they live now ("gan_loss" ->
    "gan.loss"), so that the configs saved in older run folders and checkpoints still load.
    """

    renamed_keys: ClassVar[dict[str, str]] = {
        "gan_loss": "gan.loss",
        "gan_weight": "gan.weight",
        "real_label": "gan.real_label",
        "penalty": "gan.penalty",
        "penalty_weight": "gan.penalty_weight",
        "wgan_clip": "gan.clip",
    }

    engine: EngineConfig = dataclasses.field(default_factory=EngineConfig)
    optim_g: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    optim_d: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(cls: type[ConfigT], data: dict[str, Any], *, where: str = "") -> ConfigT:
    """Builds `cls` from defaults updated by `data`; unknown keys, wrong types and values a
    section's own checks refuse raise ConfigError. A section given in part keeps the class's
    defaults for the rest (a task's own learning rate stays when only betas are set)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a table of keys, got {data!r}")
    data = _moved_to_current_keys(cls, data)
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
        field = fields[name]
        if dataclasses.is_dataclass(hints[name]) and isinstance(value, dict) and field.default_factory is not dataclasses.MISSING:
            defaults = config_to_dict(field.default_factory())
            _deep_update(defaults, value)
            value = defaults
        kwargs[name] = _coerce(hints[name], value, key)
    return cls(**kwargs)


def _moved_to_current_keys(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """`data` with the keys `cls.renamed_keys` names moved to their current place."""
    renamed = getattr(cls, "renamed_keys", {})
    if not any(old in data for old in renamed):
        return data
    data = dict(data)
    for old, new in renamed.items():
        section, _, name = new.partition(".")
        # "degradation" -> "degradation.kind": a table under the old name is already current.
        if old not in data or (old == section and isinstance(data[old], dict)):
            continue
        value = data.pop(old)
        table = data.get(section)
        # Within one layer the current section, where given, is the newer word.
        data[section] = {name: value, **(table if isinstance(table, dict) else {})}
    return data


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
        _deep_update(merged, _moved_to_current_keys(cls, layer))
    for text in overrides:
        keys, value = parse_override(text)
        renamed = getattr(cls, "renamed_keys", {}).get(keys[0]) if len(keys) == 1 else None
        if renamed and not (renamed.startswith(f"{keys[0]}.") and isinstance(value, dict)):
            keys = renamed.split(".")
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
    if origin is Literal:
        choices = typing.get_args(hint)
        if value in choices and type(value) in {type(choice) for choice in choices}:
            return value
        raise ConfigError(f"config key {key}: {value!r} is not one of {', '.join(map(str, choices))}")
    if origin is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key}: expected a list, got {value!r}")
        return [_coerce(item_type, item, key) for item in value]
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
