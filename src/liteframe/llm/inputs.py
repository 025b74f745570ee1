"""`LLMInputs`: a prompt with its video as the checkpoint's LLM takes it, what a model family's `llm_inputs` returns
and both generation (`VideoLLM.answer`) and training (`liteframe adapt`) pass on whole, to the language model itself
(the checkpoint's `get_decoder()`): the visual tokens are in the embeddings, and what a family adds inside the LLM
(Qwen3-VL's DeepStack features) comes along by name."""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F


@dataclass
class LLMInputs:
    """`input_ids (B, L)` (what generation continues from), `inputs_embeds (B, L, d)` with the visual tokens in
    place, `attention_mask (B, L)`, `position_ids` where the family has its own (Qwen's mRoPE: `(3, B, L)`; None:
    0..L-1), and for a family whose LLM adds features of intermediate ViT layers at the visual tokens (Qwen3-VL's
    DeepStack: level k after decoder layer k) `deepstack`, one `(n, d)` per level for the `n` visual tokens of the
    batch in order, and `visual_mask (B, L)`, their places."""

    input_ids: torch.Tensor
    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor | None = None
    visual_mask: torch.Tensor | None = None
    deepstack: tuple[torch.Tensor, ...] = ()

    def forward_kwargs(self) -> dict:
        """What the language model's forward takes (transformers' names)."""
        kwargs = {"inputs_embeds": self.inputs_embeds, "attention_mask": self.attention_mask}
        if self.position_ids is not None:
            kwargs["position_ids"] = self.position_ids
        if self.deepstack:
            kwargs.update(visual_pos_masks=self.visual_mask, deepstack_visual_embeds=list(self.deepstack))
        return kwargs

    def prefix(self, end: int) -> LLMInputs:
        """The first `end` positions, which must hold every visual token (the prompt up to the end of the video)."""
        if self.visual_mask is not None and bool(self.visual_mask[:, end:].any()):
            raise ValueError(f"a prefix of {end} tokens must hold every visual token")
        return self.window(0, end)

    def window(self, start: int, end: int) -> LLMInputs:
        """Positions `start..end-1` (one prompt: batch 1) with the DeepStack features of the visual tokens among
        them: what a prefill of that stretch on top of a cache of the first `start` positions takes."""
        deepstack = self.deepstack
        if deepstack:
            before, inside = (int(self.visual_mask[0, a:b].sum()) for a, b in ((0, start), (start, end)))
            deepstack = tuple(level[before:before + inside] for level in deepstack)
        return replace(self, input_ids=self.input_ids[:, start:end], inputs_embeds=self.inputs_embeds[:, start:end],
                       attention_mask=self.attention_mask[:, start:end],
                       position_ids=None if self.position_ids is None else self.position_ids[..., start:end],
                       visual_mask=None if self.visual_mask is None else self.visual_mask[:, start:end],
                       deepstack=deepstack)

    @staticmethod
    def batch(items: list[LLMInputs]) -> LLMInputs:
        """Single prompts -> one right-padded batch (pads: id 0, zero embeddings, mask 0, position 0, not visual);
        DeepStack features are concatenated per level in batch order, the order of the padded visual mask."""
        width = max(item.input_ids.shape[1] for item in items)
        pad = [width - item.input_ids.shape[1] for item in items]

        def cat(name: str, dim: int, *pads: int) -> torch.Tensor | None:
            if getattr(items[0], name) is None:
                return None
            return torch.cat([F.pad(getattr(item, name), (*pads, 0, n)) for item, n in zip(items, pad)], dim=dim)

        deepstack = tuple(torch.cat(levels) for levels in zip(*(item.deepstack for item in items)))
        return LLMInputs(cat("input_ids", 0), cat("inputs_embeds", 0, 0, 0), cat("attention_mask", 0),
                         cat("position_ids", -2), cat("visual_mask", 0), deepstack)
