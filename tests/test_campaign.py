"""scripts/campaign.py on a tiny entry: it trains, stops at its deadline with a checkpoint,
resumes where it stopped, starts the next cycle from the last one's best weights, warm-starts
from the shipped twin when its run folder is gone, and ships only a checkpoint that beats the
shipped model."""

import datetime as dt
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from img2img.engine.checkpoint import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    save_safetensors_generator,
)
from img2img.nets import build_net

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "campaign.py"

RECIPE = """
net = "srvgg_tiny"
scale = 2
patch_size = 16
[engine]
steps = {steps}
batch_size = 2
num_workers = 0
log_every = 1
sample_every = 0
validate_every = 2
checkpoint_every = 2
ema_decay = 0.9
"""

# The shipped superres models' card template, rendered here from the tiny run.
CARD = Path(__file__).resolve().parents[1] / "scripts" / "cards" / "superres.md"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        (root / split).mkdir()
        for index in range(count):
            pixels = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).resize((96, 80), Image.BICUBIC).save(root / split / f"{index}.png")
    return root


def make_campaign(folder: Path, photos: Path, *, steps: int, shipped_gain: float | None = None) -> dict[str, Path]:
    """A queue with one tiny superres entry, a weights folder with its manifest, and a README."""
    folder.mkdir(parents=True, exist_ok=True)
    recipe = folder / "recipe.toml"
    recipe.write_text(RECIPE.format(steps=steps))
    queue = folder / "queue.toml"
    queue.write_text(
        f"""
[[entry]]
name = "tiny-x2"
task = "superres"
recipe = "{recipe}"
data = {{ data = "{photos}" }}
metric = "psnr_y_gain"
goal = "max"
target = 50.0
stop_margin_minutes = 0.02
fp16 = false
card = "{CARD}"
readme_row = "| {{{{name}}}} | {{{{metrics.psnr_y:.2f}}}} dB |"
use_for = "tiny test photos"
"""
    )
    weights = folder / "weights"
    weights.mkdir(exist_ok=True)
    models = []
    if shipped_gain is not None:
        models.append({"name": "tiny-x2", "task": "superres", "file": "tiny-x2.onnx", "card": "tiny-x2.md",
                       "metrics": {"psnr_y_gain": shipped_gain}})
    (weights / "manifest.json").write_text(json.dumps({"models": models}))
    readme = folder / "README.md"
    readme.write_text(
        "| model | first run | later runs |\n|---|---|---|\n| tiny-x2 | 1 s | 2 s |\n\n"
        "| name | PSNR-Y |\n|---|---|\n| tiny-x2 | old |\n| other | kept |\n"
    )
    return {"queue": queue, "weights": weights, "readme": readme, "root": folder / "root"}


def campaign(paths: dict[str, Path], *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), "--root", str(paths["root"]), "--queue", str(paths["queue"]),
               "--weights", str(paths["weights"]), "--readme", str(paths["readme"]), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"campaign {arguments} failed:\n{result.stdout}\n{result.stderr}")
    return result


def until(seconds: float) -> str:
    return (dt.datetime.now() + dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")


def ledger(paths: dict[str, Path]) -> list[dict]:
    return json.loads((paths["root"] / "tiny-x2" / "ledger.json").read_text())["segments"]


def run_config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def save_finished_cycle(folder: Path, net: Any, gain: float = 1.0) -> Path:
    """FOLDER/cycle-001 of 20 steps whose best.pt holds `net` as G, scored `gain`; its path."""
    (folder / "cycle-001" / "checkpoints").mkdir(parents=True)
    (folder / "cycle-001" / "config.json").write_text(json.dumps({"net": "srvgg_tiny", "engine": {"steps": 20}}))
    best = folder / "cycle-001" / "checkpoints" / "best.pt"
    generator = {"arch": net.arch, "hparams": net.hparams, "state_dict": net.state_dict()}
    torch.save({"format": CHECKPOINT_FORMAT, "step": 10, "metrics": {"psnr_y_gain": gain}, "generator": generator,
                "config": {}, "task": "superres"}, best)
    return best


@pytest.fixture(scope="module")
def deadline_run(photos, tmp_path_factory) -> dict[str, Path]:
    """Two deadline-bound runs of an entry whose recipe cycle is far longer than either."""
    paths = make_campaign(tmp_path_factory.mktemp("campaign"), photos, steps=100_000, shipped_gain=-99.0)
    for seconds in (20, 15):
        campaign(paths, "run", "--until", until(seconds), "--min-segment-minutes", "0.05", "--recipe-cycles")
    return paths


def test_run_stops_at_its_deadline_and_the_next_run_resumes_the_same_cycle(deadline_run):
    first, second = ledger(deadline_run)
    assert first["cycle"] == second["cycle"] == 1
    assert first["exit_status"] == second["exit_status"] == 0
    assert 0 < first["to_step"] == second["from_step"] < second["to_step"] < 100_000
    assert first["cpu_seconds"] > 0 and first["machine"].startswith("CPU")
    run = deadline_run["root"] / "tiny-x2" / "cycle-001"
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == second["to_step"]
    assert [p.name for p in (deadline_run["root"] / "tiny-x2").glob("cycle-*")] == ["cycle-001"]


def test_status_shows_hours_and_best_figure_against_shipped(deadline_run):
    output = campaign(deadline_run, "status").stdout
    row = next(line for line in output.splitlines() if line.startswith("| tiny-x2 |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[3] == "-99" and cells[5] == "1" and int(cells[6]) == ledger(deadline_run)[1]["to_step"]
    assert float(cells[4]) > -99 and float(cells[7]) > 0
    assert float(cells[8]) == pytest.approx(sum(s["cpu_seconds"] for s in ledger(deadline_run)) / 3600, abs=0.006)
    assert (deadline_run["root"] / "plots" / "tiny-x2.png").is_file()


def test_ship_refuses_a_checkpoint_worse_than_the_shipped_model(deadline_run):
    manifest = deadline_run["weights"] / "manifest.json"
    shipped = json.loads(manifest.read_text())
    shipped["models"][0]["metrics"]["psnr_y_gain"] = 99.0
    manifest.write_text(json.dumps(shipped))
    before = sorted(p.name for p in deadline_run["weights"].iterdir()), deadline_run["readme"].read_text()
    try:
        result = campaign(deadline_run, "ship", "tiny-x2", check=False)
    finally:
        shipped["models"][0]["metrics"]["psnr_y_gain"] = -99.0
        manifest.write_text(json.dumps(shipped))
    assert result.returncode == 1 and "not shipped" in result.stdout
    assert (sorted(p.name for p in deadline_run["weights"].iterdir()), deadline_run["readme"].read_text()) == before


def test_ship_exports_a_better_checkpoint_with_its_card_manifest_and_readme_row(deadline_run):
    import img2img

    weights = deadline_run["weights"]
    # A discriminator an earlier GAN stage shipped stays listed after a stage without one.
    manifest = json.loads((weights / "manifest.json").read_text())
    manifest["models"][0]["discriminator"] = "tiny-x2.discriminator.safetensors"
    (weights / "manifest.json").write_text(json.dumps(manifest))
    save_safetensors_generator(build_net("unet_discriminator_tiny"), weights / "tiny-x2.discriminator.safetensors",
                               task="superres", config={})
    campaign(deadline_run, "ship", "tiny-x2")
    model = json.loads((weights / "manifest.json").read_text())["models"][0]
    assert model["discriminator"] == "tiny-x2.discriminator.safetensors"
    best = load_checkpoint(deadline_run["root"] / "tiny-x2" / "cycle-001" / "checkpoints" / "best.pt")
    assert model["metrics"]["psnr_y_gain"] == round(best["metrics"]["psnr_y_gain"], 4)
    assert model["campaign"]["steps"] == ledger(deadline_run)[1]["to_step"]
    assert model["use_for"] == "tiny test photos"  # what `img2img models` says to pick it for
    card = (weights / "tiny-x2.md").read_text()
    assert f"| tiny-x2 | **{best['metrics']['psnr_y']:.2f} dB** |" in card and "{{" not in card
    assert f"{model['campaign']['steps']} steps in 1 cycle(s)" in card
    assert "| CPU hours | cycle | step | psnr_y_gain |" in card
    readme = deadline_run["readme"].read_text()
    assert f"| tiny-x2 | {best['metrics']['psnr_y']:.2f} dB |" in readme and "| other | kept |" in readme
    assert "| tiny-x2 | 1 s | 2 s |" in readme  # another table naming the model is left alone
    upscale = img2img.load(str(weights / "tiny-x2.onnx"), task="superres")
    assert upscale(np.zeros((8, 8, 3), np.uint8)).shape == (16, 16, 3)


def test_ship_writes_the_int8_variant_an_entry_asks_for(deadline_run, tmp_path):
    """int8_calibration: the shipped model gets NAME.int8.onnx, calibrated on those photos, in
    the manifest with its checksum and in the card."""
    import img2img

    calibration = tmp_path / "calibration"
    calibration.mkdir()
    rng = np.random.default_rng(1)
    for index in range(4):
        pixels = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).resize((256, 256), Image.BICUBIC).save(calibration / f"{index}.png")
    queue, manifest = deadline_run["queue"], deadline_run["weights"] / "manifest.json"
    original_queue, original_manifest = queue.read_text(), manifest.read_text()
    shipped = json.loads(original_manifest)
    shipped["models"][0]["metrics"]["psnr_y_gain"] = -99.0  # so the same checkpoint ships again
    manifest.write_text(json.dumps(shipped))
    queue.write_text(original_queue.replace("fp16 = false", f'fp16 = false\nint8_calibration = "{calibration}"'))
    try:
        campaign(deadline_run, "ship", "tiny-x2")
    finally:
        queue.write_text(original_queue)
    weights = deadline_run["weights"]
    model = json.loads(manifest.read_text())["models"][0]
    variant = weights / "tiny-x2.int8.onnx"
    assert model["int8_file"] == variant.name and model["int8_psnr"] >= 35
    assert model["int8_sha256"] == hashlib.sha256(variant.read_bytes()).hexdigest()
    assert f"`tiny-x2.int8.onnx` ({variant.stat().st_size / 1024:.0f} KB" in (weights / "tiny-x2.md").read_text()
    upscale = img2img.load(str(weights / "tiny-x2.onnx"), task="superres", precision="int8")
    assert upscale.info.precision == "int8" and upscale(np.zeros((8, 8, 3), np.uint8)).shape == (16, 16, 3)


def test_ship_with_a_template_naming_a_missing_figure_writes_nothing(deadline_run, tmp_path):
    queue = deadline_run["queue"].read_text().replace('card = "', f'card = "{tmp_path}/bad.md" #')
    (tmp_path / "bad.md").write_text("{{metrics.no_such_figure}}")
    bad = dict(deadline_run, queue=tmp_path / "queue.toml")
    bad["queue"].write_text(queue)
    manifest = json.loads((deadline_run["weights"] / "manifest.json").read_text())
    manifest["models"][0]["metrics"]["psnr_y_gain"] = -99.0
    (deadline_run["weights"] / "manifest.json").write_text(json.dumps(manifest))
    before = {p.name: p.read_bytes() for p in deadline_run["weights"].iterdir()}
    result = campaign(bad, "ship", "tiny-x2", check=False)
    assert result.returncode == 2 and "no_such_figure" in result.stderr
    assert {p.name: p.read_bytes() for p in deadline_run["weights"].iterdir()} == before


def test_finished_cycles_warm_start_the_next_and_a_lost_folder_starts_from_the_shipped_twin(photos, tmp_path):
    paths = make_campaign(tmp_path, photos, steps=4, shipped_gain=-99.0)
    twin = paths["weights"] / "tiny-x2.safetensors"
    save_safetensors_generator(build_net("srvgg_tiny", scale=2), twin, task="superres", config={})
    manifest = json.loads((paths["weights"] / "manifest.json").read_text())
    manifest["models"][0]["checkpoint"] = twin.name
    # What the shipped twin's own campaign measured, on a machine whose folder is gone.
    manifest["models"][0]["campaign"] = {
        "cpu_hours": 3.0, "steps": 1000, "cycles": 2, "machines": ["an earlier machine"],
        "history": [[1.5, -5.0, 1, 500], [3.0, -1.0, 2, 500]],
    }
    (paths["weights"] / "manifest.json").write_text(json.dumps(manifest))
    campaign(paths, "run", "--until", until(600), "--max-segments", "2")
    runs = sorted((paths["root"] / "tiny-x2").glob("cycle-*"))
    assert len(runs) == 2
    assert run_config(runs[0])["engine"]["init_generator"] == str(twin)
    assert run_config(runs[1])["engine"]["init_generator"] == str(runs[0] / "checkpoints" / "best.pt")
    assert [(s["cycle"], s["from_step"], s["to_step"]) for s in ledger(paths)] == [(1, 0, 4), (2, 0, 4)]

    # Shipped again, the model's hours, steps, cycles and history count on from the twin's.
    campaign(paths, "ship", "tiny-x2")
    record = json.loads((paths["weights"] / "manifest.json").read_text())["models"][0]["campaign"]
    assert (record["steps"], record["cycles"]) == (1008, 4) and record["cpu_hours"] >= 3.0
    assert "an earlier machine" in record["machines"] and len(record["machines"]) == 2
    assert record["history"][:2] == [[1.5, -5.0, 1, 500], [3.0, -1.0, 2, 500]]
    assert [point[2:] for point in record["history"][2:]] == [[3, 2], [3, 4], [4, 2], [4, 4]]
    card = (paths["weights"] / "tiny-x2.md").read_text()
    assert "1008 steps in 4 cycle(s)" in card and "| 1.50 | 1 | 500 | -5.0000 |" in card

    # A narrower twin of the recipe's net seeds it (the trainer widens it); a twin of another net
    # cannot: the first cycle then starts from scratch.
    save_safetensors_generator(build_net("srvgg_tiny", scale=2, num_features=4), twin, task="superres", config={})
    paths["root"] = tmp_path / "wider-root"
    campaign(paths, "run", "--until", until(600), "--max-segments", "1")
    assert run_config(paths["root"] / "tiny-x2" / "cycle-001")["engine"]["init_generator"] == str(twin)
    save_safetensors_generator(build_net("srvgg_tiny", scale=2, num_conv=3), twin, task="superres", config={})
    paths["root"] = tmp_path / "fresh-root"
    campaign(paths, "run", "--until", until(600), "--max-segments", "1")
    assert run_config(paths["root"] / "tiny-x2" / "cycle-001")["engine"]["init_generator"] == ""


def test_new_cycle_ends_an_unfinished_cycle_and_starts_the_changed_recipe_from_its_best(photos, tmp_path):
    paths = make_campaign(tmp_path, photos, steps=100_000, shipped_gain=-99.0)
    campaign(paths, "run", "--until", until(20), "--min-segment-minutes", "0.05")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(recipe.read_text().replace("ema_decay = 0.9", "ema_decay = 0.5"))
    refused = campaign(paths, "run", "--until", until(20), "--new-cycle", check=False)
    assert refused.returncode != 0 and "--new-cycle needs --entry" in refused.stderr
    campaign(paths, "run", "--until", until(20), "--min-segment-minutes", "0.05", "--entry", "tiny-x2", "--new-cycle")
    first, second = sorted((paths["root"] / "tiny-x2").glob("cycle-*"))
    assert run_config(first)["engine"]["ema_decay"] == 0.9  # the ended cycle keeps its config
    assert run_config(second)["engine"]["ema_decay"] == 0.5
    assert run_config(second)["engine"]["init_generator"] == str(first / "checkpoints" / "best.pt")
    assert [(s["cycle"], s["from_step"]) for s in ledger(paths)] == [(1, 0), (2, 0)]


def test_an_edited_recipe_ends_the_unfinished_cycle_and_a_comment_does_not(photos, tmp_path):
    paths = make_campaign(tmp_path, photos, steps=100_000, shipped_gain=-99.0)
    recipe = tmp_path / "recipe.toml"
    def run_segment() -> str:
        return campaign(paths, "run", "--until", until(12), "--min-segment-minutes", "0.05", "--recipe-cycles").stdout

    run_segment()
    recipe.write_text("# a note on the recipe\n" + recipe.read_text())
    run_segment()
    assert [(s["cycle"], s["from_step"] > 0) for s in ledger(paths)] == [(1, False), (1, True)]
    recipe.write_text(recipe.read_text().replace("ema_decay = 0.9", "ema_decay = 0.5"))
    log = run_segment()
    assert "the recipe changed since cycle 1 began (engine.ema_decay: 0.9 -> 0.5)" in log
    first, second = sorted((paths["root"] / "tiny-x2").glob("cycle-*"))
    assert run_config(second)["engine"]["ema_decay"] == 0.5
    assert run_config(second)["engine"]["init_generator"] == str(first / "checkpoints" / "best.pt")
    assert [s["cycle"] for s in ledger(paths)] == [1, 1, 2]


def test_start_runs_in_the_background_at_low_priority_and_stop_checkpoints(photos, tmp_path):
    paths = make_campaign(tmp_path, photos, steps=100_000)
    started = campaign(paths, "start", "--until", until(300), "--min-segment-minutes", "0.05")
    try:
        assert "campaign started" in started.stdout
        again = campaign(paths, "start", "--until", until(300), check=False)
        assert again.returncode == 2 and "already runs" in again.stderr
        worker = json.loads((paths["root"] / "worker.json").read_text())["pid"]
        assert int(Path(f"/proc/{worker}/stat").read_text().split(")")[1].split()[16]) == 19
        # Where the kernel schedules sessions as groups, the group's nice is what yields the CPU.
        autogroup = Path(f"/proc/{worker}/autogroup")
        if autogroup.exists():
            assert autogroup.read_text().split()[-1] == "19"
        last = paths["root"] / "tiny-x2" / "cycle-001" / "checkpoints" / "last.pt"
        deadline = time.monotonic() + 120
        while not last.is_file() and time.monotonic() < deadline:
            time.sleep(1)
        assert last.is_file()
        row = next(line for line in campaign(paths, "status").stdout.splitlines() if line.startswith("| tiny-x2 |"))
        assert "(training)" in row
        assert "stopped" in campaign(paths, "stop").stdout
    finally:
        campaign(paths, "stop", check=False)  # a failed assertion leaves no worker training on
    segment, = ledger(paths)
    assert segment["exit_status"] == 0 and segment["to_step"] == torch.load(last, weights_only=False)["step"] > 0


def test_ship_gate_refuses_a_candidate_that_misses_it_and_writes_nothing(deadline_run, tmp_path):
    gated = dict(deadline_run, queue=tmp_path / "queue.toml")
    gated["queue"].write_text(deadline_run["queue"].read_text() + 'ship_gate = ["psnr_y_gain >= 99"]\n')
    before = {p.name: p.read_bytes() for p in deadline_run["weights"].iterdir()}, deadline_run["readme"].read_text()
    result = campaign(gated, "ship", "tiny-x2", check=False)
    assert result.returncode == 1 and "ship gate: psnr_y_gain >= 99 (it has" in result.stdout
    assert ({p.name: p.read_bytes() for p in deadline_run["weights"].iterdir()}, deadline_run["readme"].read_text()) == before


def test_a_gate_bounded_by_the_shipped_figure_refuses_a_candidate_worse_on_that_metric(deadline_run, tmp_path):
    """The candidate beats the shipped psnr_y_gain (-99) but not the shipped model's psnr_y:
    a gain on one metric paid for with a loss on another does not ship."""
    gated = dict(deadline_run, queue=tmp_path / "queue.toml")
    gated["queue"].write_text(deadline_run["queue"].read_text() + 'ship_gate = ["psnr_y >= shipped"]\n')
    manifest_path = deadline_run["weights"] / "manifest.json"
    original = manifest_path.read_text()
    manifest = json.loads(original)
    next(m for m in manifest["models"] if m["name"] == "tiny-x2")["metrics"]["psnr_y"] = 99.0
    manifest_path.write_text(json.dumps(manifest))
    try:
        before = {p.name: p.read_bytes() for p in deadline_run["weights"].iterdir()}, deadline_run["readme"].read_text()
        result = campaign(gated, "ship", "tiny-x2", check=False)
        assert result.returncode == 1 and "ship gate: psnr_y >= shipped (99) (it has" in result.stdout
        assert ({p.name: p.read_bytes() for p in deadline_run["weights"].iterdir()}, deadline_run["readme"].read_text()) == before
    finally:
        manifest_path.write_text(original)


def with_companion(paths: dict[str, Path], folder: Path, companion_gain: float) -> dict[str, Path]:
    """The tiny entry with a companion model `tiny-x2-twin` shipped at `companion_gain` (as
    CycleGAN's F ships beside G from one run)."""
    twin = dict(paths, queue=folder / "queue.toml")
    twin["queue"].write_text(
        paths["queue"].read_text()
        + '[entry.companion]\nname = "tiny-x2-twin"\nreadme_row = "| {{name}} | twin {{metrics.psnr_y:.2f}} dB |"\n'
    )
    manifest = json.loads((paths["weights"] / "manifest.json").read_text())
    manifest["models"] = [m for m in manifest["models"] if m["name"] != "tiny-x2-twin"]
    manifest["models"].append({"name": "tiny-x2-twin", "task": "superres", "file": "tiny-x2-twin.onnx",
                               "card": "tiny-x2-twin.md", "metrics": {"psnr_y_gain": companion_gain}})
    (paths["weights"] / "manifest.json").write_text(json.dumps(manifest))
    paths["readme"].write_text(paths["readme"].read_text() + "| tiny-x2-twin | old |\n")
    return twin


def test_a_companion_ships_with_its_entry_only_when_both_beat_their_shipped_figures(deadline_run, tmp_path):
    manifest = json.loads((deadline_run["weights"] / "manifest.json").read_text())
    manifest["models"][0]["metrics"]["psnr_y_gain"] = -99.0
    (deadline_run["weights"] / "manifest.json").write_text(json.dumps(manifest))
    twin = with_companion(deadline_run, tmp_path, companion_gain=99.0)
    status = campaign(twin, "status").stdout
    assert "| tiny-x2-twin (trains with tiny-x2) |" in status

    before = {p.name: p.read_bytes() for p in deadline_run["weights"].iterdir()}
    refused = campaign(twin, "ship", "tiny-x2-twin", check=False)  # a companion's name ships its entry
    assert refused.returncode == 1 and "tiny-x2-twin psnr_y_gain" in refused.stdout
    assert {p.name: p.read_bytes() for p in deadline_run["weights"].iterdir()} == before

    twin = with_companion(deadline_run, tmp_path, companion_gain=-99.0)
    campaign(twin, "ship", "tiny-x2")
    models = {m["name"]: m for m in json.loads((deadline_run["weights"] / "manifest.json").read_text())["models"]}
    assert models["tiny-x2-twin"]["metrics"]["psnr_y_gain"] == models["tiny-x2"]["metrics"]["psnr_y_gain"] > -99
    assert (deadline_run["weights"] / "tiny-x2-twin.onnx").is_file()
    assert "# tiny-x2-twin" in (deadline_run["weights"] / "tiny-x2-twin.md").read_text()
    readme = deadline_run["readme"].read_text()
    assert f"| tiny-x2-twin | twin {models['tiny-x2']['metrics']['psnr_y']:.2f} dB |" in readme


def test_queue_refuses_a_companion_that_would_train_differently(photos, tmp_path):
    paths = make_campaign(tmp_path, photos, steps=4)
    paths["queue"].write_text(paths["queue"].read_text() + '[entry.companion]\nname = "b"\nrecipe = "other.toml"\n')
    result = campaign(paths, "status", check=False)
    assert result.returncode == 2 and "companion key recipe" in result.stderr


def test_ship_picks_the_best_checkpoint_that_meets_the_gates_its_validation_measured(tmp_path, monkeypatch):
    """Cycle 1 ranks best on the entry's metric but its validation fails a ship gate; cycle 2
    passes: cycle 2's checkpoint is the one to ship. A gate on a figure only measured at ship
    time (FID) does not decide."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import campaign as campaign_module

    folder = tmp_path / "entry"
    validations = {
        "cycle-001": {"degraded_vgg_distance": 0.85, "vgg_distance": 0.47},
        "cycle-002": {"degraded_vgg_distance": 0.90, "vgg_distance": 0.37},
        "cycle-003": {"degraded_vgg_distance": 0.91, "vgg_distance": 0.36},
    }
    for cycle, metrics in validations.items():
        (folder / cycle / "checkpoints").mkdir(parents=True)
        torch.save({"step": 1000, "metrics": metrics}, folder / cycle / "checkpoints" / "best.pt")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("[engine]\nsteps = 4\n")
    entry = campaign_module.Entry(name="real", task="superres", recipe=recipe, data={}, metric="degraded_vgg_distance", goal="min",
                                  ship_gate=["degraded_vgg_distance <= 0.92", "vgg_distance <= 0.43", "fid <= 10"])
    assert campaign_module.best_checkpoint(entry, folder) == (folder / "cycle-002" / "checkpoints" / "best.pt", 0.90)
    entry.ship_gate = ["vgg_distance <= 0.30"]  # none passes: the best by the metric, for ship to refuse
    assert campaign_module.best_checkpoint(entry, folder) == (folder / "cycle-001" / "checkpoints" / "best.pt", 0.85)
    # Bounded by the shipped model's figure: cycle 3 is the best no worse than it on vgg_distance.
    weights = tmp_path / "weights"
    weights.mkdir()
    shipped = {"name": "real", "metrics": {"degraded_vgg_distance": 0.95, "vgg_distance": 0.3600}}
    (weights / "manifest.json").write_text(json.dumps({"models": [shipped]}))
    entry.ship_gate = ["vgg_distance <= shipped"]
    assert campaign_module.best_checkpoint(entry, folder, weights) == (folder / "cycle-003" / "checkpoints" / "best.pt", 0.91)
    # Where no model has shipped yet, or it lacks the figure, the gate holds.
    assert campaign_module.best_checkpoint(entry, folder) == (folder / "cycle-001" / "checkpoints" / "best.pt", 0.85)
    del shipped["metrics"]["vgg_distance"]
    (weights / "manifest.json").write_text(json.dumps({"models": [shipped]}))
    assert campaign_module.best_checkpoint(entry, folder, weights) == (folder / "cycle-001" / "checkpoints" / "best.pt", 0.85)


def test_ship_passes_over_a_cycle_whose_best_pt_fails_the_recipe_s_best_requires_as_they_are_now(tmp_path, monkeypatch):
    """Cycle 1 kept its best.pt (lowest FID) before the recipe required a PSNR; cycle 2's meets
    the condition: cycle 2's is the one to ship, though cycle 1's FID is lower."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import campaign as campaign_module

    folder = tmp_path / "entry"
    validations = {"cycle-001": {"fid": 87.3}, "cycle-002": {"fid": 130.5, "psnr": 14.04}, "cycle-003": {"fid": 120.0, "psnr": 13.5}}
    for cycle, metrics in validations.items():
        (folder / cycle / "checkpoints").mkdir(parents=True)
        torch.save({"step": 2500, "metrics": metrics}, folder / cycle / "checkpoints" / "best.pt")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('[engine]\nbest_metric = "fid"\nbest_goal = "min"\nbest_requires = ["psnr >= 13.81"]\n')
    entry = campaign_module.Entry(name="p2p", task="pix2pix", recipe=recipe, data={}, metric="val.fid", goal="min", train_metric="fid")
    assert campaign_module.best_checkpoint(entry, folder) == (folder / "cycle-002" / "checkpoints" / "best.pt", 130.5)
    recipe.write_text('[engine]\nbest_metric = "fid"\nbest_goal = "min"\n')
    assert campaign_module.best_checkpoint(entry, folder) == (folder / "cycle-001" / "checkpoints" / "best.pt", 87.3)


def test_a_loss_ranked_entry_compares_only_the_cycles_of_the_recipe_as_it_is_now(tmp_path, monkeypatch):
    """Cycle 2 trains with five times the content weight, so its validation loss is larger
    though the model is better: a loss-ranked entry must not pick cycle 1 for it."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import campaign as campaign_module

    folder = tmp_path / "entry"
    for cycle, weight, loss in (("cycle-001", 1.0, 4.5), ("cycle-002", 5.0, 7.0)):
        (folder / cycle / "checkpoints").mkdir(parents=True)
        (folder / cycle / "config.json").write_text(json.dumps({"content_weight": weight, "engine": {"steps": 20000}}))
        torch.save({"step": 2000, "metrics": {"loss": loss}}, folder / cycle / "checkpoints" / "best.pt")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("content_weight = 5.0\n[engine]\nsteps = 20000\n")
    entry = campaign_module.Entry(name="adain", task="adain", recipe=recipe, data={}, metric="val.worse", goal="min",
                                  train_metric="loss")
    assert campaign_module.best_checkpoint(entry, folder) == (folder / "cycle-001" / "checkpoints" / "best.pt", 4.5)
    entry.rank_within_recipe = True
    assert campaign_module.best_checkpoint(entry, folder) == (folder / "cycle-002" / "checkpoints" / "best.pt", 7.0)
    # `status` shows the best figure of the same cycles.
    points = [(0.5, 4.5, 1, 2000), (0.9, 7.0, 2, 2000)]
    assert campaign_module.ranked_points(entry, folder, points) == [(0.9, 7.0, 2, 2000)]
    # Back to the first recipe: only cycle 1 was trained on it.
    recipe.write_text("content_weight = 1.0\n[engine]\nsteps = 20000\n")
    assert campaign_module.best_checkpoint(entry, folder) == (folder / "cycle-001" / "checkpoints" / "best.pt", 4.5)


def test_a_resumed_cycle_takes_the_recipe_s_checkpoint_ranking_as_it_is_now(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import campaign as campaign_module

    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.format(steps=4) + 'best_metric = "vgg_distance"\nbest_goal = "min"\nbest_requires = ["psnr_y >= 20"]\n')
    entry = campaign_module.Entry(name="tiny", task="superres", recipe=recipe, data={}, metric="vgg_distance", goal="min")
    settings = campaign_module.ranking_settings(entry)
    assert settings == ['engine.best_metric="vgg_distance"', 'engine.best_goal="min"', 'engine.best_requires=["psnr_y >= 20"]']
    from img2img.engine.config import resolve_config
    from img2img.tasks.superres import SuperResConfig

    resumed = resolve_config(SuperResConfig, base={"engine": {"best_metric": ""}}, overrides=settings)
    assert (resumed.engine.best_metric, resumed.engine.best_goal, resumed.engine.best_requires) == ("vgg_distance", "min", ["psnr_y >= 20"])


def test_an_evaluated_entry_ships_its_table_and_records_a_baseline_once(deadline_run, tmp_path):
    """evaluate / evaluate_key / evaluate_baselines: the candidate's table of the evaluation's
    JSON becomes the metrics group it is ranked on; a baseline of the same JSON (identity) is
    recorded at the first ship and kept as it was at the next."""
    figures = tmp_path / "figures.json"
    evaluation = tmp_path / "evaluate.py"
    evaluation.write_text(
        "import json, sys\n"
        f"figures = json.load(open({str(figures)!r}))\n"
        "json.dump({'pairs': 2, 'results': {'tiny-x2': {'score': figures['model']},"
        " 'identity': {'score': figures['identity']}}}, open(sys.argv[1], 'w'))\n"
    )
    evaluated = dict(deadline_run, queue=tmp_path / "queue.toml")
    evaluated["queue"].write_text(
        deadline_run["queue"].read_text()
        .replace('metric = "psnr_y_gain"', 'metric = "heldout.score"\ntrain_metric = "psnr_y_gain"')
        + f'evaluate = ["{evaluation}", "{{json}}"]\nevaluate_key = "results.tiny-x2"\n'
        'evaluate_into = "heldout"\nevaluate_baselines = ["results.identity"]\n'
    )

    def ship(model: float, identity: float) -> dict:
        figures.write_text(json.dumps({"model": model, "identity": identity}))
        campaign(evaluated, "ship", "tiny-x2")
        return json.loads((deadline_run["weights"] / "manifest.json").read_text())["models"][0]["metrics"]

    first = ship(model=1.5, identity=0.5)
    assert first["heldout"] == {"score": 1.5} and first["identity"] == {"score": 0.5}
    second = ship(model=2.5, identity=0.7)
    assert second["heldout"] == {"score": 2.5} and second["identity"] == {"score": 0.5}


def test_a_card_s_history_table_always_shows_the_best_point(tmp_path, monkeypatch):
    """Thinned to 8 rows, the table still has the checkpoint that ships (here a dip in FID
    that even spacing would skip), in training order."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import campaign as campaign_module

    values = [90.0, 88.0, 87.0, 86.0, 85.0, 84.5, 84.0, 70.0, 82.5, 82.0, 81.5, 81.0, 80.5, 80.0, 79.5, 79.0]
    points = [(0.1 * index, value, 1, 1000 * index) for index, value in enumerate(values)]
    monkeypatch.setattr(campaign_module, "curve", lambda entry, folder: points)
    entry = campaign_module.Entry(name="p2p", task="pix2pix", recipe=tmp_path, data={}, metric="fid", goal="min")
    rows = campaign_module.history_table(entry, tmp_path).splitlines()[2:]
    steps = [int(row.split("|")[3]) for row in rows]
    assert len(rows) == 8 and 7000 in steps and steps == sorted(steps)
    assert steps[0] == 0 and steps[-1] == 15000


def test_a_picked_entry_trains_its_weight_s_share_and_then_the_pick_is_made_again(tmp_path, monkeypatch):
    """A quarter-weight entry at 0 hours is picked first, but only until its hours per weight
    catch up with the next entry's (at least its part of the quantum), not for every minute left;
    an entry whose shipped figure meets its target is not waited for."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import campaign as campaign_module

    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "manifest.json").write_text(json.dumps({"models": [{"name": "done", "metrics": {"gain": 3.0}}]}))
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("[engine]\nsteps = 4\n")
    root = tmp_path / "root"

    def entry(name: str, weight: float) -> "campaign_module.Entry":
        return campaign_module.Entry(name=name, task="superres", recipe=recipe, data={}, metric="gain", goal="max",
                                     target=2.0, weight=weight)

    def spend(name: str, cpu_hours: float) -> None:
        (root / name).mkdir(parents=True, exist_ok=True)
        campaign_module.Ledger(root / name).add({"cycle": 1, "from_step": 0, "to_step": 1, "cpu_seconds": cpu_hours * 3600})

    style, superres, done = entry("style", 0.25), entry("superres", 1.0), entry("done", 1.0)
    entries = [superres, style, done]
    spend("superres", 8.0)
    spend("done", 0.5)
    assert campaign_module.pick_entry(entries, root, weights, set()) is style
    # 8 CPU hours per weight for a quarter weight: 2 CPU hours, 60 minutes on 2 threads.
    assert campaign_module.share_minutes(style, entries, root, weights, set(), threads=2) == pytest.approx(60.0)
    spend("style", 1.9)
    assert campaign_module.share_minutes(style, entries, root, weights, set(), threads=2) == pytest.approx(
        0.25 * campaign_module.SEGMENT_QUANTUM_MINUTES)
    spend("style", 0.2)
    assert campaign_module.pick_entry(entries, root, weights, set()) is superres
    # Alone in the queue (the other one failed this run): it trains until the deadline.
    assert campaign_module.share_minutes(superres, entries, root, weights, {"style"}, threads=2) == float("inf")


def test_a_new_cycle_starts_from_the_best_cycle_not_a_worse_one_cut_short(tmp_path, monkeypatch):
    """Cycle 2 was ended after a few steps by an edited recipe, below cycle 1's best: cycle 3
    starts from cycle 1's weights. It starts from the previous cycle's best instead where the
    recipe's net cannot start from the best one (another design), or where no cycle ranks against
    the recipe as it is now (a loss-ranked entry whose weights changed)."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import campaign as campaign_module

    folder = tmp_path / "entry"

    def save_cycle(cycle: str, gain: float, **hparams) -> str:
        net = build_net("srvgg_tiny", scale=2, **hparams)
        (folder / cycle / "checkpoints").mkdir(parents=True, exist_ok=True)
        (folder / cycle / "config.json").write_text(json.dumps({"net": "srvgg_tiny", "engine": {"steps": 20}}))
        path = folder / cycle / "checkpoints" / "best.pt"
        generator = {"arch": net.arch, "hparams": net.hparams, "state_dict": net.state_dict()}
        torch.save({"format": CHECKPOINT_FORMAT, "step": 10, "metrics": {"psnr_y_gain": gain}, "generator": generator,
                    "config": {}, "task": "superres"}, path)
        return str(path)

    first, second = save_cycle("cycle-001", 1.14), save_cycle("cycle-002", 1.06)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('net = "srvgg_tiny"\nscale = 2\npatch_size = 16\n[engine]\nsteps = 40\n')
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "manifest.json").write_text(json.dumps({"models": []}))
    entry = campaign_module.Entry(name="x2", task="superres", recipe=recipe, data={}, metric="psnr_y_gain", goal="max")
    assert campaign_module.warm_start(entry, folder, weights) == [f"engine.init_generator={json.dumps(first)}"]
    entry.rank_within_recipe = True
    assert campaign_module.warm_start(entry, folder, weights) == [f"engine.init_generator={json.dumps(second)}"]
    entry.rank_within_recipe = False
    save_cycle("cycle-001", 1.14, num_conv=3)  # a deeper net: nothing the recipe's can start from
    assert campaign_module.warm_start(entry, folder, weights) == [f"engine.init_generator={json.dumps(second)}"]


def test_a_new_cycle_is_fitted_to_its_segment_and_a_cycle_that_would_not_fit_ends(photos, tmp_path):
    """With no step rate measured anywhere, a short first segment (the probe) trains the recipe's
    long cycle and measures it; the rest of the entry's share ends that cycle and trains one of
    the steps that fit it, from that cycle's best weights, to the end of its schedule. The
    repository's ledger has both segments."""
    paths = make_campaign(tmp_path, photos, steps=100_000, shipped_gain=-99.0)
    log = campaign(paths, "run", "--until", until(45), "--min-segment-minutes", "0.05", "--probe-minutes", "0.2",
                   "--max-segments", "1").stdout
    first, second = sorted((paths["root"] / "tiny-x2").glob("cycle-*"))
    fitted = run_config(second)["engine"]["steps"]
    assert run_config(first)["engine"]["steps"] == 100_000 and fitted < 100_000
    assert f"more than the {fitted} this segment fits" in log
    assert run_config(second)["engine"]["init_generator"] == str(first / "checkpoints" / "best.pt")
    segments = json.loads((tmp_path / "queue.ledger.json").read_text())["entries"]["tiny-x2"]
    assert segments == ledger(paths)
    probe, trained = segments
    # 12 s of training (cut there, not at the 45 s deadline), then start-up and the last
    # validation, which the fitting leaves out of the rate and takes from the segment's time
    # (how long those take depends on the machine's load: no bound on them here).
    assert 0 < probe["loop_seconds"] < 20 and probe["loop_seconds"] < probe["wall_seconds"]
    assert probe["recipe"] == trained["recipe"] == import_campaign().recipe_digest(tmp_path / "recipe.toml")
    rate = (probe["to_step"] - probe["from_step"]) / probe["loop_seconds"]
    assert 0 < fitted <= rate * (45 - (probe["wall_seconds"] - probe["loop_seconds"])) * import_campaign().FIT_MARGIN
    assert (trained["cycle"], trained["from_step"], trained["to_step"]) == (2, 0, fitted)


def import_campaign() -> Any:
    """scripts/campaign.py as a module, for its constants and helpers."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import campaign as campaign_module
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return campaign_module


def test_the_step_rate_comes_from_the_latest_long_segments_on_as_many_threads(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import campaign as campaign_module

    def segment(steps: int, wall_seconds: float, threads: int = 2) -> dict:
        return {"from_step": 100, "to_step": 100 + steps, "wall_seconds": wall_seconds, "threads": threads}

    segments = [segment(1000, 100.0), segment(300, 100.0), segment(100, 100.0), segment(40, 1.0),
                segment(9000, 100.0, threads=1), segment(500, 100.0)]
    # The last three of 50 steps or more on 2 threads: 300 + 100 + 500 steps in 300 s.
    assert campaign_module.steps_per_second(segments, threads=2) == pytest.approx(3.0)
    assert campaign_module.steps_per_second(segments[3:4], threads=2) is None
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("[engine]\nsteps = 5000\n[schedule]\nwarmup_steps = 200\n")
    entry = campaign_module.Entry(name="x", task="superres", recipe=recipe, data={}, metric="gain", goal="max")
    assert campaign_module.fitted_steps(entry, 3.0, minutes=10) == int(3.0 * 600 * campaign_module.FIT_MARGIN)
    assert campaign_module.fitted_steps(entry, 3.0, minutes=60) == 5000  # the recipe's cycle is the longest
    assert campaign_module.fitted_steps(entry, 3.0, minutes=1) == 400  # twice the warm-up at least
    assert campaign_module.fitted_steps(entry, None, minutes=10) is None
    assert campaign_module.fitted_steps(entry, 3.0, minutes=float("inf")) is None
    assert campaign_module.fitted_steps(entry, 3.0, minutes=10, overhead=120) == int(3.0 * 480 * campaign_module.FIT_MARGIN)
    assert campaign_module.fitted_settings(entry, 1620) == ["engine.steps=1620"]
    # A linear schedule (constant, then decaying from decay_start) decays over the same half.
    recipe.write_text("[engine]\nsteps = 20000\n[schedule]\nkind = \"linear\"\ndecay_start = 10000\n")
    assert campaign_module.fitted_settings(entry, 1620) == ["engine.steps=1620", "schedule.decay_start=810"]


def test_the_rate_leaves_out_start_up_and_the_last_validation(tmp_path, monkeypatch):
    """A segment's loop time comes from the throughput its trainer logged, from its own records
    only (a resumed cycle's log holds the earlier segments' too); the rate is steps per second
    of the loop, and what the segments spent outside it is taken from the next one's time."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import campaign as campaign_module

    run = tmp_path / "cycle-001"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"engine": {"batch_size": 4}}))
    earlier = json.dumps({"step": 100, "images_per_second": 1.0}) + "\n"
    # Steps 100 -> 300 at 8 images (2 steps) per second, 100 s, then 300 -> 400 at 1 step per
    # second, 100 s; the steps after the last record (to 410) at the logged pace, 300 steps in
    # 200 s: 10 more steps, 6.67 s.
    records = [{"step": 200, "images_per_second": 8.0, "l_g_pix": 0.1}, {"step": 300, "images_per_second": 8.0},
               {"step": 350, "l_g_pix": 0.1}, {"step": 400, "images_per_second": 4.0}]
    (run / "train_log.jsonl").write_text(earlier + "".join(json.dumps(r) + "\n" for r in records))
    assert campaign_module.loop_seconds(run, len(earlier), 100, 410) == pytest.approx(200 + 20 / 3)
    assert campaign_module.loop_seconds(run, len(earlier), 100, 300) == pytest.approx(100.0)
    assert campaign_module.loop_seconds(run, (run / "train_log.jsonl").stat().st_size, 400, 410) is None
    assert campaign_module.loop_seconds(tmp_path / "missing", 0, 0, 10) is None

    def segment(steps: int, wall_seconds: float, loop_seconds: float | None) -> dict:
        return {"from_step": 0, "to_step": steps, "wall_seconds": wall_seconds, "loop_seconds": loop_seconds,
                "threads": 2}

    segments = [segment(600, 400.0, None), segment(1000, 300.0, 250.0), segment(400, 150.0, 100.0)]
    assert campaign_module.steps_per_second(segments, threads=2) == pytest.approx(2000 / 750)
    assert campaign_module.overhead_seconds(segments, threads=2) == pytest.approx(50.0)
    assert campaign_module.overhead_seconds(segments[:1], threads=2) == 0.0

    # A recipe edited to cost more per step: its rate comes from its own segments only (and
    # from those recorded before segments named their recipe, while none names one).
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("# the first recipe\n[engine]\nsteps = 100\n")
    first = campaign_module.recipe_digest(recipe)
    recipe.write_text("# a comment is no new recipe\n[engine]\nsteps = 100\n")
    assert campaign_module.recipe_digest(recipe) == first
    recipe.write_text("[engine]\nsteps = 100\nbatch_size = 64\n")
    second = campaign_module.recipe_digest(recipe)
    assert second != first
    segments = [segment(1000, 100.0, 100.0) | {"recipe": first}, segment(400, 200.0, 200.0) | {"recipe": second}]
    assert campaign_module.steps_per_second(segments, threads=2, recipe=second) == pytest.approx(2.0)
    assert campaign_module.steps_per_second(segments, threads=2, recipe="another") is None
    assert campaign_module.steps_per_second([segment(300, 100.0, 100.0)], threads=2, recipe=second) == pytest.approx(3.0)
    # Once a segment names its recipe, the unnamed ones before it may be any earlier version.
    legacy = [segment(300, 100.0, 100.0), segment(400, 200.0, 200.0) | {"recipe": first}]
    assert campaign_module.steps_per_second(legacy, threads=2, recipe=second) is None
    assert campaign_module.steps_per_second(legacy, threads=2, recipe=first) == pytest.approx(2.0)


def test_the_rate_leaves_out_the_discriminator_s_warm_up(tmp_path, monkeypatch):
    """D alone trains in the first engine.d_warmup_steps, several times faster than a full step:
    a segment that ended within them measures no rate, and a longer one's loop time counts its
    warm-up steps at the pace of the full steps after them."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import campaign as campaign_module

    run = tmp_path / "cycle-001"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"engine": {"batch_size": 4, "d_warmup_steps": 200}}))
    # Steps 0 -> 200 at 5 steps per second (D alone), then 200 -> 400 at 1 step per second.
    records = [{"step": 100, "images_per_second": 20.0}, {"step": 200, "images_per_second": 20.0},
               {"step": 300, "images_per_second": 4.0}, {"step": 400, "images_per_second": 4.0}]
    (run / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert campaign_module.loop_seconds(run, 0, 0, 400) == pytest.approx(400.0)
    assert campaign_module.loop_seconds(run, 0, 0, 200) is None
    # A D that started from trained weights did not warm up: every window counts as it was.
    (run / "config.json").write_text(json.dumps(
        {"engine": {"batch_size": 4, "d_warmup_steps": 200, "init_discriminator": "best.pt"}}))
    assert campaign_module.loop_seconds(run, 0, 0, 400) == pytest.approx(240.0)

    within = {"from_step": 0, "to_step": 150, "wall_seconds": 40.0, "loop_seconds": None, "threads": 2,
              "d_warmup_steps": 200}
    assert campaign_module.steps_per_second([within], threads=2) is None
    past = within | {"to_step": 400, "wall_seconds": 420.0, "loop_seconds": 400.0}
    assert campaign_module.steps_per_second([within, past], threads=2) == pytest.approx(1.0)


def test_a_fresh_machine_picks_by_the_hours_in_the_repository_s_ledger(tmp_path, monkeypatch):
    """The run folders are gone, but the repository's ledger says which entry trained least; a
    segment in both ledgers (a folder that outlived its session) counts once."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import campaign as campaign_module

    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "manifest.json").write_text(json.dumps({"models": []}))
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("[engine]\nsteps = 4\n")
    superres, style = (
        campaign_module.Entry(name=name, task="superres", recipe=recipe, data={}, metric="gain", goal="max",
                              target=2.0, weight=weight)
        for name, weight in (("superres", 1.0), ("style", 0.25))
    )
    entries, root = [style, superres], tmp_path / "root"

    def segment(hours: float, ended: str) -> dict:
        return {"cycle": 1, "from_step": 0, "to_step": 10, "cpu_seconds": hours * 3600, "machine": "CPU A",
                "ended": ended}

    tracked = campaign_module.TrackedLedger(tmp_path / "queue.ledger.json")
    tracked.add("superres", segment(1.0, "2026-01-01T10:00:00"))
    tracked.add("style", segment(0.5, "2026-01-01T11:00:00"))  # 2 hours per weight
    reread = campaign_module.TrackedLedger(tmp_path / "queue.ledger.json")
    assert campaign_module.pick_entry(entries, root, weights, set(), reread) is superres
    assert campaign_module.pick_entry(entries, root, weights, set()) is style  # this root alone: a tie
    (root / "superres").mkdir(parents=True)
    folder_ledger = campaign_module.Ledger(root / "superres")
    folder_ledger.add(segment(1.0, "2026-01-01T10:00:00"))
    assert campaign_module.hours_per_weight(superres, root, reread) == pytest.approx(1.0)
    folder_ledger.add(segment(1.5, "2026-01-02T10:00:00"))
    assert campaign_module.hours_per_weight(superres, root, reread) == pytest.approx(2.5)
    assert campaign_module.pick_entry(entries, root, weights, set(), reread) is style


def test_a_new_cycle_starts_from_the_shipped_twin_while_no_cycle_has_beaten_it(tmp_path, monkeypatch):
    """A fresh folder's first cycle, started from the shipped model, has not caught up with it
    (the high learning rate of a warm restart): the next cycle starts from the shipped weights
    again, not from a worse checkpoint; once a cycle beats them, from that cycle's best."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import campaign as campaign_module

    folder = tmp_path / "entry"
    net = build_net("srvgg_tiny", scale=2)
    best = save_finished_cycle(folder, net)
    weights = tmp_path / "weights"
    weights.mkdir()
    twin = weights / "x2.safetensors"
    save_safetensors_generator(net, twin, task="superres", config={})
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('net = "srvgg_tiny"\nscale = 2\npatch_size = 16\n[engine]\nsteps = 40\n')
    entry = campaign_module.Entry(name="x2", task="superres", recipe=recipe, data={}, metric="psnr_y_gain", goal="max")

    def ship(gain: float) -> None:
        (weights / "manifest.json").write_text(json.dumps(
            {"models": [{"name": "x2", "checkpoint": twin.name, "metrics": {"psnr_y_gain": gain}}]}))

    ship(1.2)
    assert campaign_module.warm_start(entry, folder, weights) == [f"engine.init_generator={json.dumps(str(twin))}"]
    ship(0.8)
    assert campaign_module.warm_start(entry, folder, weights) == [f"engine.init_generator={json.dumps(str(best))}"]


def test_a_missing_file_the_recipe_needs_is_built_and_an_entry_that_cannot_start_is_passed_over(
    tmp_path, monkeypatch,
):
    """A style image the recipe reads (`needs`) is built like a data folder; an entry whose start
    fails (a build error, a missing file) is reported and skipped, and the next one trains."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import campaign as campaign_module

    painting = tmp_path / "styles" / "painting.png"
    build = ["-c", "import pathlib, sys; p = pathlib.Path(sys.argv[1]); p.parent.mkdir(); p.write_text('x')",
             str(painting)]
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("[engine]\nsteps = 4\n")
    styled = campaign_module.Entry(name="styled", task="style", recipe=recipe, data={}, metric="loss", goal="min",
                                   needs=[str(painting)], build=build)
    campaign_module.ensure_data(styled)
    assert painting.read_text() == "x"

    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "manifest.json").write_text(json.dumps({"models": []}))
    broken, working = (
        campaign_module.Entry(name=name, task="superres", recipe=recipe, data={}, metric="gain", goal="max",
                              target=2.0, weight=weight)
        for name, weight in (("broken", 1.0), ("working", 0.5))
    )
    worker = campaign_module.Worker(tmp_path / "root", weights, dt.datetime.now() + dt.timedelta(hours=1), threads=2)
    trained = []

    def train(entry, share):
        trained.append(entry.name)
        if entry.name == "broken":
            campaign_module.fail("data folder data/x is missing and the entry names no build command")
        worker.stopping = True
        return "deadline"

    monkeypatch.setattr(worker, "train", train)
    worker.run([broken, working], only=None)
    assert trained == ["broken", "working"]


def test_a_gan_recipe_after_a_stage_without_d_starts_its_d_from_the_shipped_one(tmp_path, monkeypatch):
    """A recipe that adds a GAN term to a stage that trained no D: the new cycle starts G from
    the last cycle's best and D from the shipped discriminator, where that is the recipe's D."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import campaign as campaign_module

    folder = tmp_path / "entry"
    best = save_finished_cycle(folder, build_net("srvgg_tiny", scale=2))
    weights = tmp_path / "weights"
    weights.mkdir()
    shipped_d = weights / "x2.discriminator.safetensors"
    save_safetensors_generator(build_net("unet_discriminator_tiny"), shipped_d, task="superres", config={})
    (weights / "manifest.json").write_text(json.dumps({"models": [
        {"name": "x2", "discriminator": shipped_d.name, "metrics": {"psnr_y_gain": 0.5}}]}))
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('net = "srvgg_tiny"\nscale = 2\npatch_size = 16\nstage = "gan"\n'
                      'discriminator = "unet_discriminator_tiny"\n[engine]\nsteps = 40\n')
    entry = campaign_module.Entry(name="x2", task="superres", recipe=recipe, data={}, metric="psnr_y_gain", goal="max")
    assert campaign_module.warm_start(entry, folder, weights) == [
        f"engine.init_generator={json.dumps(str(best))}", f"engine.init_discriminator={json.dumps(str(shipped_d))}"]

    # Another D than the shipped one starts from nothing, as does a recipe without a D.
    recipe.write_text(recipe.read_text().replace("unet_discriminator_tiny", "patchgan_tiny"))
    assert campaign_module.warm_start(entry, folder, weights) == [f"engine.init_generator={json.dumps(str(best))}"]
    recipe.write_text(recipe.read_text().replace('stage = "gan"', 'stage = "perceptual"'))
    assert campaign_module.warm_start(entry, folder, weights) == [f"engine.init_generator={json.dumps(str(best))}"]

    # A cycle that trained a D: the next GAN cycle starts D from it; a recipe that drops the GAN
    # term starts G alone (the trainer refuses a D it does not build).
    trained_d = build_net("unet_discriminator_tiny")
    checkpoint = torch.load(best, weights_only=False) | {"discriminator": {
        "arch": trained_d.arch, "hparams": trained_d.hparams, "state_dict": trained_d.state_dict()}}
    torch.save(checkpoint, best)
    assert campaign_module.warm_start(entry, folder, weights) == [f"engine.init_generator={json.dumps(str(best))}"]
    recipe.write_text(recipe.read_text().replace('stage = "perceptual"', 'stage = "gan"').replace(
        "patchgan_tiny", "unet_discriminator_tiny"))
    assert campaign_module.warm_start(entry, folder, weights) == [
        f"engine.init_generator={json.dumps(str(best))}", f"engine.init_discriminator={json.dumps(str(best))}"]


def test_a_cycle_whose_trainer_refuses_its_settings_is_recorded_as_failed(photos, tmp_path):
    paths = make_campaign(tmp_path, photos, steps=4, shipped_gain=-99.0)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(recipe.read_text().replace('net = "srvgg_tiny"', 'net = "srvgg_tiny"\nnet_options = { bogus = 1 }'))
    result = campaign(paths, "run", "--until", until(600), "--max-segments", "1")
    assert "tiny-x2 failed; see" in result.stdout and "could not start" not in result.stdout
    assert [segment["exit_status"] != 0 for segment in ledger(paths)] == [True]
