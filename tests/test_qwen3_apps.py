"""The Qwen3 families behind the applications: `liteframe ask` (and its checks before the weights load), `liteframe
eval` on the three benchmarks (a Qwen3.5 answer after its reasoning block scores), and `bench e2e --model-family`.
(LMA on each family: tests/test_adapt_families.py; the lmms-eval plugin: tests/test_eval_lmms.py.)"""
from __future__ import annotations

import json
import warnings

import pytest
import torch
from transformers import LogitsProcessor

import evaldata
from liteframe.cli import main
from liteframe.eval.records import read_records
from liteframe.eval.runner import EvalConfig, evaluate
from liteframe.llm import VideoLLM, build_input_ids, make_slots
from liteframe.testing.videos import make_video
from liteframe.video import open_video

TYPES = ["qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("v") / "v.mp4", num_frames=24, fps=8, width=100, height=70)


@pytest.mark.parametrize("model_type", TYPES)
def test_cli_ask_on_each_family(qwen3_folders, video, model_type, capsys, monkeypatch):
    folder = qwen3_folders[model_type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["ask", str(video), "What happens?", "--model", str(folder), "--encoder", "wap", "--frames", "16",
                     "--max-new-tokens", "2", "--device", "cpu", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # 16 frames of 100 x 70 -> 96 x 64: a 3 x 2 grid per pair, 16x blocks of (4, 2, 2) pairs: 2 slots of 2 tokens
    assert (out["frames"], out["visual_tokens"], out["slot_tokens"]) == (16, 4, [2, 2])
    # the video was prefilled while it was encoded: the answer's own prefill is the question's
    assert set(out["latency_ms"]) >= {"llm_prefill", "generation"} and out["prefill_tokens"] < out["prompt_tokens"]
    monkeypatch.setattr("liteframe.llm.videollm.load_weights", lambda *a: pytest.fail("the weights loaded first"))
    for args, message in ((["--encoder", "wap", "--frames", "12"], "multiple of 8 frames"),
                          (["--encoder", "tome", "--frames", "16", "--compression", "64"], "at least one token per"),
                          (["--encoder", "student:x"], "student folder x: not found")):
        assert main(["ask", str(video), "q", "--model", str(folder), "--device", "cpu", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def test_the_context_check_renders_the_real_timestamps(qwen3_folders, tmp_path):
    """A long video's runs print long times: the check before decoding counts them as the prompt will have them."""
    llm = VideoLLM.skeleton(qwen3_folders["qwen3_vl"])
    long = make_video(tmp_path / "long.mp4", num_frames=48, fps=1, width=64, height=64)  # times up to 47 s
    with open_video(long) as reader:
        predicted = llm.check(48, "What happens?", reader.info)
    answer = VideoLLM.from_pretrained(qwen3_folders["qwen3_vl"], device="cpu", dtype=torch.float32).ask(
        long, "What happens?", frames=48, max_new_tokens=1)
    assert predicted == answer.prompt_tokens
    zeros = make_slots([0.0] * 48, answer.slot_tokens, 2)  # what a check with no times would count
    assert build_input_ids(llm.tokenizer, llm.family, zeros, "What happens?")[0].shape[1] < predicted


class Forced(LogitsProcessor):
    """Generates `ids`, then end of turn: what a reasoning model's answer looks like."""

    def __init__(self, ids: list[int], end: int):
        self.ids, self.end, self.start = ids, end, None

    def __call__(self, input_ids, scores):
        self.start = input_ids.shape[1] if self.start is None else self.start
        step = input_ids.shape[1] - self.start
        forced = torch.full_like(scores, -torch.inf)
        forced[:, self.ids[step] if step < len(self.ids) else self.end] = 0
        return forced


@pytest.mark.parametrize("model_type", TYPES)
def test_eval_runs_the_benchmarks_on_each_family(qwen3_folders, model_type, tmp_path, monkeypatch):
    """The three benchmarks on Qwen3-VL; LongVideoBench (subtitles interleaved with the slots: a line before a
    slot's timestamped run) on the others."""
    llm = VideoLLM.from_pretrained(qwen3_folders[model_type], "wap", device="cpu", dtype=torch.float32)
    monkeypatch.setattr(llm.family, "reasoning_tokens", 2)  # a random model never closes its reasoning block
    prompts, limits = [], []
    real = llm.answer

    def answer(enc, question, **kwargs):
        ids, _ = build_input_ids(llm.tokenizer, llm.family, enc.slots, question, slot_text=kwargs.get("slot_text"))
        prompts.append(llm.tokenizer.decode(ids[0]))
        limits.append(kwargs.pop("max_new_tokens"))
        return real(enc, question, max_new_tokens=1, **kwargs)  # the limit is recorded; one token is enough here

    llm.answer = answer
    runs = {"longvideobench": evaldata.make_longvideobench(tmp_path / "lvb")}
    if model_type == "qwen3_vl":
        runs.update({"videomme-sub": evaldata.make_videomme(tmp_path / "vmme"),
                     "mlvu": evaldata.make_mlvu(tmp_path / "mlvu")})
    for benchmark, data in runs.items():
        out = tmp_path / f"{benchmark}.jsonl"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluate(EvalConfig(benchmark, str(data), str(qwen3_folders[model_type]), "wap", 8, str(out)), llm)
        records = read_records(out)
        assert records and not any("error" in r for r in records), records
    # the benchmarks' limits and the family's room for reasoning
    assert set(limits) == ({16 + 2, 32 + 2} if model_type == "qwen3_vl" else {32 + 2})
    subtitled = [p for p in prompts if "Hello there." in p]  # LongVideoBench's interleaved subtitles
    assert subtitled and all(p.index("Hello there.") < p.index(" seconds><|vision_start|>") for p in subtitled)


def test_a_qwen35_answer_after_its_reasoning_scores(qwen3_folders, tmp_path):
    """Qwen3.5's template opens `<think>` in the prompt, so the answer holds only the closing tag: eval strips the
    reasoning before reading the letter, and gives the block room (the family's `reasoning_tokens` more tokens)."""
    llm = VideoLLM.from_pretrained(qwen3_folders["qwen3_5"], "wap", device="cpu", dtype=torch.float32)
    text = llm.tokenizer("Not C.\n</think>\n\nB", add_special_tokens=False)["input_ids"]
    limits = []
    real = llm.answer

    def answer(enc, question, **kwargs):
        limits.append(kwargs["max_new_tokens"])
        return real(enc, question, logits_processor=[Forced(text, llm.tokenizer.eos_token_id)], **kwargs)

    llm.answer = answer
    out = tmp_path / "mlvu.jsonl"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate(EvalConfig("mlvu", str(evaldata.make_mlvu(tmp_path / "mlvu")), str(llm.folder), "wap", 8,
                          str(out)), llm)
    records = read_records(out)
    assert limits and set(limits) == {16 + 1024}
    assert all(r["raw"].endswith("</think>\n\nB") and r["prediction"] == "B" for r in records), records


@pytest.mark.parametrize("model_type", TYPES)
def test_bench_e2e_rows_on_each_family(model_type, video):
    from liteframe.bench.e2e import run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = run(video=str(video), dense_frames=(2,), frames=(16,), repeats=1, warmup=0, new_tokens=1,
                   device="cpu", model_family=model_type)
    # 100 x 70 frames -> 96 x 64: 6 tokens per pair dense; 16x: 2 tokens per 8-frame clip; the (untrained, tiny)
    # student reads 128 px squares: 4 tokens per clip
    assert [(r["setting"], r["frames"], r["visual tokens"]) for r in rows] == [("dense", 2, 6), ("wap", 16, 4),
                                                                               ("student", 16, 8)]
