"""Language Model Adaptation (SPEC 6): the training job behind `liteframe adapt`.

LoRA adapters on the LLM of a checkpoint of any registered model family (InternVL3, Qwen2.5-VL) learn to read
compressed visual tokens from chat data. Each sample draws its frame budget from `frames` and its frame rate from
`fps`, then takes dense clips with the inference sampler (`sample_clips` at that `rate`, the encoder's clip length),
so training sees frames laid out as `ask` does. Its inputs are made by `ask`'s own code: `VideoLLM.encode` (the same
front end, the family's preprocessing, the same encoder), the prompt of `build_input_ids` (the family's slot layout
with per-slot token counts) and the family's LLM inputs, positions included (`VideoLLM.inputs`); the loss counts only
the answers. The visual encoder (dense ViT, a reducer, or a student) and the projector are frozen: their tokens keep
no graph unless the projector trains.

Set-up, checkpoints, metrics and the schedule are the shared training core (`job`, `checkpoint`, `state`, `metrics`,
`schedule`): one process per device under torchrun (gradients of the few LoRA weights are summed by one all-reduce
per step), or a plain single process. Data order comes from a seeded sampler and each sample's draws from (seed,
epoch, index), so a run resumed from its last checkpoint reaches the same adapter as one never interrupted.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from liteframe.compression import get_compression
from liteframe.errors import InputError, one_line
from liteframe.llm.encoders import EncoderSpec
from liteframe.llm.inputs import LLMInputs
from liteframe.llm.lora import LoraSettings, add_lora, save_adapter
from liteframe.llm.prompt import Slot, build_input_ids, make_slots
from liteframe.llm.videollm import VideoLLM, sample_clips
from liteframe.reduce.base import frame_budgets
from liteframe.train.checkpoint import Checkpointer, ModelState, OptimizerState
from liteframe.train.config import apply_overrides, build, read_yaml, save_config
from liteframe.train.data import ResumableSampler, worker_init
from liteframe.train.dist import Context, all_sum, barrier
from liteframe.train.job import Job, job_setup, sigterm_flag
from liteframe.train.manifest import ChatSample, Skips, read_chat_manifest
from liteframe.train.metrics import MetricLog, peak_memory_mib
from liteframe.train.schedule import scheduler
from liteframe.train.state import ConfigState, RNGState, RunResult, TrainState
from liteframe.video import open_video
from liteframe.video.decode import VideoDecodeError, VideoDecodeWarning

log = logging.getLogger("liteframe.train")
IGNORE = -100  # label of tokens the loss does not count


@dataclass
class AdaptConfig:
    """Everything an LMA run depends on. Paths in a YAML file (a `student:DIR` encoder's too) are relative to that
    file; paths in `key=value` overrides to the working directory."""

    model: str = ""  # an InternVL3 `-hf` folder
    encoder: str = "dense"  # `dense`, a reducer name, or `student:DIR`
    compression: int | None = None  # 4, 16 or 64; None: a student's own, else 16
    data: str = ""  # a chat manifest (JSON or JSONL)
    eval_data: str = ""  # held-out chat manifest; empty: no evaluation
    video_root: str = ""  # relative `video` paths resolve here (default: the manifest's folder)
    output: str = "runs/adapt"
    frames: tuple[int, ...] = (128, 256, 512)  # per-sample frame budgets, drawn uniformly
    fps: tuple[float, float] = (1.0, 4.0)  # per-sample in-clip frame rate, drawn uniformly from [low, high]
    lora: dict[str, Any] = field(default_factory=lambda: {"r": 4, "alpha": 8, "dropout": 0.05})
    train_projector: bool = False
    steps: int = 25000
    batch_size: int = 128  # samples per optimiser step, over all ranks and accumulation micro-steps
    grad_accum: int = 128
    lr: float = 4e-5
    min_lr: float = 0.0
    warmup_steps: int = 500
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    workers: int = 2  # processes that probe videos and lay out prompts (frames are decoded by VideoLLM.stream)
    device: str = "auto"
    precision: str = "auto"  # "auto" (bf16 autocast on cuda, fp32 on cpu), "bf16", "fp32"
    activation_checkpointing: bool = True
    chunk_frames: int = 32  # frames the visual encoder takes at a time
    seed: int = 0
    log_every: int = 10
    eval_every: int = 500
    save_every: int = 500
    keep_last: int = 3

    _PATHS = ("model", "data", "eval_data", "video_root", "output")

    def __post_init__(self):
        self.frames, self.fps = tuple(int(f) for f in self.frames), tuple(self.fps)
        clip = get_compression(self.compression).clip
        checks = [
            (all(f > 0 and f % clip == 0 for f in self.frames) and self.frames,
             f"frames={list(self.frames)} must be positive multiples of the {clip}-frame clip"),
            (len(self.fps) == 2 and 0 < self.fps[0] <= self.fps[1], f"fps={list(self.fps)} must be [low, high]"),
            (min(self.steps, self.batch_size, self.grad_accum, self.keep_last) > 0,
             "steps, batch_size, grad_accum and keep_last must be > 0"),
            (self.precision in ("auto", "bf16", "fp32"), f"precision={self.precision!r} must be auto, bf16 or fp32"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"adapt config: {message}")
        self.lora_settings()

    def lora_settings(self) -> LoraSettings:
        try:
            return LoraSettings(**self.lora)
        except TypeError as err:
            raise InputError(f"adapt config: lora {self.lora}: {err}") from None

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] = ()) -> AdaptConfig:
        """YAML file (optional) + `key=value` overrides (values parsed as YAML; `lora.r=8` sets one field)."""
        values = read_yaml(path, "adapt", cls._PATHS)
        if "encoder" in values:  # a student folder relative to the file
            values["encoder"] = str(EncoderSpec.parse(values["encoder"]).relative_to(Path(path).parent))
        return build(cls, apply_overrides(values, overrides), str(path or "overrides"), "adapt")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["frames"], d["fps"] = list(self.frames), list(self.fps)
        return d


# -- samples ------------------------------------------------------------------------------------------------------


def chat_ids(tokenizer, family, slots: list[Slot], turns) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and labels `(L,)`, `(L,)` of a conversation about a video laid out in `slots`; `turns` are
    (question, answer) pairs. The first turn is exactly the prompt `ask` builds (`build_input_ids`); later turns and
    the answers are the chat template's continuation, rendered turn by turn. Labels are IGNORE except on each answer
    and its end-of-turn token. The only place LMA builds prompts: when `ask`'s prompt changes, this follows."""
    first = build_input_ids(tokenizer, family, slots, turns[0][0])[0][0]
    messages, parts, rendered = [], [first], None
    for k, (question, answer) in enumerate(turns):
        video = [{"type": "video"}] if k == 0 else []  # a stand-in for the slots: only later text counts
        messages.append({"role": "user", "content": [*video, {"type": "text", "text": question}]})
        asked = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        answered = tokenizer.apply_chat_template(messages, tokenize=False)
        if rendered is not None:
            parts.append(_continuation(tokenizer, rendered, asked))
        parts.append(_continuation(tokenizer, asked, answered))
        rendered = answered
    ids = torch.cat(parts)
    label = torch.cat([torch.full_like(p, IGNORE) if i % 2 == 0 else p for i, p in enumerate(parts)])
    return ids, label


def _continuation(tokenizer, before: str, after: str) -> torch.Tensor:
    if not after.startswith(before):
        raise InputError(f"the chat template of {tokenizer.name_or_path} does not render a conversation as a "
                         "continuation of its beginning; LMA cannot mark the answer tokens")
    return torch.tensor(tokenizer(after[len(before):], add_special_tokens=False)["input_ids"], dtype=torch.long)


@dataclass(frozen=True)
class Prompter:
    """What a dataset worker needs to lay out a sample's prompt before anything is decoded: the tokenizer, the model
    family, the encoder's `(steps, tokens)` per frame budget (for the largest frames) and frames per step, the
    length of the clips `ask` samples, the context."""

    tokenizer: Any
    family: Any
    layouts: dict[int, tuple[int, int]]
    frames_per_step: int
    clip_frames: int
    context: int

    @classmethod
    def of(cls, llm: VideoLLM, budgets: Iterable[int]) -> Prompter:
        return cls(llm.tokenizer, llm.family, {b: llm.encoder.layout(b) for b in budgets},
                   llm.encoder.frames_per_step, llm.encoder.clip_frames, llm.family.context_length(llm.model))

    def ids(self, timestamps: list[float], counts: list[int], turns) -> tuple[torch.Tensor, torch.Tensor]:
        return chat_ids(self.tokenizer, self.family, make_slots(timestamps, counts, self.frames_per_step), turns)


class ChatDataset(Dataset):
    """Item i -> `{"id", "video", "timestamps", "counts", "ids" (L,), "labels" (L,), "turns", "frames"}` (the
    prompt laid out for the encoder's token counts; frames are decoded later, by `VideoLLM.stream`), or `{"id", "skip":
    reason, "detail"}`. The budget and rate are drawn from (seed, epoch, i); the context check runs before any frame
    is decoded."""

    def __init__(self, samples: list[ChatSample], prompter: Prompter, frames: tuple[int, ...],
                 fps: tuple[float, float], seed: int):
        self.samples, self.prompter, self.frames, self.fps, self.seed = samples, prompter, frames, fps, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def draw(self, index: int) -> tuple[int, float]:
        """(frame budget, frame rate) of sample `index` this epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return int(rng.choice(self.frames)), float(rng.uniform(*self.fps))

    def __getitem__(self, index: int) -> dict[str, Any]:
        s, p = self.samples[index], self.prompter
        if s.problem:
            return {"id": s.id, "skip": s.problem, "detail": ""}
        budget, rate = self.draw(index)
        try:
            with open_video(s.video) as reader:
                info = reader.info
        except (VideoDecodeError, OSError) as err:
            return {"id": s.id, "skip": "decode failure", "detail": one_line(err)}
        timestamps = sample_clips(info, budget, p.clip_frames, rate).timestamps.tolist()  # as `ask` samples
        steps, tokens = p.layouts[budget]
        counts = frame_budgets(steps, tokens).tolist()
        ids, labels = p.ids(timestamps, counts, s.turns)
        if len(ids) > p.context:
            return {"id": s.id, "skip": "over context", "detail": f"{len(ids)} tokens at {budget} frames > {p.context}"}
        return {"id": s.id, "video": s.video, "timestamps": timestamps, "counts": counts, "ids": ids,
                "labels": labels, "turns": s.turns, "frames": budget}


def _collate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


class SkipSample(Exception):
    """A sample found unusable only once its frames are read: `reason` (counted), `detail` (logged)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


# -- the model ----------------------------------------------------------------------------------------------------


class AdaptModel:
    """A `VideoLLM` whose LLM is wrapped with LoRA by PEFT: `inputs(item)` -> one sample's LLM inputs and labels,
    made by `ask`'s own code, `sample_losses(batch)` -> per-sample answer losses."""

    @classmethod
    def load(cls, cfg: AdaptConfig, device: torch.device, dtype: torch.dtype, bf16: bool) -> AdaptModel:
        """From the checkpoint folder `cfg.model`, loaded in `dtype` on `device` as `ask` loads it; `bf16` autocast."""
        return cls(VideoLLM.from_pretrained(cfg.model, cfg.encoder, cfg.compression, device=device, dtype=dtype,
                                            chunk_frames=cfg.chunk_frames), cfg, bf16)

    def __init__(self, llm: VideoLLM, cfg: AdaptConfig, bf16: bool = False):
        self.prompter = Prompter.of(llm, cfg.frames)  # checks every budget against the encoder
        self.llm, self.device, self.bf16 = llm, llm.device, bf16
        self.peft = add_lora(llm.model, cfg.lora_settings(), cfg.train_projector)
        self.params = [p for p in self.peft.parameters() if p.requires_grad]
        for p in self.params:
            p.data = p.data.float()  # trained weights and their optimiser state stay float32 under bf16 weights
        self.base = self.peft.get_base_model()
        for module in self.base.modules():  # a trained projector: the encoder takes PEFT's trainable copy
            if getattr(module, "original_module", None) is llm.encoder.projector:
                llm.encoder.projector = module
        self.lm, self.head = self.base.get_decoder(), self.base.get_output_embeddings()
        if cfg.activation_checkpointing:
            self.lm.activation_checkpointing_enable({"use_reentrant": False})

    def train(self, mode: bool = True) -> None:
        self.peft.train(mode)
        self.llm.encoder.eval()  # frozen: no dropout there in any case

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def inputs(self, item: dict[str, Any]) -> tuple[LLMInputs, torch.Tensor]:
        """A dataset item -> the LLM's inputs (the family's, positions included) and labels `(L,)`, as `ask` makes
        them: `VideoLLM.encode` of the item's frames, the chat prompt on its slots, `VideoLLM.inputs`. The visual
        tokens keep a graph only if the projector trains. Raises SkipSample when the frames cannot be read or a set
        reducer's prompt exceeds the context."""
        try:
            with warnings.catch_warnings(), self.autocast():
                warnings.simplefilter("error", VideoDecodeWarning)  # part-decoded: as bad as not at all
                enc = self.llm.encode(item["video"], timestamps=item["timestamps"])
        except (VideoDecodeError, VideoDecodeWarning, OSError) as err:
            raise SkipSample("decode failure", one_line(err)) from None
        ids, labels = item["ids"], item["labels"]
        if enc.visual.counts != item["counts"]:  # a set reducer's (or a frame size's) counts are known only now
            ids, labels = chat_ids(self.prompter.tokenizer, self.prompter.family, enc.slots, item["turns"])
            if len(ids) > self.prompter.context:
                raise SkipSample("over context", f"{len(ids)} tokens at {item['frames']} frames")
        with self.autocast():
            inputs = self.llm.inputs(ids[None], enc)
        return inputs, labels.to(self.device)

    def sample_losses(self, batch: list[tuple[LLMInputs, torch.Tensor]]) -> tuple[torch.Tensor, int]:
        """Per-sample mean cross-entropy over answer tokens `(B,)`, and the tokens the LLM read."""
        lengths = [len(y) for _, y in batch]
        inputs = LLMInputs.batch([x for x, _ in batch])
        labels = torch.stack([F.pad(y, (0, max(lengths) - len(y)), value=IGNORE) for _, y in batch])
        with self.autocast():
            hidden = self.lm(**inputs.forward_kwargs(), use_cache=False).last_hidden_state
            targets = labels[:, 1:]
            keep = targets != IGNORE
            logits = self.head(hidden[:, :-1][keep])  # only where an answer token is predicted
        ce = F.cross_entropy(logits.float(), targets[keep], reduction="none")
        sums = torch.zeros(len(batch), device=self.device).index_add(0, keep.nonzero()[:, 0], ce)
        return sums / keep.sum(1).clamp(min=1), sum(lengths)


# -- the job ------------------------------------------------------------------------------------------------------


def adapt(cfg: AdaptConfig) -> RunResult:
    """Train LoRA adapters as `cfg` says; resumes from the newest checkpoint in `cfg.output`."""
    for key in ("model", "data"):
        if not getattr(cfg, key):
            raise InputError(f"adapt config: `{key}` is required")
    samples = read_chat_manifest(cfg.data, cfg.video_root or None)  # bad manifests fail before the model loads
    held_out = read_chat_manifest(cfg.eval_data, cfg.video_root or None) if cfg.eval_data else []
    with job_setup(cfg) as job:
        return Trainer(cfg, job, samples, held_out).run()


class Trainer:
    def __init__(self, cfg: AdaptConfig, job: Job, samples: list[ChatSample], held_out: list[ChatSample]):
        ctx = job.ctx
        micro, rest = divmod(cfg.batch_size, ctx.world * cfg.grad_accum)
        if rest or not micro:
            raise InputError(f"adapt config: batch_size={cfg.batch_size} must be a multiple of ranks x grad_accum "
                             f"= {ctx.world} x {cfg.grad_accum}")
        self.cfg, self.ctx, self.micro, self.out = cfg, ctx, micro, Path(cfg.output)
        cuda = ctx.device.type == "cuda"
        self.model = AdaptModel.load(cfg, ctx.device, torch.bfloat16 if cuda else torch.float32, job.bf16)
        prompter = self.model.prompter
        self.dataset = ChatDataset(samples, prompter, cfg.frames, cfg.fps, cfg.seed)
        self.held_out = ChatDataset(held_out, prompter, cfg.frames, cfg.fps, cfg.seed + 1)
        self.sampler = ResumableSampler(self.dataset, ctx.world, ctx.rank, cfg.seed)
        self.micro_per_epoch = self.sampler.num_samples // micro // cfg.grad_accum * cfg.grad_accum
        if not self.micro_per_epoch:
            raise InputError(f"{cfg.data}: {len(samples)} samples are fewer than one step's batch of "
                             f"{cfg.batch_size}")
        self.optimizer = torch.optim.AdamW(self.model.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = scheduler(self.optimizer, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.steps)
        self.state = TrainState()
        self.checkpointer = Checkpointer(self.out / "checkpoints", cfg.keep_last, ctx)
        peft = self.model.peft
        self.stateful = {"model": ModelState(peft, trainable_only=True), "optim": OptimizerState(peft, self.optimizer),
                         "scheduler": self.scheduler, "train": self.state, "rng": RNGState(ctx),
                         "config": ConfigState(cfg.to_dict())}
        self.skips = Skips()  # logs each sample's reason once; `state.skipped` counts every skip of every rank

    def run(self) -> RunResult:
        cfg, ctx, state = self.cfg, self.ctx, self.state
        self.checkpointer.resume(self.stateful)
        if ctx.main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out / "config.yaml")
        metrics = MetricLog(self.out, state.step, cfg.steps, "adapt", ctx.main)
        last: dict[str, Any] = {}
        with sigterm_flag() as stop, contextlib.closing(metrics):
            if state.step == 0 and len(self.held_out):  # the untrained model's held-out loss, to compare against
                metrics.write({"step": 0, "eval_loss": self.evaluate()})
            while state.step < cfg.steps:
                batches = self._epoch_batches()
                while state.step < cfg.steps and state.position < self.micro_per_epoch:
                    tic = time.perf_counter()
                    loss, tokens, frames, kept, skipped, grad_norm = self._train_step(batches)
                    loss, tokens, frames, kept, skipped, stopping = all_sum(
                        [loss, tokens, frames, kept, skipped, float(stop.set)], ctx)
                    state.step += 1
                    state.position += cfg.grad_accum
                    state.samples += int(kept)
                    state.tokens += int(tokens)
                    state.skipped += int(skipped)
                    if state.position == self.micro_per_epoch:
                        state.epoch, state.position = state.epoch + 1, 0
                    last = {"step": state.step, "epoch": state.epoch, "loss": loss / max(kept, 1.0),
                            "lr": self.scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                            "tokens_per_s": tokens / (time.perf_counter() - tic),
                            "frames_per_sample": frames / max(kept, 1.0), "skipped": state.skipped,
                            "peak_mem_mib": peak_memory_mib(ctx.device)}
                    metrics.step(loss=last["loss"])
                    evaluate = bool(len(self.held_out)) and (state.step % cfg.eval_every == 0 or
                                                             state.step == cfg.steps)
                    if evaluate:
                        last["eval_loss"] = self.evaluate()
                    if state.step % cfg.log_every == 0 or evaluate or state.step == cfg.steps:
                        metrics.write(last)
                    if stopping:
                        self.save()
                        log.warning("stopped by SIGTERM at step %d; run the same command to resume", state.step)
                        return RunResult(None, state.step, last)
                    if state.step % cfg.save_every == 0 or state.step == cfg.steps:
                        self.save()
                    if state.position == 0:
                        break  # epoch finished: a new loader for the next order and draws
        folder = self.out / "adapter"
        if ctx.main:
            save_adapter(self.model.peft, folder)
        barrier(ctx)
        return RunResult(folder, state.step, last)

    def save(self) -> None:
        """A checkpoint of the LoRA weights, optimiser, schedule, data position, RNG and config (collective)."""
        self.checkpointer.save(self.state.step, self.stateful)

    def _epoch_batches(self):
        self.dataset.epoch = self.state.epoch
        self.sampler.set_epoch(self.state.epoch, start=self.state.position * self.micro)
        # its own generator: creating the loader must not draw from the global RNG that LoRA dropout uses.
        # forkserver: a worker forked from this process, whose decoding threads (stream_video, FFmpeg) may hold
        # locks at that moment, can hang in its first decoder call
        workers = self.cfg.workers
        return iter(DataLoader(self.dataset, batch_size=self.micro, sampler=self.sampler, num_workers=workers,
                               collate_fn=_collate, worker_init_fn=worker_init,
                               multiprocessing_context="forkserver" if workers else None,
                               generator=torch.Generator().manual_seed(self.cfg.seed + self.state.epoch)))

    def _train_step(self, batches) -> tuple[float, float, float, float, float, float]:
        """One optimiser step over `grad_accum` micro-batches -> (summed sample losses, tokens, frames, samples
        kept, samples skipped, grad norm). The step minimises the mean of per-sample losses over `batch_size`
        samples; a skipped sample counts as zero, so every rank and accumulation layout computes the same
        gradient."""
        cfg = self.cfg
        self.model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.ctx.device)
        tokens = frames = kept = skipped = 0
        for _ in range(cfg.grad_accum):
            items = next(batches)
            ready = self._usable(items)
            skipped += len(items) - len(ready)
            if not ready:
                continue
            losses, read = self.model.sample_losses([x for _, x in ready])
            (losses.sum() / cfg.batch_size).backward()
            loss_sum += losses.detach().sum().double()
            tokens, frames, kept = tokens + read, frames + sum(i["frames"] for i, _ in ready), kept + len(ready)
        _sum_grads(self.model.params, self.ctx)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.params, cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss, grad_norm = torch.stack([loss_sum, grad_norm.double()]).tolist()  # one host sync per step
        return loss, tokens, frames, kept, skipped, grad_norm

    def _usable(self, items: list[dict[str, Any]]) -> list[tuple[dict[str, Any], tuple[torch.Tensor, torch.Tensor]]]:
        """Items that read, with their inputs; the others are skipped, logged once per sample and reason."""
        ready = []
        for item in items:
            try:
                if "skip" in item:
                    raise SkipSample(item["skip"], item["detail"])
                ready.append((item, self.model.inputs(item)))
            except SkipSample as skip:
                self.skips.add(item["id"], skip.reason, skip.detail)
        return ready

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean per-sample answer loss over the held-out set (each rank takes a share), draws fixed by the seed."""
        self.model.train(False)
        total = count = 0.0
        for i in range(self.ctx.rank, len(self.held_out), self.ctx.world):
            for _, inputs in self._usable([self.held_out[i]]):
                losses, _ = self.model.sample_losses([inputs])
                total, count = total + losses.sum().item(), count + 1
        total, count = all_sum([total, count], self.ctx)
        return total / max(count, 1.0)


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
