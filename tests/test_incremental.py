"""Incremental prefill and live video (llm/context.py, llm/watch.py), for every family: the video's slots prefilled
chunk by chunk while it is encoded give the one-shot prefill's first-token logits; watching a FIFO fed by a PyAV
encoder thread gives `ask`'s on the same frames; the cache stays within its budget over many slots, the kept tokens
at their stream positions, with answers after the oldest slots are dropped; a session behind real time counts every
dropped frame; `liteframe watch` and `bench stream` end to end."""
from __future__ import annotations

import json
import os
import threading
from dataclasses import replace

import pytest
import torch
from transformers import LogitsProcessor

from liteframe.cli import main
from liteframe.llm import LiveSession, VideoContext, VideoLLM
from liteframe.testing import TINY_CHECKPOINTS
from liteframe.testing.videos import make_video
from liteframe.video import VideoDecodeWarning
from liteframe.video.live import open_live
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


def load(folder) -> VideoLLM:
    return VideoLLM.from_pretrained(folder, "dense", device="cpu", dtype=torch.float32, chunk_frames=4)


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
    assert len(chunked.slot_tokens) >= 8  # 4 chunks of 4 frames: 2 or 4 slots each
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
    # a generous lag: this compares logits, and a loaded machine must not drop frames (another test covers that)
    session = LiveSession(llm, open_live(fifo, rate, 4, max_lag_s=60.0), **kwargs)
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


def _steps(visual):
    """An encoded video's tokens, one grid step at a time (steps counted from 0 each, as `encode_chunk` gives)."""
    bounds = torch.tensor([0, *visual.counts]).cumsum(0).tolist()
    return [replace(visual, tokens=visual.tokens[:, a:b], counts=[b - a], step=visual.step[a:b] * 0,
                    pos=visual.pos[a:b], levels=tuple(lv[:, a:b] for lv in visual.levels))
            for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize("family", FAMILIES)
def test_eviction_bounds_the_cache_and_keeps_positions_valid(folders, video, family):
    llm = load(folders[family])
    enc = llm.encode(video, 8)
    steps, per = _steps(enc.visual), enc.visual.frames_per_step
    budget = 3 * sum(enc.visual.counts) + 40
    bounded, free = VideoContext(llm, enc.fps, budget), VideoContext(llm, enc.fps)
    slot_tokens = enc.visual.counts[0]
    for i in range(6 * len(steps)):  # the video's steps over and over: 6 times what the budget holds
        times = [float(i * per + j) / enc.fps for j in range(per)]
        for ctx in (bounded, free):
            ctx.add(steps[i % len(steps)], times)
        assert bounded.length <= budget + slot_tokens + 8  # at most one step (and its text) over, before eviction
    assert bounded.evicted > 0 and bounded.slots[-1] == free.slots[-1] and len(bounded.slots) < len(free.slots)
    assert bounded.length > budget // 2  # the oldest slots only, not more than needed
    attention = [(a, b) for a, b in zip(bounded.cache.layers, free.cache.layers)
                 if getattr(a, "keys", None) is not None and a.keys.numel()]
    assert all(a.keys.shape[-2] == bounded.length for a, _ in attention)
    # the first attention layer's keys depend only on each token and its position: the kept stretch is the newest
    # tokens of the whole stream, at the positions they have there
    (first, whole), sink = attention[0], bounded._sink
    cut = free.length - (bounded.length - sink)
    torch.testing.assert_close(first.keys[..., sink:, :], whole.keys[..., cut:, :], rtol=1e-5, atol=1e-5)
    assert torch.equal(first.keys[..., :sink, :], whole.keys[..., :sink, :])
    # the question continues the positions of the whole stream, as if nothing had been dropped
    ids, inputs = bounded.inputs("What happens?")
    full_ids, full = free.inputs("What happens?")
    question = ids.shape[1] - bounded.length
    assert question == full_ids.shape[1] - free.length
    assert torch.equal(ids[:, -question:], full_ids[:, -question:])
    assert torch.equal(inputs.position_ids[..., -question:], full.position_ids[..., -question:])
    new, _, _ = llm.generate(ids, inputs, bounded.cache, 3, min_new_tokens=3)
    assert len(new) == 3
    assert bounded.cache.get_seq_length() == bounded.length  # the stored cache is left as it was


def _chunk(steps, picked):
    """One chunk of the given one-step parts, its steps counted from 0."""
    parts = [steps[i] for i in picked]
    return replace(parts[0], tokens=torch.cat([p.tokens for p in parts], 1), counts=[p.counts[0] for p in parts],
                   step=torch.cat([p.step + k for k, p in enumerate(parts)]), pos=torch.cat([p.pos for p in parts]),
                   grid=(len(parts), *parts[0].grid[1:]),
                   levels=tuple(torch.cat(level, 1) for level in zip(*(p.levels for p in parts))))


def test_a_live_stream_keeps_qwen2_5_vl_temporal_ids_on_time_after_dropped_frames(folders, video):
    llm = load(folders["qwen2_5_vl"])
    enc = llm.encode(video, 8)
    per, steps = enc.visual.frames_per_step, _steps(enc.visual)
    stream = [steps[i % len(steps)] for i in range(8)]  # a stream of 8 grid steps, 2 frames each at enc.fps

    def fed(chunks, live):
        ctx = VideoContext(llm, enc.fps, live=live)
        for picked in chunks:
            ctx.add(_chunk(stream, picked), [(i * per + j) / enc.fps for i in picked for j in range(per)])
        video = ctx.positions[:, 0, ctx.ids[0] == llm.model.config.video_token_id]
        return [ids.tolist() for ids in video.split([slot.tokens for slot in ctx.slots], dim=1)]  # (t, h, w) ids

    whole = fed([[0, 1], [2, 3], [4, 5], [6, 7]], live=True)
    assert whole == fed([[0, 1], [2, 3], [4, 5], [6, 7]], live=False)  # nothing dropped: counted and timed agree
    kept = [0, 1, 3, 5, 6, 7]  # steps 2 and 4 dropped, one inside a chunk
    timed = fed([[0, 1], [3, 5], [6, 7]], live=True)
    assert timed == [whole[i] for i in kept]
    counted = fed([[0, 1], [3, 5], [6, 7]], live=False)  # counted, the ids would run behind time
    assert counted == whole[:6] and counted[-1][0][0] < timed[-1][0][0]


def test_cli_watch_answers_each_question_and_refuses_bad_input_in_one_line(folders, tmp_path, capsys):
    source, questions = tmp_path / "live.ts", tmp_path / "questions.txt"
    with open(source, "wb") as f:  # a recording whose writer has closed it: read to its end
        encode_ts(40, f)
    questions.write_text("What happens?\n\nAnd now?\n")
    folder = str(folders["qwen2_5_vl"])
    assert main(["watch", str(source), "--model", folder, "--rate", "4", "--chunk-frames", "4", "--questions",
                 str(questions), "--max-new-tokens", "2", "--device", "cpu", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and all(len(line["tokens"]) == 2 for line in lines)
    assert all(0 <= line["start"] < line["end"] <= 5.0 and line["dropped"] == 0 for line in lines)
    for args, message in ((["-"], "--questions FILE"), ([str(tmp_path / "none.ts")], "no such file"),
                          ([str(questions)], "not a readable video"),
                          ([str(source), "--encoder", "tome"], "reduces the whole video at once"),
                          ([str(source), "--chunk-frames", "3"], "multiples of 2"),
                          ([str(source), "--rate", "0"], "must be positive")):
        assert main(["watch", *args, "--model", folder, "--device", "cpu", "--questions", str(questions)]
                    if args != ["-"] else ["watch", "-", "--model", folder]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def test_a_session_behind_real_time_drops_frames_evenly_and_counts_them(folders, tmp_path):
    source = tmp_path / "rec.ts"
    with open(source, "wb") as f:
        encode_ts(60, f)
    llm = load(folders["qwen2_5_vl"])
    with pytest.warns(VideoDecodeWarning, match="behind real time"):
        # replayed at 1000x: 7.5 s of video in 7.5 ms, far quicker than the encoder
        with LiveSession(llm, open_live(source, 8.0, 4, speed=1000.0, max_lag_s=0.5)) as session:
            session.wait()
            answer = session.answer("What happens?", max_new_tokens=1)
    assert answer.dropped == session.stream.dropped > 0 and session.error is None
    assert answer.frames + answer.dropped == 60  # every sampled frame was either encoded or counted as dropped
    # each kept grid step (a frame pair) sits where its first frame's time falls at 8 fps, not where a count puts it
    ctx = session.context
    starts = torch.tensor([slot.start for slot in ctx.slots], dtype=torch.float64)
    placed = ctx.visual.step[torch.tensor(ctx.visual.counts).cumsum(0) - 1]
    assert placed.tolist() == ((starts - starts[0]) * 8.0 / 2).round().long().tolist()
    assert ctx.steps > len(ctx.slots) and answer.evicted == 0  # steps skipped for the dropped frames; none evicted


def test_bench_stream_rows_beside_ask(capsys):
    assert main(["bench", "stream", "--minutes", "2", "--marks", "1,2", "--speed", "30", "--max-tokens", "96",
                 "--new-tokens", "2", "--device", "cpu", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["run"], r["watched min"]) for r in rows] == [("watch", 1), ("watch", 2), ("ask", 1), ("ask", 2)]
    watch, ask = rows[:2], rows[2:]
    assert [r["frames"] + r["dropped"] for r in watch] == [r["frames"] for r in ask]
    assert 60 <= ask[0]["frames"] < 120 <= ask[1]["frames"]
    assert watch[1]["evicted slots"] > 0 and all(r["cache tokens"] <= 96 + 16 for r in watch)
    assert ask[1]["visual tokens"] > ask[0]["visual tokens"] > watch[1]["visual tokens"]  # ask reads it all
