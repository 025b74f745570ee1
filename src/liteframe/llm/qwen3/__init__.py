"""Qwen3-VL (dense, MoE) and Qwen3.5 (dense, MoE): the families (`family.py`, registered as `qwen3_vl`,
`qwen3_vl_moe`, `qwen3_5`, `qwen3_5_moe`), their frames (`frames.py`: the processor's whole-video pixel budget),
vision tower with DeepStack levels (`vision.py`) and mRoPE positions per timestamp run (`positions.py`)."""
from liteframe.llm.qwen3.family import Qwen3, slot_time
from liteframe.llm.qwen3.frames import VideoBudget, data_config
from liteframe.llm.qwen3.vision import Qwen3Vision

__all__ = ["Qwen3", "Qwen3Vision", "VideoBudget", "data_config", "slot_time"]
