"""What CTD trains: the student cropped from the teacher (and RTD's decoder), and the student's config."""
from __future__ import annotations

import math

import torch
from torch import nn

from liteframe.compression import Compression
from liteframe.errors import InputError
from liteframe.models import LiteFrameConfig, LiteFrameEncoder, Teacher
from liteframe.models import student_config as models_student_config
from liteframe.train.distill.config import DistillConfig
from liteframe.train.loss import RTDDecoder


class DistillModel(nn.Module):
    """The trained parts: `pixels (B, T, 3, S, S) -> (student tokens (B, T/t*H'*W', C), RTD reconstruction
    (B, T*H*W, C) or None)`."""

    def __init__(self, student: LiteFrameEncoder, decoder: RTDDecoder | None = None):
        super().__init__()
        self.student, self.decoder = student, decoder

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        grid = self.student(pixels)
        dense = None if self.decoder is None else self.decoder(grid.patches).flatten(1, 3)
        return grid.tokens(), dense

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        decoder = [] if self.decoder is None else self.decoder.optimizer_groups(weight_decay)
        return self.student.optimizer_groups(weight_decay) + decoder


def student_config(cfg: DistillConfig, teacher: Teacher, compression: Compression) -> LiteFrameConfig:
    """The LiteFrame config to crop from `teacher`: the named config `cfg.student["name"]` (default `liteframe-b`)
    with the other `cfg.student` keys over it, at the teacher's width and input size and the job's compression;
    refused unless its strides give the compression's block (the `none` variant never downsamples)."""
    overrides = dict(cfg.student)
    name = overrides.pop("name", "liteframe-b")
    try:
        config = models_student_config(name, **{"image": teacher.image_size, "out_dim": teacher.hidden_size,
                                                **overrides, "compression": compression})
    except (TypeError, ValueError) as err:
        raise InputError(f"distill config: student {cfg.student}: {err}") from err
    block = tuple(math.prod(s[k] for s in config.strides) for k in range(3))
    if block != compression.block:
        raise InputError(f"distill config: student {cfg.student} (variant {config.temporal!r}) downsamples by "
                         f"{block}, but compression={compression.ratio} needs {compression.block}")
    return config
