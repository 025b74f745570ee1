"""What CTD trains: the student cropped from the teacher (and RTD's decoder), and the student's config."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from liteframe.compression import Compression
from liteframe.errors import InputError
from liteframe.grid import TokenGrid
from liteframe.models import LiteFrameConfig, LiteFrameEncoder, Teacher, student_for
from liteframe.reduce.wap import wap_stacked
from liteframe.train.distill.config import DistillConfig
from liteframe.train.loss import RTDDecoder


class DistillModel(nn.Module):
    """The trained parts: `pixels (B, T, 3, S, S) -> (student tokens (B, T/t*H'*W', C), dense tokens
    (B, T*H*W, C) or None)`. The dense tokens are RTD's reconstruction, or the output of a student that does not
    compress (the `none` variant: distillation without compression), whose compressed tokens are then WAP of its
    own output with the run's `block`, as the teacher's targets are. A student with levels (of Qwen3-VL's tower)
    gives them after its tokens, `(B, (1+L)*T/t*H'*W', C)`, as the targets hold the teacher's (`wap_targets`).
    `head`: the teacher's frozen output stage the student's grid goes through first (`Teacher.student_head`: Qwen's
    mergers, whose space the targets are in); a function, so that none of its weights is trained, saved or sharded
    with the student."""

    def __init__(self, student: LiteFrameEncoder, decoder: RTDDecoder | None = None,
                 block: tuple[int, int, int] | None = None,
                 head: Callable[[TokenGrid], TokenGrid] | None = None):
        super().__init__()
        self.student, self.decoder, self.head = student, decoder, head
        self.block = None if student.config.compresses else block

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        grid = self.student(pixels)
        if self.head is not None:
            grid = self.head(grid)
        if self.block is not None:
            return wap_stacked(grid, self.block).flatten(1, 3), grid.tokens()
        dense = None if self.decoder is None else self.decoder(grid.patches).flatten(1, 3)
        return grid.stacked().flatten(1, 3), dense

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        decoder = [] if self.decoder is None else self.decoder.optimizer_groups(weight_decay)
        return self.student.optimizer_groups(weight_decay) + decoder


def student_config(cfg: DistillConfig, teacher: Teacher, compression: Compression) -> LiteFrameConfig:
    """The LiteFrame config to crop from `teacher` (`liteframe.models.student_for`): the named config
    `cfg.student["name"]`, or without a name the teacher's by the paper's ratios, with the other `cfg.student`
    keys over it, at the run's input size and compression; refused unless its strides give the compression's ratio
    (the `none` variant never downsamples)."""
    overrides = dict(cfg.student)
    name = overrides.pop("name", None)
    try:
        config = student_for(teacher.vision, name, **{"image": cfg.image_size or teacher.image_size, **overrides,
                                                      "compression": compression})
    except (TypeError, ValueError) as err:
        raise InputError(f"distill config: student {cfg.student}: {err}") from err
    if config.compresses and math.prod(config.block) != compression.ratio:
        raise InputError(f"distill config: student {cfg.student} (variant {config.temporal!r}) downsamples by "
                         f"{config.block}, but compression={compression.ratio} needs {compression.ratio}x")
    return config
