"""The training campaign: the idle CPU of a machine trains the shipped models a little further
each time, and a model ships again only when it measures better than the shipped one.

The queue (`scripts/campaign.toml`) has one entry per shipped model: its task, recipe, data and
the command that builds the data, the validation metric that ranks it, and the target. The
figure to beat is read from `weights/manifest.json`, never typed in.

Every entry trains in a run folder outside the work tree, `~/.cache/img2img/campaign/NAME`
(`--root` or IMG2IMG_CAMPAIGN_ROOT to move it), so the training survives a fresh checkout:

- a run continues exactly where the last one stopped (`img2img train --resume`);
- a recipe trains in cycles, each with its own warm-up and decay; a new cycle's steps are fitted
  to the segment that starts it (`fitted_steps`: from the entry's measured step rate, which a
  first segment of PROBE_MINUTES measures where none is known; at most the recipe's
  `engine.steps`), so each segment ends with its learning rate decayed and its best weights
  worth shipping even where the folder goes with the machine (`--recipe-cycles` trains the
  recipe's cycles over as many segments as they take instead);
- a finished cycle starts the next from the best weights (G and D), a warm restart, and so does
  an unfinished one whose recipe was edited since it began (`recipe_changes`) or whose steps left
  do not fit in the segment;
- where the folder is gone, the first cycle warm-starts from the shipped `.safetensors` twin
  (and the shipped discriminator, where the recipe trains one) if the recipe builds the same
  net, and from scratch otherwise; so does a later cycle while no cycle has beaten the shipped
  model;
- `ledger.json` records every segment: cycle, steps, CPU seconds (the training process's own,
  from the kernel), wall seconds and the machine; `scripts/campaign.ledger.json`, which the
  repository keeps, records them too, so that a new machine knows each entry's hours and step
  rate (commit it with what ships).

Usage:
    python scripts/campaign.py start --until 02:10          # background, lowest priority, entry picked
    python scripts/campaign.py start --until 02:10 --entry superres-x4
    python scripts/campaign.py status                       # hours, best vs shipped, curves
    python scripts/campaign.py stop                         # checkpoint now and stop
    python scripts/campaign.py ship superres-x4             # only if it beats the shipped model
    python scripts/campaign.py run --until 02:10            # what `start` runs, in the foreground

The entry picked is the unmet one (its shipped figure short of its target) with the fewest CPU
hours per unit of its `weight`: training curves rise fastest early, so the least-trained entry
has the most to gain from the next hour. It trains until its hours per weight pass the next
entry's (at least its weight times SEGMENT_QUANTUM_MINUTES), then the pick is made again: a
quarter-weight entry gets a quarter share, not every minute left. A named entry (--entry) trains
until the deadline.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any, NoReturn

from img2img.engine.config import condition_holds, parse_condition
from img2img.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
QUEUE = REPO / "scripts" / "campaign.toml"
WEIGHTS = REPO / "weights"
README = REPO / "README.md"
DEFAULT_ROOT = Path.home() / ".cache" / "img2img" / "campaign"
# In an entry's folder: the campaign record of the shipped model its first cycle started from.
INHERITED = "inherited.json"
# Validation points a shipped model's manifest entry keeps for the next folder to inherit.
HISTORY_POINTS = 32
# Minutes a segment needs beyond its training time: the final validation (and FID where the
# recipe measures it) and the checkpoint. A segment shorter than MIN_SEGMENT_MINUTES is not
# started: a resume costs data decoding and warm-up that it would not earn back.
DEFAULT_STOP_MARGIN_MINUTES = 4.0
MIN_SEGMENT_MINUTES = 6.0
# The shortest share of a weight-1 entry before the pick is made again (a quarter-weight entry
# gets a quarter of it), so that entries with nearly equal hours do not take turns every few
# minutes, each paying for a resume.
SEGMENT_QUANTUM_MINUTES = 30.0
# A new cycle's steps are fitted to its segment from the entry's step rate in its latest segments
# (at most this many, each of at least RATE_MIN_STEPS steps) and the start-up and last validation
# a segment spends besides, less FIT_MARGIN for a slower minute (tests beside it), so that its
# learning rate decays to the schedule's end before the segment ends: a run folder may not
# outlive the machine, and what ships is what a segment finished.
RATE_SEGMENTS = 3
RATE_MIN_STEPS = 50
FIT_MARGIN = 0.9
# An entry with no step rate measured yet trains this long first (the recipe's cycle, cut by the
# time limit), and its next segment is fitted from that rate.
PROBE_MINUTES = 4.0
# After the deadline a training process gets this long to stop on its own before SIGTERM.
DEADLINE_GRACE_SECONDS = 180
POLL_SECONDS = 5


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


# ----------------------------------------------------------------------------- the queue


@dataclasses.dataclass
class Entry:
    """One shipped model the campaign trains (a row of scripts/campaign.toml)."""

    name: str  # the model's name in weights/manifest.json
    task: str
    recipe: Path
    data: dict[str, str]  # train option (data, data_a, data_b) -> folder, relative to the repo
    metric: str  # validation metric, the same key in a checkpoint's metrics and the manifest's
    goal: str  # "max" or "min"
    target: float | None = None  # the goal for `metric`; None: no goal, trains at its weight's share
    # Makes the data when it is missing: one command (a list of strings) or several (a list of lists).
    build: list[Any] = dataclasses.field(default_factory=list)
    # Other files or folders the recipe reads (a style image), relative to the repo: `build`
    # makes them too when one is missing.
    needs: list[str] = dataclasses.field(default_factory=list)
    weight: float = 1.0  # share of campaign hours against the other entries
    stop_margin_minutes: float = DEFAULT_STOP_MARGIN_MINUTES
    card: Path | None = None  # card template, rendered into weights/NAME.md on ship
    readme_row: str = ""  # README model-table row template, rendered on ship
    use_for: str = ""  # one line for `img2img models`: what to pick this model for
    # Where the shipped figure comes from an evaluation of its own (FID on 5,000 samples, say)
    # rather than from training's validation: `train_metric` ranks checkpoints during training,
    # and `evaluate` (a command; {onnx}, {checkpoint} and {json} are filled in) measures the
    # candidate at ship time; the table at `evaluate_key` of its JSON output becomes the metrics
    # group `evaluate_into` of the manifest entry, where `metric` names the figure to beat.
    train_metric: str = ""
    evaluate: list[str] = dataclasses.field(default_factory=list)
    evaluate_key: str = ""
    evaluate_into: str = ""
    # Baselines of the same evaluation JSON (dotted keys, such as "results.identity"): a model
    # shipped for the first time records each as a metrics group named by its last part; later
    # ships keep the group already in the manifest, as it is measured once.
    evaluate_baselines: list[str] = dataclasses.field(default_factory=list)
    fp16: bool = True  # ship a float16 variant beside the float32 file
    # A folder of photos (repository-relative or "~/..."): ship an 8-bit variant beside the
    # float32 file, calibrated on them (`img2img quantize`).
    int8_calibration: str = ""
    direction: str = ""  # two-way runs (CycleGAN): the direction this model is
    weights_name: str = ""  # .safetensors twin name when several models share one run
    # A second model of the same run (CycleGAN's F beside G): a table of the fields that differ
    # (name, direction, metric, evaluate, card, readme_row, ...). Both ship together, and only
    # when both beat their shipped figures. Loaded as an Entry.
    companion: Any = None
    # Conditions a candidate must meet to ship besides beating the shipped figure, each
    # "METRIC <= VALUE" or "METRIC >= VALUE" (a model shipped for the first time has no figure
    # to beat, so this is what stops a useless one). VALUE may be the word `shipped`: the
    # shipped model's figure of that METRIC, so that a gain on the entry's metric cannot be
    # paid for with a loss on a second one (such a gate holds where no model has shipped yet).
    ship_gate: list[str] = dataclasses.field(default_factory=list)
    # The ranking metric depends on the recipe (a loss whose weights it sets): checkpoints are
    # compared only among the cycles trained on the recipe as it is now (`recipe_changes`).
    rank_within_recipe: bool = False

    @property
    def ranking_metric(self) -> str:
        """The validation metric that ranks this entry's checkpoints during training."""
        return self.train_metric or self.metric

    def better(self, value: float, than: float | None) -> bool:
        if than is None or (isinstance(than, float) and math.isnan(than)):
            return True
        return value > than if self.goal == "max" else value < than

    @property
    def models(self) -> list[Entry]:
        """The models one checkpoint of this entry ships: its own and its companion's."""
        return [self] + ([self.companion] if self.companion else [])


SHIPPED_BOUND = re.compile(r"\s*(\S+)\s*(<=|>=)\s*shipped\s*")


def parse_gate(text: str, shipped: dict[str, Any] | None = None, *, where: str = "ship_gate") -> tuple[str, str, float] | None:
    """A ship gate parsed as `parse_condition` does, with a bound of `shipped` read from the
    shipped model's `shipped` metrics; None where that model or its figure does not exist."""
    match = SHIPPED_BOUND.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return parse_condition(text, where=where)
    key, operator = match.groups()
    bound = lookup(shipped or {}, key)
    return None if bound is None else (key, operator, bound)


def gate_failures(gates: list[str], metrics: dict[str, Any], *, shipped: dict[str, Any] | None = None,
                  only_measured: bool = False) -> list[str]:
    """The `ship_gate` conditions that `metrics` does not meet, each with the value it has;
    `shipped` holds the shipped model's metrics, which bounds of `shipped` refer to. With
    `only_measured`, conditions on figures that `metrics` lacks are left out rather than failed."""
    failures = []
    for gate in gates:
        condition = parse_gate(gate, shipped)
        if condition is None:
            continue
        value = lookup(metrics, condition[0])
        if value is None and only_measured:
            continue
        relative = SHIPPED_BOUND.fullmatch(gate) is not None
        if relative and value is not None:
            value = round(value, 4)  # as the manifest keeps the shipped figure
        if not condition_holds(condition, value):
            shown = f"{gate} ({format_value(condition[2])})" if relative else gate
            failures.append(f"{shown} (it has {format_value(value)})")
    return failures


def load_queue(path: Path) -> list[Entry]:
    """The entries of a queue file; paths in it are relative to the repository."""
    if not path.is_file():
        fail(f"queue file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        fail(f"queue file {path} is not valid TOML: {error}")
    fields = {field.name for field in dataclasses.fields(Entry)}
    entries = []
    for index, table in enumerate(raw.get("entry", [])):
        unknown = sorted(set(table) - fields)
        if unknown:
            fail(f"{path}: entry {index} has unknown key {unknown[0]}; valid keys: {', '.join(sorted(fields))}")
        try:
            entry = Entry(**table)
        except TypeError as error:
            fail(f"{path}: entry {index}: {error}")
        if entry.companion is not None:
            shared = {"recipe", "task", "data", "build", "needs", "weight", "stop_margin_minutes", "train_metric", "companion"}
            if not isinstance(entry.companion, dict) or "name" not in entry.companion:
                fail(f"{path}: entry {entry.name}: companion must be a table with at least a name")
            wrong = sorted((set(entry.companion) - fields) | (set(entry.companion) & shared))
            if wrong:
                fail(f"{path}: entry {entry.name}: companion key {wrong[0]} is not one a companion can set")
            entry.companion = dataclasses.replace(entry, companion=None, **entry.companion)
        for model in entry.models:
            check_entry(path, model)
        entries.append(entry)
    names = [model.name for entry in entries for model in entry.models]
    if len(set(names)) != len(names):
        fail(f"{path}: two entries share a name")
    if not entries:
        fail(f"{path} has no [[entry]] tables")
    return entries


def check_entry(path: Path, entry: Entry) -> None:
    """Fails on fields that cannot work together; makes the entry's paths absolute."""
    if bool(entry.evaluate) != bool(entry.evaluate_into) or (entry.evaluate and not entry.train_metric):
        fail(f"{path}: entry {entry.name}: evaluate, evaluate_into and train_metric go together")
    if entry.evaluate_baselines and not entry.evaluate:
        fail(f"{path}: entry {entry.name}: evaluate_baselines name tables of the evaluate command's output; give the command")
    if entry.goal not in ("max", "min"):
        fail(f"{path}: entry {entry.name}: goal must be max or min, not {entry.goal!r}")
    for gate in entry.ship_gate:
        try:
            parse_gate(gate, where=f"{path}: entry {entry.name}: ship_gate")
        except ConfigError as error:
            fail(str(error))
    entry.recipe = REPO / entry.recipe
    entry.card = REPO / entry.card if entry.card else None


def find_entry(entries: list[Entry], name: str) -> Entry:
    """The entry named `name`, or the one `name` is the companion of (they train and ship together)."""
    for entry in entries:
        if name in (model.name for model in entry.models):
            return entry
    fail(f"no campaign entry {name!r}; entries: {', '.join(e.name for e in entries)}")


def manifest_models(weights: Path) -> dict[str, dict[str, Any]]:
    path = weights / "manifest.json"
    if not path.is_file():
        return {}
    return {model["name"]: model for model in json.loads(path.read_text())["models"]}


def lookup(metrics: dict[str, Any], key: str) -> float | None:
    """metrics[key], where a dotted key walks into nested tables ("emoji-val.fid")."""
    node: Any = metrics
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) else None


def shipped_figure(entry: Entry, weights: Path) -> float | None:
    model = manifest_models(weights).get(entry.name)
    return lookup(model.get("metrics", {}), entry.metric) if model else None


# ----------------------------------------------------------------------------- run folders


class Ledger:
    """ROOT/NAME/ledger.json: the segments an entry has trained, in the order they ran."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "ledger.json"
        self.data: dict[str, Any] = {"segments": []}
        if self.path.is_file():
            self.data = json.loads(self.path.read_text())

    @property
    def segments(self) -> list[dict[str, Any]]:
        return self.data["segments"]

    def cpu_hours(self) -> float:
        return sum(segment["cpu_seconds"] for segment in self.segments) / 3600

    def steps(self) -> int:
        return sum(segment["to_step"] - segment["from_step"] for segment in self.segments)

    def add(self, segment: dict[str, Any]) -> None:
        self.segments.append(segment)
        write_text_atomic(self.path, json.dumps(self.data, indent=2) + "\n")

    def hours_at(self, cycle: int, step: int) -> float:
        """CPU hours spent when `cycle` reached `step`, interpolated inside its segment."""
        hours = 0.0
        for segment in self.segments:
            if segment["cycle"] == cycle and segment["from_step"] <= step <= segment["to_step"]:
                span = max(1, segment["to_step"] - segment["from_step"])
                return hours + segment["cpu_seconds"] / 3600 * (step - segment["from_step"]) / span
            hours += segment["cpu_seconds"] / 3600
        return hours


def tracked_ledger_path(queue: Path) -> Path:
    """scripts/campaign.ledger.json beside scripts/campaign.toml."""
    return queue.with_name(f"{queue.stem}.ledger.json")


class TrackedLedger:
    """The segments of every entry on every machine, in a file the repository keeps
    (`tracked_ledger_path`): a run folder goes with its machine, and without this record each
    new machine would pick its entries and fit their cycles as if nothing had trained before.

    An entry's segments are the union of this file's and its run folder's ledger (a segment is
    the same one in both where its machine and end time are), so a run folder that outlives its
    session counts each segment once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"entries": {}}
        if path.is_file():
            self.data = json.loads(path.read_text())

    def segments(self, name: str, folder: Path) -> list[dict[str, Any]]:
        """The entry's segments, in the order they ended."""
        union = {(s.get("machine"), s.get("ended")): s for s in self.data["entries"].get(name, [])}
        for segment in Ledger(folder).segments:
            union.setdefault((segment.get("machine"), segment.get("ended")), segment)
        return sorted(union.values(), key=lambda segment: segment.get("ended") or "")

    def cpu_hours(self, name: str, folder: Path) -> float:
        return sum(segment["cpu_seconds"] for segment in self.segments(name, folder)) / 3600

    def add(self, name: str, segment: dict[str, Any]) -> None:
        self.data["entries"].setdefault(name, []).append(segment)
        write_text_atomic(self.path, json.dumps(self.data, indent=1) + "\n")


def discriminator_warmup(engine: dict[str, Any]) -> int:
    """The steps in which a run's D trained alone, from the [engine] table of its config.json:
    engine.d_warmup_steps, or none where D started from trained weights (as
    EngineConfig.discriminator_warmup_steps)."""
    return 0 if engine.get("init_discriminator") else int(engine.get("d_warmup_steps", 0))


def loop_seconds(run: Path, log_offset: int, from_step: int, to_step: int) -> float | None:
    """Wall seconds the training loop of one segment took for its steps `from_step` ->
    `to_step`, periodic validation included but not the process's start-up nor its last
    validation: from the throughput the trainer logged (`images_per_second` over each logging
    window) in RUN/train_log.jsonl after byte `log_offset`, where the segment's records begin.
    Steps after the last logged window, and those of the discriminator's warm-up
    (engine.d_warmup_steps: D alone, a fraction of a full step), count at the pace of the windows
    after that warm-up; None without one."""
    log = run / "train_log.jsonl"
    try:
        with log.open("rb") as file:
            file.seek(log_offset)
            records = [json.loads(line) for line in file.read().decode().splitlines() if line.strip()]
        engine = json.loads((run / "config.json").read_text()).get("engine", {})
    except (OSError, ValueError):
        return None
    images_per_step = int(engine.get("batch_size", 1)) * int(engine.get("accumulate", 1))
    logged_steps, seconds, previous = 0, 0.0, max(from_step, discriminator_warmup(engine))
    for record in records:
        step, throughput = record.get("step"), record.get("images_per_second")
        if not isinstance(step, int) or not isinstance(throughput, (int, float)) or throughput <= 0:
            continue
        if previous < step <= to_step:
            logged_steps += step - previous
            seconds += (step - previous) * images_per_step / throughput
            previous = step
    if not logged_steps:
        return None
    return seconds * (to_step - from_step) / logged_steps


def recipe_digest(recipe: Path) -> str:
    """A digest of the settings a recipe file holds (not its comments nor their layout): a
    segment records it, so that a step rate is not read from segments of another recipe."""
    settings = json.dumps(tomllib.loads(recipe.read_text()), sort_keys=True)
    return hashlib.sha256(settings.encode()).hexdigest()[:16]


def measured_segments(segments: list[dict[str, Any]], threads: int, recipe: str | None = None) -> list[dict[str, Any]]:
    """The latest RATE_SEGMENTS segments run on `threads` threads that trained RATE_MIN_STEPS
    steps, on the recipe whose `recipe_digest` is `recipe` where given. Segments from before
    digests were recorded count only for an entry none of whose segments names a recipe: once
    one does, the older ones may have trained any earlier version of it. A segment that ended
    within its discriminator's warm-up (`d_warmup_steps`) measured D's steps alone: none."""
    digests_recorded = any(segment.get("recipe") for segment in segments)
    return [
        segment for segment in segments
        if segment.get("threads") == threads and segment.get("wall_seconds")
        and segment["to_step"] - segment["from_step"] >= RATE_MIN_STEPS
        and segment["to_step"] > segment.get("d_warmup_steps", 0)
        and (recipe is None or segment.get("recipe", None if digests_recorded else recipe) == recipe)
    ][-RATE_SEGMENTS:]


def steps_per_second(segments: list[dict[str, Any]], threads: int, recipe: str | None = None) -> float | None:
    """Training steps per second of the training loop in the latest segments run on `threads`
    threads (and `recipe`, see `measured_segments`; periodic validation included; a segment
    recorded without `loop_seconds` counts its whole wall time), or None where none trained
    RATE_MIN_STEPS steps."""
    measured = measured_segments(segments, threads, recipe)
    if not measured:
        return None
    seconds = sum(s.get("loop_seconds") or s["wall_seconds"] for s in measured)
    return sum(s["to_step"] - s["from_step"] for s in measured) / seconds


def overhead_seconds(segments: list[dict[str, Any]], threads: int, recipe: str | None = None) -> float:
    """What a segment spends outside its training loop (start-up, the last validation, FID where
    the recipe measures it), on average over the segments `steps_per_second` reads; 0 where none
    recorded its loop."""
    measured = [s for s in measured_segments(segments, threads, recipe) if s.get("loop_seconds")]
    if not measured:
        return 0.0
    return max(0.0, sum(s["wall_seconds"] - s["loop_seconds"] for s in measured) / len(measured))


def fitted_steps(entry: Entry, rate: float | None, minutes: float, overhead: float = 0.0) -> int | None:
    """The steps of a new cycle of `entry` that `rate` (steps per second of the training loop)
    fits in `minutes` less `overhead` seconds outside the loop, at most the recipe's engine.steps
    and at least twice its warm-up; None without a rate (the recipe's steps then, cut by the time
    limit)."""
    if rate is None or not math.isfinite(minutes):
        return None
    recipe = tomllib.loads(entry.recipe.read_text())
    cap = int(recipe.get("engine", {}).get("steps", 0)) or None
    floor = max(RATE_MIN_STEPS, 2 * int(recipe.get("schedule", {}).get("warmup_steps", 0)))
    steps = max(floor, int(rate * (minutes * 60 - overhead) * FIT_MARGIN))
    return min(steps, cap) if cap else steps


def fitted_settings(entry: Entry, steps: int) -> list[str]:
    """--set overrides of a cycle of `steps` steps: engine.steps, and a linear schedule's
    decay_start moved with it, so that the rate decays over the same part of the cycle as in the
    recipe's."""
    recipe = tomllib.loads(entry.recipe.read_text())
    settings = [f"engine.steps={steps}"]
    decay_start = int(recipe.get("schedule", {}).get("decay_start", 0))
    recipe_steps_ = int(recipe.get("engine", {}).get("steps", 0))
    if decay_start and recipe_steps_:
        settings.append(f"schedule.decay_start={decay_start * steps // recipe_steps_}")
    return settings


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def cycle_dirs(folder: Path) -> list[Path]:
    return sorted(path for path in folder.glob("cycle-*") if path.is_dir())


def cycle_number(path: Path) -> int:
    return int(path.name.removeprefix("cycle-"))


def checkpoint_step(path: Path) -> int | None:
    """The step a checkpoint was written at, or None when there is none."""
    if not path.is_file():
        return None
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=False)["step"])


def run_engine(run: Path) -> dict[str, Any]:
    """The [engine] settings a cycle's run folder trains with."""
    return json.loads((run / "config.json").read_text())["engine"]


def recipe_steps(run: Path) -> int:
    return int(run_engine(run)["steps"])


def validation_records(run: Path) -> list[dict[str, Any]]:
    path = run / "validation_log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def inherited(folder: Path) -> dict[str, Any]:
    """The campaign record of the shipped model that the folder's first cycle warm-started from
    (`warm_start` writes it): CPU hours, steps, cycles, machines and validation history, which
    the folder's own figures continue. Empty for a folder that started from scratch."""
    path = folder / INHERITED
    return json.loads(path.read_text()) if path.is_file() else {}


def curve(entry: Entry, folder: Path) -> list[tuple[float, float, int, int]]:
    """(CPU hours, metric value, cycle, step) of every validation of the entry, in training order,
    after the history of the shipped model the folder started from; hours and cycles count on
    from that model's."""
    ledger = Ledger(folder)
    earlier = inherited(folder)
    hours, cycles = earlier.get("cpu_hours", 0.0), earlier.get("cycles", 0)
    points = [tuple(point) for point in earlier.get("history", [])]
    for run in cycle_dirs(folder):
        for record in validation_records(run):
            value = lookup(record, entry.ranking_metric)
            if value is not None:
                at = ledger.hours_at(cycle_number(run), record["step"])
                points.append((round(hours + at, 2), value, cycles + cycle_number(run), record["step"]))
    return points


def ranked_cycles(entry: Entry, folder: Path) -> list[Path]:
    """The cycle folders whose checkpoints compete for the entry's best: all of them, or with
    `rank_within_recipe` those trained on the recipe as it is now."""
    runs = cycle_dirs(folder)
    return [run for run in runs if not recipe_changes(entry, run)] if entry.rank_within_recipe else runs


def ranked_points(entry: Entry, folder: Path, points: list[tuple[float, float, int, int]]) -> list[tuple[float, float, int, int]]:
    """The points of `curve` from the `ranked_cycles` (all of them, the shipped model's history
    included, unless `rank_within_recipe`)."""
    if not entry.rank_within_recipe:
        return points
    offset = inherited(folder).get("cycles", 0)
    ranked = {offset + cycle_number(run) for run in ranked_cycles(entry, folder)}
    return [point for point in points if point[2] in ranked]


def best_checkpoint(entry: Entry, folder: Path, weights: Path | None = None) -> tuple[Path, float] | None:
    """The cycles' best.pt with the best value of the entry's metric, and that value. A
    checkpoint whose validation already fails one of the ship gates, or the recipe's
    `engine.best_requires` as they are now (an earlier cycle may have kept its best.pt before a
    condition was added; one whose record lacks the figure fails it), is passed over for one
    that does not, since it could not ship; where every one fails, the best of them comes
    back, for `ship` to refuse with the figures. Only the `ranked_cycles` take part. Gates
    bounded by the shipped figure read it from `weights`' manifest (none given: they hold)."""
    import torch

    requires = recipe_engine(entry).get("best_requires", [])
    shipped = manifest_models(weights).get(entry.name, {}).get("metrics", {}) if weights else {}
    best, best_gated = None, None
    for run in ranked_cycles(entry, folder):
        path = run / "checkpoints" / "best.pt"
        if not path.is_file():
            continue
        metrics = torch.load(path, map_location="cpu", weights_only=False).get("metrics") or {}
        value = lookup(metrics, entry.ranking_metric)
        if value is None:
            continue
        if best is None or entry.better(value, best[1]):
            best = (path, value)
        passes = (not gate_failures(entry.ship_gate, metrics, shipped=shipped, only_measured=True)
                  and not gate_failures(requires, metrics))
        if passes and (best_gated is None or entry.better(value, best_gated[1])):
            best_gated = (path, value)
    return best_gated or best


# ----------------------------------------------------------------------------- training


def machine_name() -> str:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        model = names[0] if names else model
    return f"CPU {model}, {os.cpu_count()} cores"


def deadline_from(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """The next local time HH:MM within 24 hours (02:10 after 23:00 is tomorrow's), or an ISO
    date and time (what `start` hands its worker, so both mean the same moment)."""
    now = now or dt.datetime.now()
    if "T" in text:
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            fail(f"--until {text!r} is not an ISO date and time")
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        fail(f"--until takes a local time HH:MM (e.g. 02:10), not {text!r}")
    deadline = now.replace(hour=int(match[1]), minute=int(match[2]), second=0, microsecond=0)
    return deadline if deadline > now else deadline + dt.timedelta(days=1)


def warm_start(entry: Entry, folder: Path, weights: Path) -> list[str]:
    """--set overrides that start a new cycle from trained weights: the cycles' best checkpoint
    (`best_checkpoint`: a cycle cut short by an edited recipe may not have reached the one before
    it) where the recipe's net can start from it, else the previous cycle's best or last one;
    the shipped twin (G, and D where shipped) when the recipe builds that net and no cycle here
    has beaten it (a first cycle, or cycles that have not caught up with it yet)."""
    previous = cycle_dirs(folder)
    if not previous:
        return shipped_start(entry, folder, weights, inherit=True)
    best = best_checkpoint(entry, folder, weights)
    figure = shipped_figure(entry, weights)
    shipped_ahead = figure is not None and entry.ranking_metric == entry.metric and (
        best is None or not entry.better(best[1], figure))
    if shipped_ahead and (settings := shipped_start(entry, folder, weights, inherit=False)):
        return settings
    source = previous[-1] / "checkpoints" / "best.pt"
    if best and best[0] != source and starts_from(best[0], recipe_nets(entry)[0]):
        source = best[0]
    if not source.is_file():
        source = previous[-1] / "checkpoints" / "last.pt"
    settings = [f"engine.init_generator={json.dumps(str(source))}"]
    discriminator = recipe_nets(entry)[1]
    if discriminator is None:
        return settings  # a recipe without a GAN term leaves a trained D where it is
    import torch

    trained = torch.load(source, map_location="cpu", weights_only=False).get("discriminator")
    if trained is not None and (trained["arch"], trained["hparams"]) == (discriminator.arch, discriminator.hparams):
        settings.append(f"engine.init_discriminator={json.dumps(str(source))}")
    elif (discriminator_file := shipped_discriminator(entry, weights)) is not None:
        # A recipe that adds a GAN term to a stage without one: its D starts from the shipped
        # one rather than from nothing.
        settings.append(f"engine.init_discriminator={json.dumps(str(discriminator_file))}")
    return settings


def shipped_discriminator(entry: Entry, weights: Path) -> Path | None:
    """The shipped discriminator of the entry where its recipe trains the same net, else None."""
    model = manifest_models(weights).get(entry.name) or {}
    discriminator = recipe_nets(entry)[1]
    if discriminator is None or not model.get("discriminator"):
        return None
    discriminator_file = weights / model["discriminator"]
    return discriminator_file if same_net(discriminator_file, discriminator) else None


def shipped_start(entry: Entry, folder: Path, weights: Path, inherit: bool) -> list[str]:
    """--set overrides that start a cycle from the shipped twin (G, and D where shipped) when the
    recipe builds that net, else none; with `inherit` the folder takes on the shipped model's
    campaign record (see `inherited`)."""
    model = manifest_models(weights).get(entry.name)
    if not model or not model.get("checkpoint"):
        return []
    generator_file = weights / model["checkpoint"]
    generator = recipe_nets(entry)[0]
    settings = []
    if generator_file.is_file() and starts_from(generator_file, generator):
        settings.append(f"engine.init_generator={json.dumps(str(generator_file))}")
        if inherit:
            # The folder continues the shipped model, so its hours, steps and history count on
            # from that model's: a card never restarts the count because a machine lost its folder.
            write_text_atomic(folder / INHERITED, json.dumps(model.get("campaign", {}), indent=2) + "\n")
    if settings and (discriminator_file := shipped_discriminator(entry, weights)) is not None:
        settings.append(f"engine.init_discriminator={json.dumps(str(discriminator_file))}")
    return settings


# How checkpoints are ranked changes nothing a cycle has learnt, so a resumed cycle takes these
# from the recipe as it is now; every other setting stays as the cycle began.
RANKING_KEYS = ("best_metric", "best_goal", "best_requires")


def recipe_engine(entry: Entry) -> dict[str, Any]:
    """The [engine] table of the entry's recipe as the file is now."""
    return tomllib.loads(entry.recipe.read_text()).get("engine", {})


def ranking_settings(entry: Entry) -> list[str]:
    """--set overrides of the recipe's engine.best_* keys, for resuming a cycle."""
    engine = recipe_engine(entry)
    return [f"engine.{key}={json.dumps(engine[key])}" for key in RANKING_KEYS if key in engine]


# Settings the campaign itself gives each segment, whatever the recipe says.
CAMPAIGN_KEYS = {
    "engine.init_generator", "engine.init_discriminator", "engine.time_limit_minutes",
    "engine.steps", "schedule.decay_start",  # fitted to the segment (fitted_settings)
} | {
    f"engine.{key}" for key in RANKING_KEYS
}


def recipe_changes(entry: Entry, run: Path) -> list[str]:
    """The recipe's settings that differ from the config `run`'s cycle began with, as
    "key: then -> now" lines; empty when the cycle can resume on the recipe as it is.

    Only the settings the recipe file names are compared (a comment or a new default in the code
    changes nothing), except those the campaign sets itself and the data folders. A setting
    deleted from the recipe is not noticed: `--new-cycle` ends the cycle then.
    """
    began = json.loads((run / "config.json").read_text())
    skipped = CAMPAIGN_KEYS | set(entry.data)
    changes = []

    def compare(recipe: dict[str, Any], config: dict[str, Any], prefix: str) -> None:
        for key, value in recipe.items():
            name = prefix + key
            if name in skipped:
                continue
            then = config.get(key, "(unset)")
            if isinstance(value, dict) and isinstance(then, dict):
                compare(value, then, name + ".")
            elif value != then:
                changes.append(f"{name}: {json.dumps(then)} -> {json.dumps(value)}")

    compare(tomllib.loads(entry.recipe.read_text()), began, "")
    return changes


def recipe_nets(entry: Entry) -> tuple[Any, Any]:
    """The (G, D) the entry's recipe builds, untrained (D is None without one)."""
    import torch

    from img2img.engine.config import resolve_config
    from img2img.tasks import TASKS

    task_class = TASKS.get(entry.task)
    overrides = [f"{key}={json.dumps(str(data_folder(folder)))}" for key, folder in entry.data.items()]
    config = resolve_config(task_class.config_class, config_file=entry.recipe, overrides=overrides)
    task = task_class(config, torch.device("cpu"))
    return task.build_generator(), task.build_discriminator()


def saved_net_spec(path: Path) -> tuple[str, dict[str, Any]]:
    """(arch, hparams) of the generator in a shipped .safetensors twin or a training checkpoint."""
    from img2img.engine.checkpoint import safetensors_net_spec

    if path.suffix == ".safetensors":
        return safetensors_net_spec(path)
    import torch

    record = torch.load(path, map_location="cpu", weights_only=False)["generator"]
    return record["arch"], record["hparams"]


def same_net(path: Path, net: Any) -> bool:
    return path.is_file() and saved_net_spec(path) == (net.arch, net.hparams)


def starts_from(path: Path, net: Any) -> bool:
    """Whether `net` can start from the generator weights in `path`: the same net, or a narrower
    one of its design that it widens (`widen_from`, as the trainer's engine.init_generator does)."""
    if same_net(path, net):
        return True
    if not path.is_file() or not hasattr(net, "widen_from"):
        return False
    from img2img.engine.checkpoint import load_generator

    try:
        copy.deepcopy(net).widen_from(load_generator(path).net)
    except ValueError:
        return False
    return True


def data_folder(folder: str) -> Path:
    """An entry's data folder: relative to the repository, or under the home folder ("~/..."),
    where a set that takes long to build outlives the work tree as the run folders do."""
    return Path(folder).expanduser() if folder.startswith("~") else REPO / folder


def ensure_data(entry: Entry) -> None:
    missing = [folder for folder in entry.data.values() if not data_folder(folder).is_dir()]
    missing += [path for path in entry.needs if not data_folder(path).exists()]
    if not missing:
        return
    if not entry.build:
        fail(f"entry {entry.name}: {missing[0]} is missing and the entry names no build command")
    commands = entry.build if isinstance(entry.build[0], list) else [entry.build]
    for command in commands:
        print(f"[campaign] building the data of {entry.name}: {' '.join(command)}", flush=True)
        subprocess.run([sys.executable, *command], cwd=REPO, check=True)


def target_met(entry: Entry, figure: float | None) -> bool:
    if figure is None or entry.target is None:
        return False
    return figure >= entry.target if entry.goal == "max" else figure <= entry.target


def unmet_entries(entries: list[Entry], weights: Path, skip: set[str]) -> list[Entry]:
    """The entries not in `skip` with a model whose shipped figure is short of its target."""
    return [
        entry for entry in entries
        if entry.name not in skip and not all(target_met(model, shipped_figure(model, weights)) for model in entry.models)
    ]


def hours_per_weight(entry: Entry, root: Path, tracked: TrackedLedger | None = None) -> float:
    """The entry's CPU hours on every machine (`tracked`; this root's alone without it) per unit
    of its weight."""
    folder = root / entry.name
    hours = tracked.cpu_hours(entry.name, folder) if tracked else Ledger(folder).cpu_hours()
    return hours / max(entry.weight, 1e-9)


def pick_entry(
    entries: list[Entry], root: Path, weights: Path, skip: set[str], tracked: TrackedLedger | None = None,
) -> Entry | None:
    """The unmet entry with the fewest CPU hours per unit of weight (see the module docstring)."""
    candidates = unmet_entries(entries, weights, skip)
    return min(candidates, key=lambda e: hours_per_weight(e, root, tracked)) if candidates else None


def share_minutes(
    entry: Entry, entries: list[Entry], root: Path, weights: Path, skip: set[str], threads: int,
    tracked: TrackedLedger | None = None,
) -> float:
    """Wall minutes `entry` trains before its CPU hours per weight pass those of the next unmet
    entry, at least its weight's part of SEGMENT_QUANTUM_MINUTES; infinite when no other entry is
    waiting. A training process on an otherwise idle machine spends about `threads` CPU hours per
    hour."""
    others = [
        hours_per_weight(other, root, tracked)
        for other in unmet_entries(entries, weights, skip) if other.name != entry.name
    ]
    if not others:
        return math.inf
    catch_up_cpu_hours = (min(others) - hours_per_weight(entry, root, tracked)) * entry.weight
    return max(SEGMENT_QUANTUM_MINUTES * entry.weight, catch_up_cpu_hours * 60 / threads)


class Worker:
    """Trains campaign entries until the deadline, one training process at a time."""

    def __init__(
        self, root: Path, weights: Path, deadline: dt.datetime, threads: int, min_segment_minutes: float = MIN_SEGMENT_MINUTES,
        new_cycle: str | None = None, tracked: TrackedLedger | None = None, fit_cycles: bool = True,
        probe_minutes: float = PROBE_MINUTES,
    ) -> None:
        self.root, self.weights, self.deadline, self.threads = root, weights, deadline, threads
        # Where every segment is recorded beside the run folder's ledger (see TrackedLedger).
        self.tracked = tracked
        # New cycles fitted to their segment (`fitted_steps`), or the recipe's engine.steps.
        self.fit_cycles = fit_cycles
        self.probe_minutes = probe_minutes
        self.min_segment_minutes = min_segment_minutes
        # This entry's next segment ends its unfinished cycle and starts a new one from its
        # best weights, on the recipe as it is now (a cycle resumes on the config it began with).
        self.new_cycle = new_cycle
        self.child: subprocess.Popen | None = None
        self.stopping = False
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)

    def _stop(self, signum: int, frame: Any) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)  # the trainer checkpoints and stops

    def minutes_left(self) -> float:
        return (self.deadline - dt.datetime.now()).total_seconds() / 60

    def train(self, entry: Entry, share: float = math.inf) -> str:
        """One segment of `entry`, of at most `share` minutes of training; returns "deadline"
        (the deadline or the share ended it), "probe" (it was cut to measure the step rate),
        "cycle" (a cycle finished) or "failed"."""
        folder = self.root / entry.name
        folder.mkdir(parents=True, exist_ok=True)
        ensure_data(entry)
        runs = cycle_dirs(folder)
        current = runs[-1] if runs else None
        # The last cycle resumes where it has a checkpoint and steps left; a complete one is
        # followed by the next. (One read of last.pt: a GAN's holds both nets and their optimizers.)
        last_step = checkpoint_step(current / "checkpoints" / "last.pt") if current else None
        steps_left = recipe_steps(current) - last_step if last_step is not None else 0
        resume = steps_left > 0
        limit = min(self.minutes_left() - entry.stop_margin_minutes, share)
        segments = self.tracked.segments(entry.name, folder) if self.tracked else Ledger(folder).segments
        digest = recipe_digest(entry.recipe)
        rate = steps_per_second(segments, self.threads, digest)
        overhead = overhead_seconds(segments, self.threads, digest)
        fitted = fitted_steps(entry, rate, limit, overhead) if self.fit_cycles else None
        probe = self.fit_cycles and rate is None and self.probe_minutes < limit
        if probe:
            limit = self.probe_minutes  # measures the rate the next segment fits with
        if entry.name == self.new_cycle:
            resume, current, self.new_cycle = False, None, None
        elif resume and (changes := recipe_changes(entry, current)):
            # A cycle resumes on the config it began with, so an edited recipe would wait for the
            # cycle's end; it starts the next cycle from this one's best weights instead.
            print(f"[campaign] {entry.name}: the recipe changed since cycle {cycle_number(current)} began "
                  f"({'; '.join(changes)}): the next cycle starts from its best weights", flush=True)
            resume, current = False, None
        elif resume and fitted is not None and steps_left > fitted:
            # Its learning rate would still be high when the segment ends, and the run folder may
            # not outlive the machine: a cycle fitted to this segment starts from the best weights.
            print(f"[campaign] {entry.name}: cycle {cycle_number(current)} has {steps_left} steps left, more than "
                  f"the {fitted} this segment fits: the next cycle starts from its best weights", flush=True)
            resume, current = False, None
        data = [f"{key}={json.dumps(str(data_folder(folder_)))}" for key, folder_ in entry.data.items()]
        command = [sys.executable, "-m", "cli", "train", entry.task]
        if resume:
            run = current
            command += ["--resume", str(run)]
            for setting in ranking_settings(entry):
                command += ["--set", setting]
        else:
            run = folder / f"cycle-{(cycle_number(runs[-1]) + 1) if runs else 1:03d}"
            if run.exists():  # a cycle that never wrote a checkpoint: start it again
                shutil.rmtree(run)
            command += ["--out", str(run), "--config", str(entry.recipe)]
            for setting in warm_start(entry, folder, self.weights):
                command += ["--set", setting]
            for setting in fitted_settings(entry, fitted) if fitted is not None else []:
                command += ["--set", setting]
        # The data may have moved with the work tree; the time limit is this segment's.
        for setting in [*data, f"engine.time_limit_minutes={limit:.2f}"]:
            command += ["--set", setting]
        from_step = last_step if resume else 0
        print(f"[campaign] {dt.datetime.now():%H:%M} {entry.name}: {' '.join(command)}", flush=True)
        # The log is a file, so the trainer draws no progress bar in it: its logs and the ledger
        # say how far it got. Passive OpenMP threads sleep while they wait instead of spinning:
        # beside other work on the same cores, a spinning team waits on its descheduled thread
        # and a training step took 4 to 9 times longer (benchmarks/omp_contention.py).
        environment = {"OMP_WAIT_POLICY": "PASSIVE"} | os.environ | {
            "OMP_NUM_THREADS": str(self.threads), "PYTHONUNBUFFERED": "1",
        }
        train_log = run / "train_log.jsonl"
        log_offset = train_log.stat().st_size if resume and train_log.is_file() else 0
        started = time.monotonic()
        with (folder / "train.log").open("a") as log:
            self.child = subprocess.Popen(command, cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT)
            running = folder / "running.json"
            write_text_atomic(running, json.dumps({"pid": self.child.pid, "cycle": cycle_number(run), "from_step": from_step}))
            try:
                status, usage = self._wait(self.child)
            finally:
                running.unlink(missing_ok=True)
        self.child = None
        to_step = checkpoint_step(run / "checkpoints" / "last.pt") or from_step
        segment = {
            "cycle": cycle_number(run),
            "from_step": from_step,
            "to_step": to_step,
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "wall_seconds": round(time.monotonic() - started, 1),
            "loop_seconds": round(loop, 1) if (loop := loop_seconds(run, log_offset, from_step, to_step)) else None,
            "threads": self.threads,
            # (A run that failed before it began has no config.json.)
            **({"d_warmup_steps": warmup} if (run / "config.json").is_file()
               and (warmup := discriminator_warmup(run_engine(run))) else {}),
            "recipe": digest,
            "machine": machine_name(),
            "ended": dt.datetime.now().isoformat(timespec="seconds"),
            "exit_status": status,
        }
        Ledger(folder).add(segment)
        if self.tracked:
            self.tracked.add(entry.name, segment)
        print(f"[campaign] {entry.name}: cycle {cycle_number(run)} steps {from_step} -> {to_step}, exit {status}", flush=True)
        if status != 0:
            return "failed"
        if to_step >= recipe_steps(run):
            return "cycle"
        return "probe" if probe else "deadline"

    def _wait(self, child: subprocess.Popen) -> tuple[int, Any]:
        """Waits for the training process, stopping it if it overruns the deadline; returns its
        exit status and resource usage (its own CPU time, from the kernel)."""
        terminated_at = None
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                child.returncode = os.waitstatus_to_exitcode(status)
                return child.returncode, usage
            overrun = -self.minutes_left() * 60
            if terminated_at is None and overrun > DEADLINE_GRACE_SECONDS:
                print("[campaign] past the deadline: asking the training process to stop", flush=True)
                child.send_signal(signal.SIGTERM)
                terminated_at = time.monotonic()
            elif terminated_at is not None and time.monotonic() - terminated_at > DEADLINE_GRACE_SECONDS:
                child.kill()
            time.sleep(POLL_SECONDS)

    def run(self, entries: list[Entry], only: str | None, max_segments: int = 0) -> None:
        """Trains segment after segment until the deadline (or `max_segments`, when not 0)."""
        failed: set[str] = set()
        segments = 0
        while not self.stopping and self.minutes_left() > self.min_segment_minutes:
            if max_segments and segments >= max_segments:
                break
            segments += 1
            entry = find_entry(entries, only) if only else pick_entry(entries, self.root, self.weights, failed, self.tracked)
            if entry is None or entry.name in failed:
                print("[campaign] nothing left to train", flush=True)
                return
            if self.minutes_left() - entry.stop_margin_minutes < self.min_segment_minutes:
                break
            share = math.inf if only else share_minutes(
                entry, entries, self.root, self.weights, failed, self.threads, self.tracked)
            # One entry's fault (a build that fails, a file missing) must not end the others' hours.
            try:
                outcome = self.train(entry, share)
                # The rest of the share goes to a cycle fitted from the rate the probe measured.
                left = self.minutes_left() - entry.stop_margin_minutes
                if outcome == "probe" and not self.stopping and left >= self.min_segment_minutes:
                    outcome = self.train(entry, share - self.probe_minutes)
            except (Exception, SystemExit) as error:  # noqa: BLE001
                print(f"[campaign] {entry.name} could not start: {error!r}", flush=True)
                outcome = "failed"
            if outcome == "failed":
                print(f"[campaign] {entry.name} failed; see {self.root / entry.name / 'train.log'}", flush=True)
                failed.add(entry.name)
        print(f"[campaign] {dt.datetime.now():%H:%M} stopped", flush=True)


# ----------------------------------------------------------------------------- commands


def worker_file(root: Path) -> Path:
    return root / "worker.json"


def running_worker(root: Path) -> dict[str, Any] | None:
    path = worker_file(root)
    if not path.is_file():
        return None
    info = json.loads(path.read_text())
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return info


def command_start(args: argparse.Namespace, entries: list[Entry]) -> None:
    deadline = deadline_from(args.until)
    if args.new_cycle and not args.entry:
        fail("--new-cycle needs --entry NAME: the entry whose cycle to end")
    if args.entry:
        find_entry(entries, args.entry)
    args.root.mkdir(parents=True, exist_ok=True)
    if (info := running_worker(args.root)) is not None:
        fail(f"a campaign already runs (pid {info['pid']}, until {info['until']}); `campaign.py stop` ends it")
    command = [sys.executable, str(Path(__file__).resolve()), "--root", str(args.root), "--queue", str(args.queue),
               "--weights", str(args.weights), "run", "--until", deadline.isoformat(timespec="seconds"),
               "--threads", str(args.threads), "--min-segment-minutes", str(args.min_segment_minutes)]
    if args.entry:
        command += ["--entry", args.entry]
    if args.new_cycle:
        command += ["--new-cycle"]
    if args.recipe_cycles:
        command += ["--recipe-cycles"]
    command += ["--probe-minutes", str(args.probe_minutes)]
    log = (args.root / "campaign.log").open("a")
    worker = subprocess.Popen(
        command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, preexec_fn=lowest_priority,
    )
    write_text_atomic(
        worker_file(args.root),
        json.dumps({"pid": worker.pid, "until": deadline.isoformat(timespec="minutes"), "entry": args.entry}) + "\n",
    )
    print(f"campaign started (pid {worker.pid}) until {deadline:%Y-%m-%d %H:%M}; log {args.root / 'campaign.log'}")


def lowest_priority() -> None:
    """Lowers the calling process, and the children it starts, to the lowest CPU priority, so
    that tests and editing keep the CPU they need beside the campaign.

    Runs in the new session of `start` (after setsid). Where Linux groups processes by session
    for scheduling (autogroup, on by default on desktop and cloud kernels), nice orders processes
    only inside their own group and groups share the CPU equally: a nice 19 worker in its own
    session left two busy processes beside it 45% of the CPU (92% with its group lowered too,
    benchmarks/background_priority.py). The group's own nice value,
    /proc/self/autogroup, is what ranks it against the other sessions, so both are set.
    """
    os.nice(19)
    try:
        Path("/proc/self/autogroup").write_text("19")
    except OSError:
        pass  # no autogroup scheduling (other kernels, other systems): the nice value suffices


def command_run(args: argparse.Namespace, entries: list[Entry]) -> None:
    deadline = deadline_from(args.until)
    if args.new_cycle and not args.entry:
        fail("--new-cycle needs --entry NAME: the entry whose cycle to end")
    if args.entry:
        find_entry(entries, args.entry)
    args.root.mkdir(parents=True, exist_ok=True)
    Worker(
        args.root, args.weights, deadline, args.threads, args.min_segment_minutes,
        new_cycle=args.entry if args.new_cycle else None, tracked=TrackedLedger(tracked_ledger_path(args.queue)),
        fit_cycles=not args.recipe_cycles, probe_minutes=args.probe_minutes,
    ).run(entries, args.entry, args.max_segments)


def command_stop(args: argparse.Namespace, entries: list[Entry]) -> None:
    info = running_worker(args.root)
    if info is None:
        print("no campaign is running")
        return
    os.kill(info["pid"], signal.SIGTERM)
    for _ in range(args.wait):
        if running_worker(args.root) is None:
            print(f"campaign (pid {info['pid']}) stopped with its checkpoints written")
            return
        time.sleep(1)
    fail(f"campaign (pid {info['pid']}) is still stopping after {args.wait} s; check {args.root / 'campaign.log'}")


def command_status(args: argparse.Namespace, entries: list[Entry]) -> None:
    info = running_worker(args.root)
    print(f"campaign root {args.root}: " + (f"running (pid {info['pid']}) until {info['until']}" if info else "not running"))
    print("| entry | metric | target | shipped | campaign best | cycles | steps | CPU hours | all machines | curve |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    tracked = TrackedLedger(tracked_ledger_path(args.queue))
    for entry in entries:
        folder = args.root / entry.name
        ledger = Ledger(folder)
        points = curve(entry, folder)
        best = None
        for _, value, _, _ in ranked_points(entry, folder, points):
            if best is None or entry.better(value, best):
                best = value
        steps, hours = ledger.steps(), ledger.cpu_hours()
        training = segment_in_progress(folder)
        if training is not None:
            steps += training["steps"]
            hours += training["cpu_seconds"] / 3600
        # Every machine's hours (the repository's ledger), the segment under way included.
        everywhere = tracked.cpu_hours(entry.name, folder) + (training["cpu_seconds"] / 3600 if training else 0.0)
        plot = draw_curve(entry, points, shipped_figure(entry, args.weights), args.root / "plots") if points else None
        for model in entry.models:
            shipped = shipped_figure(model, args.weights)
            label = model.name if model is entry else f"{model.name} (trains with {entry.name})"
            print(
                f"| {label} | {model.metric} ({model.goal}) | {format_value(model.target)} | {format_value(shipped)} | "
                f"{'' if entry.ranking_metric == model.metric else entry.ranking_metric + ' '}"
                f"{format_value(best)} | {len(cycle_dirs(folder))} | {steps}{' (training)' if training else ''} | {hours:.2f} | "
                f"{everywhere:.2f} | {plot or '-'} |"
            )


def segment_in_progress(folder: Path) -> dict[str, Any] | None:
    """Steps and CPU seconds so far of the segment training now, or None: the steps from its
    last checkpoint, the CPU time from the kernel's account of the process (Linux /proc)."""
    path = folder / "running.json"
    if not path.is_file():
        return None
    info = json.loads(path.read_text())
    stat = Path(f"/proc/{info['pid']}/stat")
    if not stat.is_file():
        return None
    fields = stat.read_text().rsplit(")", 1)[1].split()
    cpu_seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    step = checkpoint_step(folder / f"cycle-{info['cycle']:03d}" / "checkpoints" / "last.pt") or info["from_step"]
    return {"steps": step - info["from_step"], "cpu_seconds": cpu_seconds}


def format_value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def draw_curve(entry: Entry, points: list[tuple[float, float, int, int]], shipped: float | None, folder: Path) -> Path:
    """ROOT/plots/NAME.png: the validation metric against CPU hours, the shipped figure and the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for cycle in sorted({p[2] for p in points}):
        mine = [p for p in points if p[2] == cycle]
        axes.plot([p[0] for p in mine], [p[1] for p in mine], marker=".", label=f"cycle {cycle}")
    # The shipped figure and the target are of `metric`: only comparable when that ranks training too.
    if shipped is not None and entry.ranking_metric == entry.metric:
        axes.axhline(shipped, color="gray", linestyle="--", label=f"shipped {shipped:.4g}")
    if entry.target is not None and entry.ranking_metric == entry.metric:
        axes.axhline(entry.target, color="green", linestyle=":", label=f"target {entry.target:g}")
    axes.set_xlabel("CPU hours (training process)")
    axes.set_ylabel(entry.ranking_metric)
    axes.set_title(entry.name)
    # Beside the panel: an entry trained over many cycles has a legend taller than the curve.
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes.grid(alpha=0.3)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{entry.name}.png"
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


# ----------------------------------------------------------------------------- shipping


def command_ship(args: argparse.Namespace, entries: list[Entry]) -> None:
    entry = find_entry(entries, args.name)
    folder = args.root / entry.name
    found = best_checkpoint(entry, folder, args.weights)
    if found is None:
        fail(f"{entry.name} has no validated checkpoint under {folder}; train it first (`campaign.py start`)")
    checkpoint_path, _ = found
    for model in entry.models:
        # A card's figures are rendered from the measurement; a hand-written one would go stale.
        if model.card is None or not model.card.is_file():
            fail(f"{model.name} has no card template: write scripts/cards/{model.name}.md and name it in its entry (card = ...)")
    was = {model.name: shipped_figure(model, args.weights) for model in entry.models}
    values = ship(entry, checkpoint_path, folder, args.weights, args.readme)
    for model in entry.models:
        print(
            f"shipped {model.name}: {model.metric} {values[model.name]:.4f} (was {format_value(was[model.name])}) "
            f"from {checkpoint_path}"
        )


def ship(entry: Entry, checkpoint_path: Path, folder: Path, weights: Path, readme: Path) -> dict[str, float]:
    """Exports the checkpoint into `weights` as the entry's model (and its companion's), with
    manifest entries, cards and README rows, if every model beats its shipped figure and meets
    its ship gates; returns each model's figure.

    Everything is made and measured in a temporary folder first (the candidates' figures, the
    cards and the README rows), so a refusal or a failure leaves weights/ and the README as
    they were."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ship_model import export_model

    shipped_models = manifest_models(weights)
    with tempfile.TemporaryDirectory(dir=weights) as staging:
        staging = Path(staging)
        candidates, values = [], {}
        for model_entry in entry.models:
            shipped_metrics = shipped_models.get(model_entry.name, {}).get("metrics", {})
            shipped = lookup(shipped_metrics, model_entry.metric)

            def refuse_unless_better(value: float) -> None:
                # The manifest keeps 4 decimals: the same checkpoint shipped again would seem to gain.
                if not model_entry.better(round(value, 4), shipped):
                    print(
                        f"not shipped: the best checkpoint of {entry.name} ({checkpoint_path}) gives {model_entry.name} "
                        f"{model_entry.metric} {value:.4f}, the shipped model {shipped:.4f} "
                        f"({'higher' if model_entry.goal == 'max' else 'lower'} is better)"
                    )
                    raise SystemExit(1)

            model = export_model(
                checkpoint_path, name=model_entry.name, weights=staging, fp16=model_entry.fp16,
                direction=model_entry.direction or None, weights_name=model_entry.weights_name or None,
                int8_calibration=data_folder(model_entry.int8_calibration) if model_entry.int8_calibration else None,
            )
            if model_entry.use_for:
                model["use_for"] = model_entry.use_for
            kept_discriminator = shipped_models.get(model_entry.name, {}).get("discriminator")
            if "discriminator" not in model and kept_discriminator and (weights / kept_discriminator).is_file():
                # A stage without a GAN term keeps the last GAN stage's D listed: a later GAN
                # stage starts its D from there (`shipped_discriminator`), not from nothing.
                model["discriminator"] = kept_discriminator
            if model_entry.evaluate:
                # A figure training measured (inpaint's) can refuse the candidate before the
                # evaluation, which takes minutes, runs.
                if (known := lookup(model["metrics"], model_entry.metric)) is not None:
                    refuse_unless_better(known)
                measured = evaluate(model_entry, staging / model["file"], checkpoint_path, staging)
                model["metrics"][model_entry.evaluate_into] = table_at(model_entry, measured, model_entry.evaluate_key)
                for key in model_entry.evaluate_baselines:
                    model["metrics"][key.rpartition(".")[2]] = table_at(model_entry, measured, key)
                # Baselines measured once (identity, DCGAN) stay; the candidate's group is new.
                model["metrics"] |= {key: value for key, value in shipped_metrics.items()
                                     if isinstance(value, dict) and key != model_entry.evaluate_into}
            value = lookup(model["metrics"], model_entry.metric)
            if value is None:
                fail(f"{model_entry.name}: the candidate's metrics have no {model_entry.metric}")
            refuse_unless_better(value)
            failures = gate_failures(model_entry.ship_gate, model["metrics"], shipped=shipped_metrics)
            if failures:
                print(f"not shipped: {model_entry.name} from {checkpoint_path} fails its ship gate: {'; '.join(failures)}")
                raise SystemExit(1)
            candidates.append((model_entry, model))
            values[model_entry.name] = value
        ledger, earlier = Ledger(folder), inherited(folder)
        readme_text = readme.read_text()
        for model_entry, model in candidates:
            model["campaign"] = {
                "cpu_hours": round(earlier.get("cpu_hours", 0.0) + ledger.cpu_hours(), 2),
                "steps": earlier.get("steps", 0) + ledger.steps(),
                "cycles": earlier.get("cycles", 0) + len(cycle_dirs(folder)),
                "machines": sorted(set(earlier.get("machines", [])) | {s["machine"] for s in ledger.segments}),
                "shipped": dt.date.today().isoformat(),
                # What the next folder that starts from these weights inherits (see `inherited`).
                "history": thinned(curve(entry, folder), HISTORY_POINTS),
            }
            context = card_context(model_entry, model, staging, checkpoint_path, folder)
            (staging / model["card"]).write_text(render(model_entry.card.read_text(), context, model_entry.card))
            if model_entry.readme_row:
                row = render(model_entry.readme_row, context, "readme_row")
                readme_text = replace_readme_row(readme_text, model_entry.name, row)
        manifest_path = weights / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"models": []}
        names = {model["name"] for _, model in candidates}
        manifest["models"] = sorted(
            [m for m in manifest["models"] if m["name"] not in names] + [model for _, model in candidates],
            key=lambda m: m["name"],
        )
        for path in staging.iterdir():
            os.replace(path, weights / path.name)
        write_text_atomic(manifest_path, json.dumps(manifest, indent=2) + "\n")
        write_text_atomic(readme, readme_text)
    return values


def evaluate(entry: Entry, onnx: Path, checkpoint: Path, staging: Path) -> dict[str, Any]:
    """Runs the entry's evaluation command on the candidate; returns its JSON output."""
    output = staging / f".{entry.name}-evaluation.json"
    fields = {"onnx": str(onnx), "checkpoint": str(checkpoint), "json": str(output)}
    command = [sys.executable, *(part.format(**fields) for part in entry.evaluate)]
    print(f"[campaign] measuring the candidate: {' '.join(command)}", flush=True)
    try:
        subprocess.run(command, cwd=REPO, check=True)
        return json.loads(output.read_text())
    finally:
        output.unlink(missing_ok=True)


def table_at(entry: Entry, measured: dict[str, Any], key: str) -> dict[str, Any]:
    """The table at the dotted `key` of an evaluation's JSON (the whole JSON for ""), rounded."""
    table: Any = measured
    for part in key.split(".") if key else []:
        if not isinstance(table, dict) or part not in table:
            fail(f"{entry.name}: the evaluation's JSON has no {key}")
        table = table[part]
    return rounded(table)


def rounded(node: Any) -> Any:
    """Floats rounded to 4 decimals, in nested tables too: what the manifest keeps."""
    if isinstance(node, dict):
        return {key: rounded(value) for key, value in node.items()}
    return round(node, 4) if isinstance(node, float) else node


def card_context(entry: Entry, model: dict[str, Any], staging: Path, checkpoint_path: Path, folder: Path) -> dict[str, Any]:
    """The figures a card template may name: metrics.*, campaign.*, config.*, file sizes, the
    net's parameter count, data counts and the validation history."""
    import torch

    from img2img.nets.registry import rebuild_net

    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    record = checkpoint["generator"]
    context: dict[str, Any] = {
        "name": entry.name,
        "metrics": model["metrics"],
        "campaign": model["campaign"],
        "config": checkpoint["config"],
        "net": record["arch"],
        "hparams": record["hparams"],
        # Learned parameters only: not norm statistics or spectral-norm vectors, which are buffers.
        "parameters": sum(p.numel() for p in rebuild_net(record["arch"], record["hparams"]).parameters()),
        "file_kb": (staging / model["file"]).stat().st_size / 1024,
        "fp16_kb": (staging / model["fp16_file"]).stat().st_size / 1024 if "fp16_file" in model else 0,
        "int8_kb": (staging / model["int8_file"]).stat().st_size / 1024 if "int8_file" in model else 0,
        "int8_psnr": model.get("int8_psnr", 0.0),
        "recipe": (entry.recipe.relative_to(REPO) if entry.recipe.is_relative_to(REPO) else entry.recipe).as_posix(),
        "history": history_table(entry, folder),
        # Super-resolution's HR crops: multi-scale (`hr_scale_range`) or the photos' own pixels.
        "hr_crops": (
            f"cut as from the photo shrunk by a random factor in {list(scale_range)} (area interpolation: "
            "more distinct patches from a small photo set)"
            if (scale_range := checkpoint["config"].get("hr_scale_range")) else "of the photos' own pixels"
        ),
    }
    for key, data in entry.data.items():
        root = data_folder(data)
        counts = context.setdefault("data", {})
        for split in ("train", "val"):
            if (root / split).is_dir():
                counts[f"{key}_{split}_images"] = sum(1 for p in (root / split).rglob("*") if p.is_file())
        if root.is_dir():
            counts[f"{key}_images"] = sum(1 for p in root.rglob("*") if p.is_file())
        # A teacher's set (scripts/build_sr_teacher.py) records the teacher and its settings.
        if (root.parent / "teacher.json").is_file():
            context["teacher"] = json.loads((root.parent / "teacher.json").read_text())
    return context


def thinned(points: list[Any], count: int) -> list[Any]:
    """At most `count` of `points`, evenly spaced, the first and the last among them."""
    if len(points) <= count:
        return list(points)
    return list(dict.fromkeys(points[round(i * (len(points) - 1) / (count - 1))] for i in range(count)))


def history_table(entry: Entry, folder: Path, rows: int = 8) -> str:
    """Markdown table of the validation metric over CPU hours: at most `rows` evenly spaced
    points, the best one always among them."""
    points = curve(entry, folder)
    if not points:
        return ""
    best = points[0]
    for point in points[1:]:
        best = point if entry.better(point[1], best[1]) else best
    picked = thinned(points, rows)
    if best not in picked:
        picked = sorted([*thinned(points, rows - 1), best], key=points.index)
    lines = [f"| CPU hours | cycle | step | {entry.ranking_metric} |", "|---|---|---|---|"]
    lines += [f"| {hours:.2f} | {cycle} | {step} | {value:.4f} |" for hours, value, cycle, step in dict.fromkeys(picked)]
    return "\n".join(lines)


PLACEHOLDER = re.compile(r"\{\{\s*([\w.\-]+)\s*(?::([^}]*))?\}\}")


def render(template: str, context: dict[str, Any], where: Any) -> str:
    """Fills `{{ key }}` and `{{ key:format }}` (dotted keys walk into tables); a missing key is an error."""

    def fill(match: re.Match) -> str:
        node: Any = context
        for part in match[1].split("."):
            if not isinstance(node, dict) or part not in node:
                fail(f"{where}: the template names {match[1]!r}, which the shipped model does not have")
            node = node[part]
        if isinstance(node, list):
            return ", ".join(str(item) for item in node)
        return format(node, match[2] or "")

    return PLACEHOLDER.sub(fill, template)


def replace_readme_row(text: str, name: str, row: str) -> str:
    """The README with the model-table row whose first cell is `name` replaced by `row`: the
    first such row with as many cells as `row`, so other tables naming the model (timings, say)
    are left alone."""
    row = row.strip()
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if line.startswith(f"| {name} |") and line.count("|") == row.count("|"):
            lines[index] = row
            return "\n".join(lines)
    fail(f"the README has no model-table row starting with '| {name} |' and {row.count('|') - 1} cells to regenerate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("IMG2IMG_CAMPAIGN_ROOT", DEFAULT_ROOT)),
                        help="where the entries' run folders live (default: %(default)s)")
    parser.add_argument("--queue", type=Path, default=QUEUE, help="the queue file (default: scripts/campaign.toml)")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="the shipped models' folder (default: weights/)")
    parser.add_argument("--readme", type=Path, default=README, help="README whose model tables ship rewrites")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "run"):
        command = commands.add_parser(name, help="train in the background" if name == "start" else "train in the foreground")
        command.add_argument("--until", required=True, help="local time HH:MM to stop by (the next one within 24 h)")
        command.add_argument("--entry", help="train this entry only (default: the one with the most to gain)")
        command.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
        command.add_argument(
            "--min-segment-minutes", type=float, default=MIN_SEGMENT_MINUTES,
            help="do not start a segment shorter than this (default: %(default)s)",
        )
        command.add_argument(
            "--new-cycle", action="store_true",
            help="with --entry: end its unfinished cycle and start the next from its best weights, "
            "on the recipe as it is now (an edited setting does so by itself; this is for a deleted one)",
        )
        command.add_argument(
            "--recipe-cycles", action="store_true",
            help="train cycles of the recipe's engine.steps, resumed over as many segments as they take "
            "(for a machine whose run folders last), instead of new cycles fitted to each segment",
        )
        command.add_argument(
            "--probe-minutes", type=float, default=PROBE_MINUTES,
            help="an entry with no step rate measured trains this long first, to measure it (default: %(default)s)",
        )
    commands.choices["run"].add_argument(
        "--max-segments", type=int, default=0, help="stop after this many training processes (default: none)"
    )
    stop = commands.add_parser("stop", help="ask the running campaign to checkpoint and stop")
    stop.add_argument("--wait", type=int, default=600, help="seconds to wait for it (default: %(default)s)")
    commands.add_parser("status", help="every entry's steps, CPU hours and best figure; curves to ROOT/plots")
    ship_parser = commands.add_parser("ship", help="ship an entry's best checkpoint if it beats the shipped model")
    ship_parser.add_argument("name")
    args = parser.parse_args()
    args.root = args.root.expanduser().resolve()
    entries = load_queue(args.queue)
    {"start": command_start, "run": command_run, "stop": command_stop, "status": command_status, "ship": command_ship}[
        args.command
    ](args, entries)


if __name__ == "__main__":
    main()
