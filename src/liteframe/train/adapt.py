"""Language Model Adaptation (SPEC 6): the training job behind `liteframe adapt`.

LoRA adapters on an InternVL3 checkpoint's LLM learn to read compressed visual tokens from chat data. Each sample
draws its frame budget from `frames` and its frame rate from `fps`, then takes dense clips with the inference
sampler (`clips`), so training sees frames laid out as `ask` does; the prompt is `ask`'s, and the loss counts only
the answers. The visual encoder (dense ViT, a reducer, or a student) and the projector are frozen: their tokens are
computed under no_grad unless the projector trains.

One process per device under torchrun (gradients of the few LoRA weights are summed by one all-reduce per step),
or a plain single process. Data order comes from a seeded sampler and each sample's draws from (seed, epoch, index),
so a run resumed from its last checkpoint reaches the same adapter as one never interrupted.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from liteframe.compression import get_compression
from liteframe.errors import InputError, one_line
from liteframe.llm.encoders import VisualEncoder, build_encoder
from liteframe.llm.lora import LoraSettings, add_lora, save_adapter
from liteframe.llm.prompt import build_input_ids, slot_labels
from liteframe.llm.videollm import _check_checkpoint, _load_tokenizer, _load_weights
from liteframe.models import Teacher
from liteframe.train import checkpoint as ckpt
from liteframe.train.config import _coerce
from liteframe.train.data import ResumableSampler, worker_init
from liteframe.train.dist import Context, all_sum, barrier, setup, teardown
from liteframe.train.distill import _cosine, _gather, _peak_memory_mib, _StopFlag, _truncate_metrics
from liteframe.train.manifest import ChatSample, Skips, read_chat_manifest
from liteframe.video import open_video, preprocess, sample_frames
from liteframe.video.decode import VideoDecodeError, VideoDecodeWarning

log = logging.getLogger("liteframe.train")
IGNORE = -100  # label of tokens the loss does not count


@dataclass
class AdaptConfig:
    """Everything an LMA run depends on. Paths in a YAML file are relative to that file."""

    model: str = ""  # an InternVL3 `-hf` folder
    encoder: str = "dense"  # `dense`, a reducer name, or `student:DIR`
    compression: int = 16
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
    workers: int = 2
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
        values: dict[str, Any] = {}
        if path:
            path = Path(path)
            try:
                values = yaml.safe_load(path.read_text()) or {}
            except (OSError, yaml.YAMLError) as err:
                raise InputError(f"{path}: cannot read the adapt config: {one_line(err)}") from None
            if not isinstance(values, dict):
                raise InputError(f"{path}: an adapt config is a mapping of keys to values")
            for key in cls._PATHS:
                if values.get(key):
                    values[key] = str((path.parent / values[key]).resolve())
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise InputError(f"override {item!r}: expected key=value")
            key, _, sub = key.strip().partition(".")
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError as err:
                raise InputError(f"override {item!r}: not a YAML value ({one_line(err)})") from None
            values[key] = {**(values.get(key) or {}), sub: value} if sub else value
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise InputError(f"{path or 'overrides'}: unknown adapt setting(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(names))}")
        hints = typing.get_type_hints(cls)
        return cls(**{k: v if k == "frames" else _coerce(k, v, hints[k], str(path or "overrides"))
                      for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["frames"], d["fps"] = list(self.frames), list(self.fps)
        return d


# -- samples ------------------------------------------------------------------------------------------------------


def chat_ids(tokenizer, slots: list[str], tokens_per_slot: int, turns) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and labels `(L,)`, `(L,)` of a conversation about a video whose image slots are named `slots`
    (`slot_labels`), each `tokens_per_slot` visual tokens long; `turns` are (question, answer) pairs. The first turn is exactly the prompt
    `ask` builds (`build_input_ids`); later turns and the answers are the chat template's continuation, rendered
    turn by turn. Labels are IGNORE except on each answer and its end-of-turn token.

    The only place LMA builds prompts: when `ask`'s prompt changes, this follows."""
    first = build_input_ids(tokenizer, slots, tokens_per_slot, turns[0][0])[0]
    messages, parts, rendered = [], [first], None
    for question, answer in turns:
        messages.append({"role": "user", "content": f"<video>\n{question}"})  # a stand-in: only later text counts
        asked = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        messages.append({"role": "assistant", "content": answer})
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
class Layout:
    """How an encoder lays frames out in the prompt, known before anything is decoded: frames per image slot and
    LLM tokens per slot for a frame budget."""

    dense_tokens: int  # tokens per frame of the dense pipeline (InternVL's `image_seq_length`)
    ratio: int  # compression of the encoder (1: dense)
    merged: int  # frames per slot of a grid encoder; 0: one slot for the whole video (a set reducer)
    image_size: int

    @classmethod
    def of(cls, encoder: VisualEncoder, dense_tokens: int, compression: int) -> Layout:
        merged = 0 if encoder.is_set_reducer else encoder.merged_frames
        return cls(dense_tokens, 1 if encoder.name == "dense" else compression, merged, encoder.image_size)

    def slots(self, frames: int) -> tuple[int, int]:
        """(frames per slot, tokens per slot) at a budget of `frames`."""
        per_slot = self.merged or frames
        return per_slot, math.ceil(per_slot * self.dense_tokens / self.ratio)


class ChatDataset(Dataset):
    """Item i -> `{"id", "pixels" uint8 (T, 3, H, W), "ids" (L,), "labels" (L,), "frames"}`, or `{"id", "skip":
    reason, "detail"}`. The budget and rate are drawn from (seed, epoch, i); the context check runs before any
    frame is decoded."""

    def __init__(self, samples: list[ChatSample], tokenizer, layout: Layout, frames: tuple[int, ...],
                 fps: tuple[float, float], context: int, seed: int):
        self.samples, self.tokenizer, self.layout = samples, tokenizer, layout
        self.frames, self.fps, self.context, self.seed = frames, fps, context, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def draw(self, index: int) -> tuple[int, float]:
        """(frame budget, frame rate) of sample `index` this epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return int(rng.choice(self.frames)), float(rng.uniform(*self.fps))

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.samples[index]
        if s.problem:
            return {"id": s.id, "skip": s.problem, "detail": ""}
        budget, rate = self.draw(index)
        try:
            with open_video(s.video) as reader:
                sample = sample_frames(reader.info, budget, "clips", rate=rate)
                per_slot, tokens = self.layout.slots(budget)
                ids, labels = chat_ids(self.tokenizer, slot_labels(sample.timestamps.tolist(), per_slot), tokens,
                                       s.turns)
                if len(ids) > self.context:
                    return {"id": s.id, "skip": "over context",
                            "detail": f"{len(ids)} tokens at {budget} frames > {self.context}"}
                with warnings.catch_warnings():
                    warnings.simplefilter("error", VideoDecodeWarning)  # part-decoded: as bad as not at all
                    raw = reader.read(sample.timestamps).data
        except (VideoDecodeError, VideoDecodeWarning, OSError) as err:
            return {"id": s.id, "skip": "decode failure", "detail": one_line(err)}
        return {"id": s.id, "pixels": raw, "ids": ids, "labels": labels, "frames": budget}


def _collate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


# -- the model ----------------------------------------------------------------------------------------------------


class AdaptModel:
    """A PEFT-wrapped InternVL3 model and the frozen visual encoder in front of it: `sample_losses(items)`."""

    @classmethod
    def load(cls, cfg: AdaptConfig, device: torch.device, dtype: torch.dtype) -> AdaptModel:
        """From the `-hf` folder `cfg.model`, loaded in `dtype` (on CPU first, then moved)."""
        _check_checkpoint(Path(cfg.model))
        return cls(_load_weights(Path(cfg.model), dtype), _load_tokenizer(Path(cfg.model)), cfg, device, dtype)

    def __init__(self, hf, tokenizer, cfg: AdaptConfig, device: torch.device, dtype: torch.dtype):
        self.tokenizer = tokenizer
        self.peft = add_lora(hf, cfg.lora_settings(), cfg.train_projector)
        self.params = [p for p in self.peft.parameters() if p.requires_grad]
        inner = self.peft.get_base_model().model
        self.encoder = build_encoder(cfg.encoder, Teacher(inner.vision_tower, inner.multi_modal_projector),
                                     cfg.compression)  # Teacher freezes its modules, projector included:
        for p in self.params:
            p.requires_grad_(True)  # ... a trainable projector trains again
        for frames in cfg.frames:
            self.encoder.check_frames(frames)
        if cfg.chunk_frames % self.encoder.frame_multiple:
            raise InputError(f"adapt config: chunk_frames={cfg.chunk_frames} is not a multiple of the encoder's "
                             f"{self.encoder.frame_multiple}-frame clips")
        if not isinstance(self.encoder.backbone, Teacher):
            inner.vision_tower = None  # a student: the dense tower is never needed
        self.peft.to(device)
        self.encoder.to(device=device, dtype=dtype)
        for p in self.params:
            p.data = p.data.float()  # trained weights and their optimiser state stay float32 under bf16 weights
        self.llm, self.head = inner.language_model, self.peft.get_base_model().lm_head
        self.embed = self.peft.get_input_embeddings()
        self.image_token = hf.config.image_token_id
        self.context = hf.config.text_config.max_position_embeddings
        self.layout = Layout.of(self.encoder, hf.config.image_seq_length, cfg.compression)
        self.device, self.dtype, self.chunk = device, dtype, cfg.chunk_frames
        self.train_projector = cfg.train_projector
        if cfg.activation_checkpointing:
            self.llm.activation_checkpointing_enable({"use_reentrant": False})

    def train(self, mode: bool = True) -> None:
        self.peft.train(mode)
        self.encoder.eval()  # frozen: no dropout there in any case

    def visual(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 `(T, 3, H, W)` frames -> `(N, d_llm)` tokens, preprocessed and encoded `chunk_frames` at a time on
        the device (as `ask` does); no graph unless the projector trains."""
        size = self.layout.image_size
        with torch.set_grad_enabled(self.train_projector and torch.is_grad_enabled()):
            parts = [self.encoder.encode_chunk(preprocess(chunk, size, device=self.device).to(self.dtype)[None])
                     for chunk in frames.split(self.chunk)]
            return self.encoder.finish(parts)[0]

    def sample_losses(self, items: list[dict[str, Any]], bf16: bool) -> tuple[torch.Tensor, int]:
        """Per-sample mean cross-entropy over answer tokens `(B,)`, and the tokens the LLM read."""
        embeds, labels = [], []
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            for item in items:
                ids = item["ids"].to(self.device)
                e = self.embed(ids)
                tokens = self.visual(item["pixels"]).to(e.dtype)
                is_image = ids == self.image_token
                if int(is_image.sum()) != tokens.shape[0]:
                    raise RuntimeError(f"{item['id']}: the encoder gave {tokens.shape[0]} visual tokens for "
                                       f"{int(is_image.sum())} image slots")  # the Layout disagrees with the encoder
                embeds.append(e.masked_scatter(is_image[:, None], tokens))
                labels.append(item["labels"].to(self.device))
            lengths = [len(x) for x in labels]
            width = max(lengths)
            mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths], device=self.device)
            embeds = torch.stack([F.pad(e, (0, 0, 0, width - len(e))) for e in embeds])
            labels = torch.stack([F.pad(y, (0, width - len(y)), value=IGNORE) for y in labels])
            hidden = self.llm(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
            targets = labels[:, 1:]
            keep = targets != IGNORE
            logits = self.head(hidden[:, :-1][keep])  # only where an answer token is predicted
        ce = F.cross_entropy(logits.float(), targets[keep], reduction="none")
        row = keep.nonzero()[:, 0]
        sums = torch.zeros(len(items), device=self.device).index_add(0, row, ce)
        return sums / keep.sum(1).clamp(min=1), sum(lengths)


# -- the job ------------------------------------------------------------------------------------------------------


@dataclass
class Result:
    """What a run left behind: the adapter folder (None when stopped early), the last step, the last metrics."""

    adapter: Path | None
    step: int
    metrics: dict[str, Any]


def adapt(cfg: AdaptConfig) -> Result:
    """Train LoRA adapters as `cfg` says; resumes from the newest checkpoint in `cfg.output`."""
    for key in ("model", "data"):
        if not getattr(cfg, key):
            raise InputError(f"adapt config: `{key}` is required")
    samples = read_chat_manifest(cfg.data, cfg.video_root or None)  # bad manifests fail before the model loads
    held_out = read_chat_manifest(cfg.eval_data, cfg.video_root or None) if cfg.eval_data else []
    ctx = setup(cfg.device)
    try:
        return Trainer(cfg, ctx, samples, held_out).run()
    finally:
        teardown()


class Trainer:
    def __init__(self, cfg: AdaptConfig, ctx: Context, samples: list[ChatSample], held_out: list[ChatSample]):
        micro, rest = divmod(cfg.batch_size, ctx.world * cfg.grad_accum)
        if rest or not micro:
            raise InputError(f"adapt config: batch_size={cfg.batch_size} must be a multiple of ranks x grad_accum "
                             f"= {ctx.world} x {cfg.grad_accum}")
        self.cfg, self.ctx, self.micro, self.out = cfg, ctx, micro, Path(cfg.output)
        cuda = ctx.device.type == "cuda"
        self.bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and cuda)
        torch.manual_seed(cfg.seed)  # the same LoRA initialisation on every rank
        self.model = AdaptModel.load(cfg, ctx.device, torch.bfloat16 if cuda else torch.float32)
        m = self.model
        self.dataset = ChatDataset(samples, m.tokenizer, m.layout, cfg.frames, cfg.fps, m.context, cfg.seed)
        self.held_out = ChatDataset(held_out, m.tokenizer, m.layout, cfg.frames, cfg.fps, m.context, cfg.seed + 1)
        self.sampler = ResumableSampler(self.dataset, ctx.world, ctx.rank, cfg.seed)
        self.micro_per_epoch = self.sampler.num_samples // micro // cfg.grad_accum * cfg.grad_accum
        if not self.micro_per_epoch:
            raise InputError(f"{cfg.data}: {len(samples)} samples are fewer than one step's batch of "
                             f"{cfg.batch_size}")
        self.optimizer = torch.optim.AdamW(m.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _cosine(cfg))
        self.step = self.epoch = self.position = 0
        self.skips = Skips()
        self.skipped_before = 0  # skips of all ranks before a resume (held by rank 0)

    def run(self) -> Result:
        cfg, ctx = self.cfg, self.ctx
        resumed = self._resume()
        if ctx.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            _truncate_metrics(self.out / "metrics.jsonl", self.step)
        if resumed:
            log.info("resumed from %s at step %d", resumed, self.step)
        writer = self._tensorboard()
        if self.step == 0 and len(self.held_out):  # the untrained model's held-out loss, to compare against
            untrained = {"step": 0, "eval_loss": self.evaluate()}
            if ctx.main:
                self._log(untrained, writer)
        stop = _StopFlag()
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not ctx.main, desc="adapt", dynamic_ncols=True)
        last: dict[str, Any] = {}
        try:
            while self.step < cfg.steps:
                batches = self._epoch_batches()
                while self.step < cfg.steps and self.position < self.micro_per_epoch:
                    tic = time.perf_counter()
                    loss, tokens, frames, kept, grad_norm = self._train_step(batches)
                    loss, tokens, frames, kept, skipped, stopping = all_sum(
                        [loss, tokens, frames, kept, float(self._skipped()), float(stop.set)], ctx)
                    self.step += 1
                    self.position += cfg.grad_accum
                    if self.position == self.micro_per_epoch:
                        self.epoch, self.position = self.epoch + 1, 0
                    last = {"step": self.step, "epoch": self.epoch, "loss": loss / max(kept, 1.0),
                            "lr": self.scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                            "tokens_per_s": tokens / (time.perf_counter() - tic),
                            "frames_per_sample": frames / max(kept, 1), "skipped": int(skipped),
                            "peak_mem_mib": _peak_memory_mib(ctx.device)}
                    bar.update(1)
                    bar.set_postfix(loss=f"{last['loss']:.4f}")
                    evaluate = bool(len(self.held_out)) and (self.step % cfg.eval_every == 0 or
                                                             self.step == cfg.steps)
                    if evaluate:
                        last["eval_loss"] = self.evaluate()
                    if ctx.main and (self.step % cfg.log_every == 0 or evaluate or self.step == cfg.steps):
                        self._log(last, writer)
                    if stopping:
                        self.save()
                        log.warning("stopped by SIGTERM at step %d; run the same command to resume", self.step)
                        return Result(None, self.step, last)
                    if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                        self.save()
                    if self.position == 0:
                        break
        finally:
            stop.restore()
            bar.close()
            if writer is not None:
                writer.close()
        folder = self.out / "adapter"
        if ctx.main:
            save_adapter(self.model.peft, folder)
        barrier(ctx)
        return Result(folder, self.step, last)

    def _epoch_batches(self):
        self.dataset.epoch = self.epoch
        self.sampler.set_epoch(self.epoch, start=self.position * self.micro)
        # its own generator: creating the loader must not draw from the global RNG that LoRA dropout uses
        return iter(DataLoader(self.dataset, batch_size=self.micro, sampler=self.sampler, num_workers=self.cfg.workers,
                               collate_fn=_collate, worker_init_fn=worker_init,
                               generator=torch.Generator().manual_seed(self.cfg.seed + self.epoch)))

    def _train_step(self, batches) -> tuple[float, float, float, float, float]:
        """One optimiser step over `grad_accum` micro-batches -> (summed sample losses, tokens, frames, samples
        kept, grad norm). The step minimises the mean of per-sample losses over `batch_size` samples; a skipped
        sample counts as zero, so every rank and accumulation layout computes the same gradient."""
        cfg = self.cfg
        self.model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.ctx.device)
        tokens = frames = kept = 0
        for _ in range(cfg.grad_accum):
            items = self._usable(next(batches))
            if not items:
                continue
            losses, read = self.model.sample_losses(items, self.bf16)
            (losses.sum() / cfg.batch_size).backward()
            loss_sum += losses.detach().sum().double()
            tokens, frames, kept = tokens + read, frames + sum(i["frames"] for i in items), kept + len(items)
        _sum_grads(self.model.params, self.ctx)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.params, cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss, grad_norm = torch.stack([loss_sum, grad_norm.double()]).tolist()  # one host sync per step
        return loss, tokens, frames, kept, grad_norm

    def _skipped(self) -> int:
        return self.skips.total + self.skipped_before

    def _usable(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for item in items:
            if "skip" in item:
                self.skips.add(item["id"], item["skip"], item["detail"])
        return [i for i in items if "skip" not in i]

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean per-sample answer loss over the held-out set (each rank takes a share), draws fixed by the seed."""
        self.model.train(False)
        total = count = 0.0
        for i in range(self.ctx.rank, len(self.held_out), self.ctx.world):
            item = self.held_out[i]
            if "skip" in item:
                continue
            losses, _ = self.model.sample_losses([item], self.bf16)
            total, count = total + losses.sum().item(), count + 1
        total, count = all_sum([total, count], self.ctx)
        return total / max(count, 1.0)

    # -- checkpoints ------------------------------------------------------------------------------------------------

    def _names(self) -> list[str]:
        trainable = {id(p) for p in self.model.params}
        return [n for n, p in self.model.peft.named_parameters() if id(p) in trainable]

    def save(self) -> None:
        """A checkpoint of the trained weights, optimiser, schedule, data position and RNG (collective)."""
        skipped = int(all_sum([float(self._skipped())], self.ctx)[0])
        rng = [_gather(torch.get_rng_state(), self.ctx)]
        if self.ctx.device.type == "cuda":
            rng.append(_gather(torch.cuda.get_rng_state(self.ctx.device), self.ctx))
        if not self.ctx.main:
            return
        names = self._names()
        tensors = {f"model/{n}": p for n, p in zip(names, self.model.params)}
        optim = self.optimizer.state_dict()
        for i, per in optim["state"].items():
            tensors.update({f"optim/{names[i]}/{k}": v.reshape(-1) if k == "step" else v for k, v in per.items()})
        tensors.update({f"rng/{k}": t for k, t in zip(("cpu", "cuda"), rng)})
        state = {"step": self.step, "epoch": self.epoch, "position": self.position, "world": self.ctx.world,
                 "skipped": skipped, "scheduler": self.scheduler.state_dict(),
                 "param_groups": optim["param_groups"], "config": self.cfg.to_dict()}
        ckpt.save_checkpoint(self.out / "checkpoints", self.step, tensors, state, self.cfg.keep_last)

    def _resume(self) -> Path | None:
        found = ckpt.list_checkpoints(self.out / "checkpoints")
        if not found:
            return None
        tensors, state = ckpt.load_checkpoint(found[-1])
        names = self._names()
        with torch.no_grad():
            for n, p in zip(names, self.model.params):
                p.copy_(tensors[f"model/{n}"])
        per = {i: {k: tensors[f"optim/{n}/{k}"].reshape(()) if k == "step" else tensors[f"optim/{n}/{k}"]
                   for k in ("step", "exp_avg", "exp_avg_sq")}
               for i, n in enumerate(names) if f"optim/{n}/step" in tensors}
        self.optimizer.load_state_dict({"state": per, "param_groups": state["param_groups"]})
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self.skipped_before = state["skipped"] if self.ctx.main else 0
        if state["world"] == self.ctx.world:
            torch.set_rng_state(tensors["rng/cpu"][self.ctx.rank].clone())
            if "rng/cuda" in tensors and self.ctx.device.type == "cuda":
                torch.cuda.set_rng_state(tensors["rng/cuda"][self.ctx.rank].clone(), self.ctx.device)
        return found[-1]

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
