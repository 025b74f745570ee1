"""Incremental prefill (llm/context.py): the video's slots prefilled chunk by chunk while it is encoded give the same
first-token logits as the whole prefix prefilled at once, for every family, and the cache stays within its budget
with answers that still work once the oldest slots are dropped."""
from __future__ import annotations

import os
import threading

import pytest
import torch
from transformers import LogitsProcessor

from liteframe.llm import VideoLLM
from liteframe.llm import LiveSession
from liteframe.testing import TINY_CHECKPOINTS
from liteframe.testing.videos import make_video
from test_live import Tee, encode_ts

FAMILIES = list(TINY_CHECKPOINTS)


class Logits(LogitsProcessor):
    """Keeps the first sampling step's logits."""

    def __init__(self):
        self.first = None

    def __call__(self, input_ids, scores):
        if self.first is None:
            self.first = scores.double().clone()
        return scores


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("v") / "v.mp4", num_frames=48, fps=8, width=100, height=70)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {name: build(root / name) for name, build in TINY_CHECKPOINTS.items()}


def load(folder, encoder="dense") -> VideoLLM:
    llm = VideoLLM.from_pretrained(folder, encoder, device="cpu", dtype=torch.float32, chunk_frames=4)
    return llm


def first_logits(llm, video, question, frames):
    seen = Logits()
    answer = llm.ask(video, question, frames=frames, max_new_tokens=2, logits_processor=[seen])
    return answer, seen.first


@pytest.mark.parametrize("family", FAMILIES)
def test_incremental_prefill_gives_the_one_shot_logits(folders, video, family):
    llm = load(folders[family])
    llm.incremental = False
    whole, want = first_logits(llm, video, "What happens?", 16)
    llm.incremental = True
    chunked, got = first_logits(llm, video, "What happens?", 16)
    assert len(chunked.slot_tokens) > 2  # several chunks, several slots each
    assert chunked.prompt_tokens == whole.prompt_tokens and chunked.tokens == whole.tokens
    assert chunked.prefill_tokens < whole.prefill_tokens  # only the question's part ran after the video
    torch.testing.assert_close(got, want, rtol=1e-4, atol=5e-5)  # float32; the delta rule sums in chunks


def _fifo_session(llm, tmp_path, frames=60, rate=4.0, **kwargs):
    """A FIFO fed by a PyAV encoder thread (tests/test_live.py's MPEG-TS), watched to its end; the copy the
    reference reads."""
    fifo, copy = tmp_path / "live.ts", tmp_path / "copy.ts"
    os.mkfifo(fifo)

    def write():
        with open(fifo, "wb") as pipe, open(copy, "wb") as f:
            encode_ts(frames, Tee(pipe, f))

    writer = threading.Thread(target=write)
    writer.start()
    session = LiveSession(llm, fifo, rate, **kwargs)
    session.wait()
    writer.join()
    return session, copy


@pytest.mark.parametrize("family", FAMILIES)
def test_watch_gives_asks_logits_on_the_same_frames(folders, family, tmp_path):
    llm = load(folders[family])
    llm.resize = "torch"  # live frames come whole: InternVL's squares are resized by torch on both paths
    session, copy = _fifo_session(llm, tmp_path, sized_as=30)
    with session:
        seen = Logits()
        live = session.answer("What happens?", max_new_tokens=2, logits_processor=[seen])
        times = session.context.timestamps
    assert session.stream.dropped == 0 and session.error is None and len(times) == 30 == live.frames
    assert (live.start, live.end) == (times[0], times[-1]) and live.evicted == 0
    ref = Logits()
    asked = llm.answer(llm.encode(copy, timestamps=times), "What happens?", max_new_tokens=2, logits_processor=[ref])
    assert live.tokens == asked.tokens and live.answer == asked.answer
    torch.testing.assert_close(seen.first, ref.first, rtol=1e-4, atol=5e-5)
