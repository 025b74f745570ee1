"""Video question answering: a Video LLM checkpoint (InternVL3 or Qwen2.5-VL) behind the dense ViT, a reducer, or a
LiteFrame student (InternVL3), through one fixed visual pipeline."""
from liteframe.llm.encoders import VisualEncoder, VisualTokens, build_encoder
from liteframe.llm.family import FAMILIES, get_family
from liteframe.llm.prompt import Slot, build_input_ids, make_slots
from liteframe.llm.qwen_tiny import save_tiny_qwen
from liteframe.llm.tiny import save_tiny_internvl
from liteframe.llm.videollm import LATENCY_KEYS, Answer, EncodedVideo, VideoLLM, ask

__all__ = ["FAMILIES", "LATENCY_KEYS", "Answer", "EncodedVideo", "Slot", "VideoLLM", "VisualEncoder", "VisualTokens",
           "ask", "build_encoder", "build_input_ids", "get_family", "make_slots", "save_tiny_internvl",
           "save_tiny_qwen"]
