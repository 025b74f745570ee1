"""`liteframe bench adapt`: LMA training throughput and peak memory at frame budgets of 128, 256 and 512.

The training step of one sample as the full-size run takes it: its inputs as `ask` makes them (frames of a synthetic
video decoded by `ask`'s front end, the frozen visual encoder, the prompt `ask` builds), the LLM with LoRA and
activation checkpointing, the answer-only loss, backward and the optimiser. CPU: the tiny random InternVL3 in
float32. CUDA: InternVL3-8B's shapes (InternViT-300M and Qwen2.5-7B) with random weights in bf16 (weights do not
change speed or memory). Tokens are what the LLM reads (prompt, visual tokens and answer); peak memory is the
device's allocator peak on CUDA, the process's peak resident size on CPU (which only grows: budgets run in increasing
order).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from transformers import AutoTokenizer, InternVLForConditionalGeneration

from liteframe.devices import resolve_device
from liteframe.errors import InputError
from liteframe.llm import EncoderSpec, VideoLLM, build_encoder, get_family
from liteframe.reduce.base import frame_budgets
from liteframe.testing import random_internvl_8b, save_tiny_internvl, synthetic_video
from liteframe.timing import synchronize
from liteframe.train.adapt import AdaptConfig, AdaptModel
from liteframe.video import open_video
from liteframe.train.metrics import peak_memory_mib

QUESTION = "What happens in this video? Describe the main action."
ANSWER = "A person flips a pancake in a pan and catches it; the pancake lands back in the pan."


def run(device: str = "cpu", budgets: Sequence[int] = (128, 256, 512), steps: int = 3,
        encoder: str = "wap") -> list[dict]:
    """One row per frame budget: tokens per sample, training tokens/s (median over `steps` after one warm-up),
    step ms and peak memory."""
    target = resolve_device(device)
    cuda = target.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    cfg = AdaptConfig(encoder=encoder, frames=tuple(budgets), activation_checkpointing=True)
    with tempfile.TemporaryDirectory() as tmp:  # the checkpoint, then the video the samples read
        folder = Path(tmp)
        hf, tokenizer = _random_8b(folder, target) if cuda else _tiny(folder)
        visual = build_encoder(get_family("internvl"), hf, EncoderSpec.parse(encoder))
        llm = VideoLLM(hf.to(target), tokenizer, visual.to(device=target, dtype=dtype), cfg.chunk_frames)
        model = AdaptModel(llm, cfg, bf16=cuda)
        optimizer = torch.optim.AdamW(model.params, lr=cfg.lr)
        model.train()
        video = synthetic_video(folder / "video.mp4", seconds=max(budgets) // 24 + 1)
        rows = []
        for frames in sorted(budgets):
            item = _item(model, video, frames)
            times = []
            if cuda:
                torch.cuda.reset_peak_memory_stats(target)
            for _ in range(steps + 1):
                synchronize(target)
                tic = time.perf_counter()
                losses, tokens = model.sample_losses([model.inputs(item)])
                losses.sum().backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                synchronize(target)
                times.append(time.perf_counter() - tic)
            step = float(np.median(times[1:]))
            rows.append({"device": _name(target), "model": "InternVL3-8B shapes" if cuda else "tiny",
                         "encoder": encoder, "frames": frames, "tokens": tokens, "step ms": step * 1e3,
                         "tokens/s": tokens / step, "peak MiB": peak_memory_mib(target)})
    return rows


def _item(model: AdaptModel, video: Path, frames: int) -> dict:
    """A sample of `video` at `frames` frames laid out as the dataset lays it out."""
    with open_video(video) as reader:
        timestamps = model.llm.sample(reader.info, frames).timestamps.tolist()
    steps, tokens = model.llm.encoder.layout(frames)
    counts = frame_budgets(steps, tokens).tolist()
    turns = ((QUESTION, ANSWER),)
    ids, labels = model.prompter.ids(timestamps, counts, turns)
    return {"id": f"synthetic-{frames}", "video": str(video), "timestamps": timestamps, "counts": counts, "ids": ids,
            "labels": labels, "turns": turns, "frames": frames}


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
