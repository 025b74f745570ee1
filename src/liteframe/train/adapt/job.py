"""Language Model Adaptation (SPEC 6): the training job behind `liteframe adapt`.

LoRA adapters on an InternVL3 checkpoint's LLM learn to read compressed visual tokens from chat data (`data`,
`model`). One process per device under torchrun (gradients of the few LoRA weights are summed by one all-reduce
per step), or a plain single process. The loop, checkpoints, metrics and stop signals are the shared `Trainer`'s;
this module is LMA's step, its held-out loss and its final save (`OUTPUT/adapter`, a PEFT adapter folder).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from safetensors import SafetensorError
from torch.utils.data import DataLoader

from liteframe.devices import resolve_dtype
from liteframe.errors import InputError
from liteframe.identity import checkpoint_identity, folder_digest
from liteframe.llm.encoders import EncoderSpec
from liteframe.llm.lora import save_adapter
from liteframe.train.adapt.config import AdaptConfig
from liteframe.train.adapt.data import ChatDataset, SkipSample, collate_samples
from liteframe.train.adapt.manifest import ChatSample, read_chat_manifest
from liteframe.train.adapt.model import AdaptModel
from liteframe.train.checkpoint import ModelState, write_error
from liteframe.train.dist import Context, all_sum, barrier
from liteframe.train.job import Job
from liteframe.train.loader import next_batch, worker_init
from liteframe.train.state import RunResult, TrainState
from liteframe.train.trainer import StepMetrics, Trainer, launch, steps_per_epoch


def adapt(cfg: AdaptConfig) -> RunResult:
    """Train LoRA adapters as `cfg` says; resumes from the newest checkpoint in `cfg.output` when that folder
    holds a run of the same settings, and refuses a folder of another run."""
    for key in ("model", "data"):
        if not getattr(cfg, key):
            raise InputError(f"adapt config: `{key}` is required")
    samples = read_chat_manifest(cfg.data, cfg.video_root or None)  # bad manifests fail before the model loads
    held_out = read_chat_manifest(cfg.eval_data, cfg.video_root or None) if cfg.eval_data else []
    inputs = {"model": checkpoint_identity(cfg.model)}
    student = EncoderSpec.parse(cfg.encoder).student
    if student is not None:
        inputs["student"] = folder_digest(student)
    return launch(cfg, inputs, lambda job: AdaptTrainer(cfg, job, samples, held_out))


@dataclass
class AdaptStep(StepMetrics):
    frames: int = 0  # frames of the samples trained on

    def record(self, state: TrainState) -> dict[str, float]:
        return {**super().record(state), "tokens_per_s": state.tokens / max(state.elapsed, 1e-9),
                "frames_per_sample": self.frames / max(self.samples, 1)}


class AdaptTrainer(Trainer):
    """`model`: an `AdaptModel` already built (the benchmark's random large shapes); None loads `cfg.model`."""

    kind, unit = "adapt", "samples"

    def __init__(self, cfg: AdaptConfig, job: Job, samples: list[ChatSample], held_out: list[ChatSample],
                 model: AdaptModel | None = None):
        steps_per_epoch(cfg, job.ctx.world, len(samples), self.unit)  # refuse a bad batch before the model loads
        self.model = model or AdaptModel.load(cfg, job.device, resolve_dtype("auto", job.device), job.bf16)
        prompter = self.model.prompter
        dataset = ChatDataset(samples, prompter, cfg.frames, cfg.fps, cfg.seed)
        self.held_out = ChatDataset(held_out, prompter, cfg.frames, cfg.fps, cfg.seed + 1)
        optimizer = torch.optim.AdamW(self.model.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        super().__init__(cfg, job.ctx, dataset, optimizer, ModelState(self.model.peft, trainable_only=True),
                         has_eval=bool(held_out))

    def loader(self, epoch: int) -> DataLoader:
        # its own generator: creating the loader must not draw from the global RNG that LoRA dropout uses.
        # forkserver: a worker forked from this process, whose decoding threads (stream_video, FFmpeg) may hold
        # locks at that moment, can hang in its first decoder call
        self.dataset.epoch = epoch
        workers = self.cfg.workers
        return DataLoader(self.dataset, batch_size=self.micro, sampler=self.sampler, num_workers=workers,
                          collate_fn=collate_samples, worker_init_fn=worker_init,
                          multiprocessing_context="forkserver" if workers else None,
                          generator=torch.Generator().manual_seed(self.cfg.seed + epoch))

    def train_step(self, batches: Iterator[list[dict[str, Any]]]) -> AdaptStep:
        """One optimiser step over `grad_accum` micro-batches. The step minimises the mean of per-sample losses over
        `batch_size` samples; a skipped sample counts as zero, so every rank and accumulation layout computes the
        same gradient."""
        cfg = self.cfg
        self.model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.ctx.device)
        step = AdaptStep()
        for _ in range(cfg.grad_accum):
            items = next_batch(batches)
            ready = self._usable(items)
            step.skipped += len(items) - len(ready)
            if not ready:
                continue
            losses, read = self.model.sample_losses([x for _, x in ready])
            (losses.sum() / cfg.batch_size).backward()
            loss_sum += losses.detach().sum().double()
            step.tokens += read
            step.frames += sum(i["frames"] for i, _ in ready)
            step.samples += len(ready)
        _sum_grads(self.model.params, self.ctx)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.params, cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        step.loss_sum, step.grad_norm = torch.stack([loss_sum, grad_norm.double()]).tolist()  # one host sync
        step.losses = step.samples
        return step

    def _usable(self, items: list[dict[str, Any]]) -> list[tuple[dict[str, Any], tuple[torch.Tensor, torch.Tensor]]]:
        """Items that read, with their inputs; the others are skipped (counted, logged once per sample and
        reason)."""
        ready = []
        for item in items:
            try:
                if "skip" in item:
                    raise SkipSample(item["skip"], item["detail"])
                ready.append((item, self.model.inputs(item)))
            except SkipSample as skip:
                self.skip(f"sample {item['id']}", skip.reason, skip.detail)
        return ready

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean per-sample answer loss over the held-out set (each rank takes a share), draws fixed by the seed."""
        self.model.train(False)
        total = count = 0.0
        for i in range(self.ctx.rank, len(self.held_out), self.ctx.world):
            for _, inputs in self._usable([self.held_out[i]]):
                losses, _ = self.model.sample_losses([inputs])
                total, count = total + losses.sum().item(), count + 1
        total, count = all_sum([total, count], self.ctx)
        return {"eval_loss": total / max(count, 1.0)}

    def save_final(self) -> Path:
        """The LoRA weights (and a trained projector) as a PEFT adapter folder: `<output>/adapter`."""
        folder = self.out / "adapter"
        if self.ctx.main:
            try:
                save_adapter(self.model.peft, folder)
            except (OSError, SafetensorError) as err:
                raise write_error(folder, err, f"the checkpoints in {self.out / 'checkpoints'} are intact") from None
        barrier(self.ctx)
        return folder


def _sum_grads(params: list[torch.Tensor], ctx: Context) -> None:
    """Sum the gradients over ranks with one all-reduce (LoRA weights are few; a parameter no sample reached this
    step has a zero gradient, so every rank sends the same layout)."""
    if ctx.world == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        p.grad.copy_(g.view_as(p))
