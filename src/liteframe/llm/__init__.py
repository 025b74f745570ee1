"""Video question answering: an InternVL3 checkpoint's LLM behind the dense ViT, a reducer, or a LiteFrame student."""
from liteframe.llm.encoders import VisualEncoder, build_encoder
from liteframe.llm.prompt import build_input_ids, slot_labels
from liteframe.llm.tiny import save_tiny_internvl
from liteframe.llm.videollm import LATENCY_KEYS, Answer, VideoLLM, ask

__all__ = ["LATENCY_KEYS", "Answer", "VideoLLM", "VisualEncoder", "ask", "build_encoder", "build_input_ids",
           "save_tiny_internvl", "slot_labels"]
