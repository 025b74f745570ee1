"""Video question answering: a Video LLM checkpoint of a registered model family (InternVL3, Qwen2.5-VL, Qwen3-VL,
Qwen3.5) behind the dense ViT, a reducer, or a LiteFrame student (InternVL3), through one fixed visual pipeline."""
# the families register themselves in FAMILIES on import (the registration order is the order they are listed in)
from liteframe.llm import internvl, qwen, qwen3  # noqa: F401, I001
from liteframe.llm.data import DataConfig, Square
from liteframe.llm.encoders import EncoderSpec, Vision, VisualEncoder, VisualTokens, build_encoder
from liteframe.llm.family import FAMILIES, Family, get_family
from liteframe.llm.inputs import LLMInputs
from liteframe.llm.prompt import Slot, build_input_ids, make_slots
from liteframe.llm.context import VideoContext
from liteframe.llm.videollm import Answer, EncodedVideo, VideoLLM, ask, sample_clips
from liteframe.llm.watch import LiveAnswer, LiveSession, watch

__all__ = ["FAMILIES", "Answer", "DataConfig", "EncodedVideo", "EncoderSpec", "Family", "LLMInputs", "LiveAnswer",
           "LiveSession", "Slot", "Square", "VideoContext", "VideoLLM", "Vision", "VisualEncoder", "VisualTokens",
           "ask", "build_encoder", "build_input_ids", "get_family", "make_slots", "sample_clips", "watch"]
