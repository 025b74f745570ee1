"""`VideoContext`: the LLM's cache of a prompt's video part, prefilled slot by slot as the encoder produces them
(incremental prefill), and kept within a token budget by dropping the oldest slots (bounded memory).

Every family lays out the frames before the question, so the prompt up to the last visual token of the slots seen
so far is the start of every later prompt, with more slots or with a question: each chunk's new slots are prefilled
on top of the cache (the family's own inputs for the whole prompt, of which only the new stretch runs), and a
question then costs only its own prefill and the answer. That the cached tokens start the new prompt is checked at
every step, so a family whose layout broke it would fail loudly, not answer from a wrong cache.

Eviction (`max_tokens`): once the cache holds more than `max_tokens` tokens, the oldest slots are dropped, with the
text between them, down to three quarters of the budget (so that eviction is rare), keeping the prompt's text
before the video (the system prompt and the template, which the model attends to heavily). The kept tokens keep
their keys, which were rotated at their positions when they were prefilled: rotary attention depends only on the
distance between positions, so the kept tokens see each other as before and later tokens continue from the next
position of the whole stream. The prompt is re-rendered from the kept slots and the family's positions for it are
shifted by one offset past the template's text, so that they continue the kept ones (1-D for InternVL; for Qwen's
mRoPE the three ids of a token shift alike, and Qwen2.5-VL's temporal ids, tied to the grid step, need no shift).
Layers whose cache is a recurrent state (Qwen3.5's gated delta-net) cannot forget given tokens: their state, of
constant size, keeps its decaying summary of everything seen; only the full-attention layers drop slots.

A live stream (`live`) may have dropped frames to keep up with real time: its grid steps are placed by their frames'
times, so that Qwen2.5-VL's temporal ids, tied to the step, stay on the stream's clock.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Sequence

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from liteframe.llm.encoders import VisualTokens
from liteframe.llm.inputs import LLMInputs
from liteframe.llm.prompt import Slot, build_input_ids, make_slots
from liteframe.timing import synchronize


class VideoContext:
    """The cache of one video's prompt prefix for `llm` (a `VideoLLM`), the video sampled at `fps` frames per second
    (Qwen2.5-VL's temporal positions follow it); `max_tokens`: the cache's budget (None: unbounded); `live`: a live
    source's frames, which may have been dropped to keep up with real time, so each grid step is placed by its
    frames' time, not counted (see `_place`). `add` each chunk's tokens as they come; `ids` are the cached tokens,
    `slots`, `visual` and `timestamps` the kept slots, their tokens and their frames' times (s), `evicted` the slots
    dropped, `prefill_ms` the wall time of the prefills (and evictions) so far."""

    def __init__(self, llm, fps: float, max_tokens: int | None = None, live: bool = False):
        self.llm, self.fps, self.max_tokens, self.live = llm, fps, max_tokens, live
        self.cache = DynamicCache(config=llm.model.config.get_text_config(decoder=True))
        self.slots: list[Slot] = []
        self.visual: VisualTokens | None = None
        self.timestamps: list[float] = []
        self.ids = torch.zeros(1, 0, dtype=torch.long, device=llm.device)
        self.positions: torch.Tensor | None = None  # the cached tokens' positions, `(P, 1, n)` or `(1, n)`
        self.frames = self.steps = self.evicted = 0  # frames seen, the next grid step's place, slots dropped
        self._start: float | None = None  # the first frame's time (s), where a live stream's steps count from
        self.prefill_ms = 0.0
        self._offset = 0  # added to the re-rendered prompt's positions past the template's text
        empty, _ = build_input_ids(llm.tokenizer, llm.family, [], "", llm.timestamps)
        self._empty = empty[0].to(llm.device)  # the prompt without a video: where the video's text starts
        self._sink: int | None = None

    @property
    def length(self) -> int:
        return self.ids.shape[1]

    @property
    def span(self) -> tuple[float, float] | None:
        """The times (s) of the first and last kept frame, None before any."""
        return (self.slots[0].start, self.slots[-1].end) if self.slots else None

    @torch.inference_mode()
    def add(self, part: VisualTokens, timestamps: Sequence[float]) -> None:
        """One chunk's tokens (`part`: its steps counted from 0, one slot per step) of the frames at `timestamps`
        (s, whole steps) -> prefilled on top of the cache; then the oldest slots are dropped if over budget."""
        start = time.perf_counter()
        slots = make_slots(timestamps, part.counts, part.frames_per_step, self.frames + 1)
        if len(slots) != len(part.counts):
            raise ValueError("incremental prefill needs one slot per grid step (no set reducer)")
        per = part.frames_per_step
        places = self._place(timestamps[::per][:len(part.counts)], per)
        part = replace(part, step=places.to(part.step.device)[part.step])
        self.visual = part if self.visual is None else _cat(self.visual, part)
        self.slots += slots
        self.timestamps += list(timestamps)
        self.frames += len(timestamps)
        self.steps = int(places[-1]) + 1
        ids, inputs = self.inputs("")
        if self._sink is None:
            width = min(len(self._empty), ids.shape[1])
            differ = (self._empty[:width] != ids[0, :width]).nonzero()
            self._sink = int(differ[0]) if len(differ) else width
        end = self._video_end(ids)
        piece = inputs.window(self.length, end)
        kwargs = piece.forward_kwargs()
        kwargs["attention_mask"] = torch.ones_like(ids[:, :end])
        self.llm.model.get_decoder()(**kwargs, cache=self.cache, use_cache=True)
        self.ids, self.positions = ids[:, :end], inputs.position_ids[..., :end]
        if self.max_tokens is not None and end > self.max_tokens:
            self._evict()
        synchronize(self.llm.device)
        self.prefill_ms += (time.perf_counter() - start) * 1e3

    def _place(self, starts: Sequence[float], per: int) -> torch.Tensor:
        """The times (s) of a chunk's grid steps' first frames (`per` frames a step) -> `(S,)` their steps in the
        stream: counted on from the last, or for a `live` stream the step on which each falls at `fps` from the
        first frame, so that after dropped frames Qwen2.5-VL's temporal ids (tied to the step) stay on time instead
        of falling behind it. Either way each step lies past the one before (jittered times can round alike)."""
        k = torch.arange(len(starts))
        if not self.live:
            return k + self.steps
        if self._start is None:
            self._start = starts[0]
        at = torch.tensor(starts, dtype=torch.float64).sub(self._start).mul(self.fps / per)
        return (at.round().long() - k).cummax(0).values.clamp(min=self.steps) + k

    def inputs(self, question: str) -> tuple[torch.Tensor, LLMInputs]:
        """The prompt of the kept slots and `question` -> its ids `(1, L)`, checked to start with the cached ones,
        and the family's LLM inputs with explicit positions continuing the cached ones."""
        ids, inputs = self._render(question)
        if not torch.equal(ids[:, :self.length], self.ids):
            raise RuntimeError("the prompt does not start with the cached tokens: this family's layout cannot be "
                               "prefilled incrementally")
        if self._offset:
            positions = inputs.position_ids.clone()
            positions[..., self._sink:] += self._offset
            inputs = replace(inputs, position_ids=positions)
        return ids, inputs

    def _render(self, question: str) -> tuple[torch.Tensor, LLMInputs]:
        """The prompt of the kept slots as the family lays it out, positions from 0 (1-D ones made explicit)."""
        llm = self.llm
        ids, _ = build_input_ids(llm.tokenizer, llm.family, self.slots, question, llm.timestamps)
        ids = ids.to(llm.device)
        inputs = llm.family.llm_inputs(llm.model, ids, self.visual, self.fps)
        if inputs.position_ids is None:
            inputs = replace(inputs, position_ids=torch.arange(ids.shape[1], device=ids.device)[None])
        return ids, inputs

    def _video_end(self, ids: torch.Tensor) -> int:
        """One past the prompt's last visual token."""
        return int((ids[0] == getattr(self.llm.model.config, self.llm.family.context_config)).nonzero().max()) + 1

    def _evict(self) -> None:
        """Drop the oldest slots (at least one, never the newest) until the cache holds at most 3/4 of the budget."""
        counts = torch.tensor([slot.tokens for slot in self.slots], device=self.ids.device).cumsum(0)
        visual = (self.ids[0] == getattr(self.llm.model.config, self.llm.family.context_config)).nonzero()[:, 0]
        ends = visual[counts - 1] + 1  # one past each slot's last token: dropping slots 0..i frees ends[i] - sink
        excess = self.length - self.max_tokens * 3 // 4
        drop = min(int((ends - self._sink < excess).sum()) + 1, len(self.slots) - 1)
        if drop < 1:
            return
        kept_tokens = int(counts[drop - 1])
        v = self.visual
        self.visual = replace(v, tokens=v.tokens[:, kept_tokens:], counts=v.counts[drop:], step=v.step[kept_tokens:],
                              pos=v.pos[kept_tokens:], grid=(v.grid[0] - drop, *v.grid[1:]),
                              levels=tuple(lv[:, kept_tokens:] for lv in v.levels))
        self.slots = self.slots[drop:]
        self.timestamps = self.timestamps[drop * v.frames_per_step:]
        self.evicted += drop
        ids, inputs = self._render("")
        sink, end = self._sink, self._video_end(ids)
        cut = self.length - (end - sink)  # the cached tokens from `cut` on are the kept slots' stretch
        if not (torch.equal(ids[:, :sink], self.ids[:, :sink]) and torch.equal(ids[:, sink:end], self.ids[:, cut:])):
            raise RuntimeError("the kept slots do not re-render as they were cached: cannot evict in this layout")
        new = inputs.position_ids[..., :end]
        old = torch.cat([self.positions[..., :sink], self.positions[..., cut:]], dim=-1)
        self._offset = int(old[..., sink].flatten()[0] - new[..., sink].flatten()[0])
        if not torch.equal(new[..., sink:] + self._offset, old[..., sink:]):
            raise RuntimeError("the kept slots' positions do not shift alike: cannot evict in this layout")
        for layer in self.cache.layers:
            if isinstance(layer, DynamicLayer) and layer.keys is not None and layer.keys.numel():
                layer.keys = torch.cat([layer.keys[..., :sink, :], layer.keys[..., cut:, :]], dim=-2)
                layer.values = torch.cat([layer.values[..., :sink, :], layer.values[..., cut:, :]], dim=-2)
            if hasattr(layer, "cumulative_length_linear"):  # a recurrent state's token count, kept consistent
                layer.cumulative_length_linear.fill_(end)
        self.ids, self.positions = ids[:, :end], old


def _cat(a: VisualTokens, b: VisualTokens) -> VisualTokens:
    """Two stretches of one video's tokens, in time order."""
    return replace(a, tokens=torch.cat([a.tokens, b.tokens], 1), counts=a.counts + b.counts,
                   grid=(a.grid[0] + b.grid[0], *a.grid[1:]), step=torch.cat([a.step, b.step]),
                   pos=torch.cat([a.pos, b.pos]), levels=tuple(torch.cat(pair, 1) for pair in zip(a.levels, b.levels)))
