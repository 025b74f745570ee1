"""Compressed Token Distillation (SPEC 5): the training job behind `liteframe distill`.

One process per device under torchrun (DDP, or FSDP2 with `parallel: fsdp`), or a plain single process. The step
is a pure function of (checkpoint, config): data order comes from a seeded DistributedSampler, clips from
(seed, view, video), so a run killed at any moment and resumed from its last checkpoint reaches the same weights
as one that was never interrupted.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict)
from torch.utils.data import DataLoader
from tqdm import tqdm

from liteframe.errors import InputError
from liteframe.io import atomic_write
from liteframe.models import LiteFrameConfig, LiteFrameEncoder, Teacher
from liteframe.reduce import get_reducer, wap
from liteframe.train import checkpoint as ckpt
from liteframe.train.config import DistillConfig
from liteframe.train.data import ClipDataset, ResumableSampler, collate, manifest_digest, read_manifest, worker_init
from liteframe.train.dist import Context, all_sum, barrier, setup, teardown
from liteframe.train.loss import RTDDecoder, clip_outliers, ctd_loss
from liteframe.train.targets import BLOCK, TargetCache, fingerprint, teacher_identity, teacher_targets
from liteframe.video.decode import VideoDecodeError

log = logging.getLogger("liteframe.train")
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


class DistillModel(nn.Module):
    """The trained parts: `pixels (B, T, 3, S, S) -> (student tokens (B, T/4*H'*W', C), RTD reconstruction
    (B, T*H*W, C) or None)`."""

    def __init__(self, student: LiteFrameEncoder, decoder: RTDDecoder | None = None):
        super().__init__()
        self.student, self.decoder = student, decoder

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        grid = self.student(pixels)
        dense = None if self.decoder is None else self.decoder(grid.patches).flatten(1, 3)
        return grid.tokens(), dense


@dataclass
class Result:
    """What a run left behind: the student folder (None when stopped early), the last step, the last metrics."""

    student: Path | None
    step: int
    metrics: dict[str, Any]


def distill(cfg: DistillConfig) -> Result:
    """Train a LiteFrame student by CTD as `cfg` says; resumes from the newest checkpoint in `cfg.output`."""
    ctx = setup(cfg.device)
    try:
        return Trainer(cfg, ctx).run()
    finally:
        teardown()


def student_config(cfg: DistillConfig, teacher: Teacher) -> LiteFrameConfig:
    """The LiteFrame config to crop from `teacher`: `cfg.student` over the teacher's width and input size (clips
    of another `image_size` use resized position embeddings)."""
    try:
        return LiteFrameConfig(**{"image": teacher.image_size, "out_dim": teacher.hidden_size, **cfg.student})
    except (TypeError, ValueError) as err:
        raise InputError(f"distill config: student {cfg.student}: {err}") from err


class Trainer:
    def __init__(self, cfg: DistillConfig, ctx: Context):
        for key in ("teacher", "manifest"):
            if not getattr(cfg, key):
                raise InputError(f"distill config: `{key}` is required")
        self.cfg, self.ctx = cfg, ctx
        self.out = Path(cfg.output)
        self.cuda = ctx.device.type == "cuda"
        self.bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and self.cuda)
        micro, rest = divmod(cfg.batch_size, ctx.world * cfg.grad_accum)
        if rest or not micro:
            raise InputError(f"distill config: batch_size={cfg.batch_size} must be a multiple of ranks x grad_accum "
                             f"= {ctx.world} x {cfg.grad_accum}")
        self.micro = micro
        self.shard_eval = cfg.parallel == "ddp"

        torch.manual_seed(cfg.seed)  # the same initial weights on every rank (the RTD decoder is random)
        self.teacher = Teacher.from_pretrained(cfg.teacher, dtype=torch.bfloat16 if self.cuda else torch.float32,
                                               device=ctx.device)
        self.size = cfg.image_size or self.teacher.image_size
        entries = read_manifest(cfg.manifest)
        cache = None
        if cfg.target_cache:
            expected = fingerprint(teacher_identity(self.teacher, cfg.teacher), manifest_digest(entries), cfg.frames,
                                   cfg.fps, cfg.seed, cfg.cache_views, self.size)
            cache = TargetCache(cfg.target_cache, expected)
        self.student_config = student_config(cfg, self.teacher)
        student = LiteFrameEncoder.from_teacher(self.teacher, self.student_config).to(ctx.device)
        decoder = RTDDecoder(self.teacher.hidden_size, BLOCK).to(ctx.device) if cfg.loss == "rtd" else None
        self.model = DistillModel(student, decoder)
        self.dataset = ClipDataset(entries, cfg.frames, self.size, cfg.fps, cfg.seed, cache)
        self.sampler = ResumableSampler(self.dataset, ctx.world, ctx.rank, cfg.seed)
        self.micro_per_epoch = self.sampler.num_samples // micro // cfg.grad_accum * cfg.grad_accum
        if not self.micro_per_epoch:
            raise InputError(f"{cfg.manifest}: {len(entries)} videos are fewer than one step's batch of "
                             f"{cfg.batch_size} clips")
        self.eval_set = self._eval_set()
        if cache is not None:
            self.teacher = None  # cached targets: the teacher's work is done (eval targets are computed above)

        if cfg.activation_checkpointing:
            student.set_grad_checkpointing(True)
        self.wrapped = self._wrap(self.model)
        self.optimizer = _adamw(self.model, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _cosine(cfg))
        self.step = self.epoch = self.position = self.skipped = 0
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
                model, device_ids=[self.ctx.device.index] if self.cuda else None, static_graph=True)
        else:
            wrapped = model
        if self.cfg.compile:
            wrapped.compile()
        return wrapped

    def _eval_set(self) -> dict[str, Any] | None:
        """The held-out clips, their WAP targets and the two references, computed once: average pooling of the
        teacher, and the untrained (cropped) student. Under DDP each rank takes a share; under FSDP every rank
        takes all (each forward is a collective there, so every rank must run the same number)."""
        cfg = self.cfg
        if not cfg.eval_manifest:
            return None
        entries = read_manifest(cfg.eval_manifest)
        data = ClipDataset(entries, cfg.frames, self.size, cfg.fps, cfg.seed + 1)
        share = range(self.ctx.rank, len(entries), self.ctx.world) if self.shard_eval else range(len(entries))
        pixels = []
        for i in share:
            try:
                pixels.append(data.load(i, view=0)[0])
            except VideoDecodeError as err:
                log.warning("held-out video skipped: %s", err)
        pixels = torch.stack(pixels) if pixels else torch.empty(0, cfg.frames, 3, self.size, self.size)
        targets, avg = [], []
        for chunk in pixels.split(self.micro) if len(pixels) else ():
            grid = self.teacher(chunk.to(self.ctx.device))
            targets.append(wap(grid.patches, grid.queries, BLOCK).float().flatten(1, 3).cpu())
            avg.append(get_reducer("avg")(grid, 16).patches.float().flatten(1, 3).cpu())
        student = self.model.student
        ev = {"pixels": pixels, "targets": targets}
        ev["ref_avgpool_cos"] = self._cosine(ev, lambda _, i: avg[i])
        ev["ref_untrained_cos"] = self._cosine(ev, lambda x, _: student(x).tokens())
        return ev

    # -- the loop -----------------------------------------------------------------------------------------------

    def run(self) -> Result:
        cfg, ctx = self.cfg, self.ctx
        resumed = self._resume()
        if ctx.main:
            self.out.mkdir(parents=True, exist_ok=True)
            cfg.save(self.out / "config.yaml")
            _truncate_metrics(self.out / "metrics.jsonl", self.step)
        writer = self._tensorboard()
        stop = _StopFlag()
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not ctx.main, desc="distill", dynamic_ncols=True)
        if resumed:
            log.info("resumed from %s at step %d", resumed, self.step)
        last: dict[str, Any] = {}
        try:
            while self.step < cfg.steps:
                batches = self._epoch_batches()
                while self.step < cfg.steps and self.position < self.micro_per_epoch:
                    tic = time.perf_counter()
                    loss, cos, grad_norm, skipped = self._train_step(batches)
                    loss, cos, skipped, stopping = all_sum([loss, cos, skipped, float(stop.set)], ctx)
                    self.step += 1
                    self.position += cfg.grad_accum
                    self.skipped += int(skipped)
                    if self.position == self.micro_per_epoch:
                        self.epoch, self.position = self.epoch + 1, 0
                    last = {"step": self.step, "epoch": self.epoch, "loss": loss / ctx.world, "cos": cos / ctx.world,
                            "lr": self.scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                            "clips_per_s": cfg.batch_size / (time.perf_counter() - tic),
                            "skipped_videos": self.skipped, "peak_mem_mib": _peak_memory_mib(ctx.device)}
                    bar.update(1)
                    bar.set_postfix(loss=f"{last['loss']:.4f}", cos=f"{last['cos']:.3f}")
                    evaluate = self.eval_set is not None and (self.step % cfg.eval_every == 0 or self.step == cfg.steps)
                    if evaluate:
                        last.update(self.evaluate())
                    if ctx.main and (self.step % cfg.log_every == 0 or evaluate or self.step == cfg.steps):
                        self._log(last, writer)
                    if stopping:
                        self.save()
                        log.warning("stopped by SIGTERM at step %d; run the same command to resume", self.step)
                        return Result(None, self.step, last)
                    if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                        self.save()
                    if self.position == 0:
                        break  # epoch finished: a new DataLoader iterator for the next view and order
        finally:
            stop.restore()
            bar.close()
            if writer is not None:
                writer.close()
        return Result(self.save_student(), self.step, last)

    def _epoch_batches(self):
        cfg = self.cfg
        views = cfg.cache_views if cfg.target_cache else None
        self.dataset.set_view(self.epoch % views if views else self.epoch)
        self.sampler.set_epoch(self.epoch, start=self.position * self.micro)
        loader = DataLoader(self.dataset, batch_size=self.micro, sampler=self.sampler, num_workers=cfg.workers,
                            collate_fn=collate, drop_last=True, pin_memory=self.cuda, worker_init_fn=worker_init,
                            persistent_workers=False)
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
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
            if "target" in batch:
                target = batch["target"].to(device, non_blocking=True).flatten(1, 3)
            else:
                target = teacher_targets(self.teacher, pixels, dense=cfg.loss == "rtd").flatten(1, 3)
            tokens, dense = self.wrapped(pixels)
        pred = dense if cfg.loss == "rtd" else tokens
        return ctd_loss(pred, clip_outliers(target, cfg.clip_sigma), cfg.beta, cfg.cosine_weight)

    @torch.no_grad()
    def _cosine(self, ev: dict[str, Any], predict: Callable[[torch.Tensor, int], torch.Tensor]) -> float:
        """Mean token cosine similarity to the held-out WAP targets over all ranks' clips."""
        total = count = 0.0
        with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            for i, (chunk, target) in enumerate(zip(ev["pixels"].split(self.micro), ev["targets"])):
                pred = predict(chunk.to(self.ctx.device), i).float().cpu()
                total += torch.nn.functional.cosine_similarity(pred, target, dim=-1).sum().item()
                count += target.shape[0] * target.shape[1]
        if self.shard_eval:
            total, count = all_sum([total, count], self.ctx)
        return total / max(count, 1.0)

    def evaluate(self) -> dict[str, float]:
        self.wrapped.eval()
        cos = self._cosine(self.eval_set, lambda x, _: self.wrapped(x)[0])
        return {"eval_cos": cos, "ref_avgpool_cos": self.eval_set["ref_avgpool_cos"],
                "ref_untrained_cos": self.eval_set["ref_untrained_cos"]}

    # -- checkpoints and outputs --------------------------------------------------------------------------------

    def save(self) -> None:
        """A full checkpoint (collective: every rank must call it); rank 0 writes."""
        model_sd, optim_sd = get_state_dict(self.wrapped, self.optimizer, options=_FULL)
        rng = [torch.get_rng_state()] + ([torch.cuda.get_rng_state(self.ctx.device)] if self.cuda else [])
        rng = [_gather(t, self.ctx) for t in rng]
        if not self.ctx.main:
            return
        tensors = {f"model/{k}": v for k, v in model_sd.items()}
        optim_tensors, groups = ckpt.pack_optimizer(optim_sd)
        tensors.update(optim_tensors)
        tensors["rng/cpu"] = rng[0]
        if self.cuda:
            tensors["rng/cuda"] = rng[1]
        state = {"step": self.step, "epoch": self.epoch, "position": self.position, "skipped": self.skipped,
                 "world": self.ctx.world, "scheduler": self.scheduler.state_dict(), "param_groups": groups,
                 "config": self.cfg.to_dict()}
        ckpt.save_checkpoint(self.out / "checkpoints", self.step, tensors, state, self.cfg.keep_last)

    def _resume(self) -> Path | None:
        found = ckpt.list_checkpoints(self.out / "checkpoints")
        if not found:
            return None
        tensors, state = ckpt.load_checkpoint(found[-1])
        changed = {k: (v, getattr(self.cfg, k, None)) for k, v in state["config"].items()
                   if k not in ("steps",) and v != self.cfg.to_dict().get(k)}
        if changed:
            log.warning("resuming %s with changed settings (checkpoint, now): %s", found[-1], changed)
        model_sd = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
        optim_sd = ckpt.unpack_optimizer(tensors, state["param_groups"])
        set_model_state_dict(self.wrapped, model_sd, options=StateDictOptions(full_state_dict=True))
        # not strict: parameters that never had a gradient (the temporal mixers of blocks that only ever see one
        # frame) have no AdamW state yet, in the checkpoint as in the uninterrupted run
        set_optimizer_state_dict(self.wrapped, self.optimizer, optim_sd,
                                 options=StateDictOptions(full_state_dict=True, strict=False))
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self.skipped = state["skipped"]
        if state["world"] == self.ctx.world:  # with another rank count the streams cannot line up anyway
            # clone: a row of the (world, n) table starts at an offset, which set_rng_state does not honour
            torch.set_rng_state(tensors["rng/cpu"][self.ctx.rank].clone())
            if self.cuda and "rng/cuda" in tensors:
                torch.cuda.set_rng_state(tensors["rng/cuda"][self.ctx.rank].clone(), self.ctx.device)
        else:
            log.warning("resuming a %d-rank checkpoint on %d ranks: the data order changes", state["world"],
                        self.ctx.world)
        return found[-1]

    def save_student(self) -> Path:
        """The trained student as a `LiteFrameEncoder.from_pretrained` folder: `<output>/student`."""
        state = get_model_state_dict(self.wrapped, options=_FULL)
        folder = self.out / "student"
        if self.ctx.main:
            student = LiteFrameEncoder(self.student_config)
            student.load_state_dict({k[len("student."):]: v for k, v in state.items() if k.startswith("student.")})
            student.save_pretrained(folder)
        barrier(self.ctx)
        return folder

    def _tensorboard(self):
        if not self.ctx.main:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.out / "tensorboard"), purge_step=self.step + 1)

    def _log(self, metrics: dict[str, Any], writer) -> None:
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        for key, value in metrics.items():
            if key != "step":
                writer.add_scalar(key, value, metrics["step"])


def _adamw(model: nn.Module, cfg: DistillConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms, LayerScale and embeddings (vectors and the position table)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "pos_embed" not in name and "cls_token" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def _cosine(cfg: DistillConfig) -> Callable[[int], float]:
    """Step -> learning-rate factor: linear warm-up to 1, then cosine decay to min_lr / lr at `steps`."""
    floor = cfg.min_lr / cfg.lr

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _gather(t: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Every rank's copy of a same-shape tensor -> (world, ...) on CPU (for per-rank RNG states)."""
    if ctx.world == 1:
        return t[None]
    local = t.to(ctx.device)
    out = [torch.empty_like(local) for _ in range(ctx.world)]
    dist.all_gather(out, local)
    return torch.stack(out).cpu()


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop lines logged after the checkpoint (the resumed run logs those steps again) and lines that
    are not whole records (a kill or a full disk mid-write), which would otherwise stop every later resume."""
    if not path.is_file():
        return
    logged = [(line, _logged_step(line)) for line in path.read_text().splitlines() if line]
    keep = [line for line, at in logged if at is not None and at <= step]
    torn = sum(at is None for _, at in logged)
    if torn:
        log.warning("%s: dropped %d unreadable line(s) (a write cut short)", path, torn)
    atomic_write(path, lambda tmp: tmp.write_text("".join(line + "\n" for line in keep)))


def _logged_step(line: str) -> int | None:
    """The step of a metrics line; None for a line that is not a complete record (killed mid-write, disk full)."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, TypeError, KeyError):  # json.JSONDecodeError is a ValueError
        return None


class _StopFlag:
    """SIGTERM (what torchrun and cluster schedulers send) sets a flag; the loop saves and exits at the next step."""

    def __init__(self):
        self.set = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, *_):
        self.set = True

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self._previous)
