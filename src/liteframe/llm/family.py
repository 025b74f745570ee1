"""Model families: what differs between Video LLM checkpoints, behind one protocol, chosen by `model_type`.

A family is a module of its own that registers one object under its checkpoints' `model_type`
(`liteframe.llm.internvl`: `internvl`; `liteframe.llm.qwen`: `qwen2_5_vl`). Generic code (the VideoLLM, the prompt,
LoRA, LMA, evaluation) reaches a checkpoint only through it; adding a family is a new module and a registration.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import torch

from liteframe.errors import InputError
from liteframe.llm.encoders import Vision, VisualTokens
from liteframe.llm.inputs import LLMInputs
from liteframe.llm.prompt import Slot
from liteframe.registry import Registry


class Family(Protocol):
    """One model family. Its checkpoint class loads a folder; the rest takes the loaded (or skeleton) model.

    - weights: `checkpoint_class`; `lora_targets`, a regular expression over module names (PEFT fullmatches it)
      naming the LLM's projections and nothing of the vision tower; `projector_modules`, the modules that carry
      visual tokens into the LLM's width (trained with `train_projector`).
    - vision (the encoder builder): `vision(model, folder, pixels)` the checkpoint's own tower as the pipeline's
      backbone, with its data config: the frames the checkpoint's processor gives, as its files in `folder` set it
      (`liteframe.llm.processor`; None: the processor's defaults), or another budget of the family's that `pixels`
      names; `student(model, student, folder)` the LiteFrame student in the folder `student` in its place (its
      frames at its own size, sized and normalised as the checkpoint's processor in `folder` says);
      `drop_vision(model)` frees what a student replaces.
    - prompt layout: the template's `video_placeholder`, the `video_text` that replaces it for the video's slots (one
      context token per slot, repeated later to the slot's count; labels or times from each slot's frames and
      times), the `context_token` and its id (the model config's `context_config`), and `end_id`, the token that
      ends the video (the cached prefix ends there); `missing_tokens`, those of its special tokens a tokenizer
      lacks; `title` names its checkpoints in messages.
    - LLM inputs: `llm_inputs(model, ids, visual, fps)`, the prompt with its visual tokens in place, with positions
      where the family has its own (`fps`: the video's sampled frame rate, frames per second of video, which ties
      Qwen2.5-VL's temporal positions to time) and what its LLM adds inside (Qwen3-VL's DeepStack features);
      `context_length(model)`.
    - generation: `reasoning_tokens`, the room its chat template's opened reasoning block needs before an answer
      (Qwen3.5's `<think>`), which `liteframe eval` adds to a benchmark's generation limit (0: none).
    """

    title: str
    checkpoint_class: type
    context_config: str
    lora_targets: str
    projector_modules: list[str]
    reasoning_tokens: int

    def vision(self, model, folder: Path | None = None, pixels: str = "processor") -> Vision: ...

    def student(self, model, student: Path, folder: Path | None = None) -> Vision: ...

    def drop_vision(self, model) -> None: ...

    def missing_tokens(self, tokenizer) -> list[str]: ...

    def video_placeholder(self, tokenizer) -> str: ...

    def video_text(self, tokenizer, slots: Sequence[Slot], slot_text: Sequence[str | None] | None = None,
                   timestamps: bool = False) -> str: ...

    def context_token(self, tokenizer) -> str: ...

    def context_id(self, tokenizer) -> int: ...

    def end_id(self, tokenizer) -> int: ...

    def llm_inputs(self, model, ids: torch.Tensor, visual: VisualTokens, fps: float) -> LLMInputs: ...

    def context_length(self, model) -> int: ...


FAMILIES: Registry[Family] = Registry("model family")


def get_family(model_type: str | None, folder=None) -> Family:
    """The family of a checkpoint's `model_type`, or one line naming the folder and the supported types."""
    if model_type not in FAMILIES:
        where = f"model folder {folder}: " if folder else ""
        raise InputError(f"{where}model_type {model_type!r} is not supported (choose a checkpoint of "
                         f"{', '.join(repr(n) for n in FAMILIES.names())}; InternVL's original trust_remote_code "
                         "format is not supported)")
    return FAMILIES.get(model_type)


def check_tokenizer(family: Family, tokenizer, model) -> None:
    """One line unless the tokenizer has the family's special tokens and its context token is the model's."""
    missing = family.missing_tokens(tokenizer)
    if missing:
        raise InputError(f"tokenizer of {tokenizer.name_or_path or 'the model'} has no {', '.join(missing)}: not "
                         f"{family.title} checkpoint")
    ours, theirs = family.context_id(tokenizer), getattr(model.config, family.context_config)
    if ours != theirs:
        raise InputError(f"tokenizer's {family.context_token(tokenizer)} id {ours} is not the model's "
                         f"{family.context_config} {theirs}: tokenizer and weights come from different checkpoints")


def embed(model, ids: torch.Tensor, family: Family, visual: VisualTokens) -> torch.Tensor:
    """Prompt ids `(1, L)` -> `inputs_embeds (1, L, d)` with the visual tokens at the family's context positions in
    order (what the checkpoints' own forwards do with image and video features)."""
    embeds = model.get_input_embeddings()(ids)
    is_visual = ids == getattr(model.config, family.context_config)
    return embeds.masked_scatter(is_visual[..., None], visual.tokens.to(embeds.dtype))
