"""Model families: what differs between Video LLM checkpoints, in one small object chosen by `model_type`.

A family names the checkpoint class, the vision parts a `Teacher` wraps, the video placeholder that the chat
template renders and the slot text that replaces it (the layout of the family's own processor), how visual tokens
enter the LLM's input (`llm_inputs`: embeddings, and positions where the family needs them), and how many frames one
ViT grid step covers, and which visual encoder (`encoder`) fits its vision tower. InternVL3 (`-hf`, `model_type`
`internvl`) is the first; Qwen2.5-VL (`qwen2_5_vl`, `liteframe.llm.qwen`) registers beside it.
"""
from __future__ import annotations

from typing import Sequence

import torch
from transformers import InternVLForConditionalGeneration

from liteframe.compression import Compression
from liteframe.errors import InputError
from liteframe.llm.encoders import VisualEncoder, VisualTokens, build_encoder
from liteframe.llm.qwen import Qwen25VL
from liteframe.models import Teacher
from liteframe.registry import Registry

FAMILIES: Registry = Registry("model family")


class InternVL:
    """InternVL3 `-hf`. Its processor turns the template's `<video>` into `Frame{i}: <img>` + image-context tokens
    + `</img>`, one line per frame (`InternVLProcessor.replace_video_token`); liteframe gives each slot (frame or
    clip) such a line with the slot's own token count."""

    model_type = "internvl"
    checkpoint_class = InternVLForConditionalGeneration
    frames_per_step = 1  # InternViT sees one frame per grid step
    _tokens = ("start_image_token", "end_image_token", "context_image_token", "video_token")

    def check_tokenizer(self, tokenizer, model) -> None:
        """One line unless the tokenizer names InternVL's image tokens and its context token is the model's."""
        missing = [n for n in self._tokens if getattr(tokenizer, n, None) is None]
        if missing:
            raise InputError(f"tokenizer of {tokenizer.name_or_path or 'the model'} has no {', '.join(missing)}: "
                             "not an InternVL3 -hf checkpoint")
        if self.context_id(tokenizer) != model.config.image_token_id:
            raise InputError(f"tokenizer's image-context token id {self.context_id(tokenizer)} is not the model's "
                             f"image_token_id {model.config.image_token_id}: tokenizer and weights come from "
                             "different checkpoints")

    def video_placeholder(self, tokenizer) -> str:
        return tokenizer.video_token

    def context_token(self, tokenizer) -> str:
        return tokenizer.context_image_token

    def context_id(self, tokenizer) -> int:
        return tokenizer.convert_tokens_to_ids(tokenizer.context_image_token)

    def end_id(self, tokenizer) -> int:
        return tokenizer.convert_tokens_to_ids(tokenizer.end_image_token)

    def video_text(self, tokenizer, labels: Sequence[str], slot_text: Sequence[str | None] | None = None) -> str:
        """One line per slot, `{label}: <img><IMG_CONTEXT></img>` (one context token, repeated later), after the
        slot's text line if any."""
        start, end, context = tokenizer.start_image_token, tokenizer.end_image_token, tokenizer.context_image_token
        texts = slot_text or [None] * len(labels)
        return "\n".join(f"{text}\n" * bool(text) + f"{label}: {start}{context}{end}"
                         for label, text in zip(labels, texts))

    def teacher(self, model) -> Teacher:
        """The checkpoint's vision tower and projector; the tower is None once a student replaced it."""
        inner = model.model
        if inner.vision_tower is None:
            raise InputError("this VideoLLM dropped its vision tower for a student: load it again with "
                             "from_pretrained")
        return Teacher(inner.vision_tower, inner.multi_modal_projector)

    def encoder(self, model, spec: str, compression: Compression | int | str | None = None) -> VisualEncoder:
        """`dense`, a reducer name or `student:DIR` in front of the checkpoint's projector (`build_encoder`)."""
        return build_encoder(spec, self.teacher(model), compression)

    def drop_vision(self, model) -> None:
        model.model.vision_tower = None

    def llm_inputs(self, model, ids: torch.Tensor, visual: VisualTokens,
                   timestamps: Sequence[float]) -> dict[str, torch.Tensor]:
        """Prompt ids `(1, L)` and the video's tokens -> the LLM's inputs besides `input_ids`: `inputs_embeds
        (1, L, d)`, the visual tokens at the context positions in order (what InternVL's own forward does with image
        features); InternVL's positions are plain 1-D ones, so the frames' times are not needed."""
        embeds = model.get_input_embeddings()(ids)
        is_image = (ids == model.config.image_token_id)[..., None]
        return {"inputs_embeds": embeds.masked_scatter(is_image, visual.tokens.to(embeds.dtype))}

    def context_length(self, model) -> int:
        return model.config.text_config.max_position_embeddings


FAMILIES.register("internvl")(InternVL())
FAMILIES.register("qwen2_5_vl")(Qwen25VL())


def get_family(model_type: str | None, folder=None):
    """The family of a checkpoint's `model_type`, or one line naming the folder and the supported types."""
    if model_type not in FAMILIES:
        where = f"model folder {folder}: " if folder else ""
        raise InputError(f"{where}model_type {model_type!r} is not supported (choose a checkpoint of "
                         f"{', '.join(repr(n) for n in FAMILIES.names())}; InternVL's original trust_remote_code "
                         "format is not supported)")
    return FAMILIES.get(model_type)
