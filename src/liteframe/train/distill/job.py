"""Compressed Token Distillation (SPEC 5): the training job behind `liteframe distill`.

One process per device under torchrun (DDP, or FSDP2 with `parallel: fsdp`), or a plain single process. The loop,
checkpoints, metrics and stop signals are the shared `Trainer`'s; this module is CTD's step (the student against
WAP(teacher), computed on the fly or read from the target cache), its held-out evaluation and its final save.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from torch.utils.data import DataLoader

from liteframe.compression import Compression, get_compression
from liteframe.errors import InputError
from liteframe.grid import TokenGrid
from liteframe.identity import checkpoint_identity
from liteframe.models import LiteFrameEncoder
from liteframe.reduce import get_reducer
from liteframe.train.checkpoint import ModelState, write_error
from liteframe.train.dist import all_sum, barrier
from liteframe.train.distill.config import DistillConfig
from liteframe.train.distill.data import ClipDataset, ManifestEntry, check_clip, clip_frames, collate, \
    frames_config, read_manifest
from liteframe.train.distill.model import DistillModel, student_config
from liteframe.train.distill.targets import CachedTargets, TargetCache, cache_fingerprint, teacher_targets, \
    wap_targets
from liteframe.train.job import Job
from liteframe.train.loader import next_batch, worker_init
from liteframe.train.loss import RTDDecoder, clip_outliers, ctd_loss
from liteframe.train.state import RunResult, TrainState
from liteframe.train.trainer import StepMetrics, Trainer, launch, micro_batch
from liteframe.video import VideoDecodeError

log = logging.getLogger("liteframe.train")
# The teacher's training-free reducers scored beside the student (WAP is the target). A set reducer's tokens have no
# fixed place in the grid: each target is compared with the reducer token of its clip that matches it best.
REFERENCES = ("avg", "max", "subsample", "tome")


def distill(cfg: DistillConfig) -> RunResult:
    """Train a LiteFrame student by CTD as `cfg` says; resumes from the newest checkpoint in `cfg.output` when
    that folder holds a run of the same settings, and refuses a folder of another run."""
    for key in ("teacher", "manifest"):
        if not getattr(cfg, key):
            raise InputError(f"distill config: `{key}` is required")
    entries = read_manifest(cfg.manifest)
    held_out = read_manifest(cfg.eval_manifest) if cfg.eval_manifest else []
    check_clip(cfg.teacher, cfg.frames, get_compression(cfg.compression))

    def build(job: Job) -> DistillTrainer:
        job.load_teacher(cfg.teacher, cfg.image_size)
        return DistillTrainer(cfg, job, entries, held_out)

    return launch(cfg, {"teacher": checkpoint_identity(cfg.teacher)}, build)


@dataclass
class DistillStep(StepMetrics):
    cos_sum: float = 0.0  # token cosine to the targets, summed like `loss_sum`

    def record(self, state: TrainState) -> dict[str, float]:
        return {**super().record(state), "cos": self.cos_sum / max(self.losses, 1),
                "clips_per_s": state.samples / max(state.elapsed, 1e-9)}


def freeze_except(student: LiteFrameEncoder, trainable: tuple[str, ...]) -> None:
    """Train only the parameters whose name contains one of `trainable`; refused when one matches nothing."""
    names = [name for name, _ in student.named_parameters()]
    unmatched = [part for part in trainable if not any(part in name for name in names)]
    if unmatched:
        raise InputError(f"distill config: trainable {list(unmatched)} names no parameter of the student "
                         f"(e.g. {', '.join(names[:3])})")
    for name, p in student.named_parameters():
        p.requires_grad_(any(part in name for part in trainable))


class DistillTrainer(Trainer):
    kind, unit = "distill", "videos"

    def __init__(self, cfg: DistillConfig, job: Job, entries: list[ManifestEntry], held_out: list[ManifestEntry]):
        # the evaluation sets are built before the model is wrapped (their untrained-student reference runs the
        # plain student, which FSDP would shard)
        self.cfg, self.job, self.ctx, self.micro = cfg, job, job.ctx, micro_batch(cfg, job.ctx.world)
        self.shard_eval = cfg.parallel == "ddp"
        teacher, device = job.teacher, job.device
        self.student_config = student_config(cfg, teacher, job.compression)
        if self.student_config.compresses:  # WAP targets over the student's own block: spatial16's is (1, 4, 4)
            job.compression = Compression(self.student_config.block)
        student = LiteFrameEncoder.from_teacher(teacher, self.student_config).to(device)
        if cfg.trainable:
            freeze_except(student, cfg.trainable)
        # RTD decodes (and targets live) in the teacher grid's width: the LLM's after Qwen's merger
        decoder = RTDDecoder(teacher.out_dim, job.compression.block).to(device) if cfg.loss == "rtd" else None
        self.model = DistillModel(student, decoder, job.compression.block, teacher.student_head())
        # dense targets: RTD's, or those of a student that does not compress; the target cache holds neither
        self.dense = cfg.loss == "rtd" or not self.student_config.compresses
        if self.dense and cfg.target_cache:
            raise InputError("distill config: a student trained on dense teacher tokens (loss=rtd, or the `none` "
                             "variant) needs them from the teacher: leave target_cache empty")
        self.tokens_per_clip = job.compression.grid_tokens(*teacher.grid_shape(cfg.frames, job.size))
        data = frames_config(teacher, cfg.teacher, job.size)
        clip = clip_frames(data.frames_per_step, job.compression)
        clips = ClipDataset(entries, cfg.frames, job.size, cfg.fps, cfg.seed, data, clip)
        self.evals: dict[str, dict[str, Any]] = {}
        if held_out:
            keys = [(i, view) for view in range(cfg.eval_views) for i in range(len(held_out))]
            self.evals["eval"] = self._eval_set(
                ClipDataset(held_out, cfg.frames, job.size, cfg.fps, cfg.seed + 1, data, clip), keys, "held-out")
            # training clips the first epoch trains on, as many as held-out ones: "cannot fit" vs "does not
            # generalise"
            picks = torch.linspace(0, len(entries) - 1, min(len(keys), len(entries))).round().long().unique()
            self.evals["train"] = self._eval_set(clips, [(int(i), 0) for i in picks], "training")
        dataset = CachedTargets(clips, TargetCache(cfg.target_cache, cache_fingerprint(job, cfg, entries, data))
                                ) if cfg.target_cache else clips
        if cfg.target_cache:
            job.teacher = None  # cached targets: the teacher's work is done (eval targets are computed above)
        if cfg.activation_checkpointing:
            student.set_grad_checkpointing(True)
        self.wrapped = self._wrap(self.model, cfg, job)
        optimizer = torch.optim.AdamW(self.model.optimizer_groups(cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
        super().__init__(cfg, job.ctx, dataset, optimizer, ModelState(self.wrapped), has_eval=bool(held_out))

    # -- set-up -------------------------------------------------------------------------------------------------

    @staticmethod
    def _wrap(model: DistillModel, cfg: DistillConfig, job: Job) -> nn.Module:
        ctx = job.ctx
        if cfg.parallel == "fsdp":
            from torch.distributed.fsdp import fully_shard

            if ctx.world > 1:
                for block in model.student.blocks:
                    fully_shard(block)
                fully_shard(model)
            wrapped = model
        elif ctx.world > 1:
            # static_graph: blocks after the last temporal downsampling see one frame and skip their mixer, the
            # same parameters every step, which DDP must know to not wait for their gradients.
            wrapped = nn.parallel.DistributedDataParallel(
                model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None, static_graph=True)
        else:
            wrapped = model
        if cfg.compile:
            wrapped.compile()
        return wrapped

    @torch.no_grad()
    def _eval_set(self, data: ClipDataset, keys: list[tuple[int, int]], what: str) -> dict[str, Any]:
        """Clips `(video, view)`, their targets (through `wap_targets`, as in training) and the references: the
        teacher's training-free reducers and the untrained (cropped) student, computed once. Under DDP each rank
        takes a share; under FSDP every rank takes all (each forward is a collective there, so every rank must run
        the same number)."""
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
        size, compression = self.job.size, self.job.compression
        pixels = torch.stack(pixels) if pixels else torch.empty(0, self.cfg.frames, 3, size, size)
        ev: dict[str, Any] = {"pixels": pixels, "targets": [], "dense": []}
        refs: dict[str, list[torch.Tensor] | None] = {name: [] for name in REFERENCES}
        for chunk in pixels.split(self.micro) if len(pixels) else ():  # a rank may hold none of the clips
            with self.job.autocast():
                grid = self.job.teacher(chunk.to(self.ctx.device))
                target = wap_targets(grid, compression)
            ev["targets"].append(target.float().flatten(1, 3).cpu())
            for name in REFERENCES:
                refs[name] = _reduced(name, grid, compression, refs[name])
            if self.dense:  # bf16 on the host: dense targets are t*h*w times the compressed ones
                ev["dense"].append(grid.patches.flatten(1, 3).to("cpu", torch.bfloat16))
        for name, tokens in refs.items():
            if all_sum([float(tokens is None)], self.ctx)[0]:  # every rank leaves it out alike
                log.info("%s reference left out: it cannot reduce these %s clips", name, what)
                continue
            ev[f"ref_{name}_cos"] = self._cosine(ev, lambda _, k, t=tokens: t[k],
                                                 best_match=get_reducer(name).stage == "set")
        ev["ref_untrained_cos"] = self._cosine(ev, lambda x, _: self.model(x)[0])
        return ev

    # -- the step -----------------------------------------------------------------------------------------------

    def loader(self, epoch: int) -> DataLoader:
        cfg = self.cfg
        self.dataset.set_view(epoch % cfg.cache_views if cfg.target_cache else epoch)
        return DataLoader(self.dataset, batch_size=self.micro, sampler=self.sampler, num_workers=cfg.workers,
                          collate_fn=collate, drop_last=True, pin_memory=self.ctx.device.type == "cuda",
                          worker_init_fn=worker_init, persistent_workers=False)

    def train_step(self, batches: Iterator[dict[str, Any]]) -> DistillStep:
        """One optimiser step over `grad_accum` micro-batches of clips (a video that fails to decode is replaced
        by the next one in the manifest, and counted)."""
        cfg = self.cfg
        self.wrapped.train()
        sums = torch.zeros(2, dtype=torch.float64, device=self.ctx.device)  # loss, cos: read once per step
        skipped = 0
        for k in range(cfg.grad_accum):
            batch = next_batch(batches)
            for reason in batch["skipped"]:
                video, _, detail = reason.partition(": ")
                self.skip(video, "unreadable video", detail)
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
        # one device-to-host copy, after the optimiser's kernels are queued
        loss_sum, cos_sum, grad_norm = torch.cat([sums, grad_norm.double().reshape(1)]).tolist()
        clips = cfg.grad_accum * self.micro
        return DistillStep(loss_sum=loss_sum, losses=cfg.grad_accum, samples=clips, tokens=clips * self.tokens_per_clip,
                           skipped=skipped, grad_norm=grad_norm, cos_sum=cos_sum)

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
        # the tokens, then each DeepStack level (`wap_targets`): outliers by the statistics of their own level
        parts = 1 if self.dense else 1 + self.student_config.levels
        target = torch.cat([clip_outliers(part, cfg.clip_sigma) for part in target.chunk(parts, dim=1)], dim=1)
        return ctd_loss(pred, target, cfg.beta, cfg.cosine_weight)

    # -- evaluation and the result ------------------------------------------------------------------------------

    @torch.no_grad()
    def _cosine(self, ev: dict[str, Any], predict: Callable[[torch.Tensor, int], torch.Tensor],
                against: str = "targets", best_match: bool = False) -> float:
        """Mean token cosine similarity of `predict(chunk, k)` to `ev[against]` over all ranks' clips: position by
        position, or with `best_match` each target against the prediction of its clip closest to it."""
        total = count = 0.0
        with self.job.autocast():
            for k, (chunk, target) in enumerate(zip(ev["pixels"].split(self.micro), ev[against])):
                pred, target = predict(chunk.to(self.ctx.device), k).float().cpu(), target.float()
                if best_match:
                    sim = F.normalize(target, dim=-1) @ F.normalize(pred, dim=-1).transpose(1, 2)
                    total += sim.max(-1).values.sum().item()
                else:
                    total += F.cosine_similarity(pred, target, dim=-1).sum().item()
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
            for key in [f"ref_{r}_cos" for r in REFERENCES] + ["ref_untrained_cos"]:
                if key in ev:
                    scores[ref + key] = ev[key]
            if self.dense:
                scores[f"{name}_recon_cos"] = self._cosine(ev, lambda x, _: self.wrapped(x)[1], against="dense")
        return scores

    def save_final(self) -> Path:
        """The trained student as a `LiteFrameEncoder.from_pretrained` folder: `<output>/student`."""
        state = self.stateful["model"].state_dict()
        folder = self.out / "student"
        if self.ctx.main:
            student = LiteFrameEncoder(self.student_config)
            student.load_state_dict({k[len("student."):]: v for k, v in state.items() if k.startswith("student.")})
            try:
                student.save_pretrained(folder)
            except (OSError, SafetensorError) as err:
                raise write_error(folder, err, f"the checkpoints in {self.out / 'checkpoints'} are intact") from None
        barrier(self.ctx)
        return folder


def _reduced(name: str, grid: TokenGrid, compression, tokens: list[torch.Tensor] | None
             ) -> list[torch.Tensor] | None:
    """`tokens` with reducer `name`'s tokens `(B, N, C)` of `grid` appended (its levels' after them, as the targets
    hold them); None once it cannot reduce a grid (ToMe keeps at least a token per frame: too few tokens for tiny
    grids at 64x)."""
    if tokens is None:
        return None
    try:
        reduced = get_reducer(name)(grid, compression)
    except ValueError:
        return None
    stacked = reduced.stacked().flatten(1, 3) if isinstance(reduced, TokenGrid) else torch.cat(
        [reduced.tokens, *reduced.levels], dim=1)
    return tokens + [stacked.float().cpu()]


def summary_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The final evaluation of a run as table rows: the student's token cosine on held-out and training clips
    beside the teacher's training-free reducers and the untrained student (and RTD's reconstruction cosine); []
    without evaluation."""
    rows = []
    for name, label, ref in (("eval", "held-out", ""), ("train", "training sample", "train_")):
        if f"{name}_cos" in metrics:
            row = {"clips": label, "student_cos": metrics[f"{name}_cos"],
                   **{f"{r}_cos": metrics[f"{ref}ref_{r}_cos"] for r in REFERENCES if f"{ref}ref_{r}_cos" in metrics},
                   "untrained_cos": metrics[f"{ref}ref_untrained_cos"]}
            if f"{name}_recon_cos" in metrics:
                row["recon_cos"] = metrics[f"{name}_recon_cos"]
            rows.append(row)
    return rows
