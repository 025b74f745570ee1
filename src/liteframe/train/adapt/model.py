"""What LMA trains: a `VideoLLM` whose LLM carries LoRA adapters (PEFT), its visual encoder and projector frozen.

A sample's inputs are made by `ask`'s own code: `VideoLLM.encode` (the same front end, the family's preprocessing,
the same encoder), the prompt of `build_input_ids` (the family's slot layout with per-slot token counts) and the
family's LLM inputs, positions and DeepStack features included (`VideoLLM.inputs`), which the language model takes
whole. The visual encoder (dense ViT, a reducer, or a student) and the projector are frozen: their tokens keep no
graph unless the projector trains.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F

from liteframe.errors import one_line
from liteframe.llm.inputs import LLMInputs
from liteframe.llm.lora import add_lora
from liteframe.llm.videollm import VideoLLM
from liteframe.reduce.base import frame_budgets
from liteframe.train.adapt.config import AdaptConfig
from liteframe.train.adapt.data import IGNORE, Prompter, SkipSample, chat_ids
from liteframe.train.job import autocast
from liteframe.video import SampleReads, VideoDecodeError


class AdaptModel:
    """A `VideoLLM` whose LLM is wrapped with LoRA by PEFT: `inputs(item)` -> one sample's LLM inputs and labels,
    made by `ask`'s own code, `sample_losses(batch)` -> per-sample answer losses."""

    @classmethod
    def load(cls, cfg: AdaptConfig, device: torch.device, dtype: torch.dtype, bf16: bool) -> AdaptModel:
        """From the checkpoint folder `cfg.model`, loaded in `dtype` on `device` as `ask` loads it; `bf16` autocast."""
        return cls(VideoLLM.from_pretrained(cfg.model, cfg.encoder, cfg.compression, device=device, dtype=dtype,
                                            chunk_frames=cfg.chunk_frames), cfg, bf16)

    def __init__(self, llm: VideoLLM, cfg: AdaptConfig, bf16: bool = False):
        self.prompter = Prompter.of(llm, cfg.frames)  # checks every budget against the encoder
        self.llm, self.device, self.bf16 = llm, llm.device, bf16
        self.reads = SampleReads()
        self.peft = add_lora(llm.model, cfg.lora_settings(), cfg.train_projector)
        self.params = [p for p in self.peft.parameters() if p.requires_grad]
        for p in self.params:
            p.data = p.data.float()  # trained weights and their optimiser state stay float32 under bf16 weights
        self.base = self.peft.get_base_model()
        for module in self.base.modules():  # a trained projector: the encoder takes PEFT's trainable copy
            if getattr(module, "original_module", None) is llm.encoder.projector:
                llm.encoder.projector = module
        self.lm, self.head = self.base.get_decoder(), self.base.get_output_embeddings()
        if cfg.activation_checkpointing:
            self.lm.activation_checkpointing_enable({"use_reentrant": False})

    def train(self, mode: bool = True) -> None:
        self.peft.train(mode)
        self.llm.encoder.eval()  # frozen: no dropout there in any case

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.bf16)

    def inputs(self, item: dict[str, Any]) -> tuple[LLMInputs, torch.Tensor]:
        """A dataset item -> the LLM's inputs (the family's, positions included) and labels `(L,)`, as `ask` makes
        them: `VideoLLM.encode` of the item's frames, the chat prompt on its slots, `VideoLLM.inputs`. The visual
        tokens keep a graph only if the projector trains. Raises SkipSample when the prompt exceeds the context at
        the video's own frame size (checked before decoding), when the frames cannot be read, or when a set
        reducer's prompt exceeds it (`SampleReads` decides which frames cannot be read)."""
        ids, labels, counts = item["ids"], item["labels"], item["counts"]
        if not self.prompter.exact:  # the video's own frame size sets its token count: lay it out for that size
            counts = frame_budgets(*self.llm.encoder.layout(item["frames"], item["size"])).tolist()
            ids, labels = self.prompter.ids(item["timestamps"], counts, item["turns"])
            self._check_context(ids, item)
        try:
            with self.reads(), self.autocast():
                enc = self.llm.encode(item["video"], timestamps=item["timestamps"])
        except (VideoDecodeError, OSError) as err:
            raise SkipSample("decode failure", one_line(err)) from None
        if enc.visual.counts != counts:  # a set reducer's counts are known only now
            ids, labels = chat_ids(self.prompter.tokenizer, self.prompter.family, enc.slots, item["turns"])
            self._check_context(ids, item)
        with self.autocast():
            inputs = self.llm.inputs(ids[None], enc)
        return inputs, labels.to(self.device)

    def _check_context(self, ids: torch.Tensor, item: dict[str, Any]) -> None:
        if len(ids) > self.prompter.context:
            raise SkipSample("over context", f"{len(ids)} tokens at {item['frames']} frames > {self.prompter.context}")

    def sample_losses(self, batch: list[tuple[LLMInputs, torch.Tensor]]) -> tuple[torch.Tensor, int]:
        """Per-sample mean cross-entropy over answer tokens `(B,)`, and the tokens the LLM read."""
        lengths = [len(y) for _, y in batch]
        inputs = LLMInputs.batch([x for x, _ in batch])
        labels = torch.stack([F.pad(y, (0, max(lengths) - len(y)), value=IGNORE) for _, y in batch])
        with self.autocast():
            hidden = self.lm(**inputs.forward_kwargs(), use_cache=False).last_hidden_state
            targets = labels[:, 1:]
            keep = targets != IGNORE
            logits = self.head(hidden[:, :-1][keep])  # only where an answer token is predicted
        ce = F.cross_entropy(logits.float(), targets[keep], reduction="none")
        sums = torch.zeros(len(batch), device=self.device).index_add(0, keep.nonzero()[:, 0], ce)
        return sums / keep.sum(1).clamp(min=1), sum(lengths)
