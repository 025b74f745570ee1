"""The adaptation job's settings (`liteframe adapt`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from liteframe.compression import get_compression
from liteframe.errors import InputError
from liteframe.llm.encoders import EncoderSpec
from liteframe.llm.lora import LoraSettings
from liteframe.train.config import TrainConfig, job_groups


@dataclass
class AdaptConfig(TrainConfig):
    """Everything an LMA run depends on, written to YAML by group: model, data, optim, system, checkpoint. Paths in
    a YAML file (a `student:DIR` encoder's too) are relative to that file; paths in `key=value` overrides to the
    working directory."""

    KIND: ClassVar[str] = "adapt"
    GROUPS: ClassVar[dict[str, tuple[str, ...]]] = job_groups({
        "model": ("model", "encoder", "compression", "lora", "train_projector"),
        "data": ("data", "eval_data", "video_root", "frames", "fps"),
        "optim": (),
        "system": ("device", "precision", "activation_checkpointing", "chunk_frames", "seed"),
    })
    PATHS: ClassVar[tuple[str, ...]] = ("model", "data", "eval_data", "video_root", "output")
    RESUMABLE: ClassVar[tuple[str, ...]] = TrainConfig.RESUMABLE + ("eval_data",)

    model: str = ""  # a checkpoint folder of a registered family (InternVL3 `-hf`, Qwen2.5-VL, ...)
    encoder: str = "dense"  # `dense`, a reducer name, or `student:DIR`
    compression: int | None = None  # 4, 16 or 64; None: a student's own, else 16
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
    warmup_steps: int = 500
    workers: int = 2  # processes that probe videos and lay out prompts (frames are decoded by VideoLLM.stream)
    activation_checkpointing: bool = True
    chunk_frames: int | None = None  # frames the visual encoder takes at a time (None: VideoLLM's default)
    eval_every: int = 500
    save_every: int = 500

    def checks(self) -> list[tuple[bool, str]]:
        clip = get_compression(self.compression).clip
        return super().checks() + [
            (bool(self.frames) and all(f > 0 and f % clip == 0 for f in self.frames),
             f"frames={list(self.frames)} must be positive multiples of the {clip}-frame clip"),
            (len(self.fps) == 2 and 0 < self.fps[0] <= self.fps[1], f"fps={list(self.fps)} must be [low, high]"),
            (self.chunk_frames is None or self.chunk_frames > 0, "chunk_frames must be > 0"),
        ]

    def __post_init__(self):
        super().__post_init__()
        self.lora_settings()

    def lora_settings(self) -> LoraSettings:
        try:
            return LoraSettings(**self.lora)
        except TypeError as err:
            raise InputError(f"adapt config: lora {self.lora}: {err}") from None

    @classmethod
    def resolve_paths(cls, values: dict[str, Any], folder: Path) -> None:
        super().resolve_paths(values, folder)
        if "encoder" in values:  # a student folder relative to the file
            values["encoder"] = str(EncoderSpec.parse(values["encoder"]).relative_to(folder))

    def identity_settings(self) -> dict[str, Any]:
        flat = super().identity_settings()
        flat["encoder"] = str(EncoderSpec.parse(self.encoder).relative_to(Path.cwd()))
        return flat
