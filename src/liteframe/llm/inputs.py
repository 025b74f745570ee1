"""`LLMInputs`: a prompt with its video as the checkpoint's LLM takes it, what a model family's `llm_inputs` returns
and both generation (`VideoLLM.answer`) and training (`liteframe adapt`) pass on whole."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class LLMInputs:
    """`input_ids (B, L)` (what generation continues from), `inputs_embeds (B, L, d)` with the visual tokens in
    place, `attention_mask (B, L)`, `position_ids` where the family has its own (Qwen2.5-VL's mRoPE: `(3, B, L)`;
    None: 0..L-1), and `extra`: further tensors the family's forward takes by name (e.g. Qwen3-VL's DeepStack
    features and their visual mask)."""

    input_ids: torch.Tensor
    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def forward_kwargs(self) -> dict[str, torch.Tensor]:
        """What a forward from embeddings takes: the checkpoint's, or its language model's alone."""
        kwargs = {"inputs_embeds": self.inputs_embeds, "attention_mask": self.attention_mask, **self.extra}
        if self.position_ids is not None:
            kwargs["position_ids"] = self.position_ids
        return kwargs

    def generate_kwargs(self) -> dict[str, torch.Tensor]:
        """What `generate` takes: the forward's inputs and the ids the output continues."""
        return {"input_ids": self.input_ids, **self.forward_kwargs()}

    @staticmethod
    def batch(items: list[LLMInputs]) -> LLMInputs:
        """Single prompts -> one right-padded batch (pads: id 0, zero embeddings, mask 0, position 0). A family's
        `extra` tensors have no padding rule here: such inputs are refused."""
        if any(item.extra for item in items):
            raise ValueError("LLMInputs.batch cannot pad family-specific extra inputs; batch such prompts one by one")
        width = max(item.input_ids.shape[1] for item in items)
        pad = [width - item.input_ids.shape[1] for item in items]
        positions = None
        if items[0].position_ids is not None:
            positions = torch.cat([F.pad(item.position_ids, (0, n)) for item, n in zip(items, pad)], dim=-2)
        return LLMInputs(torch.cat([F.pad(item.input_ids, (0, n)) for item, n in zip(items, pad)]),
                         torch.cat([F.pad(item.inputs_embeds, (0, 0, 0, n)) for item, n in zip(items, pad)]),
                         torch.cat([F.pad(item.attention_mask, (0, n)) for item, n in zip(items, pad)]),
                         positions)
