"""End-to-end latency of video question answering, laid out as the paper's main table (SPEC 8): the dense model at
few frames against WAP and the LiteFrame student at 8x more frames, each row broken down as SPEC 7 does.

All settings share one LLM (loaded once) and run side by side in one process on the same video. Without `--model` a
tiny random checkpoint of `--model-family` (InternVL3 or Qwen2.5-VL) is built in a temporary folder; `--random-size`
builds a real checkpoint's shapes with random weights instead (`8b`: InternVL3-8B, `7b`: Qwen2.5-VL-7B-Instruct;
weights do not change latency; for a GPU). Without `--student` a student is cropped from the checkpoint's vision tower
(SPEC 4), untrained: its cost is the trained one's. Qwen2.5-VL has no student yet: its default is dense at 16, 32
and 64 frames against WAP at 8x the frames.
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
                          Qwen2_5_VLForConditionalGeneration, Qwen2Config)

from liteframe.compression import Compression, get_compression
from liteframe.devices import resolve_device, resolve_dtype
from liteframe.errors import InputError
from liteframe.llm.encoders import build_encoder
from liteframe.llm.family import get_family
from liteframe.llm.qwen import VIDEO_PAD
from liteframe.llm.qwen_tiny import build_qwen_tokenizer, qwen_config, save_tiny_qwen
from liteframe.llm.tiny import IMAGE_TOKENS, build_tokenizer, save_tiny_internvl
from liteframe.llm.videollm import VideoLLM
from liteframe.models import LiteFrameConfig, LiteFrameEncoder, Teacher, tiny_student_config
from liteframe.video import open_video

COLUMNS = ["setting", "front end", "frames", "compression", "tokens/frame", "visual tokens", "decode ms",
           "preprocess ms", "ViT ms", "LLM prefill ms", "generation ms", "total ms", "front-end share"]
# The front ends compared by `front_ends` (VideoLLM.resize, VideoLLM.overlap): `new` resizes in the decoder (uint8,
# PIL's kernel) and decodes the next chunk while the encoder works; `old` converts whole frames to RGB, resizes them
# with torch and decodes in the caller's thread, as before issue 13. (Qwen2.5-VL resizes whole frames itself: only
# the overlap differs.)
FRONT_ENDS = {"new": ("exact", True), "old": ("torch", False)}
QUESTION = "What happens in this video? Describe it briefly."

# Real checkpoints' shapes. InternVL3-8B: InternViT-300M-448px (SPEC 2) and Qwen2.5-7B.
# Per family: the random sizes it offers and its default frames, dense and other, and encoders.
FAMILY_DEFAULTS = {
    "internvl3": dict(sizes=("8b",), dense_frames=(8, 16, 32), frames=(64, 128, 256), encoders=("wap", "student")),
    "qwen2.5-vl": dict(sizes=("7b",), dense_frames=(16, 32, 64), frames=(128, 256, 512), encoders=("wap",)),
}
RANDOM_SIZES = {
    "8b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=151674, rope_theta=1e6, max_position_embeddings=32768),
}


def run(model: str | None = None, video: str | None = None, dense_frames: Sequence[int] | None = None,
        frames: Sequence[int] | None = None, encoders: Sequence[str] | None = None,
        compression: Compression | int | str | None = None, student: str | None = None, image_size: int = 112,
        random_size: str | None = None, device: str | None = None, dtype: str = "auto", repeats: int = 3,
        warmup: int = 1, new_tokens: int = 8, model_family: str = "internvl3",
        front_ends: Sequence[str] = ("new",)) -> list[dict]:
    """Every setting's latency row (`COLUMNS`). Row order follows SPEC 8: dense at `dense_frames[i]`, then each of
    `encoders` at `frames[i]` and `compression` (a given student keeps its own), each through every one of
    `front_ends` (`FRONT_ENDS`) in turn; None: `model_family`'s defaults (`FAMILY_DEFAULTS`). `model_family` picks
    the tiny or random checkpoint; a `model` folder brings its own. With the new front end decoding overlaps the
    ViT, so the stages do not add up to the total; `front-end share` is what the front end adds to the total: the
    part of it outside the ViT and the LLM, over the total."""
    if repeats < 1 or warmup < 0 or new_tokens < 1:
        raise InputError("repeats and new_tokens must be at least 1, warmup at least 0")
    unknown = [name for name in front_ends if name not in FRONT_ENDS]
    if unknown or not front_ends:
        raise InputError(f"front end {', '.join(unknown) or 'list empty'}: choose from {', '.join(FRONT_ENDS)}")
    if model_family not in FAMILY_DEFAULTS:
        raise InputError(f"model family {model_family!r}: choose from {', '.join(FAMILY_DEFAULTS)}")
    defaults = FAMILY_DEFAULTS[model_family]
    if random_size is not None and random_size not in defaults["sizes"]:
        raise InputError(f"random size {random_size!r} of {model_family}: choose from {', '.join(defaults['sizes'])}")
    dense_frames, frames = dense_frames or defaults["dense_frames"], frames or defaults["frames"]
    encoders = encoders or defaults["encoders"]
    compression = get_compression(compression)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    with tempfile.TemporaryDirectory(prefix="liteframe-e2e-") as tmp:
        tmp = Path(tmp)
        llm = _load(model, random_size, image_size, tmp, device, dtype, model_family)
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
        with open_video(video) as reader:  # the frame size sets Qwen's token count
            size = reader.info.height, reader.info.width
        for _, runner, count in plan:  # every setting fits the LLM's context before any of them runs
            runner.check(count, QUESTION, size)
        rows = [_row(name, runner, video, count, repeats, warmup, new_tokens, front)
                for name, runner, count in plan for front in front_ends]
    return rows


def _row(name: str, llm: VideoLLM, video: str, frames: int, repeats: int, warmup: int, new_tokens: int,
         front: str) -> dict:
    llm.resize, llm.overlap = FRONT_ENDS[front]
    answer = llm.ask(video, QUESTION, frames, repeats=repeats, warmup=warmup, max_new_tokens=new_tokens,
                     min_new_tokens=new_tokens)
    ms = answer.latency_ms
    per_frame = answer.visual_tokens / frames
    ratio = "none" if name == "dense" else f"{llm.encoder.compression.ratio}x"  # dense shares only the clips
    outside = ms["total"] - ms["vit"] - ms["llm_prefill"] - ms["generation"]
    return {"setting": name, "front end": front, "frames": frames, "compression": ratio,
            "tokens/frame": int(per_frame) if per_frame.is_integer() else per_frame,
            "visual tokens": answer.visual_tokens, "decode ms": ms["decode"], "preprocess ms": ms["preprocess"],
            "ViT ms": ms["vit"], "LLM prefill ms": ms["llm_prefill"], "generation ms": ms["generation"],
            "total ms": ms["total"], "front-end share": f"{outside / ms['total']:.0%}"}


def _load(model: str | None, random_size: str | None, image_size: int, tmp: Path, device: torch.device,
          dtype: torch.dtype, family: str) -> VideoLLM:
    if model and random_size:
        raise InputError("model and random_size exclude each other")
    if random_size is None:
        tiny = save_tiny_qwen(tmp / "tiny") if family == "qwen2.5-vl" else save_tiny_internvl(tmp / "tiny", image_size)
        return VideoLLM.from_pretrained(model or tiny, device=device, dtype=dtype)
    if device.type != "cuda":
        raise InputError(f"random size {random_size} builds billions of weights: it needs a CUDA device")
    if family == "qwen2.5-vl":
        return _random_qwen(random_size, tmp, device, dtype)
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


def _random_qwen(size: str, tmp: Path, device: torch.device, dtype: torch.dtype) -> VideoLLM:
    """Qwen2.5-VL with `size`'s shapes and random weights, built on `device`, with the tiny checkpoint's tokenizer
    (its ids are valid in the real vocabulary)."""
    tokenizer = build_qwen_tokenizer()
    config = qwen_config(size)
    config.video_token_id = tokenizer.convert_tokens_to_ids(VIDEO_PAD)
    with torch.device(device):
        net = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    tokenizer.save_pretrained(tmp / "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(tmp / "tokenizer")
    return VideoLLM(net.eval(), tokenizer, get_family(config.model_type).encoder(net, "dense"))


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
