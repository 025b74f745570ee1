"""Qwen2.5-VL: the family (`family.py`, registered as `qwen2_5_vl`), its vision side (`vision.py`: frame sizes from
the processor config, `smart_resize`, patch layout, the ViT and merger as the pipeline's backbone) and its 3D rotary
positions (`positions.py`)."""
from liteframe.llm.qwen.family import Qwen25VL
from liteframe.llm.qwen.vision import PixelBudget, QwenVision, QwenVLUtilsBudget, data_config, smart_resize

__all__ = ["PixelBudget", "Qwen25VL", "QwenVLUtilsBudget", "QwenVision", "data_config", "smart_resize"]
