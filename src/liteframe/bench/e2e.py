"""End-to-end latency of video question answering, laid out as the paper's main table (SPEC 8): the dense model at
few frames against WAP and the LiteFrame student at 8x more frames, each row broken down as SPEC 7 does.

All settings share one LLM (loaded once) and run side by side in one process on the same video. Without `--model` a
tiny random InternVL3 checkpoint is built in a temporary folder; `--random-size 8b` builds InternVL3-8B's shapes with
random weights instead (weights do not change latency; for a GPU). Without `--student` a student is cropped from the
checkpoint's vision tower (SPEC 4), untrained: its cost is the trained one's.
"""
from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Sequence

import av
import numpy as np
import torch
from transformers import (AutoTokenizer, InternVLConfig, InternVLForConditionalGeneration, InternVLVisionConfig,
                          Qwen2Config)

from liteframe.compression import Compression, get_compression
from liteframe.devices import resolve_device, resolve_dtype
from liteframe.errors import InputError
from liteframe.llm.encoders import build_encoder
from liteframe.llm.tiny import IMAGE_TOKENS, build_tokenizer, save_tiny_internvl
from liteframe.llm.videollm import VideoLLM
from liteframe.models import LiteFrameConfig, LiteFrameEncoder, Teacher, tiny_student_config

COLUMNS = ["setting", "front end", "frames", "compression", "tokens/frame", "visual tokens", "decode ms",
           "preprocess ms", "ViT ms", "LLM prefill ms", "generation ms", "total ms", "front-end share"]
# The front ends compared by `front_ends` (VideoLLM.resize, VideoLLM.overlap): `new` resizes in the decoder (uint8,
# PIL's kernel) and
# decodes the next chunk while the encoder works; `old` converts whole frames to RGB, resizes them with torch and
# decodes in the caller's thread, as before issue 13.
FRONT_ENDS = {"new": ("exact", True), "old": ("torch", False)}
QUESTION = "What happens in this video? Describe it briefly."

# Real checkpoints' shapes. InternVL3-8B: InternViT-300M-448px (SPEC 2) and Qwen2.5-7B.
RANDOM_SIZES = {
    "8b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=151674, rope_theta=1e6, max_position_embeddings=32768),
}


def run(model: str | None = None, video: str | None = None, dense_frames: Sequence[int] = (8, 16, 32),
        frames: Sequence[int] = (64, 128, 256), encoders: Sequence[str] = ("wap", "student"),
        compression: Compression | int | str | None = None, student: str | None = None, image_size: int = 112,
        random_size: str | None = None, device: str | None = None, dtype: str = "auto", repeats: int = 3,
        warmup: int = 1, new_tokens: int = 8, front_ends: Sequence[str] = ("new",)) -> list[dict]:
    """Every setting's latency row (`COLUMNS`). Row order follows SPEC 8: dense at `dense_frames[i]`, then each of
    `encoders` at `frames[i]` and `compression` (a given student keeps its own), each through every one of
    `front_ends` (`FRONT_ENDS`) in turn. With the new front end decoding overlaps the ViT, so the stages do not add
    up to the total; `front-end share` is what the front end adds to the total: the part of it outside the ViT and
    the LLM, over the total."""
    if repeats < 1 or warmup < 0 or new_tokens < 1:
        raise InputError("repeats and new_tokens must be at least 1, warmup at least 0")
    unknown = [name for name in front_ends if name not in FRONT_ENDS]
    if unknown or not front_ends:
        raise InputError(f"front end {', '.join(unknown) or 'list empty'}: choose from {', '.join(FRONT_ENDS)}")
    compression = get_compression(compression)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    with tempfile.TemporaryDirectory(prefix="liteframe-e2e-") as tmp:
        tmp = Path(tmp)
        llm = _load(model, random_size, image_size, tmp, device, dtype)
        video = video or str(synthetic_video(tmp / "synthetic.mp4"))
        settings = {"dense": llm.with_encoder("dense", compression)}  # the same clips as the others
        for name in encoders:
            if name == "student":
                spec = f"student:{student or _crop_student(llm, tmp / 'student', compression)}"
                settings[name] = llm.with_encoder(spec)
            else:
                settings[name] = llm.with_encoder(name, compression)
        plan = [(name, runner, level[0] if name == "dense" else level[1])
                for level in itertools.zip_longest(dense_frames, frames) for name, runner in settings.items()]
        plan = [(name, runner, count) for name, runner, count in plan if count is not None]
        for _, runner, count in plan:  # every setting fits the LLM's context before any of them runs
            runner.check(count, QUESTION)
        rows = [_row(name, runner, video, count, repeats, warmup, new_tokens, front)
                for name, runner, count in plan for front in front_ends]
    return rows


def _row(name: str, llm: VideoLLM, video: str, frames: int, repeats: int, warmup: int, new_tokens: int,
         front: str | None = None) -> dict:
    """One setting's row; `front`: a `FRONT_ENDS` name, or None for a runner with a front end of its own."""
    if front is not None:
        llm.resize, llm.overlap = FRONT_ENDS[front]
    answer = llm.ask(video, QUESTION, frames, repeats=repeats, warmup=warmup, max_new_tokens=new_tokens,
                     min_new_tokens=new_tokens)
    ms = answer.latency_ms
    per_frame = answer.visual_tokens / frames
    ratio = "none" if name == "dense" else f"{llm.encoder.compression.ratio}x"  # dense shares only the clips
    outside = ms["total"] - ms["vit"] - ms["llm_prefill"] - ms["generation"]
    return {"setting": name, "front end": front or "own", "frames": frames, "compression": ratio,
            "tokens/frame": int(per_frame) if per_frame.is_integer() else per_frame,
            "visual tokens": answer.visual_tokens, "decode ms": ms["decode"], "preprocess ms": ms["preprocess"],
            "ViT ms": ms["vit"], "LLM prefill ms": ms["llm_prefill"], "generation ms": ms["generation"],
            "total ms": ms["total"], "front-end share": f"{outside / ms['total']:.0%}"}


def _load(model: str | None, random_size: str | None, image_size: int, tmp: Path, device: torch.device,
          dtype: torch.dtype) -> VideoLLM:
    if model and random_size:
        raise InputError("model and random_size exclude each other")
    if random_size is None:
        return VideoLLM.from_pretrained(model or save_tiny_internvl(tmp / "tiny", image_size), device=device,
                                        dtype=dtype)
    if random_size not in RANDOM_SIZES:
        raise InputError(f"random size {random_size!r}: choose from {', '.join(RANDOM_SIZES)}")
    if device.type != "cuda":
        raise InputError(f"random size {random_size} builds billions of weights: it needs a CUDA device")
    tokenizer = build_tokenizer()
    config = InternVLConfig(
        vision_config=InternVLVisionConfig(attention_bias=True),
        text_config=Qwen2Config(**RANDOM_SIZES[random_size], tie_word_embeddings=False),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKENS["context_image_token"]),
        tie_word_embeddings=False,
    )
    with torch.device(device):  # initialise on the device: random init of billions of weights is slow on a CPU
        net = InternVLForConditionalGeneration._from_config(config, dtype=dtype)
    tokenizer.save_pretrained(tmp / "tokenizer")  # reload as a checkpoint's tokenizer is loaded
    teacher = Teacher(net.model.vision_tower, net.model.multi_modal_projector)
    return VideoLLM(net.eval(), AutoTokenizer.from_pretrained(tmp / "tokenizer"), build_encoder("dense", teacher))


def _crop_student(llm: VideoLLM, folder: Path, compression: Compression) -> Path:
    """An untrained LiteFrame-B (or, for a tiny teacher, the tiny student) cropped from the checkpoint's ViT; only
    the 16x student exists until student configs carry a compression."""
    if compression.ratio != 16:
        raise InputError(f"no student config compresses {compression}: give a trained student folder")
    teacher = llm.encoder.backbone
    if teacher.hidden_size == LiteFrameConfig.out_dim:
        config = LiteFrameConfig(image=teacher.image_size)
    else:
        config = tiny_student_config(image_size=teacher.image_size, teacher_width=teacher.hidden_size)
    LiteFrameEncoder.from_teacher(teacher, config).save_pretrained(folder)
    return folder


def synthetic_video(path: Path, seconds: int = 12, fps: int = 24, width: int = 480, height: int = 270) -> Path:
    """An H.264 clip of drifting colour gradients over rolling noise (288 frames at the defaults: more than the
    largest default budget, so no frame repeats): something to decode when no video is given."""
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(0).integers(0, 32, (height, width, 3))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast"}
        for i in range(seconds * fps):
            img = np.stack([(x + 3 * i) % 224, (y + 2 * i) % 224, (x + y + i) % 224], axis=-1)
            img = (img + np.roll(noise, i, axis=1)).astype(np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())
    return path


def plot_latency(rows: list[dict], path: str) -> None:
    """Total latency against frames, one line per setting (log-2 frame axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    lines = dict.fromkeys((r["setting"], r["front end"]) for r in rows)
    for name, front in lines:
        points = [(r["frames"], r["total ms"]) for r in rows if (r["setting"], r["front end"]) == (name, front)]
        ax.plot(*zip(*points), marker="o", label=name if len(lines) == len({n for n, _ in lines}) else
                f"{name} ({front} front end)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("frames")
    ax.set_ylabel("total latency (ms)")
    ax.set_title("End-to-end latency against frames")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
