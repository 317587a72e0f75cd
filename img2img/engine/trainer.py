"""The training loop shared by every task: one visible G/D alternation.

Per step t:
  1. batch = task.prepare_batch(data of step t)
  2. fake = G(batch); unless D is still warming up: freeze D, update G on the task's named
     terms (+ historical averaging), step the EMA generator, unfreeze D
  3. update D on the detached fake, then n_critic - 1 more times on fresh batches of step t
  4. every N steps: log scalars, write a sample grid, validate (EMA weights), measure FID/KID
     (EMA weights against the task's real images), checkpoint; best.pt follows the task's
     primary metric, a validation score or FID/KID

Scalars go to TensorBoard, to RUN/{train,validation}_log.jsonl and to RUN/metrics.csv
(`engine.run_log`); at the end of a run the curves are plotted to RUN/plots/*.png
(`img2img plot RUN` redraws them at any time). Samples, validation, FID/KID and best.pt are
`engine.evaluation`.

Checkpoints are written atomically to RUN/checkpoints/last.pt (and best.pt on a new best
validation score); resuming restores step, nets, EMA, optimizers, schedulers and RNG state
(`engine.checkpoint`), and the data stream is a function of the step, so 2 + 2 resumed steps
equal 4 straight ones.

Under torchrun (`img2img.engine.distributed`) each rank trains on its slice of the step's batch
and DDP averages the gradients, so N processes at batch b step like one process at batch N x b;
rank 0 alone logs, samples, validates, measures FID and writes checkpoints, and `last.pt` keeps
every rank's random state so that a multi-process run resumes exactly. With
`engine.accumulate` = k each rank splits its batch into k micro-batches whose gradients add up
before one optimizer step.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from img2img.engine import distributed
from img2img.engine.averaging import HistoricalAverage, ema_model
from img2img.engine.batches import StepBatches, step_generator, step_loader
from img2img.engine.checkpoint import (
    load_checkpoint,
    load_discriminator,
    load_generator,
    restore_training,
    rng_state,
    save_atomic,
    training_checkpoint,
)
from img2img.engine.config import OptimizerConfig, config_to_dict
from img2img.engine.evaluation import TrainingEvaluation
from img2img.engine.run_log import RunLog
from img2img.engine.schedules import build_scheduler
from img2img.engine.task import Task
from img2img.errors import ConfigError, TrainingError


def _detached(fake: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
    """G's output cut from G's graph for the D update: a tensor, or a task's dict of tensors."""
    if isinstance(fake, dict):
        return {name: value.detach() for name, value in fake.items()}
    return fake.detach()


def build_optimizer(net: nn.Module, config: OptimizerConfig, *, fused: bool = False) -> torch.optim.Optimizer:
    """AdamW over the trainable weights; `fused` takes the single-kernel CUDA implementation."""
    return torch.optim.AdamW(
        [p for p in net.parameters() if p.requires_grad],
        lr=config.lr,
        betas=tuple(config.betas),
        weight_decay=config.weight_decay,
        fused=True if fused else None,
    )


def compile_nets(net: nn.Module) -> None:
    """torch.compile, in place, every network inside `net` (the net itself, or the members of a
    pair such as CycleGAN's G and F, which tasks call one by one)."""
    leaves = [
        module
        for module in net.modules()
        if hasattr(module, "arch") and not any(hasattr(child, "arch") for child in module.children())
    ]
    for module in leaves or [net]:
        module.compile()


def split_batch(batch: dict[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    """`batch` cut into `parts` micro-batches along dim 0; tensors of another length (shared
    inputs such as one style image) go to every micro-batch whole."""
    if parts == 1:
        return [batch]
    length = max(value.shape[0] for value in batch.values() if value.ndim > 0)
    if length % parts:
        raise ConfigError(f"a batch of {length} cannot be split into {parts} equal micro-batches")
    size = length // parts
    return [
        {
            name: value[index * size : (index + 1) * size] if value.ndim > 0 and value.shape[0] == length else value
            for name, value in batch.items()
        }
        for index in range(parts)
    ]


class StopSignal:
    """Turns SIGTERM into a request to stop at the end of the current step, with a checkpoint,
    so a scheduler or a background job that is told to stop loses no work. Only the main thread
    can take signals; elsewhere this does nothing."""

    def __init__(self) -> None:
        self.received = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._receive)

    def _receive(self, signum: int, frame: Any) -> None:
        self.received = True

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


class Trainer:
    """Trains `task` into `run_dir`, resuming from its last checkpoint when `resume` is set."""

    def __init__(self, task: Task, run_dir: Path, *, resume: bool = False, show_progress: bool = True) -> None:
        self.task = task
        self.config = task.config
        self.engine = task.config.engine
        self.run_dir = Path(run_dir)
        self.device = task.device
        self.rank, self.ranks = distributed.rank(), distributed.world_size()
        self.is_main = self.rank == 0
        self.show_progress = show_progress and self.is_main
        self.use_bf16 = self.engine.precision == "bf16" or (
            self.engine.precision == "auto" and self.device.type == "cuda"
        )
        self.channels_last = (self.engine.channels_last and self.device.type == "cuda") or (
            self.engine.channels_last_cpu and self.device.type == "cpu"
        )

        torch.manual_seed(self.engine.seed)
        self.G = task.build_generator()
        if self.engine.init_generator and not resume:
            self._init_generator(self.engine.init_generator)
        self.G = self._place(self.G)
        self.D = task.build_discriminator()
        if self.engine.init_discriminator and not resume:
            self._init_discriminator(self.engine.init_discriminator)
        if self.D is not None:
            self.D = self._place(self.D)
        self.G_ema = ema_model(self.G, self.engine.ema_decay) if self.engine.ema_decay > 0 else None
        fused = self.engine.fused_adam and self.device.type == "cuda"
        self.opt_g = build_optimizer(self.G, self.config.optim_g, fused=fused)
        self.sched_g = build_scheduler(self.opt_g, self.config.schedule, self.engine.steps)
        self.opt_d = self.sched_d = None
        if self.D is not None:
            self.opt_d = build_optimizer(self.D, self.config.optim_d, fused=fused)
            self.sched_d = build_scheduler(self.opt_d, self.config.schedule, self.engine.steps)
        self.hist_g = self.hist_d = None
        if self.engine.historical_averaging > 0:
            self.hist_g = HistoricalAverage(self.G)
            self.hist_d = HistoricalAverage(self.D) if self.D is not None else None

        self.log = RunLog(self.run_dir)
        self.evaluation = TrainingEvaluation(
            task, self.log, save_best=lambda metrics: self.save_checkpoint("best", metrics=metrics)
        )

        self.step = 0
        if resume:
            restore_training(self, load_checkpoint(self.checkpoint_path("last")))
        if self.engine.compile:
            compile_nets(self.G)
            # AOTAutograd cannot differentiate a compiled net twice, which the gradient
            # penalties (R1, WGAN-GP, DRAGAN) do through D: with one, D stays eager.
            gan = getattr(self.config, "gan", None)
            if self.D is not None and (gan is None or gan.penalty == "none"):
                compile_nets(self.D)
        # Built after the restore: DDP starts by copying rank 0's weights to every rank.
        unused = self.engine.find_unused_parameters
        self.run_g = distributed.NetRunner(self.G, self.device, find_unused_parameters=unused)
        self.run_d = None
        if self.D is not None:
            self.run_d = distributed.NetRunner(self.D, self.device, find_unused_parameters=unused)

    # ------------------------------------------------------------------ helpers
    def _init_generator(self, source: str) -> None:
        """Starts G from trained weights (e.g. the PSNR stage before GAN fine-tuning), or from a
        narrower net of the same design where G can be widened from one (`widen_from`)."""
        pretrained = load_generator(source).net
        if (pretrained.arch, pretrained.hparams) == (self.G.arch, self.G.hparams):
            self.G.load_state_dict(pretrained.state_dict())
            return
        mismatch = (
            f"engine.init_generator {source} holds a {pretrained.arch} {pretrained.hparams}, "
            f"but this run builds a {self.G.arch} {self.G.hparams}"
        )
        if pretrained.arch != self.G.arch or not hasattr(self.G, "widen_from"):
            raise ConfigError(f"{mismatch}; make the net settings match")
        try:
            self.G.widen_from(pretrained)
        except ValueError as error:
            raise ConfigError(f"{mismatch}, and {error}; make the net settings match") from None

    def _init_discriminator(self, source: str) -> None:
        """Starts D from trained weights, so a resumed GAN recipe keeps its critic."""
        if self.D is None:
            raise ConfigError(f"engine.init_discriminator is set, but task {self.task.name} trains no discriminator here")
        pretrained = load_discriminator(source)
        if (pretrained.arch, pretrained.hparams) != (self.D.arch, self.D.hparams):
            raise ConfigError(
                f"engine.init_discriminator {source} holds a {pretrained.arch} {pretrained.hparams}, "
                f"but this run builds a {self.D.arch} {self.D.hparams}; make the discriminator settings match"
            )
        self.D.load_state_dict(pretrained.state_dict())

    def _place(self, net: nn.Module) -> nn.Module:
        if self.engine.sync_batchnorm and self.ranks > 1:
            net = distributed.convert_sync_batchnorm(net, self.device)
        net = net.to(self.device)
        return net.to(memory_format=torch.channels_last) if self.channels_last else net

    def _autocast(self):
        if self.use_bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def checkpoint_path(self, which: str) -> Path:
        return self.run_dir / "checkpoints" / f"{which}.pt"

    @property
    def eval_generator(self) -> nn.Module:
        """The weights that are validated, sampled and exported: the EMA generator if kept."""
        return self.G_ema.module if self.G_ema is not None else self.G

    @property
    def best(self) -> dict[str, Any]:
        """{"metric", "value", "step"} of best.pt so far."""
        return self.evaluation.best

    @best.setter
    def best(self, best: dict[str, Any]) -> None:
        self.evaluation.best = best

    def _evaluate(self, measure: Any) -> dict[str, Any]:
        """`measure(eval_generator, step)` on rank 0, G back in training mode after; {} elsewhere."""
        if not self.is_main:
            return {}
        result = measure(self.eval_generator, self.step)
        self.G.train()
        return result

    def _check_finite(self, terms: dict[str, torch.Tensor], who: str) -> None:
        """Stops training on a non-finite loss term; under torchrun every rank stops together,
        whichever rank saw it, so no rank is left waiting for the others' gradients."""
        bad = {name: value.item() for name, value in terms.items() if not torch.isfinite(value).all()}
        if distributed.any_rank(bool(bad), self.device):
            last = self.checkpoint_path("last")
            kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
            where = f" on rank {self.rank}" if bad and self.ranks > 1 else (" on another rank" if not bad else "")
            raise TrainingError(
                f"non-finite {who} loss at step {self.step}{where} ({bad or 'see that rank'}); training stopped and "
                f"{kept}. Lower the learning rate, enable engine.grad_clip, or use engine.precision=fp32."
            )

    def _micro_batches(self, draw: Any, generator: torch.Generator) -> list[dict[str, torch.Tensor]]:
        """The task's prepared batch of one draw, cut into `engine.accumulate` micro-batches."""
        batch = self.task.prepare_batch(draw, generator)
        if self.channels_last:
            batch = {
                k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v for k, v in batch.items()
            }
        return split_batch(batch, self.engine.accumulate)

    def _update(self, net, run, optimizer, scheduler, function, inputs, who) -> tuple[list[Any], dict[str, torch.Tensor]]:
        """One optimizer step of `net` on the loss terms `function(net, *args)` returns, as
        (output, terms), for each micro-batch's `args` in `inputs`: each backward pass adds
        1/len(inputs) of the summed terms, and only the last one averages gradients over ranks.
        Returns the outputs and the terms averaged over the micro-batches."""
        optimizer.zero_grad(set_to_none=True)
        outputs, terms_mean = [], {}
        for index, args in enumerate(inputs):
            last = index == len(inputs) - 1
            with contextlib.nullcontext() if last else run.accumulating():
                with self._autocast():
                    output, terms = run(function, *args)
                self._check_finite(terms, who)
                (sum(terms.values()) / len(inputs)).backward()
            outputs.append(output)
            for name, value in terms.items():
                terms_mean[name] = terms_mean.get(name, 0.0) + value.detach() / len(inputs)
        total = sum(terms_mean.values())
        if self.engine.grad_clip > 0:
            terms_mean[f"grad_norm_{who}"] = nn.utils.clip_grad_norm_(net.parameters(), self.engine.grad_clip)
        optimizer.step()
        scheduler.step()
        terms_mean[f"l_{who[0]}_total"] = total
        return outputs, terms_mean

    # ------------------------------------------------------------------ one step
    def _generator_terms(self, net: nn.Module, batch: dict[str, torch.Tensor]):
        fake = self.task.generate(net, batch)
        terms = self.task.generator_loss(batch, fake, self.D)
        if self.hist_g is not None:
            terms["l_g_hist"] = self.engine.historical_averaging * self.hist_g.penalty()
        return _detached(fake), terms

    def train_step(self, draws: list[Any]) -> dict[str, float]:
        """One G update (unless D is warming up) and n_critic D updates; returns logged scalars
        (under torchrun, averaged over the ranks)."""
        generator = step_generator(self.engine.seed, self.step, self.device, self.rank)
        micro_batches = self._micro_batches(draws[0], generator)
        train_g = self.D is None or self.step >= self.engine.discriminator_warmup_steps
        logs: dict[str, torch.Tensor] = {}

        self.G.train()
        if train_g:
            if self.D is not None:
                self.D.requires_grad_(False)  # G's loss goes through D without training it
            fakes, g_terms = self._update(
                self.G, self.run_g, self.opt_g, self.sched_g, self._generator_terms,
                [(micro,) for micro in micro_batches], "generator",
            )
            logs.update(g_terms)
            if self.G_ema is not None and self.step >= self.engine.ema_start:
                self.G_ema.update_parameters(self.G)
            if self.hist_g is not None:
                self.hist_g.update()
            if self.D is not None:
                self.D.requires_grad_(True)
        else:
            with torch.no_grad(), self._autocast():
                fakes = [_detached(self.task.generate(self.G, micro)) for micro in micro_batches]

        if self.D is not None:
            self.D.train()
            for critic_index in range(self.engine.n_critic):
                if critic_index > 0:  # further critic updates see fresh data of this step
                    micro_batches = self._micro_batches(draws[critic_index], generator)
                    with torch.no_grad(), self._autocast():
                        fakes = [_detached(self.task.generate(self.G, micro)) for micro in micro_batches]
                update_index = self.step * self.engine.n_critic + critic_index
                regularize = update_index % self.engine.penalty_interval == 0

                def discriminator_terms(net, batch, fake):
                    terms = self.task.discriminator_loss(batch, fake, net, regularize=regularize)
                    if self.hist_d is not None:
                        terms["l_d_hist"] = self.engine.historical_averaging * self.hist_d.penalty()
                    return None, terms

                _, d_terms = self._update(
                    self.D, self.run_d, self.opt_d, self.sched_d, discriminator_terms,
                    list(zip(micro_batches, fakes)), "discriminator",
                )
                logs.update(d_terms)
                self.task.after_discriminator_step(self.D)
                if self.hist_d is not None:
                    self.hist_d.update()
        self.step += 1
        names = sorted(logs)
        values = distributed.mean_across_ranks(torch.stack([torch.as_tensor(logs[n]).float().to(self.device) for n in names]))
        return dict(zip(names, values.tolist())) | self.task.train_scalars()

    # ------------------------------------------------------------------ the loop
    def fit(self, stop_at: int | None = None) -> dict[str, Any]:
        """Trains until `engine.steps`, the time limit or step `stop_at` (an interruption: the run
        can be resumed with the same schedule); returns the last validation metrics (on rank 0;
        other ranks return {})."""
        engine = self.engine
        stop = min(engine.steps, stop_at) if stop_at is not None else engine.steps
        if self.is_main:
            self.log.open(config_to_dict(self.config))
        batches = StepBatches(
            self.task.train_dataset(),
            batch_size=engine.batch_size * engine.accumulate,
            seed=engine.seed,
            draws=engine.n_critic if self.D is not None else 1,
            rank=self.rank,
            ranks=self.ranks,
        )
        loader = step_loader(
            batches,
            start=self.step,
            stop=stop,
            num_workers=engine.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        images_per_step = engine.batch_size * engine.accumulate * self.ranks
        started = time.monotonic()
        window_start, window_steps, window_wait = time.monotonic(), 0, 0.0
        last_metrics: dict[str, Any] = {}
        validated_at = None  # the step of the last validation, the same on every rank
        # disable=None: no bar where stderr is not a terminal (a log file), where its carriage
        # returns would pile up as one endless line.
        progress = tqdm(
            total=engine.steps, initial=self.step, disable=None if self.show_progress else True,
            dynamic_ncols=True, unit="step",
        )
        batches_ahead = iter(loader)
        stop_signal = StopSignal()
        try:
            while True:
                # Time blocked on the loader: a share near 0 means the data keeps up with the nets.
                waiting_since = time.monotonic()
                draws = next(batches_ahead, None)
                window_wait += time.monotonic() - waiting_since
                if draws is None:
                    break
                logs = self.train_step(draws)
                window_steps += 1
                progress.update(1)
                if self.step % engine.log_every == 0 or self.step == engine.steps:
                    elapsed = time.monotonic() - window_start
                    logs["images_per_second"] = window_steps * images_per_step / max(elapsed, 1e-9)
                    logs["data_wait_share"] = window_wait / max(elapsed, 1e-9)
                    logs["lr_g"] = self.sched_g.get_last_lr()[0]
                    if self.is_main:
                        self.log.scalars("train", self.step, logs)
                    progress.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k.startswith("l_")})
                    window_start, window_steps, window_wait = time.monotonic(), 0, 0.0
                if engine.sample_every and self.step % engine.sample_every == 0:
                    self._evaluate(self.evaluation.write_samples)
                if engine.validate_every and self.step % engine.validate_every == 0:
                    last_metrics = self._evaluate(self.evaluation.validate)
                    validated_at = self.step
                if engine.fid_every and self.step % engine.fid_every == 0:
                    last_metrics.update(self._evaluate(self.evaluation.measure_distribution))
                elapsed_minutes = (time.monotonic() - started) / 60
                timed_out = 0 < engine.time_limit_minutes < elapsed_minutes
                out_of_time = distributed.any_rank(timed_out or stop_signal.received, self.device)
                if self.step % engine.checkpoint_every == 0 or self.step == stop or out_of_time:
                    self.save_last_checkpoint()
                if out_of_time:
                    reason = f"time limit of {engine.time_limit_minutes} min" if timed_out else "stop signal"
                    progress.write(f"{reason} reached at step {self.step}; the checkpoint is saved")
                    break
        finally:
            stop_signal.restore()
            progress.close()
            self.log.close()
        if validated_at != self.step:  # the last step was not a validation step
            last_metrics = self._evaluate(self.evaluation.validate)
            if engine.fid_every:
                last_metrics.update(self._evaluate(self.evaluation.measure_distribution))
            self.save_last_checkpoint()
        if self.is_main:
            self.log.plot_curves()
        return last_metrics

    # ------------------------------------------------------------------ checkpoints
    def save_last_checkpoint(self) -> None:
        """Writes last.pt; under torchrun every rank must call it (it gathers each rank's random
        state and task state, e.g. CycleGAN's image pools, for an exact resume) and rank 0 writes."""
        rank_states = distributed.gather_objects({"rng": rng_state(), "task_state": self.task.state_dict()})
        if self.is_main:
            self.save_checkpoint("last", rank_states=rank_states if self.ranks > 1 else None)

    def save_checkpoint(
        self, which: str, metrics: dict[str, float] | None = None, rank_states: list[dict[str, Any]] | None = None
    ) -> Path:
        """Writes RUN/checkpoints/`which`.pt from this process (rank 0 under torchrun)."""
        path = self.checkpoint_path(which)
        save_atomic(training_checkpoint(self, metrics=metrics, rank_states=rank_states), path)
        return path
