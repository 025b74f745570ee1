"""Compressed Token Distillation (SPEC 5): the training job behind `liteframe distill`.

One process per device under torchrun (DDP, or FSDP2 with `parallel: fsdp`), or a plain single process. The step
is a pure function of (checkpoint, config): data order comes from a seeded DistributedSampler, clips from
(seed, view, video), so a run killed at any moment and resumed from its last checkpoint reaches the same weights
as one that was never interrupted. Set-up, checkpoints, metrics and the schedule are the shared training core
(`job`, `checkpoint`, `state`, `metrics`, `schedule`); this module is the CTD model and its loop.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from liteframe.compression import Compression
from liteframe.errors import InputError
from liteframe.models import LiteFrameConfig, LiteFrameEncoder, Teacher, student_for
from liteframe.reduce import wap
from liteframe.reduce.pool import avg_pool
from liteframe.train.checkpoint import Checkpointer, ModelState, OptimizerState
from liteframe.train.config import DistillConfig, save_config
from liteframe.train.data import ClipDataset, ManifestEntry, ResumableSampler, collate, read_manifest, worker_init
from liteframe.train.dist import all_sum, barrier
from liteframe.train.job import Job, job_setup, sigterm_flag
from liteframe.train.loss import RTDDecoder, clip_outliers, ctd_loss
from liteframe.train.metrics import MetricLog, peak_memory_mib
from liteframe.train.schedule import scheduler
from liteframe.train.state import ConfigState, RNGState, RunResult, TrainState
from liteframe.train.targets import CachedTargets, TargetCache, cache_fingerprint, teacher_targets, wap_targets
from liteframe.video.decode import VideoDecodeError

log = logging.getLogger("liteframe.train")


class DistillModel(nn.Module):
    """The trained parts: `pixels (B, T, 3, S, S) -> (student tokens (B, T/t*H'*W', C), dense tokens
    (B, T*H*W, C) or None)`. The dense tokens are RTD's reconstruction, or the output of a student that does not
    compress (the `none` variant: distillation without compression), whose compressed tokens are then WAP of its
    own output with the run's `block`, as the teacher's targets are."""

    def __init__(self, student: LiteFrameEncoder, decoder: RTDDecoder | None = None,
                 block: tuple[int, int, int] | None = None):
        super().__init__()
        self.student, self.decoder = student, decoder
        self.block = None if student.config.strides else block

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        grid = self.student(pixels)
        if self.block is not None:
            return wap(grid.patches, grid.queries, self.block, check=False).flatten(1, 3), grid.tokens()
        dense = None if self.decoder is None else self.decoder(grid.patches).flatten(1, 3)
        return grid.tokens(), dense

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        decoder = [] if self.decoder is None else self.decoder.optimizer_groups(weight_decay)
        return self.student.optimizer_groups(weight_decay) + decoder


def distill(cfg: DistillConfig) -> RunResult:
    """Train a LiteFrame student by CTD as `cfg` says; resumes from the newest checkpoint in `cfg.output`."""
    for key in ("teacher", "manifest"):
        if not getattr(cfg, key):
            raise InputError(f"distill config: `{key}` is required")
    entries = read_manifest(cfg.manifest)
    held_out = read_manifest(cfg.eval_manifest) if cfg.eval_manifest else []
    with job_setup(cfg) as job:
        return Trainer(cfg, job, entries, held_out).run()


def student_config(cfg: DistillConfig, teacher: Teacher, compression: Compression) -> LiteFrameConfig:
    """The LiteFrame config to crop from `teacher` (`liteframe.models.student_for`): the named config
    `cfg.student["name"]`, or without a name the teacher's by the paper's ratios, with the other `cfg.student`
    keys over it, at the run's input size and compression; refused unless its strides give the compression's block
    (the `none` variant never downsamples)."""
    overrides = dict(cfg.student)
    name = overrides.pop("name", None)
    try:
        config = student_for(teacher.vision, name, **{"image": cfg.image_size or teacher.image_size, **overrides,
                                                      "compression": compression})
    except (TypeError, ValueError) as err:
        raise InputError(f"distill config: student {cfg.student}: {err}") from err
    if config.strides and math.prod(config.block) != compression.ratio:
        raise InputError(f"distill config: student {cfg.student} (variant {config.temporal!r}) downsamples by "
                         f"{config.block}, but compression={compression.ratio} needs {compression.ratio}x")
    return config


class Trainer:
    def __init__(self, cfg: DistillConfig, job: Job, entries: list[ManifestEntry], held_out: list[ManifestEntry]):
        self.cfg, self.job, self.ctx = cfg, job, job.ctx
        self.out = Path(cfg.output)
        micro, rest = divmod(cfg.batch_size, job.ctx.world * cfg.grad_accum)
        if rest or not micro:
            raise InputError(f"distill config: batch_size={cfg.batch_size} must be a multiple of ranks x grad_accum "
                             f"= {job.ctx.world} x {cfg.grad_accum}")
        self.micro = micro
        self.shard_eval = cfg.parallel == "ddp"

        teacher, device = job.teacher, job.device
        self.student_config = student_config(cfg, teacher, job.compression)
        if self.student_config.strides:  # WAP targets over the student's own block: spatial16's is (1, 4, 4)
            job.compression = Compression(self.student_config.block)
        student = LiteFrameEncoder.from_teacher(teacher, self.student_config).to(device)
        decoder = RTDDecoder(teacher.hidden_size, job.compression.block).to(device) if cfg.loss == "rtd" else None
        self.model = DistillModel(student, decoder, job.compression.block)
        # dense targets: RTD's, or those of a student that does not compress; the target cache holds neither
        self.dense = cfg.loss == "rtd" or not self.student_config.strides
        if self.dense and cfg.target_cache:
            raise InputError("distill config: a student trained on dense teacher tokens (loss=rtd, or the `none` "
                             "variant) needs them from the teacher: leave target_cache empty")
        side = job.size // self.student_config.patch
        self.tokens_per_clip = job.compression.grid_tokens(cfg.frames, side, side)

        clips = ClipDataset(entries, cfg.frames, job.size, cfg.fps, cfg.seed)
        self.dataset = CachedTargets(clips, TargetCache(cfg.target_cache, cache_fingerprint(job, cfg, entries))
                                     ) if cfg.target_cache else clips
        self.sampler = ResumableSampler(self.dataset, job.ctx.world, job.ctx.rank, cfg.seed)
        self.micro_per_epoch = self.sampler.num_samples // micro // cfg.grad_accum * cfg.grad_accum
        if not self.micro_per_epoch:
            raise InputError(f"{cfg.manifest}: {len(entries)} videos are fewer than one step's batch of "
                             f"{cfg.batch_size} clips")
        self.evals: dict[str, dict[str, Any]] = {}
        if held_out:
            keys = [(i, view) for view in range(cfg.eval_views) for i in range(len(held_out))]
            self.evals["eval"] = self._eval_set(ClipDataset(held_out, cfg.frames, job.size, cfg.fps, cfg.seed + 1),
                                                keys, "held-out")
            # training clips the first epoch trains on, as many as held-out ones: "cannot fit" vs "does not
            # generalise"
            picks = torch.linspace(0, len(entries) - 1, min(len(keys), len(entries))).round().long().unique()
            self.evals["train"] = self._eval_set(clips, [(int(i), 0) for i in picks], "training")
        if cfg.target_cache:
            job.teacher = None  # cached targets: the teacher's work is done (eval targets are computed above)

        if cfg.activation_checkpointing:
            student.set_grad_checkpointing(True)
        self.wrapped = self._wrap(self.model)
        self.optimizer = torch.optim.AdamW(self.model.optimizer_groups(cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
        self.scheduler = scheduler(self.optimizer, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.steps)
        self.state = TrainState()
        self.checkpointer = Checkpointer(self.out / "checkpoints", cfg.keep_last, job.ctx)
        self.stateful = {"model": ModelState(self.wrapped), "optim": OptimizerState(self.wrapped, self.optimizer),
                         "scheduler": self.scheduler, "train": self.state, "rng": RNGState(job.ctx),
                         "config": ConfigState(cfg.to_dict())}
        self.warned: set[str] = set()  # videos already named in the log; every skip is still counted

    # -- set-up -------------------------------------------------------------------------------------------------

    def _wrap(self, model: DistillModel) -> nn.Module:
        if self.cfg.parallel == "fsdp":
            from torch.distributed.fsdp import fully_shard

            if self.ctx.world > 1:
                for block in model.student.blocks:
                    fully_shard(block)
                fully_shard(model)
            wrapped = model
        elif self.ctx.world > 1:
            # static_graph: blocks after the last temporal downsampling see one frame and skip their mixer, the
            # same parameters every step, which DDP must know to not wait for their gradients.
            wrapped = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.ctx.device.index] if self.ctx.device.type == "cuda" else None,
                static_graph=True)
        else:
            wrapped = model
        if self.cfg.compile:
            wrapped.compile()
        return wrapped

    @torch.no_grad()
    def _eval_set(self, data: ClipDataset, keys: list[tuple[int, int]], what: str) -> dict[str, Any]:
        """Clips `(video, view)`, their targets (through `wap_targets`, as in training) and the references: average
        pooling of the teacher and the untrained (cropped) student, computed once. Under DDP each rank takes a
        share; under FSDP every rank takes all (each forward is a collective there, so every rank must run the
        same number)."""
        share = keys[self.ctx.rank::self.ctx.world] if self.shard_eval else keys
        pixels, failed = [], []
        for i, view in share:
            try:
                pixels.append(data.load(i, view)[0])
            except VideoDecodeError as err:
                failed.append(str(err))
        if not all_sum([float(len(pixels))], self.ctx)[0]:  # every rank decides alike
            raise InputError(f"no {what} clip decodes ({len(keys)} tried; first: {failed[0] if failed else '?'})")
        if failed:
            log.warning("%d of %d %s clips skipped (undecodable); first: %s", len(failed), len(share), what,
                        failed[0])
        size = self.job.size
        pixels = torch.stack(pixels) if pixels else torch.empty(0, self.cfg.frames, 3, size, size)
        ev: dict[str, Any] = {"pixels": pixels, "targets": [], "dense": [], "avg": []}
        block = self.job.compression.block
        for chunk in pixels.split(self.micro) if len(pixels) else ():  # a rank may hold none of the clips
            with self.job.autocast():
                grid = self.job.teacher(chunk.to(self.ctx.device))
                target = wap_targets(grid, self.job.compression)
            ev["targets"].append(target.float().flatten(1, 3).cpu())
            ev["avg"].append(avg_pool(grid.patches, block).float().flatten(1, 3).cpu())
            if self.dense:  # bf16 on the host: dense targets are t*h*w times the compressed ones
                ev["dense"].append(grid.patches.flatten(1, 3).to("cpu", torch.bfloat16))
        ev["ref_avgpool_cos"] = self._cosine(ev, lambda _, k: ev["avg"][k])
        ev["ref_untrained_cos"] = self._cosine(ev, lambda x, _: self.model(x)[0])
        return ev

    # -- the loop -----------------------------------------------------------------------------------------------

    def run(self) -> RunResult:
        cfg, ctx, state = self.cfg, self.ctx, self.state
        self.checkpointer.resume(self.stateful)
        if ctx.main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out / "config.yaml")
        metrics = MetricLog(self.out, state.step, cfg.steps, "distill", ctx.main)
        last: dict[str, Any] = {}
        with sigterm_flag() as stop, contextlib.closing(metrics):
            while state.step < cfg.steps:
                batches = self._epoch_batches()
                while state.step < cfg.steps and state.position < self.micro_per_epoch:
                    tic = time.perf_counter()
                    loss, cos, grad_norm, skipped = self._train_step(batches)
                    loss, cos, skipped, stopping = all_sum([loss, cos, skipped, float(stop.set)], ctx)
                    state.step += 1
                    state.position += cfg.grad_accum
                    state.samples += cfg.batch_size
                    state.tokens += cfg.batch_size * self.tokens_per_clip
                    state.skipped += int(skipped)
                    if state.position == self.micro_per_epoch:
                        state.epoch, state.position = state.epoch + 1, 0
                    last = {"step": state.step, "epoch": state.epoch, "loss": loss / ctx.world,
                            "cos": cos / ctx.world, "lr": self.scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                            "clips_per_s": cfg.batch_size / (time.perf_counter() - tic), "tokens": state.tokens,
                            "skipped_videos": state.skipped, "peak_mem_mib": peak_memory_mib(ctx.device)}
                    metrics.step(loss=last["loss"], cos=last["cos"])
                    evaluate = self.evals and (state.step % cfg.eval_every == 0 or state.step == cfg.steps)
                    if evaluate:
                        last.update(self.evaluate())
                    if state.step % cfg.log_every == 0 or evaluate or state.step == cfg.steps:
                        metrics.write(last)
                    if stopping:
                        self.checkpointer.save(state.step, self.stateful)
                        log.warning("stopped by SIGTERM at step %d; run the same command to resume", state.step)
                        return RunResult(None, state.step, last)
                    if state.step % cfg.save_every == 0 or state.step == cfg.steps:
                        self.checkpointer.save(state.step, self.stateful)
                    if state.position == 0:
                        break  # epoch finished: a new DataLoader iterator for the next view and order
        return RunResult(self.save_student(), state.step, last)

    def _epoch_batches(self):
        cfg, state = self.cfg, self.state
        self.dataset.set_view(state.epoch % cfg.cache_views if cfg.target_cache else state.epoch)
        self.sampler.set_epoch(state.epoch, start=state.position * self.micro)
        loader = DataLoader(self.dataset, batch_size=self.micro, sampler=self.sampler, num_workers=cfg.workers,
                            collate_fn=collate, drop_last=True, pin_memory=self.ctx.device.type == "cuda",
                            worker_init_fn=worker_init, persistent_workers=False)
        return iter(loader)

    def _train_step(self, batches) -> tuple[float, float, float, int]:
        """One optimiser step over `grad_accum` micro-batches -> (mean loss, mean cosine, grad norm, skipped)."""
        cfg = self.cfg
        self.wrapped.train()
        sums = torch.zeros(2, dtype=torch.float64, device=self.ctx.device)  # loss, cos: read once per step
        skipped = 0
        for k in range(cfg.grad_accum):
            batch = next(batches)
            for reason in batch["skipped"]:
                video = reason.split(": ", 1)[0]
                if video not in self.warned:
                    self.warned.add(video)
                    log.warning("video skipped (logged once, counted each time): %s", reason)
            skipped += len(batch["skipped"])
            sync = k == cfg.grad_accum - 1 or not isinstance(self.wrapped, nn.parallel.DistributedDataParallel)
            with contextlib.nullcontext() if sync else self.wrapped.no_sync():
                loss, cos = self._loss(batch)
                (loss / cfg.grad_accum).backward()
            sums += torch.stack([loss.detach(), cos]).double()
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm  # FSDP2: a DTensor
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        # one device-to-host copy, after the optimiser's kernels are queued; float64 sums as Python's were
        loss_sum, cos_sum, grad_norm = torch.cat([sums, grad_norm.double().reshape(1)]).tolist()
        return loss_sum / cfg.grad_accum, cos_sum / cfg.grad_accum, grad_norm, skipped

    def _loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, device = self.cfg, self.ctx.device
        pixels = batch["pixels"].to(device, non_blocking=True)
        with self.job.autocast():
            if "target" in batch:
                target = batch["target"].to(device, non_blocking=True).flatten(1, 3)
            else:
                target = teacher_targets(self.job.teacher, pixels, self.job.compression,
                                         dense=self.dense).flatten(1, 3)
            tokens, dense = self.wrapped(pixels)
        pred = dense if self.dense else tokens
        return ctd_loss(pred, clip_outliers(target, cfg.clip_sigma), cfg.beta, cfg.cosine_weight)

    # -- evaluation ---------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _cosine(self, ev: dict[str, Any], predict: Callable[[torch.Tensor, int], torch.Tensor],
                against: str = "targets") -> float:
        """Mean token cosine similarity of `predict(chunk, k)` to `ev[against]` over all ranks' clips."""
        total = count = 0.0
        with self.job.autocast():
            for k, (chunk, target) in enumerate(zip(ev["pixels"].split(self.micro), ev[against])):
                pred = predict(chunk.to(self.ctx.device), k).float().cpu()
                total += F.cosine_similarity(pred, target.float(), dim=-1).sum().item()
                count += target.shape[0] * target.shape[1]
        if self.shard_eval:
            total, count = all_sum([total, count], self.ctx)
        return total / max(count, 1.0)

    def evaluate(self) -> dict[str, float]:
        """Held-out (`eval_*`, `ref_*`) and training-sample (`train_*`) token cosines beside their references;
        for RTD also the reconstruction cosine to the dense teacher tokens (`*_recon_cos`)."""
        self.wrapped.eval()
        scores = {}
        for name, ev in self.evals.items():
            ref = "" if name == "eval" else "train_"
            scores[f"{name}_cos"] = self._cosine(ev, lambda x, _: self.wrapped(x)[0])
            scores[f"{ref}ref_avgpool_cos"] = ev["ref_avgpool_cos"]
            scores[f"{ref}ref_untrained_cos"] = ev["ref_untrained_cos"]
            if self.dense:
                scores[f"{name}_recon_cos"] = self._cosine(ev, lambda x, _: self.wrapped(x)[1], against="dense")
        return scores

    def save_student(self) -> Path:
        """The trained student as a `LiteFrameEncoder.from_pretrained` folder: `<output>/student`."""
        state = self.stateful["model"].state_dict()
        folder = self.out / "student"
        if self.ctx.main:
            student = LiteFrameEncoder(self.student_config)
            student.load_state_dict({k[len("student."):]: v for k, v in state.items() if k.startswith("student.")})
            student.save_pretrained(folder)
        barrier(self.ctx)
        return folder


def summary_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The final evaluation of a run as table rows: the student's token cosine on held-out and training clips
    beside average pooling and the untrained student (and RTD's reconstruction cosine); [] without evaluation."""
    rows = []
    for name, label, ref in (("eval", "held-out", ""), ("train", "training sample", "train_")):
        if f"{name}_cos" in metrics:
            row = {"clips": label, "student_cos": metrics[f"{name}_cos"],
                   "avgpool_cos": metrics[f"{ref}ref_avgpool_cos"],
                   "untrained_cos": metrics[f"{ref}ref_untrained_cos"]}
            if f"{name}_recon_cos" in metrics:
                row["recon_cos"] = metrics[f"{name}_recon_cos"]
            rows.append(row)
    return rows

