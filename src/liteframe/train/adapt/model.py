"""What LMA trains: a `VideoLLM` whose LLM carries LoRA adapters (PEFT), its visual encoder and projector frozen.

The visual encoder (dense ViT, a reducer, or a student) and the projector are frozen: their tokens are computed
under no_grad unless the projector trains. Frames are read through `ask`'s own front end (`VideoLLM.stream`: the
same resize, so the same pixels), decoded in its background thread while the encoder works on the previous chunk.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterable

import torch
import torch.nn.functional as F

from liteframe.errors import one_line
from liteframe.llm.lora import PROJECTOR, add_lora
from liteframe.llm.videollm import VideoLLM
from liteframe.train.adapt.config import AdaptConfig
from liteframe.train.adapt.data import IGNORE, Prompter, SkipSample
from liteframe.train.job import autocast
from liteframe.video import VideoDecodeError, VideoDecodeWarning


class AdaptModel:
    """A `VideoLLM` whose LLM is wrapped with LoRA by PEFT: `inputs(item, chunks)` -> one sample's embeddings and
    labels, `sample_losses(inputs)` -> per-sample answer losses."""

    @classmethod
    def load(cls, cfg: AdaptConfig, device: torch.device, dtype: torch.dtype, bf16: bool) -> AdaptModel:
        """From the `-hf` folder `cfg.model`, loaded in `dtype` on `device` as `ask` loads it; `bf16` autocast."""
        return cls(VideoLLM.from_pretrained(cfg.model, cfg.encoder, cfg.compression, device=device, dtype=dtype,
                                            chunk_frames=cfg.chunk_frames), cfg, bf16)

    def __init__(self, llm: VideoLLM, cfg: AdaptConfig, bf16: bool = False):
        self.prompter = Prompter.of(llm, cfg.frames)  # checks every budget against the encoder
        self.llm, self.device, self.bf16 = llm, llm.device, bf16
        self.peft = add_lora(llm.model, cfg.lora_settings(), cfg.train_projector)
        self.params = [p for p in self.peft.parameters() if p.requires_grad]
        for p in self.params:
            p.data = p.data.float()  # trained weights and their optimiser state stay float32 under bf16 weights
        self.base = self.peft.get_base_model()
        if cfg.train_projector:
            llm.encoder.projector = getattr(self.base.model, PROJECTOR)  # PEFT's trainable copy
        self.train_projector = cfg.train_projector
        self.lm = self.base.model.language_model
        if cfg.activation_checkpointing:
            self.lm.activation_checkpointing_enable({"use_reentrant": False})

    def train(self, mode: bool = True) -> None:
        self.peft.train(mode)
        self.llm.encoder.eval()  # frozen: no dropout there in any case

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.bf16)

    def frames(self, item: dict[str, Any]) -> Iterable[torch.Tensor]:
        """The item's sampled frames as `(n, 3, S, S)` chunks on the device, exactly as `ask` reads them."""
        return (c.pixels for c in self.llm.stream(item["video"], item["timestamps"]))

    def inputs(self, item: dict[str, Any], chunks: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """A dataset item and its frames `(n, 3, S, S)` chunk by chunk -> input embeddings `(L, d)` and labels
        `(L,)`; the visual tokens without a graph unless the projector trains. Raises SkipSample when the frames
        cannot be read or a set reducer's prompt exceeds the context."""
        enc = self.llm.encoder
        try:
            with warnings.catch_warnings(), self.autocast(), \
                    torch.set_grad_enabled(self.train_projector and torch.is_grad_enabled()):
                warnings.simplefilter("error", VideoDecodeWarning)  # part-decoded: as bad as not at all
                visual = enc.finish([enc.encode_chunk(c[None]) for c in chunks])
        except (VideoDecodeError, VideoDecodeWarning, OSError) as err:
            raise SkipSample("decode failure", one_line(err)) from None
        ids, labels = item["ids"], item["labels"]
        if visual.counts != item["counts"]:  # a set reducer's tokens per frame are known only now
            ids, labels = self.prompter.ids(item["timestamps"], visual.counts, item["turns"])
            if len(ids) > self.prompter.context:
                raise SkipSample("over context", f"{len(ids)} tokens at {item['frames']} frames")
        with self.autocast():
            embeds = self.llm.family.llm_inputs(self.base, ids[None].to(self.device), visual,
                                                item["timestamps"])["inputs_embeds"][0]
        return embeds, labels.to(self.device)

    def sample_losses(self, batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, int]:
        """Per-sample mean cross-entropy over answer tokens `(B,)`, and the tokens the LLM read."""
        lengths = [len(y) for _, y in batch]
        width = max(lengths)
        mask = (torch.arange(width) < torch.tensor(lengths)[:, None]).long().to(self.device)  # (B, width)
        embeds = torch.stack([F.pad(e, (0, 0, 0, width - len(e))) for e, _ in batch])
        labels = torch.stack([F.pad(y, (0, width - len(y)), value=IGNORE) for _, y in batch])
        with self.autocast():
            hidden = self.lm(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
            targets = labels[:, 1:]
            keep = targets != IGNORE
            logits = self.base.lm_head(hidden[:, :-1][keep])  # only where an answer token is predicted
        ce = F.cross_entropy(logits.float(), targets[keep], reduction="none")
        sums = torch.zeros(len(batch), device=self.device).index_add(0, keep.nonzero()[:, 0], ce)
        return sums / keep.sum(1).clamp(min=1), sum(lengths)
