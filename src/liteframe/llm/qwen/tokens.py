"""Qwen's vision tokens and the prompt methods every Qwen family shares (Qwen2.5-VL, Qwen3-VL, Qwen3.5): the chat
template renders a video as `<|vision_start|><|video_pad|><|vision_end|>`, the visual tokens go where the
`<|video_pad|>` tokens are (the model config's `video_token_id`), and the video ends with the last
`<|vision_end|>`."""
from __future__ import annotations

VIDEO_PAD = "<|video_pad|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"


class QwenTokens:
    """The `Family` methods of the prompt's vision tokens, shared by the Qwen families."""

    context_config = "video_token_id"

    def missing_tokens(self, tokenizer) -> list[str]:
        vocab = tokenizer.get_vocab()
        return [t for t in (VISION_START, VIDEO_PAD, VISION_END) if t not in vocab]

    def video_placeholder(self, tokenizer) -> str:
        return VISION_START + VIDEO_PAD + VISION_END

    def context_token(self, tokenizer) -> str:
        return VIDEO_PAD

    def context_id(self, tokenizer) -> int:
        return tokenizer.convert_tokens_to_ids(VIDEO_PAD)

    def end_id(self, tokenizer) -> int:
        return tokenizer.convert_tokens_to_ids(VISION_END)
