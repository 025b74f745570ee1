"""Visual tokens into Qwen3-VL's and Qwen3.5's language model, and generation from a prefilled video prefix.

`Qwen3VLModel.forward` puts the visual tokens at the `<|video_pad|>` positions and hands its language model
`visual_pos_masks` and `deepstack_visual_embeds`: after decoder layer k the model adds DeepStack level k to the
hidden states at the visual positions. `model.generate(inputs_embeds=...)` has no way to pass those two, so
liteframe runs the prefill itself: the prompt up to the end of the video goes through
`model.model.language_model` (embeddings with the tokens scattered in, liteframe's positions, the mask and the
levels) into a cache; `generate` then continues from that cache with the full prompt ids and position ids, and only
the text after the video (question, generation prompt) is run by transformers' own loop, which extends the position
ids by 1 per token. The same prefix cache serves every question about the video (`fork_cache` per question).

Qwen3.5's cache mixes KV layers with linear-attention (gated delta-net) layers whose convolution and recurrent
states are updated in place as tokens go by, and `Cache.crop` refuses to roll those back unless past recording was
switched on before (which keeps one recurrent state per decoded token). So the reuse `VideoLLM.answer` does today
(generate on the stored cache, then crop it back to the prefix) breaks on Qwen3.5; reuse forks the stored prefix
cache instead (`fork_cache`: a deep copy, KV and states alike) and never decodes into the stored one.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from liteframe.llm.qwen3.positions import rope_positions


@dataclass
class Qwen3Inputs:
    """What the language model takes for one prompt `(1, L)`: `embeds (1, L, d)` with the visual tokens at the
    `<|video_pad|>` positions, `positions (3, 1, L)` mRoPE ids, `visual_mask (1, L)` those positions, `deepstack` one
    `(N, d)` per level (the levels' tokens, in the visual tokens' order; empty for Qwen3.5), and `rope_delta`, the
    next position minus L."""

    embeds: torch.Tensor
    positions: torch.Tensor
    visual_mask: torch.Tensor
    deepstack: list[torch.Tensor]
    rope_delta: int


def llm_inputs(model, ids: torch.Tensor, tokens: torch.Tensor, levels: list[torch.Tensor], rows: torch.Tensor,
               cols: torch.Tensor) -> Qwen3Inputs:
    """Prompt ids `(1, L)`, visual tokens `(1, N, d)` and DeepStack levels (each `(1, N, d)`) in prompt order, and
    each token's row and column `(N,)` in its run's grid -> `Qwen3Inputs`."""
    embeds = model.get_input_embeddings()(ids)
    mask = ids == model.config.video_token_id
    if int(mask.sum()) != tokens.shape[1]:
        raise ValueError(f"{int(mask.sum())} <|video_pad|> in the prompt for {tokens.shape[1]} visual tokens")
    embeds = embeds.masked_scatter(mask[..., None], tokens.to(embeds.dtype))
    positions, delta = rope_positions(mask[0], rows, cols)
    return Qwen3Inputs(embeds, positions, mask, [level[0].to(embeds.dtype) for level in levels], delta)


def prefill(model, inputs: Qwen3Inputs, end: int,
            cache: DynamicCache | None = None) -> tuple[torch.Tensor, DynamicCache]:
    """Run the first `end` prompt tokens (all the visual ones among them) through the language model into `cache`
    (a new one by default) -> the logits `(1, V)` after token `end - 1`, and the cache."""
    if int(inputs.visual_mask[:, end:].sum()):
        raise ValueError(f"the prefix of {end} tokens must hold every visual token")
    cache = cache if cache is not None else DynamicCache(config=model.config.get_text_config(decoder=True))
    # Qwen3.5's language model has no DeepStack arguments: they are passed only where there are levels.
    deepstack = dict(visual_pos_masks=inputs.visual_mask[:, :end], deepstack_visual_embeds=inputs.deepstack)
    out = model.model.language_model(inputs_embeds=inputs.embeds[:, :end], position_ids=inputs.positions[..., :end],
                                     cache=cache, use_cache=True, **(deepstack if inputs.deepstack else {}))
    return model.lm_head(out.last_hidden_state[:, -1]), cache


def generate(model, ids: torch.Tensor, inputs: Qwen3Inputs, cache: DynamicCache, **generate_kwargs) -> torch.Tensor:
    """`model.generate` continued from `cache`, which holds a prefix of `ids (1, L)` prefilled by `prefill`: the
    rest of the prompt and the answer run in transformers' loop with liteframe's positions -> `(1, L + new)` ids."""
    return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=inputs.positions,
                          cache=cache, **generate_kwargs)


def fork_cache(cache: DynamicCache) -> DynamicCache:
    """An independent copy of a prefix cache to decode into, so that the stored one stays the prefix: KV tensors,
    and Qwen3.5's convolution and recurrent states, which decoding updates in place."""
    return copy.deepcopy(cache)
