"""The training loop every job runs, in torchtitan's shape: `Trainer.run()` owns resuming, the data position,
metrics, stop signals, the evaluation, logging and checkpoint cadence, skip accounting and the final save's call; a
job (`DistillTrainer`, `AdaptTrainer`) implements its `train_step`, `evaluate`, `loader` and `save_final`.

The step is a pure function of (checkpoint, config): data order comes from a seeded `ResumableSampler` and each
sample's draws from the seed, so a run killed at any moment and resumed from its last checkpoint reaches the same
weights as one never interrupted. A step returns a `StepMetrics` of this rank's sums; the loop adds them over
ranks with the stop flag in one collective.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from liteframe.errors import InputError
from liteframe.train.checkpoint import Checkpointer, ModelState, OptimizerState
from liteframe.train.config import TrainConfig
from liteframe.train.dist import Context, all_sum, gather_objects
from liteframe.train.job import Job, job_setup
from liteframe.train.loader import ResumableSampler, batches
from liteframe.train.metrics import MetricLog, peak_memory_mib
from liteframe.train.output import check_resume, claim, identity, record
from liteframe.train.schedule import scheduler
from liteframe.train.signals import StopFlag, stop_signals
from liteframe.train.state import RNGState, RunResult, TrainState

log = logging.getLogger("liteframe.train")
SKIP_WINDOW = 100  # samples seen before the skipped share is judged (one batch's bad luck is not the data's)


@dataclass
class StepMetrics:
    """One optimiser step on one rank. Every field but `grad_norm` (the same on every rank) is a sum the loop adds
    over ranks; a job's record adds fields of its own."""

    loss_sum: float = 0.0  # the losses of the step, summed
    losses: int = 0  # how many losses `loss_sum` adds up (micro-batches or samples)
    samples: int = 0  # samples trained on
    tokens: int = 0  # tokens trained on (targets for distillation, what the LLM read for adaptation)
    skipped: int = 0  # samples skipped (unreadable or unusable)
    grad_norm: float = 0.0

    def sums(self) -> list[float]:
        return [float(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "grad_norm"]

    def with_sums(self, values: list[float]) -> StepMetrics:
        names = [f for f in dataclasses.fields(self) if f.name != "grad_norm"]
        return dataclasses.replace(self, **{f.name: type(f.default)(v) for f, v in zip(names, values)})

    def record(self, state: TrainState) -> dict[str, float]:
        """The step's part of the metrics line (`state`: the run so far, this step included): the mean loss and the
        gradient norm; a job adds its own, and its speed over the run."""
        return {"loss": self.loss_sum / max(self.losses, 1), "grad_norm": self.grad_norm}


class Trainer:
    """Subclasses build their model, data set and optimiser, then call `super().__init__`, and implement
    `train_step`, `evaluate`, `loader` and `save_final`."""

    kind = "train"  # the job's name: the progress bar, messages
    unit = "samples"  # what `samples` counts, in messages

    def __init__(self, cfg: TrainConfig, ctx: Context, dataset: Dataset, optimizer: torch.optim.Optimizer,
                 model: ModelState, has_eval: bool):
        self.cfg, self.ctx, self.out = cfg, ctx, Path(cfg.output)
        self.micro = micro_batch(cfg, ctx.world)
        self.micro_per_epoch = steps_per_epoch(cfg, ctx.world, len(dataset), self.unit) * cfg.grad_accum
        self.dataset, self.has_eval = dataset, has_eval
        self.sampler = ResumableSampler(dataset, ctx.world, ctx.rank, cfg.seed)
        self.optimizer = optimizer
        self.scheduler = scheduler(optimizer, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.steps)
        self.state = TrainState()
        self.checkpointer = Checkpointer(self.out / "checkpoints", cfg.keep_last, ctx)
        self.stateful = {"model": model, "optim": OptimizerState(model.model, optimizer), "scheduler": self.scheduler,
                         "train": self.state, "rng": RNGState(ctx)}
        self.last: dict[str, Any] = {}  # the last step's metrics line
        self.skips: Counter[str] = Counter()  # this rank's skips by reason
        self._logged: set[tuple[str, str]] = set()

    # -- what a job implements ------------------------------------------------------------------------------------

    def train_step(self, batches: Iterator[Any]) -> StepMetrics:
        """One optimiser step over `grad_accum` micro-batches of `batches` (take them with `loader.next_batch`)."""
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        """Held-out scores (every rank calls it); only called when `has_eval`."""
        raise NotImplementedError

    def loader(self, epoch: int) -> DataLoader:
        """The DataLoader of `epoch` over `self.dataset` with `self.sampler` (positioned by the loop)."""
        raise NotImplementedError

    def save_final(self) -> Path:
        """Write the trained result (collective) -> its folder."""
        raise NotImplementedError

    # -- the loop -------------------------------------------------------------------------------------------------

    def run(self) -> RunResult:
        cfg, ctx, state = self.cfg, self.ctx, self.state
        self.checkpointer.resume(self.stateful)
        metrics = MetricLog(self.out, state.step, cfg.steps, self.kind, ctx.main)
        with stop_signals() as stop, contextlib.closing(metrics):
            if state.step == 0 and self.has_eval:  # the untrained model's scores, to compare against
                metrics.write({"step": 0, **self.evaluate()})
            start = time.perf_counter() - state.elapsed
            while state.step < cfg.steps:
                self.sampler.set_epoch(state.epoch, start=state.position * self.micro)
                with batches(self.loader(state.epoch)) as data:
                    stopped = self._epoch(data, metrics, stop, start)
                if stopped is not None:
                    return stopped
        if not state.tokens:
            raise InputError(f"{self.kind}: the run trained on no tokens ({state.skipped} {self.unit} skipped, "
                             f"{state.samples} used); nothing to save")
        return RunResult(self.save_final(), state.step, self.last)

    def save(self) -> None:
        """A checkpoint of everything in `stateful` at this step (collective)."""
        self.checkpointer.save(self.state.step, self.stateful)

    def skip(self, sample: str, reason: str, detail: str = "") -> None:
        """Count a skipped sample by reason (every time) and log it (once per sample and reason)."""
        self.skips[reason] += 1
        if (sample, reason) not in self._logged:
            self._logged.add((sample, reason))
            log.warning("%s skipped (%s%s); logged once, counted each time", sample, reason,
                        f": {detail}" if detail else "")

    def _epoch(self, data: Iterator[Any], metrics: MetricLog, stop: StopFlag, start: float) -> RunResult | None:
        """Steps until the epoch or the run ends (None), or a stop signal saved and stopped it (its RunResult)."""
        cfg, ctx, state = self.cfg, self.ctx, self.state
        while state.step < cfg.steps and state.position < self.micro_per_epoch:
            step = self.train_step(data)
            *sums, stopping = all_sum(step.sums() + [float(stop.signal is not None)], ctx)
            step = step.with_sums(sums)
            self._advance(step, time.perf_counter() - start)
            self.last = {"step": state.step, "epoch": state.epoch, **step.record(state),
                         "lr": self.scheduler.get_last_lr()[0], "samples": state.samples, "tokens": state.tokens,
                         "skipped": state.skipped, "elapsed_s": state.elapsed,
                         "peak_mem_mib": peak_memory_mib(ctx.device)}
            metrics.step(loss=self.last["loss"])
            self._check_skips()
            evaluate = self.has_eval and (state.step % cfg.eval_every == 0 or state.step == cfg.steps)
            if evaluate:
                self.last.update(self.evaluate())
            if state.step % cfg.log_every == 0 or evaluate or state.step == cfg.steps:
                metrics.write(self.last)
            if stopping:
                self.save()
                received = stop.signal or signal.SIGTERM  # another rank's
                log.warning("stopped by %s at step %d; run the same command to resume", signal.Signals(received).name,
                            state.step)
                return RunResult(None, state.step, self.last, received)
            if state.step % cfg.save_every == 0 or state.step == cfg.steps:
                self.save()
            if state.position == 0:
                break  # epoch finished: a new loader for the next order and draws
        return None

    def _advance(self, step: StepMetrics, elapsed: float) -> None:
        state = self.state
        state.step += 1
        state.position += self.cfg.grad_accum
        state.samples += step.samples
        state.tokens += step.tokens
        state.skipped += step.skipped
        state.elapsed = elapsed
        if state.position == self.micro_per_epoch:
            state.epoch, state.position = state.epoch + 1, 0

    def _check_skips(self) -> None:
        """Stop the run (InputError on every rank) once more than `max_skipped` of the samples met were skipped,
        naming the most frequent reason over all ranks."""
        state, share = self.state, self.cfg.max_skipped
        seen = state.samples + state.skipped
        if seen < min(len(self.dataset), SKIP_WINDOW) or state.skipped <= share * seen:
            return
        reasons = sum(gather_objects(self.skips, self.ctx), Counter())
        reason, count = reasons.most_common(1)[0] if reasons else ("unknown", state.skipped)
        raise InputError(f"{self.kind}: {state.skipped} of {seen} {self.unit} skipped by step {state.step}, more than "
                         f"max_skipped={share:g} of them; the main reason: {reason} ({count}; the log names each "
                         f"one); fix the data, or raise max_skipped")


def launch(cfg: TrainConfig, inputs: dict[str, Any], build: Callable[[Job], Trainer]) -> RunResult:
    """Run a job: set it up, claim its output folder and check it against the run recorded there (before any model
    loads), `build(job)` its trainer, record the run's identity and train. `inputs`: digests of its input folders,
    part of the identity."""
    current = identity(cfg, inputs)
    with job_setup(cfg) as job, claim(cfg.output, f"{cfg.KIND} output", job.ctx) as out:
        for change in check_resume(out, current, cfg.RESUMABLE):
            log.warning("resuming with a changed setting (allowed): %s", change)
        trainer = build(job)
        if job.ctx.main:  # the run starts: the folder is now its
            record(out, cfg, current)
        return trainer.run()


def steps_per_epoch(cfg: TrainConfig, world: int, samples: int, unit: str = "samples") -> int:
    """Optimiser steps in an epoch of `samples` (each rank takes `ceil(samples / world)`, as DistributedSampler
    pads); a data set smaller than one step's batch is an InputError."""
    steps = -(-samples // world) // micro_batch(cfg, world) // cfg.grad_accum
    if not steps:
        raise InputError(f"{cfg.KIND} config: {samples} {unit} are fewer than one step's batch of {cfg.batch_size}")
    return steps


def micro_batch(cfg: TrainConfig, world: int) -> int:
    """Samples per rank and micro-step; the batch must split evenly over ranks and accumulation steps."""
    micro, rest = divmod(cfg.batch_size, world * cfg.grad_accum)
    if rest or not micro:
        raise InputError(f"{cfg.KIND} config: batch_size={cfg.batch_size} must be a multiple of ranks x grad_accum "
                         f"= {world} x {cfg.grad_accum}")
    return micro
