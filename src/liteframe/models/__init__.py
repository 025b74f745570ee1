"""The teacher, the LiteFrame student family, and the step from token grids to LLM embeddings."""
from .config import STUDENTS, LiteFrameConfig, student_config
from .crop import student_for
from .mixers import VARIANTS
from .student import LiteFrameEncoder, create_student
from .teacher import Teacher, to_llm_tokens
from .tiny import tiny_internvl_config, tiny_student_config, tiny_vision_config

__all__ = ["STUDENTS", "VARIANTS", "LiteFrameConfig", "LiteFrameEncoder", "Teacher", "create_student",
           "student_config", "student_for", "to_llm_tokens", "tiny_internvl_config", "tiny_student_config",
           "tiny_vision_config"]
