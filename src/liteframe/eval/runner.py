"""`liteframe eval`: answer every question of a benchmark, one JSON line each, resumable and shardable.

A loop you read top to bottom: load the questions, drop the ones already in the output, group the rest by video,
take this rank's videos, then per video: encode once, answer each of its questions from the same tokens, append
one line per answer. A video that fails to decode gives one failure line per question, with the reason. A question's latency is
its video's encoding plus its own answer (prefill, generation), as one `ask` would see it.
Under torchrun each rank writes `OUT.rank<r>`; rank 0 merges them into OUT at the end.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from liteframe.errors import InputError, one_line
from liteframe.eval.datasets import Question, load_benchmark
from liteframe.eval.metrics import mean_latency, score, summarize
from liteframe.eval.prompts import build_prompt
from liteframe.io import atomic_write
from liteframe.video import VideoDecodeError, open_video

MAX_NEW_TOKENS = {"videomme": 16, "videomme-sub": 16, "mlvu": 16, "longvideobench": 32}  # lmms-eval's settings


@dataclass
class EvalConfig:
    """One `liteframe eval` run."""

    benchmark: str
    data: str
    model: str
    encoder: str
    frames: int
    out: str
    compression: str | None = None
    adapter: str | None = None
    device: str | None = None


def evaluate(config: EvalConfig, llm=None) -> list[dict]:
    """Run `config` on this process's shard (torchrun's RANK/WORLD_SIZE, else everything); on rank 0 merge the
    shards and return the summary rows (other ranks return [])."""
    check_out(config.out)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group("gloo")
        if config.device is None:
            config.device = _local_device()
    run_shard(config, rank, world, llm)
    if world > 1:
        dist.barrier()
        if rank == 0:
            merge_shards(config, world)
        dist.barrier()
    return summary(config) if rank == 0 else []


def run_shard(config: EvalConfig, rank: int = 0, world: int = 1, llm=None) -> None:
    """Answer this rank's unanswered questions (videos `rank::world` in dataset order) into its output file."""
    questions = _questions(config)
    out = shard_path(config.out, rank, world)
    earlier = [r for path in {Path(config.out), out} for r in read_records(path)]
    _check_same_run(earlier, config)
    done = {r["question_id"] for r in earlier}
    videos = list(dict.fromkeys(q.video for q in questions))[rank::world]
    mine = set(videos)
    todo = [q for q in questions if q.video in mine and q.question_id not in done]
    by_video: dict[Path, list[Question]] = {}
    for q in todo:
        by_video.setdefault(q.video, []).append(q)
    if not todo:
        return
    if llm is None:
        from liteframe.eval.backend import load_llm

        llm = load_llm(config.model, config.encoder, config.compression, config.adapter, config.device, config.frames)
    total = sum(1 for q in questions if q.video in mine)
    with tqdm(total=total, initial=total - len(todo), desc=f"{config.benchmark} rank {rank}", unit="q",
              disable=None) as bar:
        for video, group in by_video.items():
            for record in answer_video(llm, config, video, group):
                append_record(out, record)
                bar.update()


def answer_video(llm, config: EvalConfig, video: Path, questions: list[Question]):
    """Encode `video` once, then yield one record per question (failure records if the video cannot be read)."""
    try:
        enc = llm.encode(video, frames=config.frames)
    except (VideoDecodeError, OSError) as err:  # the video's fault; a wrong setting (e.g. --frames) stops the run
        for q in questions:
            yield {**_base(config, q), "error": one_line(err)}
        return
    fps = _fps(video) if config.benchmark == "videomme-sub" else 0.0
    slots = [(slot.first, slot.last) for slot in enc.slots]
    for q in questions:
        prompt = build_prompt(q, enc.timestamps, fps, slots)
        reply = llm.answer(enc, prompt.text, max_new_tokens=MAX_NEW_TOKENS[q.benchmark], slot_text=prompt.slot_text)
        yield {**_base(config, q), **score(q, reply.answer), "raw": reply.answer,
               "visual_tokens": reply.visual_tokens, "latency_ms": reply.latency_ms}


def _fps(video: Path) -> float:
    """The frame rate that maps Video-MME's subtitle times to frames (the video decoded already)."""
    with open_video(video) as reader:
        return reader.info.fps


def _check_same_run(records: list[dict], config: EvalConfig) -> None:
    """Resuming into a file of another run would mix two settings in one table."""
    for r in records[:1]:
        theirs = (r["benchmark"], r["model"], r["encoder"], r["frames"], r["compression"])
        ours = (config.benchmark, Path(config.model).name, config.encoder, config.frames, config.compression)
        if theirs != ours:
            raise InputError(f"--out {config.out}: holds a run of (benchmark, model, encoder, frames, compression) "
                             f"{theirs}, not {ours}; choose another --out")


def _base(config: EvalConfig, q: Question) -> dict:
    return {"benchmark": q.benchmark, "question_id": q.question_id, "video": q.video.name, "answer": q.answer,
            **q.groups, "model": Path(config.model).name, "encoder": config.encoder, "frames": config.frames,
            "compression": config.compression}


def _questions(config: EvalConfig) -> list[Question]:
    return load_benchmark(config.benchmark, config.data)


def shard_path(out: str | Path, rank: int, world: int) -> Path:
    out = Path(out)
    return out if world == 1 else out.with_name(f"{out.name}.rank{rank}")


def read_records(path: Path) -> list[dict]:
    """The JSON lines of `path` ([] if absent). A last line cut short by a kill is dropped from the file (or, if
    only its newline is missing, completed)."""
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if line.endswith("\n"):  # only the line being written when the run died may be partial
                raise InputError(f"{path}: line {i + 1} is not JSON; not a liteframe eval output") from None
    if lines and not lines[-1].endswith("\n"):
        kept = text + "\n" if len(records) == len(lines) else text[:len(text) - len(lines[-1])]
        atomic_write(path, lambda tmp: tmp.write_text(kept, encoding="utf-8"))
    return records


def append_record(path: Path, record: dict) -> None:
    """One line, flushed to disk before the next question starts."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def merge_shards(config: EvalConfig, world: int) -> None:
    """Fold every rank's lines into OUT, in dataset order, and remove the shard files."""
    out = Path(config.out)
    shards = [shard_path(out, r, world) for r in range(world)]
    records = {r["question_id"]: r for path in [out, *shards] for r in read_records(path)}
    order = {q.question_id: i for i, q in enumerate(_questions(config))}
    lines = sorted(records.values(), key=lambda r: order.get(r["question_id"], len(order)))
    atomic_write(out, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8"))
    for path in shards:
        path.unlink(missing_ok=True)


def summary(config: EvalConfig) -> list[dict]:
    """The summary rows of OUT: accuracy overall and per group, counts, failures; mean latency (ms) on `overall`."""
    records = [r for r in read_records(Path(config.out)) if r["benchmark"] == config.benchmark]
    rows = summarize(records)
    latency = mean_latency(records)
    for row in rows:
        if row["group"] == "overall":
            row.update({f"{k} ms": v for k, v in latency.items()})
    return rows


def check_out(out: str | Path) -> None:
    """Fail before any model loads if OUT cannot be written."""
    out = Path(out)
    if out.is_dir() or not out.parent.is_dir():
        raise InputError(f"--out {out}: not a file in an existing folder")


def _local_device() -> str | None:
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return None
