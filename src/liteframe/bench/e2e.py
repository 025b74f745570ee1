"""End-to-end latency of video question answering, laid out as the paper's main table (SPEC 8): the dense model at
few frames against WAP and the LiteFrame student at 8x more frames, each row broken down as SPEC 7 does.

All settings share one LLM (loaded once) and run side by side in one process on the same video. Without `--model` a
tiny random checkpoint of `--model-family` (a registered family: `internvl`, InternVL3; `qwen2_5_vl`; `qwen3_vl`,
`qwen3_vl_moe`, `qwen3_5`, `qwen3_5_moe`) is built in a temporary folder; `--random-size` builds a real checkpoint's
shapes with random weights instead (`8b`: InternVL3-8B, `7b`: Qwen2.5-VL-7B-Instruct; weights do not change latency;
for a GPU). Without `--student` a student is cropped from the checkpoint's vision tower (SPEC 4), untrained: its cost
is the trained one's (LiteFrame-B, or `liteframe-qwen2.5`, `liteframe-qwen3-vl`, `liteframe-qwen3.5` for Qwen's
towers, in front of the checkpoint's mergers). The Qwen families' default is dense at 16, 32 and 64 frames against
WAP and the student at 8x the frames.
"""
from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Sequence

import torch

from liteframe.compression import Compression, get_compression
from liteframe.devices import resolve_device, resolve_dtype
from liteframe.errors import InputError
from liteframe.llm import FAMILIES, EncoderSpec, build_encoder
from liteframe.llm.videollm import VideoLLM
from liteframe.models import LiteFrameEncoder, Teacher, student_config, student_for
from liteframe.testing import RANDOM_MODELS, TINY_CHECKPOINTS, save_tiny_internvl, synthetic_video
from liteframe.video import open_video

COLUMNS = ["setting", "front end", "prefill", "frames", "compression", "tokens/frame", "visual tokens", "decode ms",
           "preprocess ms", "ViT ms", "LLM prefill ms", "generation ms", "total ms", "front-end share"]
# The front ends compared by `front_ends` (VideoLLM.resize, VideoLLM.overlap): `new` resizes in the decoder (uint8,
# PIL's kernel) and decodes the next chunk while the encoder works; `old` converts whole frames to RGB, resizes them
# with torch and decodes in the caller's thread, as before issue 13. (Qwen2.5-VL resizes whole frames itself: only
# the overlap differs.)
FRONT_ENDS = {"new": ("exact", True), "old": ("torch", False)}
# The LLM prefills compared by `prefills` (VideoLLM.incremental): the video's slots prefilled chunk by chunk as they
# are encoded (`incremental`), or the whole prompt once the video is encoded (`whole`, as before issue 24).
PREFILLS = {"incremental": True, "whole": False}
QUESTION = "What happens in this video? Describe it briefly."

# Per model family (the registry's keys): its default frames, dense and other, and encoders.
QWEN = dict(dense_frames=(16, 32, 64), frames=(128, 256, 512), encoders=("wap", "student"))
FAMILY_DEFAULTS = {"internvl": dict(dense_frames=(8, 16, 32), frames=(64, 128, 256), encoders=("wap", "student")),
                   **dict.fromkeys(("qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"), QWEN)}


def _visual(model):
    return model.model.visual


# family -> its vision tower in a loaded checkpoint, and the named students of its full-size and tiny towers (a
# named config cropped from another family's tower of its shape takes that tower's model_type)
TOWERS = {"internvl": (lambda model: model.model.vision_tower, "liteframe-b", "liteframe-tiny"),
          "qwen2_5_vl": (_visual, "liteframe-qwen2.5", "liteframe-qwen2.5-tiny"),
          **dict.fromkeys(("qwen3_vl", "qwen3_vl_moe"), (_visual, "liteframe-qwen3-vl", "liteframe-qwen3-vl-tiny")),
          **dict.fromkeys(("qwen3_5", "qwen3_5_moe"), (_visual, "liteframe-qwen3.5", "liteframe-qwen3.5-tiny"))}


def run(model: str | None = None, video: str | None = None, dense_frames: Sequence[int] | None = None,
        frames: Sequence[int] | None = None, encoders: Sequence[str] | None = None,
        compression: Compression | int | str | None = None, student: str | None = None, image_size: int = 112,
        random_size: str | None = None, device: str | None = None, dtype: str = "auto", repeats: int = 3,
        warmup: int = 1, new_tokens: int = 8, model_family: str = "internvl",
        front_ends: Sequence[str] = ("new",), prefills: Sequence[str] = ("incremental",)) -> list[dict]:
    """Every setting's latency row (`COLUMNS`). Row order follows SPEC 8: dense at `dense_frames[i]`, then each of
    `encoders` at `frames[i]` and `compression` (a given student keeps its own), each through every one of `front_ends`
    (`FRONT_ENDS`) and `prefills` (`PREFILLS`) in turn; None: `model_family`'s defaults (`FAMILY_DEFAULTS`).
    `model_family` picks the tiny or random checkpoint; a `model` folder brings its own. With the new front end decoding
    overlaps the ViT, so the stages do not add up to the total; `front-end share` is what the front end adds to the
    total: the part of it outside the ViT and the LLM, over the total."""
    if repeats < 1 or warmup < 0 or new_tokens < 1:
        raise InputError("repeats and new_tokens must be at least 1, warmup at least 0")
    unknown = [name for name in front_ends if name not in FRONT_ENDS]
    if unknown or not front_ends:
        raise InputError(f"front end {', '.join(unknown) or 'list empty'}: choose from {', '.join(FRONT_ENDS)}")
    unknown = [name for name in prefills if name not in PREFILLS]
    if unknown or not prefills:
        raise InputError(f"prefill {', '.join(unknown) or 'list empty'}: choose from {', '.join(PREFILLS)}")
    if model_family not in FAMILY_DEFAULTS:
        raise InputError(f"model family {model_family!r}: choose from {', '.join(FAMILY_DEFAULTS)}")
    defaults = FAMILY_DEFAULTS[model_family]
    sizes = [RANDOM_MODELS[model_family][0]] if model_family in RANDOM_MODELS else []
    if random_size is not None and random_size not in sizes:
        choose = sizes[0] if sizes else "none: it has a tiny checkpoint only, or give --model"
        raise InputError(f"random size {random_size!r} of {model_family}: choose {choose}")
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
                folder = Path(student) if student else _crop_student(llm, tmp / "student", compression)
                settings[name] = llm.with_encoder(EncoderSpec(student=folder))
            else:
                settings[name] = llm.with_encoder(name, compression)
        plan = [(name, runner, level[0] if name == "dense" else level[1])
                for level in itertools.zip_longest(dense_frames, frames) for name, runner in settings.items()]
        plan = [(name, runner, count) for name, runner, count in plan if count is not None]
        with open_video(video) as reader:  # the frame size sets Qwen's token count
            info = reader.info
        for _, runner, count in plan:  # every setting fits the LLM's context before any of them runs
            runner.check(count, QUESTION, info)
        rows = [_row(name, runner, video, count, repeats, warmup, new_tokens, front, prefill)
                for name, runner, count in plan for front in front_ends for prefill in prefills]
    return rows


def _row(name: str, llm: VideoLLM, video: str, frames: int, repeats: int, warmup: int, new_tokens: int,
         front: str, prefill: str) -> dict:
    llm.resize, llm.overlap = FRONT_ENDS[front]
    llm.incremental = PREFILLS[prefill]
    answer = llm.ask(video, QUESTION, frames, repeats=repeats, warmup=warmup, max_new_tokens=new_tokens,
                     min_new_tokens=new_tokens)
    ms = answer.latency_ms
    per_frame = answer.visual_tokens / frames
    ratio = "none" if name == "dense" else f"{llm.encoder.compression.ratio}x"  # dense shares only the clips
    outside = ms["total"] - ms["vit"] - ms["llm_prefill"] - ms["generation"]
    return {"setting": name, "front end": front, "prefill": prefill, "frames": frames, "compression": ratio,
            "tokens/frame": int(per_frame) if per_frame.is_integer() else per_frame,
            "visual tokens": answer.visual_tokens, "decode ms": ms["decode"], "preprocess ms": ms["preprocess"],
            "ViT ms": ms["vit"], "LLM prefill ms": ms["llm_prefill"], "generation ms": ms["generation"],
            "total ms": ms["total"], "front-end share": f"{outside / ms['total']:.0%}"}


def _load(model: str | None, random_size: str | None, image_size: int, tmp: Path, device: torch.device,
          dtype: torch.dtype, family: str) -> VideoLLM:
    if model and random_size:
        raise InputError("model and random_size exclude each other")
    if random_size is None:
        tiny = save_tiny_internvl(tmp / "tiny", image_size) if family == "internvl" else TINY_CHECKPOINTS[family](
            tmp / "tiny")
        return VideoLLM.from_pretrained(model or tiny, device=device, dtype=dtype)
    if device.type != "cuda":
        raise InputError(f"random size {random_size} builds billions of weights: it needs a CUDA device")
    net, tokenizer = RANDOM_MODELS[family][1](tmp / "tokenizer", device, dtype)
    return VideoLLM(net, tokenizer, build_encoder(FAMILIES.get(family), net, EncoderSpec()))


def _crop_student(llm: VideoLLM, folder: Path, compression: Compression) -> Path:
    """An untrained student of the family's full-size tower (LiteFrame-B, `liteframe-qwen2.5`, ...) at `compression`,
    cropped from the checkpoint's ViT (for a tiny tower, the family's tiny student), at the tower's input size or,
    for Qwen's, the student's own."""
    tower, full, small = TOWERS[llm.model.config.model_type]
    teacher = Teacher(tower(llm.model))
    tiny = teacher.hidden_size != student_config(full).out_dim
    config = student_for(teacher.vision, small if tiny else full, compression=compression)
    LiteFrameEncoder.from_teacher(teacher, config).save_pretrained(folder)
    return folder


def plot_latency(rows: list[dict], path: str) -> None:
    """Total latency against frames, one line per setting (log-2 frame axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    keys = ("setting", "front end", "prefill")
    lines = dict.fromkeys(tuple(r[k] for k in keys) for r in rows)
    for line in lines:
        points = [(r["frames"], r["total ms"]) for r in rows if tuple(r[k] for k in keys) == line]
        ways = [f"{k} {v}" for k, v in zip(keys[1:], line[1:]) if len({other[keys.index(k)] for other in lines}) > 1]
        ax.plot(*zip(*points), marker="o", label=line[0] + (f" ({', '.join(ways)})" if ways else ""))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("frames")
    ax.set_ylabel("total latency (ms)")
    ax.set_title("End-to-end latency against frames")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
