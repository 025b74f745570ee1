"""The distillation job's settings: one dataclass, read from YAML, every key overridable as `key=value`."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from liteframe.compression import COMPRESSIONS, get_compression
from liteframe.errors import InputError, one_line
from liteframe.io import atomic_write


@dataclass
class DistillConfig:
    """Everything a CTD run depends on. Paths in a YAML file are relative to that file."""

    # what to distil
    teacher: str = ""  # an InternVL3 `-hf` folder (vision tower and projector), or a DINOv2, CLIP or SigLIP folder
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
    workers: int = 2  # DataLoader worker processes per rank (decoding happens there)
    target_cache: str = ""  # a folder written by `liteframe cache-targets`; empty: WAP(teacher) on the fly
    cache_views: int = 1  # clips cached per video; epoch e reads view e % cache_views
    # loss
    loss: str = "ctd"  # "ctd" (compressed tokens against WAP(teacher)) or "rtd" (reconstruct dense teacher tokens)
    clip_sigma: float = 3.0  # targets are clipped to mean +- clip_sigma * std per channel of each clip; 0: off
    beta: float = 1.0  # smooth-L1 transition point
    cosine_weight: float = 1.0  # weight of the (1 - cosine) term
    # optimisation
    steps: int = 1000  # optimiser steps
    batch_size: int = 8  # clips per optimiser step, over all ranks and accumulation micro-steps
    grad_accum: int = 1
    lr: float = 1e-4
    min_lr: float = 1e-6
    warmup_steps: int = 100
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    # systems
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda"
    precision: str = "auto"  # "auto" (bf16 autocast on cuda, fp32 on cpu), "bf16", "fp32"
    parallel: str = "ddp"  # "ddp" or "fsdp" (FSDP2 `fully_shard`, for students too large for one device)
    activation_checkpointing: bool = False
    compile: bool = False
    seed: int = 0
    # bookkeeping
    log_every: int = 10
    eval_every: int = 100
    save_every: int = 100
    keep_last: int = 3  # checkpoints kept; older ones are deleted after a newer one is complete

    def __post_init__(self):
        self.betas, self.fps = tuple(self.betas), tuple(self.fps)
        clip = get_compression(self.compression).clip_frames() if self.compression in COMPRESSIONS else 1
        checks = [
            (self.compression in COMPRESSIONS,
             f"compression={self.compression} must be one of {', '.join(map(str, COMPRESSIONS))}"),
            (self.frames > 0 and self.frames % clip == 0,
             f"frames={self.frames} must be a positive multiple of {clip} (the clip of {self.compression}x)"),
            (len(self.fps) == 2 and 1.0 <= self.fps[0] <= self.fps[1],
             f"fps={list(self.fps)} must be a range [low, high] with low >= 1 (SPEC 5: dense clips at >= 1 fps)"),
            (self.loss in ("ctd", "rtd"), f"loss={self.loss!r} must be 'ctd' or 'rtd'"),
            (self.parallel in ("ddp", "fsdp"), f"parallel={self.parallel!r} must be 'ddp' or 'fsdp'"),
            (self.precision in ("auto", "bf16", "fp32"), f"precision={self.precision!r} must be auto, bf16 or fp32"),
            (self.device in ("auto", "cpu", "cuda"), f"device={self.device!r} must be auto, cpu or cuda"),
            (min(self.steps, self.batch_size, self.grad_accum) > 0, "steps, batch_size and grad_accum must be > 0"),
            (min(self.cache_views, self.eval_views, self.keep_last) > 0,
             "cache_views, eval_views and keep_last must be > 0"),
            (not (self.loss == "rtd" and self.target_cache), "loss=rtd needs the dense teacher tokens, which the "
             "target cache does not hold: leave target_cache empty"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"distill config: {message}")

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] = ()) -> DistillConfig:
        """YAML file (optional) + `key=value` overrides (values parsed as YAML) -> config."""
        values = read_yaml(path, "distill", ("teacher", "output", "manifest", "eval_manifest", "target_cache"))
        return cls.from_dict(apply_overrides(values, overrides), str(path or "overrides"))

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> DistillConfig:
        return build(cls, values, source, "distill")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"], d["fps"] = list(self.betas), list(self.fps)
        return d


def save_config(cfg: Any, path: str | Path) -> None:
    """`cfg.to_dict()` as YAML at `path`, written atomically; `load` reads it back to an equal config."""
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def read_yaml(path: str | Path | None, what: str, paths: tuple[str, ...]) -> dict[str, Any]:
    """The mapping in a `what` config file ({} without one); the keys in `paths` resolved against its folder."""
    if not path:
        return {}
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise InputError(f"{path}: cannot read the {what} config: {one_line(err)}") from None
    if not isinstance(values, dict):
        raise InputError(f"{path}: a {what} config is a mapping of keys to values")
    for key in paths:
        if values.get(key):
            values[key] = str((path.parent / values[key]).resolve())
    return values


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`values` with `key=value` overrides applied (values parsed as YAML; `student.depth=4` sets one field of a
    mapping)."""
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
    return values


def build(cls: type, values: dict[str, Any], source: str, what: str) -> Any:
    """`cls(**values)` with every value coerced to its field's type; unknown keys are an InputError."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InputError(f"{source}: unknown {what} setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    hints = typing.get_type_hints(cls)
    return cls(**{key: coerce(key, value, hints[key], source) for key, value in values.items()})


def coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    """YAML reads `1e-4` as a string and `3` where a float is meant: convert to the field's type, or say why not."""
    kind = typing.get_origin(hint) or hint
    try:
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if kind in (int, float, str):
            if kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError("expected an integer")
            return kind(value)
        if kind is tuple:  # tuple[float, float] or tuple[int, ...]
            if isinstance(value, (str, dict)) or not hasattr(value, "__iter__"):
                raise ValueError("expected a list")
            return tuple(coerce(key, v, typing.get_args(hint)[0], source) for v in value)
        if kind is dict:
            if not isinstance(value, dict):
                raise ValueError("expected a mapping")
            return dict(value)
    except (TypeError, ValueError) as err:
        raise InputError(f"{source}: {key}={value!r}: {err}") from err
    return value
