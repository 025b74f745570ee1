"""`liteframe bench adapt`: LMA training throughput and peak memory at frame budgets of 128, 256 and 512.

The training step alone (frames already decoded and preprocessed; the frozen visual encoder under no_grad, the
prompt `ask` builds, the LLM with LoRA and activation checkpointing, the answer-only loss, backward and the
optimiser), one sample per step as
the full-size run takes it. CPU: the tiny random InternVL3 in float32. CUDA: InternVL3-8B's shapes (InternViT-300M
and Qwen2.5-7B) with random weights in bf16 (weights do not change speed or memory). Tokens are what the LLM reads
(prompt, visual tokens and answer); peak memory is the device's allocator peak on CUDA, the process's peak resident
size on CPU (which only grows: budgets run in increasing order).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from transformers import AutoTokenizer, InternVLConfig, InternVLForConditionalGeneration, InternVLVisionConfig, \
    Qwen2Config

from liteframe.bench.e2e import RANDOM_SIZES
from liteframe.devices import resolve_device
from liteframe.errors import InputError
from liteframe.llm import VideoLLM
from liteframe.llm.family import get_family
from liteframe.llm.tiny import IMAGE_TOKENS, build_tokenizer, save_tiny_internvl
from liteframe.timing import synchronize
from liteframe.train.adapt import AdaptConfig, AdaptModel, even_counts
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
    with tempfile.TemporaryDirectory() as tmp:
        hf, tokenizer = _random_8b(Path(tmp), target) if cuda else _tiny(Path(tmp))
    visual = get_family("internvl").encoder(hf, encoder)
    llm = VideoLLM(hf.to(target), tokenizer, visual.to(device=target, dtype=dtype), cfg.chunk_frames)
    model = AdaptModel(llm, cfg, bf16=cuda)
    optimizer = torch.optim.AdamW(model.params, lr=cfg.lr)
    model.train()
    rows = []
    for frames in sorted(budgets):
        item, chunks = _item(model, frames)
        times = []
        if cuda:
            torch.cuda.reset_peak_memory_stats(target)
        for _ in range(steps + 1):
            synchronize(target)
            tic = time.perf_counter()
            losses, tokens = model.sample_losses([model.inputs(item, chunks)])
            losses.sum().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            synchronize(target)
            times.append(time.perf_counter() - tic)
        step = float(np.median(times[1:]))
        rows.append({"device": _name(target), "model": "InternVL3-8B shapes" if cuda else "tiny", "encoder": encoder,
                     "frames": frames, "tokens": tokens, "step ms": step * 1e3, "tokens/s": tokens / step,
                     "peak MiB": peak_memory_mib(target)})
    return rows


def _item(model: AdaptModel, frames: int) -> tuple[dict, list[torch.Tensor]]:
    """A synthetic sample at `frames` frames laid out as the dataset lays it out (frames 1 s apart), and its
    frames: random normalised pixels at the encoder's input size, in chunks on the device."""
    llm = model.llm
    timestamps = [float(t) for t in range(frames)]
    steps, tokens = llm.encoder.layout(frames)
    counts = even_counts(tokens, steps)
    turns = ((QUESTION, ANSWER),)
    ids, labels = model.prompter.ids(timestamps, counts, turns)
    size = llm.encoder.image_size
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(frames, 3, size, size, generator=g).to(llm.device, llm.dtype)
    item = {"id": f"synthetic-{frames}", "timestamps": timestamps, "counts": counts, "ids": ids, "labels": labels,
            "turns": turns, "frames": frames}
    return item, list(pixels.split(llm.chunk_frames))


def _tiny(folder: Path):
    path = save_tiny_internvl(folder / "tiny")
    return (InternVLForConditionalGeneration.from_pretrained(path, dtype=torch.float32),
            AutoTokenizer.from_pretrained(path))


def _random_8b(folder: Path, device: torch.device):
    """InternVL3-8B's shapes with random weights, initialised on `device` (random init on a CPU is slow)."""
    if device.type != "cuda":
        raise InputError("InternVL3-8B shapes build billions of weights: they need a CUDA device")
    tokenizer = build_tokenizer()
    config = InternVLConfig(
        vision_config=InternVLVisionConfig(attention_bias=True),
        text_config=Qwen2Config(**RANDOM_SIZES["8b"], tie_word_embeddings=False),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKENS["context_image_token"]),
        tie_word_embeddings=False,
    )
    with torch.device(device):
        hf = InternVLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    tokenizer.save_pretrained(folder / "tokenizer")
    return hf, AutoTokenizer.from_pretrained(folder / "tokenizer")


def _name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
