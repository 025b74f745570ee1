"""`liteframe bench arch`: the teacher and every LiteFrame variant side by side (the paper's architecture table).

Parameters and FLOPs are counted at full size on the meta device (no memory); latency is measured in one run,
at a shape the device can afford, with each variant's speed-up over the teacher from the same run.
The `none` row is the paper's "ViT-B-12L, no compression": the plain ViT-B, without the Linear(768, 1024) that
LiteFrame's `none` variant adds to reach the teacher's width (+0.79 M parameters, +0.41 TFLOPs at 256 frames).
With a teacher folder (`teacher`) its tower is the teacher row and the variant rows are its own students by the
paper's ratios (`liteframe.models.student_for`); student folders (`students`) add a row each (`student:DIR`). Only
the folders' configs are read: weights do not change FLOPs or latency. `model_family` `qwen2_5_vl` is a teacher
folder of Qwen2.5-VL-7B's shapes without the folder: its ViT and merger against its students in front of the same
merger (`liteframe.models.qwen.ThroughMerger`), both rows from frames to tokens of the LLM's width; `qwen3_vl` and
`qwen3_5` are Qwen3-VL-8B's tower (27 blocks of width 1152; its mergers, DeepStack ones included, into an LLM of width
4096) and Qwen3.5's (the same tower without DeepStack, its merger into width 4096, as Qwen3.5-9B's), against their
students in front of the same mergers (Qwen3-VL's `Qwen3VLVisionPatchMerger` for both: Qwen3.5's is the same module).
The 64x and `spatial16` students of Qwen3's tower need sides of 128 px (16 px patches, their 4 x 4 spatial stride and
the merger's 2 x 2): at 448 px their rows are refused, to be counted at 512 px on their own.

FLOPs are counted on one unit of 8 frames (or fewer, when `frames` is) and multiplied: exact, because every row
encodes clips of at most 8 frames independently (InternViT a frame, Qwen's ViT a frame pair, the students a clip),
and 32 times faster than counting 256 frames (Qwen's ViT runs a Python loop per attention window)."""
from __future__ import annotations

import copy
import json
import math
import statistics
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from transformers import InternVLVisionConfig, Qwen3VLVisionConfig
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLPatchMerger
from transformers.models.qwen3_5.configuration_qwen3_5 import Qwen3_5VisionConfig
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionPatchMerger

from ..devices import resolve_device, resolve_dtype
from ..errors import InputError
from ..models import VARIANTS, LiteFrameConfig, LiteFrameEncoder, Teacher, create_student, student_for
from ..models.flops import Flops, count_flops
from ..models.qwen import ThroughMerger
from ..models.towers import TOWERS
from ..tables import format_table
from ..testing.qwen import qwen_config
from ..timing import median_ms

# arch -> the paper's row and its A100 latency at 256 frames (SPEC 4); the last rows are LiteFrame-B's other
# compressions (dwconv), which the paper does not time
PAPER = {"teacher": ("ViT-L-24L", 1043.33), "none": ("ViT-B-12L, no compression", 338.01),
         "dwconv": ("DWTempConv", 174.84), "conv": ("TempConv", 202.08), "tempattn": ("TempAttn", 348.29),
         "stattn": ("SpatioTempAttn", 204.35)}
COMPRESSED = {"dwconv-4x": 4, "dwconv-64x": 64}
ARCHS = ("teacher", *VARIANTS.names(), *COMPRESSED)
# frames, pixels: the teacher takes ~10 s per forward on a 2-core CPU; Qwen's students take clips of 8 frames
CPU_LATENCY_SHAPE = {"internvl": (4, 112), "qwen2_5_vl": (8, 112), "qwen3": (8, 128)}
# family -> its full-size teacher's tower config (None: InternViT-300M, built by `build`)
FAMILIES = {"internvl": lambda: None, "qwen2_5_vl": lambda: qwen_config("7b").vision_config,
            "qwen3_vl": lambda: Qwen3VLVisionConfig(out_hidden_size=4096),
            "qwen3_5": lambda: Qwen3_5VisionConfig(out_hidden_size=4096)}
WIDE_STRIDES = ("spatial16", "dwconv-64x")  # rows whose students stride space by 4 x 4
UNIT = 8  # frames whose FLOPs are counted (see the module docstring)
MULTIPLES = {"internvl": (4, 56), "qwen2_5_vl": (8, 112), "qwen3": (8, 64)}  # frames, pixels every row takes
COLUMNS = ["arch", "paper", "params_M", "GFLOPs", "GFLOPs_total", "latency_ms", "speedup", "flop_ratio",
           "paper_A100_ms"]


def build(arch: str, size: int = 448, teacher=None) -> nn.Module:
    """The full-size teacher (InternViT-300M-448px, SPEC 2), the paper's plain ViT-B (`none`), or LiteFrame-B
    (SPEC 4) with the named variant (at 16x) or compression (`dwconv-4x`, `dwconv-64x`). `size`: the input size
    their position embeddings are made for (timing at a smaller size then resizes none of them, as at 448 px).
    `teacher`: another tower's config, whose own students the variants are; `student:DIR`: a saved student."""
    if arch.startswith("student:"):
        config = LiteFrameConfig.from_dict(json.loads((Path(arch[len("student:"):]) / "config.json").read_text()))
        return _through_merger(LiteFrameEncoder(replace(config, image=size)).eval(), teacher)
    if teacher is not None:
        config = replace_size(teacher, size)
        if arch == "teacher":
            return Teacher.from_config(config)
        with torch.device("meta"):  # only its config matters here
            vision = Teacher.from_config(config).vision
        overrides = {"compression": COMPRESSED[arch]} if arch in COMPRESSED else {"temporal": arch}
        student = LiteFrameEncoder(student_for(vision, image=size, **overrides)).eval()
        if arch == "none" and not is_qwen(teacher):
            student.head = nn.Identity()
        return _through_merger(student, teacher)
    if arch == "teacher":
        return Teacher.from_config(InternVLVisionConfig(attention_bias=True, image_size=size))
    if arch in COMPRESSED:
        return create_student("liteframe-b", compression=COMPRESSED[arch], image=size).eval()
    if arch == "none":
        model = create_student("liteframe-b", temporal="none", out_dim=768, image=size)
        model.head = nn.Identity()  # the paper's baseline has no projection to the teacher's width
        return model.eval()
    return create_student("liteframe-b", temporal=arch, image=size).eval()


def replace_size(config, size: int):
    """A copy of a tower's config made for `size` px (its position table sized for it; Qwen's has none)."""
    config = copy.deepcopy(config)
    if not is_qwen(config):
        config.image_size = size
    return config


def is_qwen(config) -> bool:
    """Whether the tower config is a Qwen tower's, whose output is its merger's."""
    return config is not None and config.model_type in TOWERS and TOWERS[config.model_type].merger is not None


def family_of(config) -> str:
    """The key of `MULTIPLES` and `CPU_LATENCY_SHAPE` for a tower config (None: InternViT)."""
    if not is_qwen(config):
        return "internvl"
    return "qwen2_5_vl" if config.model_type == "qwen2_5_vl_vision" else "qwen3"


def _through_merger(student: LiteFrameEncoder, teacher) -> nn.Module:
    """A student of Qwen's ViT (tower config `teacher`) in front of a merger of the tower's shape, the path of its
    tokens to the LLM's width as the teacher row's (the merger takes the ViT's width, so `none` keeps its head);
    any other student as it is."""
    if not is_qwen(teacher):
        return student
    owner = nn.Module()
    if family_of(teacher) == "qwen2_5_vl":
        owner.merger = Qwen2_5_VLPatchMerger(teacher.out_hidden_size, teacher.hidden_size, teacher.spatial_merge_size)
    else:
        owner.merger = Qwen3VLVisionPatchMerger(teacher)
        owner.deepstack_merger_list = nn.ModuleList(
            Qwen3VLVisionPatchMerger(teacher, use_postshuffle_norm=True)
            for _ in getattr(teacher, "deepstack_visual_indexes", None) or ())
    return ThroughMerger(student, owner).eval()


def run(frames: int = 256, size: int = 448, latency_frames: int | None = None, latency_size: int | None = None,
        dtype: str = "float32", device: str = "cpu", repeats: int = 3, warmup: int = 1, threads: int = 1,
        latency: bool = True, archs: Sequence[str] = ARCHS, compile: bool = False, teacher: str | None = None,
        students: Sequence[str] = (), model_family: str = "internvl") -> list[dict]:
    """One row per arch: `params`, `flops` / `flops_total` at (frames, size); with `latency`, `latency_ms` at
    (latency_frames, latency_size) (defaults: the FLOP shape on GPU, `CPU_LATENCY_SHAPE` on CPU), `speedup`
    (teacher ms / ms) and `flop_ratio` (teacher / arch total FLOPs at the latency shape). On CPU the timed runs
    use `threads` threads: one by default, because on a shared machine every multi-threaded operator waits for
    all its threads to be scheduled, a fixed cost per operator that hides the FLOPs. `archs`: the rows (the teacher
    always comes first: the ratios are against it). `compile`: time each model through `torch.compile` (the
    warm-up runs compile; `warmup` must then be at least 1). `teacher`: a teacher folder instead of InternViT-300M
    (the variants then are its own students); `model_family`: without a folder, the full-size teacher of a family
    (`FAMILIES`: InternViT-300M, Qwen2.5-VL-7B's ViT and merger, Qwen3-VL-8B's or Qwen3.5's tower and mergers);
    `students`: student folders, a row each."""
    if model_family not in FAMILIES:
        raise InputError(f"model family {model_family!r}: choose from {', '.join(FAMILIES)}")
    tower = Teacher.config_of(teacher) if teacher else FAMILIES[model_family]()
    family = family_of(tower)
    _check(frames, size, latency_frames, latency_size, threads, family, archs)
    kind = tower.model_type if tower is not None else "internvl_vision"
    for folder in students:
        if not (Path(folder) / "config.json").is_file():
            raise InputError(f"student {folder}: not a LiteFrame checkpoint folder (no config.json)")
        config = json.loads((Path(folder) / "config.json").read_text())
        theirs = config.get("teacher") or kind
        if theirs != kind:
            raise InputError(f"student {folder}: cropped from a {theirs} tower, not the teacher row's {kind} (give "
                             "its family's --model-family or --teacher)")
        if is_qwen(tower) and config.get("out_dim") != tower.hidden_size:
            raise InputError(f"student {folder}: its width {config.get('out_dim')} does not feed this teacher's merger "
                             f"(width {tower.hidden_size}); give the --teacher it was distilled from")
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        raise InputError(f"unknown arch {', '.join(unknown)}; choose from {', '.join(ARCHS)}")
    if compile and warmup < 1:
        raise InputError("compile needs at least one warm-up run (it compiles)")
    archs = ("teacher", *dict.fromkeys(a for a in archs if a != "teacher"), *(f"student:{d}" for d in students))
    resolve_device(device), resolve_dtype(dtype)  # bad names fail before the long FLOP counts
    on_cpu = torch.device(device).type == "cpu"
    latency_frames = latency_frames or (CPU_LATENCY_SHAPE[family][0] if on_cpu else frames)
    latency_size = latency_size or (CPU_LATENCY_SHAPE[family][1] if on_cpu else size)
    rows = []
    for arch in archs:
        with torch.device("meta"):
            model = build(arch, size, tower)
        flops = _flops(model, frames, size)
        paper, paper_ms = PAPER.get(arch, ("", None)) if tower is None else ("", None)
        row = {"arch": arch, "paper": paper, "params": sum(p.numel() for p in model.parameters()),
               "flops": flops.paper, "flops_total": flops.total, "flops_shape": f"1x{frames}x3x{size}x{size}",
               "paper_A100_ms": paper_ms}
        if latency:
            with torch.device("meta"):
                model = build(arch, latency_size, tower)
            row["latency_flops_total"] = _flops(model, latency_frames, latency_size).total
        rows.append(row)
    if latency:
        before = torch.get_num_threads()
        torch.set_num_threads(threads if on_cpu else before)
        try:
            ms = _latencies(archs, latency_frames, latency_size, resolve_dtype(dtype), device, repeats, warmup,
                            compile, tower)
        finally:
            torch.set_num_threads(before)
        where = f"{device} ({threads} thread{'s' * (threads > 1)})" if on_cpu else device
        where += ", torch.compile" if compile else ""
        for row in rows:
            row["latency_ms"] = ms[row["arch"]]
            row["latency_shape"] = f"1x{latency_frames}x3x{latency_size}x{latency_size} {dtype} {where}"
            row["speedup"] = ms["teacher"] / row["latency_ms"]
            row["flop_ratio"] = rows[0]["latency_flops_total"] / row["latency_flops_total"]
    return rows


def _flops(model: nn.Module, frames: int, size: int) -> Flops:
    """`count_flops` at `frames` frames of `size` px, counted on a unit of them (see the module docstring)."""
    unit = math.gcd(frames, UNIT)
    counted = count_flops(model, (1, unit, 3, size, size))
    return Flops(counted.paper * frames // unit, counted.total * frames // unit)


def _check(frames, size, latency_frames, latency_size, threads, family: str, archs: Sequence[str]) -> None:
    """One-line errors for shapes the strides cannot take, before any work: Qwen's students read clips of 8 frames
    and need sides of whole 64x strides and the merger's 2 x 2 (112 px); Qwen3's, of whole 16x strides and the
    merger's (64 px), and of 128 px for the 64x row."""
    clip, side = MULTIPLES[family]
    shapes = {"--frames": (frames, clip), "--size": (size, side), "--latency-frames": (latency_frames, clip),
              "--latency-size": (latency_size, side)}
    for flag, (value, multiple) in shapes.items():
        if value is not None and (value <= 0 or value % multiple):
            raise InputError(f"{flag} {value} must be a positive multiple of {multiple} (the variants' strides)")
    wide = [a for a in archs if a in WIDE_STRIDES] if family == "qwen3" else []
    for flag, value in (("--size", size), ("--latency-size", latency_size)):
        if wide and value is not None and value % 128:
            raise InputError(f"{flag} {value}: {' and '.join(wide)} of Qwen3's tower read sides of whole 128 px (a "
                             "4 x 4 spatial stride and the merger's 2 x 2 over 16 px patches); count them at --size "
                             "512, and the other rows with --archs without them")
    if threads < 1:
        raise InputError(f"--threads {threads} must be at least 1")


def _latencies(archs, frames, size, dtype, device, repeats, warmup, compile, tower=None) -> dict[str, float]:
    """Median ms per arch. The runs interleave the archs round by round, so that a change in machine load
    (a shared CPU) hits every arch alike and the ratios stay fair."""
    torch.manual_seed(0)
    models = {arch: build(arch, size, tower).to(device=device, dtype=dtype) for arch in archs}
    if compile:
        models = {arch: torch.compile(model) for arch, model in models.items()}
    pixels = torch.randn(1, frames, 3, size, size, device=device, dtype=dtype)
    times: dict[str, list[float]] = {arch: [] for arch in archs}
    with torch.inference_mode():
        for round_ in range(warmup + repeats):
            for arch, model in models.items():
                ms = median_ms(partial(model, pixels), repeats=1, warmup=0, device=device)
                if round_ >= warmup:
                    times[arch].append(ms)
    return {arch: statistics.median(t) for arch, t in times.items()}


def table_rows(rows: list[dict]) -> list[dict]:
    """Rows in readable units for the Markdown table."""
    out = []
    for row in rows:
        view = {"arch": row["arch"], "paper": row["paper"], "params_M": row["params"] / 1e6,
                "GFLOPs": row["flops"] / 1e9, "GFLOPs_total": row["flops_total"] / 1e9}
        for key in ("latency_ms", "speedup", "flop_ratio"):
            if key in row:
                view[key] = row[key]
        view["paper_A100_ms"] = row["paper_A100_ms"] or ""
        out.append(view)
    return out


def plot(rows: list[dict], path: str) -> None:
    """Bar chart PNG: FLOPs (paper convention and total) and, when measured, latency per arch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["arch"] for r in rows]
    timed = "latency_ms" in rows[0]
    fig, axes = plt.subplots(1, 2 if timed else 1, figsize=(11 if timed else 6, 4), squeeze=False)
    x = range(len(rows))
    ax = axes[0][0]
    ax.bar([i - 0.2 for i in x], [r["flops"] / 1e12 for r in rows], 0.4, label="Linear/Conv (paper)")
    ax.bar([i + 0.2 for i in x], [r["flops_total"] / 1e12 for r in rows], 0.4, label="with attention")
    ax.set_xticks(list(x), names, rotation=30)
    ax.set_ylabel("TFLOPs")
    ax.set_title(f"FLOPs at {rows[0]['flops_shape']}")
    ax.legend()
    if timed:
        ax = axes[0][1]
        ax.bar(list(x), [r["latency_ms"] for r in rows], color="tab:green")
        ax.set_xticks(list(x), names, rotation=30)
        ax.set_ylabel("ms")
        ax.set_title(f"latency at {rows[0]['latency_shape']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(rows: list[dict]) -> str:
    """The caption lines and the Markdown table that `liteframe bench arch` prints."""
    lines = [f"FLOPs at {rows[0]['flops_shape']} (paper convention: Linear/Conv only; total adds attention)"]
    lines += [f"teacher / {r['arch']} FLOPs at that shape: {rows[0]['flops'] / r['flops']:.2f}x, with attention "
              f"{rows[0]['flops_total'] / r['flops_total']:.2f}x" for r in rows if r["arch"] == "dwconv"]
    if "latency_shape" in rows[0]:
        lines.append(f"latency: median after warm-up at {rows[0]['latency_shape']}; speedup = teacher ms / ms, "
                     f"flop_ratio = teacher / arch total FLOPs at that shape; paper_A100_ms at 1x256x3x448x448")
    view = table_rows(rows)
    return "\n".join([*lines, format_table(view, [c for c in COLUMNS if c in view[0]])])
