"""`liteframe bench adapt`: LMA training throughput and peak memory at frame budgets of 128, 256 and 512.

The job's own training step (`AdaptTrainer.train_step`) on one sample per step, as the full-size run takes it: the
sample laid out by the job's data set (frames at 4 fps of a generated video, the prompt `ask` builds), its frames
decoded and encoded by the frozen visual encoder, the LLM with LoRA and activation checkpointing, the answer-only
loss, backward, gradient clipping, the optimiser and the schedule. CPU: the tiny random InternVL3 in float32. CUDA:
InternVL3-8B's shapes (InternViT-300M and Qwen2.5-7B) with random weights in bf16 (weights do not change speed or
memory). Tokens are what the LLM reads (prompt, visual tokens and answer); peak memory is the device's allocator
peak on CUDA, the process's peak resident size on CPU (which only grows: budgets run in increasing order).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from transformers import AutoTokenizer, InternVLForConditionalGeneration

from liteframe.compression import get_compression
from liteframe.devices import resolve_device, resolve_dtype
from liteframe.errors import InputError
from liteframe.llm import EncoderSpec, VideoLLM, build_encoder, get_family
from liteframe.testing import random_internvl_8b, save_tiny_internvl, synthetic_video
from liteframe.timing import synchronize
from liteframe.train.adapt import AdaptConfig, AdaptTrainer
from liteframe.train.adapt.manifest import read_chat_manifest
from liteframe.train.adapt.model import AdaptModel
from liteframe.train.dist import Context
from liteframe.train.job import Job, uses_bf16
from liteframe.train.metrics import peak_memory_mib

QUESTION = "What happens in this video? Describe the main action."
ANSWER = "A person flips a pancake in a pan and catches it; the pancake lands back in the pan."
FPS = 4.0  # the generated video's frame rate, and the rate samples are drawn at: consecutive frames


def run(device: str = "cpu", budgets: Sequence[int] = (128, 256, 512), steps: int = 3,
        encoder: str = "wap") -> list[dict]:
    """One row per frame budget: tokens per sample, training tokens/s (median over `steps` after one warm-up),
    step ms and peak memory."""
    target = resolve_device(device)
    cuda = target.type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = AdaptConfig(encoder=encoder, data=str(_sample(root, max(budgets))), frames=tuple(sorted(budgets)),
                          fps=(FPS, FPS), batch_size=1, grad_accum=1, workers=0, device=target.type,
                          output=str(root / "unused"), activation_checkpointing=True)
        hf, tokenizer = _random_8b(root, target) if cuda else _tiny(root)
        visual = build_encoder(get_family("internvl"), hf, EncoderSpec.parse(encoder))
        llm = VideoLLM(hf.to(target), tokenizer, visual.to(device=target, dtype=resolve_dtype("auto", target)),
                       cfg.chunk_frames)
        job = Job(Context(0, 1, target), uses_bf16(cfg.precision, target), get_compression(cfg.compression))
        model = AdaptModel(llm, cfg, bf16=job.bf16)
        samples = read_chat_manifest(cfg.data)
        rows = []
        for frames in cfg.frames:
            trainer = AdaptTrainer(dataclasses.replace(cfg, frames=(frames,)), job, samples, [], model=model)
            batch = [trainer.dataset[0]]  # the sample as the job's data set lays it out at this budget
            times = []
            if cuda:
                torch.cuda.reset_peak_memory_stats(target)
            for _ in range(steps + 1):
                synchronize(target)
                tic = time.perf_counter()
                step = trainer.train_step(itertools.repeat(batch))
                synchronize(target)
                times.append(time.perf_counter() - tic)
            seconds = float(np.median(times[1:]))
            rows.append({"device": _name(target), "model": "InternVL3-8B shapes" if cuda else "tiny",
                         "encoder": encoder, "frames": frames, "tokens": step.tokens, "step ms": seconds * 1e3,
                         "tokens/s": step.tokens / seconds, "peak MiB": peak_memory_mib(target)})
        return rows


def _sample(root: Path, frames: int) -> Path:
    """A chat manifest of one sample over a generated video of at least `frames` frames at `FPS`."""
    synthetic_video(root / "clip.mp4", seconds=-(-frames // int(FPS)), fps=int(FPS))
    row = {"id": "synthetic", "video": "clip.mp4", "conversations": [
        {"from": "human", "value": f"<video>\n{QUESTION}"}, {"from": "gpt", "value": ANSWER}]}
    (root / "data.json").write_text(json.dumps([row]))
    return root / "data.json"


def _tiny(folder: Path):
    path = save_tiny_internvl(folder / "tiny")
    return (InternVLForConditionalGeneration.from_pretrained(path, dtype=torch.float32),
            AutoTokenizer.from_pretrained(path))


def _random_8b(folder: Path, device: torch.device):
    """InternVL3-8B's shapes with random weights, initialised on `device` (random init on a CPU is slow)."""
    if device.type != "cuda":
        raise InputError("InternVL3-8B shapes build billions of weights: they need a CUDA device")
    return random_internvl_8b(folder / "tokenizer", device, torch.bfloat16)


def _name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
