"""`liteframe eval`: answer every question of a benchmark, one JSON line each, resumable and shardable.

A loop you read top to bottom: load the questions, drop the ones already in the output, group the rest by video,
take this rank's videos, then per video: encode once, answer each of its questions from the same tokens, append
one line per answer. A video that fails to decode (or whose frame size gives more tokens than the LLM's context)
gives one failure line per question, with the reason; a question whose own file (its subtitles) cannot be read
fails alone. A question's latency is its video's encoding plus its own answer (prefill, generation), as one `ask`
would see it.

The output is claimed for the run as training claims its folder (`train.output.claim`: a second `eval` on it is
refused) and begins with the run's identity: a rerun resumes only when its identity is the same, and is refused in
one line naming the difference otherwise. Under torchrun each rank writes `OUT.rank<r>`; rank 0 merges them into OUT
at the end. SIGTERM or Ctrl-C (`train.signals.stop_signals`) stops the run after the answer being written, with
`Stopped`, whose message says how many answers are kept and how to resume.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from liteframe.errors import InputError, one_line
from liteframe.eval.identity import difference, run_identity
from liteframe.eval.parsing import strip_reasoning
from liteframe.eval.records import (append_record, mean_latency, read_output, read_records, start_output,
                                    write_output)
from liteframe.eval.tasks import SUBTITLES, TASKS, Frames, Question, Task
from liteframe.train.dist import Context, barrier, setup, teardown
from liteframe.train.output import claim
from liteframe.train.signals import StopFlag, stop_signals
from liteframe.video import open_video


@dataclass
class EvalConfig:
    """One `liteframe eval` run. `subtitles`: `liteframe` or `lmms-eval` (see `tasks.videomme`);
    `keep_reasoning`: score the whole answer, `<think>` blocks included; `retry_failed`: ask again the questions
    recorded as failed; `pixels`: how frames are sized (`VideoLLM.from_pretrained`)."""

    benchmark: str
    data: str
    model: str
    encoder: str
    frames: int
    out: str
    compression: str | None = None
    adapter: str | None = None
    device: str | None = None
    subtitles: str = "liteframe"
    keep_reasoning: bool = False
    retry_failed: bool = False
    pixels: str = "processor"


class Stopped(Exception):
    """The run was stopped by a signal; the message says where, `exit_code` is the shell's (128 + the signal)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def evaluate(config: EvalConfig, llm=None) -> list[dict]:
    """Run `config` on this process's shard (torchrun's process group, as training sets it up; else everything);
    on rank 0 merge the shards and return the summary rows (other ranks return [])."""
    TASKS.get(config.benchmark)
    if config.subtitles not in SUBTITLES:
        raise InputError(f"subtitles {config.subtitles!r}: choose {' or '.join(SUBTITLES)}")
    check_out(config.out)
    ctx = setup(config.device or "auto")
    if ctx.world > 1:
        config.device = str(ctx.device)
    try:
        with claim(config.out, "eval output", ctx, folder=False), stop_signals() as stop:
            run_shard(config, ctx.rank, ctx.world, llm, stop)
            if stop.signal is not None:
                raise Stopped(_where(config, ctx, signal.Signals(stop.signal).name), stop.signal)
            barrier(ctx)
            if ctx.main:
                merge_shards(config, ctx.world)  # one atomic replace: a stop during it leaves OUT whole
            barrier(ctx)
            return summary(config) if ctx.main else []
    finally:
        teardown()


def run_shard(config: EvalConfig, rank: int = 0, world: int = 1, llm=None, stop: StopFlag | None = None) -> None:
    """Answer this rank's unanswered questions (videos `rank::world` in dataset order) into its output file; a
    stop signal (`stop`, from `stop_signals`) ends it after the answer being written."""
    stop = stop or StopFlag()
    task = TASKS.get(config.benchmark)
    questions = _questions(config)
    identity = run_identity(config)
    out = shard_path(config.out, rank, world)
    earlier = []
    for path in dict.fromkeys([Path(config.out), out]):
        theirs, records = read_output(path)
        if records:
            _check_same_run(path, theirs, identity)
        earlier += records
    done = {r["question_id"] for r in earlier if not (config.retry_failed and "error" in r)}
    videos = list(dict.fromkeys(q.video for q in questions))[rank::world]
    mine = set(videos)
    todo = [q for q in questions if q.video in mine and q.question_id not in done]
    if not todo:
        return
    by_video: dict[Path, list[Question]] = {}
    for q in todo:
        by_video.setdefault(q.video, []).append(q)
    if stop.signal is not None:
        return
    if llm is None:
        from liteframe.eval.backend import load_llm

        llm = load_llm(config.model, config.encoder, config.compression, config.adapter, config.device, config.frames,
                       config.pixels)
    llm.check(config.frames)  # a frame count no video can take stops the run; one video's size fails that video
    total = sum(1 for q in questions if q.video in mine)
    started = False  # the identity goes in with the first answer: a run stopped before any leaves no file
    with tqdm(total=total, initial=total - len(todo), desc=f"{config.benchmark} rank {rank}", unit="q",
              disable=None) as bar:
        for video, group in by_video.items():
            for record in answer_video(llm, task, config, video, group):
                if not started:
                    start_output(out, identity)
                    started = True
                append_record(out, record)
                bar.update()
                if stop.signal is not None:
                    return


def answer_video(llm, task: Task, config: EvalConfig, video: Path, questions: list[Question]):
    """Encode `video` once, then yield one record per question (failure records if the video cannot be read, or
    for a question whose prompt cannot be built from its files)."""
    try:
        # the video's prefix prefilled as it is encoded (a prompt with subtitle lines between the slots is
        # prefilled afresh by `answer`)
        enc = llm.encode(video, frames=config.frames, prefill=llm.incremental)
    except (InputError, OSError) as err:  # the video's fault: unreadable, or more tokens at its size (Qwen2.5-VL)
        # than the context takes; the run's frame count was checked before the first video
        for q in questions:
            yield {**_base(config, q), "error": one_line(err)}
        return
    info = _video_info(video) if task.video_info else (0.0, 0)
    frames = Frames(enc.timestamps, [(slot.first, slot.last) for slot in enc.slots], *info)
    for q in questions:
        try:
            prompt = task.prompt(q, frames, config.subtitles)
        except InputError as err:  # this question's own file (its subtitles): it fails, the run goes on
            yield {**_base(config, q), "error": one_line(err)}
            continue
        # a template that opens a reasoning block (Qwen3.5's) needs room for it before the answer
        limit = task.max_new_tokens + llm.family.reasoning_tokens
        reply = llm.answer(enc, prompt.text, max_new_tokens=limit, slot_text=prompt.slot_text)
        text = reply.answer if config.keep_reasoning else strip_reasoning(reply.answer)
        yield {**_base(config, q), **task.score(q, text), "raw": reply.answer,
               "visual_tokens": reply.visual_tokens, "latency_ms": reply.latency_ms}


def _video_info(video: Path) -> tuple[float, int]:
    """The frame rate and declared frame count that map subtitle times to frames (the video decoded already)."""
    with open_video(video) as reader:
        return reader.info.fps, reader.info.num_frames


def _check_same_run(path: Path, theirs: dict | None, ours: dict) -> None:
    """Resuming into a file of another run would mix two settings (or two models) in one table."""
    if theirs is None:
        raise InputError(f"--out {path}: holds answers without a run identity (an older liteframe); choose another "
                         "--out")
    if theirs.get("identity") != ours["identity"]:
        raise InputError(f"--out {path}: holds answers of a run identified another way (another liteframe version); "
                         "choose another --out, or remove it to start over")
    if theirs != ours:
        raise InputError(f"--out {path}: holds another run ({difference(theirs, ours)}); choose another --out, or "
                         "remove it to start over")


def _base(config: EvalConfig, q: Question) -> dict:
    return {"benchmark": q.benchmark, "question_id": q.question_id, "video": q.video.name, "answer": q.answer,
            **q.groups, "model": Path(config.model).name, "encoder": config.encoder, "frames": config.frames,
            "compression": config.compression}


def _questions(config: EvalConfig) -> list[Question]:
    data = Path(config.data)
    if not data.is_dir():
        raise InputError(f"--data {data}: not a folder")
    questions = TASKS.get(config.benchmark).load(data)
    if not questions:
        raise InputError(f"--data {data}: no {config.benchmark} questions found")
    return questions


def shard_path(out: str | Path, rank: int, world: int) -> Path:
    out = Path(out)
    return out if world == 1 else out.with_name(f"{out.name}.rank{rank}")


def merge_shards(config: EvalConfig, world: int) -> None:
    """Fold every rank's lines into OUT, one per question in dataset order, and remove the shard files."""
    out = Path(config.out)
    shards = [shard_path(out, r, world) for r in range(world)]
    records = {r["question_id"]: r for path in dict.fromkeys([out, *shards]) for r in read_output(path)[1]}
    order = {q.question_id: i for i, q in enumerate(_questions(config))}
    lines = sorted(records.values(), key=lambda r: order.get(r["question_id"], len(order)))
    write_output(out, run_identity(config), lines)
    for path in shards:
        if path != out:
            path.unlink(missing_ok=True)


def summary(config: EvalConfig) -> list[dict]:
    """The summary rows of OUT (`Task.aggregate`), with the mean latency (ms) on `overall`."""
    records = [r for r in read_records(config.out) if r["benchmark"] == config.benchmark]
    rows = TASKS.get(config.benchmark).aggregate(records)
    rows[0].update({f"{k} ms": v for k, v in mean_latency(records).items()})
    return rows


def check_out(out: str | Path) -> None:
    """Fail before any model loads if OUT cannot be written."""
    out = Path(out)
    if out.is_dir() or not out.parent.is_dir():
        raise InputError(f"--out {out}: not a file in an existing folder")


def _where(config: EvalConfig, ctx: Context, name: str) -> str:
    """Where a stopped run stands: the answers kept and how to resume."""
    out = Path(config.out)
    files = list(dict.fromkeys([out, shard_path(out, ctx.rank, ctx.world)]))
    kept = len({r["question_id"] for path in files for r in read_records(path)})
    where = f"{out} (and its .rank<r> files)" if ctx.world > 1 else str(out)
    return f"stopped by {name}: {kept} answers kept in {where}; run the same command to resume"
