"""`img2img train TASK ...`: resolves the config, prepares the run folder and starts the trainer."""

from __future__ import annotations

import json
from pathlib import Path

from img2img.engine.config import config_to_dict, resolve_config
from img2img.errors import ConfigError, TrainingError


def train_command(
    *,
    task: str,
    data: Path | None,
    out: Path | None,
    data_a: Path | None = None,
    data_b: Path | None = None,
    config_file: Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    resume: Path | None = None,
    dry_run: bool = False,
    show_progress: bool = True,
) -> dict:
    """Trains `task` on the images in `data` (two-domain tasks: `data_a` and `data_b`) into the
    run folder `out` (or continues `resume`).

    Returns the final validation metrics. With `dry_run`, prints the resolved config and returns
    without touching the disk. Under torchrun each process runs this: it joins the process group,
    trains its share and rank 0 reports.
    """
    from img2img.engine import distributed
    from img2img.engine.device import resolve_device
    from img2img.engine.trainer import Trainer
    from img2img.tasks import TASKS

    try:
        task_class = TASKS.get(task)
    except KeyError as error:
        raise ConfigError(error.args[0]) from None

    base = None
    if resume is not None:
        saved = Path(resume) / "config.json"
        if not saved.is_file():
            raise TrainingError(f"--resume {resume}: no run there (missing {saved}); pass the folder given to --out")
        if out is not None and Path(out).resolve() != Path(resume).resolve():
            raise ConfigError("--resume continues the run in its own folder; drop --out or make it the same folder")
        base = json.loads(saved.read_text())
        run_dir = Path(resume)
    else:
        if out is None:
            raise ConfigError("--out RUN is required: the folder that receives checkpoints, samples and logs")
        run_dir = Path(out)
        if (run_dir / "checkpoints" / "last.pt").exists():
            raise ConfigError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose a new --out")

    for key, folder in (("data", data), ("data_a", data_a), ("data_b", data_b)):
        if folder is not None:
            overrides = [*overrides, f"{key}={json.dumps(str(folder))}"]
    config = resolve_config(task_class.config_class, base=base, config_file=config_file, overrides=overrides)
    task_class.check_data(config)

    if dry_run:
        print(json.dumps(config_to_dict(config), indent=2))
        return {}
    if distributed.launched_by_torchrun():
        device = distributed.setup(config.engine.device, config.engine.dist_timeout_minutes)
    else:
        device = resolve_device(config.engine.device)
    finished = False
    try:
        trainer = Trainer(task_class(config, device), run_dir, resume=resume is not None, show_progress=show_progress)
        metrics = trainer.fit()
        ranks = distributed.world_size()
        finished = True
    except RuntimeError as error:
        if distributed.world_size() > 1 and distributed.lost_another_rank(error):
            raise TrainingError(
                f"process {distributed.rank()} of {distributed.world_size()} stopped because another process of "
                f"this run failed (its error is above) or was killed; fix that and train again (with --resume {run_dir} "
                "if the run has written a checkpoint)"
            ) from None
        raise
    finally:
        distributed.shutdown(finished=finished)
    if trainer.is_main:
        summary = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        where = f"{ranks} processes on {device.type}" if ranks > 1 else str(device)
        print(f"trained {task} to step {trainer.step} on {where} -> {run_dir}  [{summary}]")
    return metrics
