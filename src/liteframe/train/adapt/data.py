"""LMA's samples: a chat manifest's rows laid out as the prompts `ask` builds, with their frame budgets, frame rates
and frame times drawn per epoch (`ChatDataset`); frames are decoded later, by the model (`VideoLLM.encode`).

Each sample draws its frame budget from `frames` and its frame rate from `fps`, then takes dense clips with the
inference sampler (`sample_clips` at that `rate`, the encoder's clip length), so training sees frames laid out as
`ask` does. The prompt is built by `ask`'s own code (`build_input_ids`: the family's slot layout with per-slot token
counts) and the loss counts only the answers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
from torch.utils.data import Dataset

from liteframe.errors import InputError, one_line
from liteframe.llm.prompt import Slot, build_input_ids, make_slots
from liteframe.llm.videollm import VideoLLM, sample_clips
from liteframe.train.adapt.manifest import ChatSample
from liteframe.reduce.base import frame_budgets
from liteframe.video import SampleReads, VideoDecodeError, open_video

IGNORE = -100  # label of tokens the loss does not count


def chat_ids(tokenizer, family, slots: list[Slot], turns) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and labels `(L,)`, `(L,)` of a conversation about a video laid out in `slots`; `turns` are
    (question, answer) pairs. The first turn is exactly the prompt `ask` builds (`build_input_ids`); later turns and
    the answers are the chat template's continuation, rendered turn by turn. Labels are IGNORE except on each answer
    and its end-of-turn token. The only place LMA builds prompts: when `ask`'s prompt changes, this follows."""
    first = build_input_ids(tokenizer, family, slots, turns[0][0])[0][0]
    messages, parts, rendered = [], [first], None
    for k, (question, answer) in enumerate(turns):
        video = [{"type": "video"}] if k == 0 else []  # a stand-in for the slots: only later text counts
        messages.append({"role": "user", "content": [*video, {"type": "text", "text": question}]})
        asked = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        answered = tokenizer.apply_chat_template(messages, tokenize=False)
        if rendered is not None:
            parts.append(_continuation(tokenizer, rendered, asked))
        parts.append(_continuation(tokenizer, asked, answered))
        rendered = answered
    ids = torch.cat(parts)
    label = torch.cat([torch.full_like(p, IGNORE) if i % 2 == 0 else p for i, p in enumerate(parts)])
    return ids, label


def _continuation(tokenizer, before: str, after: str) -> torch.Tensor:
    if not after.startswith(before):
        raise InputError(f"the chat template of {tokenizer.name_or_path} does not render a conversation as a "
                         "continuation of its beginning; LMA cannot mark the answer tokens")
    return torch.tensor(tokenizer(after[len(before):], add_special_tokens=False)["input_ids"], dtype=torch.long)


@dataclass(frozen=True)
class Prompter:
    """What a dataset worker needs to lay out a sample's prompt before anything is decoded: the tokenizer, the model
    family, the encoder's `(steps, tokens)` per frame budget (for the largest frames; `exact` when every video's
    frames are that size), its frames per step, the length of the clips `ask` samples, the context."""

    tokenizer: Any
    family: Any
    layouts: dict[int, tuple[int, int]]
    exact: bool
    frames_per_step: int
    clip_frames: int
    context: int

    @classmethod
    def of(cls, llm: VideoLLM, budgets: Iterable[int]) -> Prompter:
        return cls(llm.tokenizer, llm.family, {b: llm.encoder.layout(b) for b in budgets},
                   llm.encoder.data.size.fixed, llm.encoder.frames_per_step, llm.encoder.clip_frames,
                   llm.family.context_length(llm.model))

    def ids(self, timestamps: list[float], counts: list[int], turns) -> tuple[torch.Tensor, torch.Tensor]:
        return chat_ids(self.tokenizer, self.family, make_slots(timestamps, counts, self.frames_per_step), turns)


class ChatDataset(Dataset):
    """Item i -> `{"id", "video", "size", "timestamps", "counts", "ids" (L,), "labels" (L,), "turns", "frames"}`
    (the prompt laid out for the encoder's token counts at the largest frames; frames are decoded later, by
    `VideoLLM.encode`), or `{"id", "skip": reason, "detail"}`. The budget and rate are drawn from (seed, epoch, i);
    where the layout is exact, the context check runs here, before any frame is decoded (else the model checks the
    layout at the video's own `size`, also before decoding)."""

    def __init__(self, samples: list[ChatSample], prompter: Prompter, frames: tuple[int, ...],
                 fps: tuple[float, float], seed: int):
        self.samples, self.prompter, self.frames, self.fps, self.seed = samples, prompter, frames, fps, seed
        self.epoch = 0
        self.reads = SampleReads()  # a short video's repeated frames: said once, not per sample

    def __len__(self) -> int:
        return len(self.samples)

    def draw(self, index: int) -> tuple[int, float]:
        """(frame budget, frame rate) of sample `index` this epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return int(rng.choice(self.frames)), float(rng.uniform(*self.fps))

    def __getitem__(self, index: int) -> dict[str, Any]:
        s, p = self.samples[index], self.prompter
        if s.problem:
            return {"id": s.id, "skip": s.problem, "detail": ""}
        budget, rate = self.draw(index)
        try:
            with open_video(s.video) as reader:
                info = reader.info
        except (VideoDecodeError, OSError) as err:
            return {"id": s.id, "skip": "decode failure", "detail": one_line(err)}
        with self.reads():
            timestamps = sample_clips(info, budget, p.clip_frames, rate).timestamps.tolist()  # as `ask` samples
        steps, tokens = p.layouts[budget]
        counts = frame_budgets(steps, tokens).tolist()
        ids, labels = p.ids(timestamps, counts, s.turns)
        if p.exact and len(ids) > p.context:
            return {"id": s.id, "skip": "over context", "detail": f"{len(ids)} tokens at {budget} frames > {p.context}"}
        return {"id": s.id, "video": s.video, "size": (info.height, info.width), "timestamps": timestamps,
                "counts": counts, "ids": ids, "labels": labels, "turns": s.turns, "frames": budget}


def collate_samples(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A micro-batch is the list of its items: each sample is encoded and laid out on its own."""
    return items


class SkipSample(Exception):
    """A sample found unusable only once its frames are read: `reason` (counted), `detail` (logged)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail
