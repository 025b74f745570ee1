"""Fixtures for tests and benchmarks, kept out of the library's public surface: tiny random checkpoints in the
real folder layouts (`save_tiny_internvl`, `save_tiny_qwen`, `save_tiny_qwen3` for each Qwen3 model type;
`TINY_CHECKPOINTS`, keyed by model family), real checkpoints' shapes with random weights for GPU benchmarks
(`RANDOM_MODELS`), synthetic videos, and one question answered with a given encoder (`runs.answer_with_inputs`,
to compare two encoders' prompts and positions). The library never imports this package.
"""
from functools import partial

from liteframe.testing.internvl import random_internvl_8b, save_tiny_internvl
from liteframe.testing.qwen import random_qwen_7b, save_tiny_qwen
from liteframe.testing.qwen3 import MODELS as QWEN3_TYPES, save_tiny_qwen3
from liteframe.testing.videos import drifting_squares, make_video, solid_video, synthetic_video

# family -> (the real checkpoint whose shapes it builds, builder(folder, device, dtype) -> (model, tokenizer))
RANDOM_MODELS = {"internvl": ("8b", random_internvl_8b), "qwen2_5_vl": ("7b", random_qwen_7b)}
TINY_CHECKPOINTS = {"internvl": save_tiny_internvl, "qwen2_5_vl": save_tiny_qwen,
                    **{name: partial(save_tiny_qwen3, model_type=name) for name in QWEN3_TYPES}}

__all__ = ["RANDOM_MODELS", "TINY_CHECKPOINTS", "drifting_squares", "make_video", "random_internvl_8b",
           "random_qwen_7b", "save_tiny_internvl", "save_tiny_qwen", "save_tiny_qwen3", "solid_video",
           "synthetic_video"]
