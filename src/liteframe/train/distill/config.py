"""The distillation job's settings (`liteframe distill`, `liteframe cache-targets`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from liteframe.compression import COMPRESSIONS, get_compression
from liteframe.train.config import TrainConfig, job_groups


@dataclass
class DistillConfig(TrainConfig):
    """Everything a CTD run depends on, written to YAML by group: model, objective, data, optim, system,
    checkpoint."""

    KIND: ClassVar[str] = "distill"
    GROUPS: ClassVar[dict[str, tuple[str, ...]]] = job_groups({
        "model": ("teacher", "student", "compression"),
        "objective": ("loss", "clip_sigma", "beta", "cosine_weight"),
        "data": ("manifest", "eval_manifest", "eval_views", "frames", "fps", "image_size", "target_cache",
                 "cache_views"),
        "optim": ("steps", "batch_size", "grad_accum", "lr", "min_lr", "warmup_steps", "weight_decay", "betas",
                  "grad_clip", "trainable"),
        "system": ("device", "precision", "parallel", "activation_checkpointing", "compile", "seed"),
    })
    PATHS: ClassVar[tuple[str, ...]] = ("teacher", "output", "manifest", "eval_manifest", "target_cache")
    RESUMABLE: ClassVar[tuple[str, ...]] = TrainConfig.RESUMABLE + ("eval_manifest", "eval_views")

    # what to distil
    # an InternVL3 `-hf`, Qwen2.5-VL, Qwen3-VL or Qwen3.5 folder (its vision parts), or a DINOv2, CLIP or SigLIP folder
    teacher: str = ""
    # LiteFrameConfig fields over the named config `name`, or without one the teacher's own student by the paper's
    # ratios (liteframe.models.student_for); cropped from the teacher
    student: dict[str, Any] = field(default_factory=dict)
    compression: int = 16  # 4, 16 or 64: the WAP target block and the student's output grid (liteframe.compression)
    output: str = "runs/distill"
    # data
    manifest: str = ""  # JSON lines: {"video": path, "start": s, "end": s}; start/end optional
    eval_manifest: str = ""  # held-out videos for the cosine evaluation; empty: no evaluation
    eval_views: int = 1  # held-out clips per eval_manifest line (different times of the video)
    frames: int = 16  # frames per training clip, a multiple of the compression's clip (4 at 16x and 64x)
    fps: tuple[float, float] = (1.0, 4.0)  # in-clip frame rate, drawn per sample from [low, high]; low >= 1
    image_size: int = 0  # 0: the teacher's input size
    target_cache: str = ""  # a folder written by `liteframe cache-targets`; empty: WAP(teacher) on the fly
    cache_views: int = 1  # clips cached per video; epoch e reads view e % cache_views
    # objective
    loss: str = "ctd"  # "ctd" (compressed tokens against WAP(teacher)) or "rtd" (reconstruct dense teacher tokens)
    clip_sigma: float = 3.0  # targets are clipped to mean +- clip_sigma * std per channel of each clip; 0: off
    beta: float = 1.0  # smooth-L1 transition point
    cosine_weight: float = 1.0  # weight of the (1 - cosine) term
    # optimisation
    steps: int = 1000
    batch_size: int = 8  # clips per optimiser step, over all ranks and accumulation micro-steps
    lr: float = 1e-4
    min_lr: float = 1e-6
    warmup_steps: int = 100
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    # the student parameters trained, by a part of their name (e.g. "downsample"); empty: all. With ~20 scenes of
    # data, training only a keyframe student's frame merge generalises where training every weight overfits
    trainable: tuple[str, ...] = ()
    # systems
    parallel: str = "ddp"  # "ddp" or "fsdp" (FSDP2 `fully_shard`, for students too large for one device)
    activation_checkpointing: bool = False
    compile: bool = False

    def checks(self) -> list[tuple[bool, str]]:
        clip = get_compression(self.compression).clip_frames() if self.compression in COMPRESSIONS else 1
        return super().checks() + [
            (self.compression in COMPRESSIONS,
             f"compression={self.compression} must be one of {', '.join(map(str, COMPRESSIONS))}"),
            (self.frames > 0 and self.frames % clip == 0,
             f"frames={self.frames} must be a positive multiple of {clip} (the clip of {self.compression}x)"),
            (len(self.fps) == 2 and 1.0 <= self.fps[0] <= self.fps[1],
             f"fps={list(self.fps)} must be a range [low, high] with low >= 1 (SPEC 5: dense clips at >= 1 fps)"),
            (len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), f"betas={list(self.betas)} must be two "
             "numbers in [0, 1)"),
            (self.loss in ("ctd", "rtd"), f"loss={self.loss!r} must be 'ctd' or 'rtd'"),
            (self.parallel in ("ddp", "fsdp"), f"parallel={self.parallel!r} must be 'ddp' or 'fsdp'"),
            (min(self.cache_views, self.eval_views) > 0, "cache_views and eval_views must be > 0"),
            (not (self.loss == "rtd" and self.target_cache), "loss=rtd needs the dense teacher tokens, which the "
             "target cache does not hold: leave target_cache empty"),
        ]
