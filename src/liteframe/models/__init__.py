"""The teacher, the LiteFrame student family, and the step from token grids to LLM embeddings."""
from .mixers import VARIANTS
from .student import LiteFrameConfig, LiteFrameEncoder
from .teacher import Teacher, to_llm_tokens
from .tiny import tiny_internvl_config, tiny_student_config, tiny_vision_config

__all__ = ["VARIANTS", "LiteFrameConfig", "LiteFrameEncoder", "Teacher", "to_llm_tokens",
           "tiny_internvl_config", "tiny_student_config", "tiny_vision_config"]
