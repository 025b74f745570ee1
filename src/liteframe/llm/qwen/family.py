"""Qwen2.5-VL (native `transformers` format, `model_type` `qwen2_5_vl`) as a model family: its data config, backbone,
prompt layout and the mRoPE positions of its visual tokens.

`Qwen2_5_VLProcessor` expands the template's `<|vision_start|><|video_pad|><|vision_end|>` into one run of
`<|video_pad|>`, one per merged token, with no frame labels (time enters through the positions); liteframe gives each
slot its count of pads inside that one run, so the prompt is the processor's. Tokens enter the LLM through
`inputs_embeds`, with position ids liteframe computes (`liteframe.llm.qwen.positions`): no transformers class is
patched. A LiteFrame student takes the ViT's place in front of the checkpoint's own merger (`student`): its merged
grid reaches the LLM where a grid reducer's does, with the same prompt and positions at the same compression.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from transformers import Qwen2_5_VLForConditionalGeneration

from liteframe.llm.encoders import Vision, VisualTokens
from liteframe.llm.family import FAMILIES, embed
from liteframe.llm.inputs import LLMInputs
from liteframe.llm.prompt import Slot
from liteframe.llm.qwen.positions import rope_positions, set_positions
from liteframe.llm.qwen.tokens import VIDEO_PAD, VISION_END, VISION_START, QwenTokens
from liteframe.llm.qwen.vision import FACTOR, FRAMES_PER_STEP, QwenVision, data_config, student_vision, vit_of
from liteframe.models.qwen import keep_merger


class Qwen25VL(QwenTokens):
    title = "a Qwen2.5-VL"
    checkpoint_class = Qwen2_5_VLForConditionalGeneration
    # the LLM's projections; the vision tower's blocks are `visual.blocks.N.attn.qkv` and `.mlp.*_proj`
    lora_targets = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
    projector_modules = ["merger"]
    reasoning_tokens = 0

    def vision(self, model, folder: Path | None = None, pixels: str = "processor") -> Vision:
        """The ViT and merger (`QwenVision`), frames in pairs resized by `smart_resize` within the pixel budget of
        the checkpoint's processor config in `folder`, or the one `pixels` names (`qwen.vision.data_config`)."""
        return Vision(QwenVision(vit_of(model)), nn.Identity(), data_config(folder, pixels),
                      (FRAMES_PER_STEP, FACTOR, FACTOR), shuffle=False)

    def student(self, model, student: Path, folder: Path | None = None) -> Vision:
        """A LiteFrame student folder of Qwen2.5-VL's ViT in the ViT's place, in front of the checkpoint's own merger
        (`ThroughMerger`): a grid step is a clip of its block of frame pairs, and its merged grid reaches the LLM as
        a grid reducer's does at the same compression. Its frames are a square of its own size, resized and
        normalised as the checkpoint's processor (`folder`) does."""
        return student_vision(vit_of(model), student, data_config(folder), FACTOR)

    def drop_vision(self, model) -> None:
        """Free the ViT; the merger stays, for a student's tokens (and LMA's `train_projector`)."""
        keep_merger(model.model.visual)

    def video_text(self, tokenizer, slots: Sequence[Slot], slot_text: Sequence[str | None] | None = None,
                   timestamps: bool = False) -> str:
        """The video as one run, a pad per slot (repeated later); slot texts (e.g. subtitles) go on lines before
        it, since text inside the run would break Qwen's one-video layout. No labels: time enters through the
        positions."""
        lines = "".join(f"{text}\n" for text in slot_text or [] if text)
        return lines + VISION_START + VIDEO_PAD * len(slots) + VISION_END

    def llm_inputs(self, model, ids: torch.Tensor, visual: VisualTokens, fps: float) -> LLMInputs:
        """Prompt ids `(1, L)` and the video's tokens, sampled at `fps` frames per second of video -> embeddings
        with the tokens in the `<|video_pad|>` run and mRoPE `position_ids (3, 1, L)`: each token keeps its (t, h, w)
        place in the grid it came from, a grid step of `visual.frames_per_step` frames advancing `tokens_per_second`
        x its seconds, `frames_per_step / fps`, in time ids (the processor's `second_per_grid_ts = 2 / fps` for a
        frame pair)."""
        interval = model.config.vision_config.tokens_per_second * visual.frames_per_step / fps
        video = set_positions(visual.step, visual.pos, visual.grid[2], interval)
        positions, _ = rope_positions(ids[0] == model.config.video_token_id, video)
        return LLMInputs(ids, embed(model, ids, self, visual), torch.ones_like(ids), positions)

    def context_length(self, model) -> int:
        return model.config.text_config.max_position_embeddings


FAMILIES.register("qwen2_5_vl")(Qwen25VL())
