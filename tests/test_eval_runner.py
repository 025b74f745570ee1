"""`liteframe eval` end to end on each benchmark's fixture with the tiny checkpoint: one encoding per video,
failures recorded, resume, sharding, the summary, `eval report` and its plot."""
from __future__ import annotations

import pytest

import evaldata
from liteframe.cli import main
from liteframe.eval.backend import load_llm
from liteframe.eval.report import report_rows, plot
from liteframe.eval.runner import EvalConfig, evaluate, merge_shards, read_records, run_shard, shard_path
from liteframe.testing import save_tiny_internvl


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_internvl(tmp_path_factory.mktemp("tiny") / "tiny")


@pytest.fixture(scope="module")
def llm(tiny):
    return load_llm(tiny, "wap", device="cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmarks")
    return {"videomme": evaldata.make_videomme(root / "videomme", with_broken=True),
            "mlvu": evaldata.make_mlvu(root / "mlvu"), "longvideobench": evaldata.make_longvideobench(root / "lvb")}


class Counting:
    """The real pipeline, counting encodings (of the video and of the visual encoder's chunks) and answers."""

    def __init__(self, llm, fail_after: int | None = None):
        self.llm, self.fail_after = llm, fail_after
        self.encodes, self.answers, self.chunks = [], 0, 0
        visual = llm.encoder
        original = visual.encode_chunk

        def chunk(pixels):
            self.chunks += 1
            return original(pixels)

        self._restore = lambda: visual.__dict__.pop("encode_chunk")
        visual.encode_chunk = chunk

    def encode(self, video, frames):
        self.encodes.append(video.name)
        return self.llm.encode(video, frames)

    def answer(self, enc, question, **kwargs):
        if self.fail_after is not None and self.answers == self.fail_after:
            raise KeyboardInterrupt  # the run is killed between two answers
        self.answers += 1
        return self.llm.answer(enc, question, **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._restore()


def _config(benchmark, data, tiny, out, frames=4):
    return EvalConfig(benchmark, str(data), str(tiny), "wap", frames, str(out))


def test_videomme_one_encoding_per_video_and_a_failure_recorded(llm, data, tiny, tmp_path):
    config = _config("videomme-sub", data["videomme"], tiny, tmp_path / "run.jsonl")
    with Counting(llm) as counting:
        rows = evaluate(config, counting)
    assert counting.encodes == ["bbbShort001.mp4", "pancakeFlip2.mkv", "brokenVid003.mp4"]  # 9 questions
    assert counting.chunks == 2 and counting.answers == 6  # the broken video never reaches the encoder
    records = read_records(tmp_path / "run.jsonl")
    assert [r["question_id"] for r in records] == [f"00{v}-{k}" for v in (1, 2, 3) for k in (1, 2, 3)]
    good, bad = records[0], records[-1]
    assert {"benchmark", "question_id", "video", "prediction", "raw", "answer", "correct", "duration", "domain",
            "task_type", "frames", "visual_tokens", "latency_ms"} <= good.keys()
    assert set(good["latency_ms"]) == {"decode", "preprocess", "vit", "llm_prefill", "generation", "total"}
    assert good["correct"] == (good["prediction"] == good["answer"]) and good["visual_tokens"] > 0
    assert "brokenVid003.mp4" in bad["error"] and "\n" not in bad["error"] and "prediction" not in bad
    summary = {r["group"]: r for r in rows}
    assert summary["overall"]["questions"] == 6 and summary["failed"]["questions"] == 3
    assert "duration=long" not in summary  # only the broken video was long
    assert summary["overall"]["total ms"] > summary["overall"]["vit ms"] > 0


def test_resume_after_an_interrupted_run(llm, data, tiny, tmp_path):
    out = tmp_path / "run.jsonl"
    config = _config("videomme", data["videomme"], tiny, out)
    with Counting(llm, fail_after=4) as counting, pytest.raises(KeyboardInterrupt):
        run_shard(config, llm=counting)
    assert len(read_records(out)) == 4
    with open(out, "a") as f:
        f.write('{"benchmark": "videomme", "question_id": "002-')  # the line being written when killed
    with Counting(llm) as counting:
        run_shard(config, llm=counting)
    assert counting.encodes == ["pancakeFlip2.mkv", "brokenVid003.mp4"] and counting.answers == 2
    assert out.read_text().count("\n") == 9  # the cut line is gone
    ids = [r["question_id"] for r in read_records(out)]
    assert sorted(ids) == sorted(f"00{v}-{k}" for v in (1, 2, 3) for k in (1, 2, 3)) and len(ids) == 9
    with Counting(llm) as counting:  # complete: nothing left to do, the model is not even asked
        run_shard(config, llm=counting)
    assert counting.encodes == []
    text = out.read_text()
    out.write_text(text[:-1])  # killed just before the newline: the record is whole and kept
    assert len(read_records(out)) == 9 and out.read_text() == text
    other = EvalConfig("videomme", str(data["videomme"]), str(tiny), "dense", 4, str(out))
    with pytest.raises(ValueError, match="holds a run of"):
        run_shard(other, llm=llm)


def test_shards_by_video_merge_into_one_file(llm, data, tiny, tmp_path):
    out = tmp_path / "run.jsonl"
    config = _config("mlvu", data["mlvu"], tiny, out)
    seen = []
    for rank in (0, 1):  # what two torchrun ranks do, one after the other
        with Counting(llm) as counting:
            run_shard(config, rank, 2, counting)
        seen.append(counting.encodes)
        assert shard_path(out, rank, 2).is_file() and not out.exists()
    assert seen == [["bbb_short.mp4"], ["pancake.mkv"]]
    merge_shards(config, 2)
    assert [r["question_id"] for r in read_records(out)] == ["plotQA_0", "count_0", "count_1"]
    assert not shard_path(out, 0, 2).exists() and not shard_path(out, 1, 2).exists()


def test_longvideobench_end_to_end_with_interleaved_subtitles(llm, data, tiny, tmp_path):
    seen = []
    real = llm.answer

    def answer(enc, question, **kwargs):
        seen.append(kwargs["slot_text"])
        return real(enc, question, **kwargs)

    llm.answer = answer
    try:
        rows = evaluate(_config("longvideobench", data["longvideobench"], tiny, tmp_path / "lvb.jsonl", 8), llm)
    finally:
        del llm.answer
    assert {r["group"] for r in rows} >= {"overall", "duration_group=15", "question_category=T3O"}
    assert len(seen) == 2 and len(seen[0]) == 2  # wap: one slot per 4-frame clip
    assert "Hello there." in seen[0][0] and "Flip it now." in "".join(seen[1])


def test_cli_runs_resumes_and_reports(llm, tiny, data, tmp_path, capsys):
    first, second = tmp_path / "wap4.jsonl", tmp_path / "wap8.jsonl"
    args = ["eval", "--benchmark", "mlvu", "--data", str(data["mlvu"]), "--model", str(tiny), "--encoder", "wap",
            "--frames", "4", "--out", str(first), "--device", "cpu"]
    assert main(args) == 0
    assert "task_type=count" in capsys.readouterr().out
    assert main(args) == 0  # resumed: nothing left to answer, the same summary
    assert "task_type=count" in capsys.readouterr().out and len(read_records(first)) == 3
    evaluate(_config("mlvu", data["mlvu"], tiny, second, frames=8), llm)
    assert main(["eval", "report", str(first), str(second), "--plot", str(tmp_path / "pareto.png")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split("|")[1].strip() == "model" and "avg acc" in table[0] and "mlvu" in table[0]
    assert len(table) == 4 and "videomme" not in table[0]  # header, rule, one row per run
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = report_rows([first, second])
    assert [(r["encoder"], r["frames"]) for r in rows] == [("wap", 4), ("wap", 8)]
    assert rows[1]["tokens/frame"] == rows[0]["tokens/frame"] and rows[0]["avg acc"] == rows[0]["mlvu"]
    assert rows[0]["total ms"] > rows[0]["ViT ms"] > 0 and rows[0]["failed"] == 0


def test_cli_bad_input_is_one_line(tmp_path, tiny, capsys):
    assert main(["eval", "--benchmark", "mlvu", "--data", str(tmp_path), "--model", str(tiny), "--out",
                 str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "json/*.json" in err
    assert main(["eval", "report", str(tmp_path / "missing.jsonl")]) == 2
    (tmp_path / "bad.jsonl").write_text("not json\n{}\n")
    assert main(["eval", "report", str(tmp_path / "bad.jsonl")]) == 2
    assert "line 1 is not JSON" in capsys.readouterr().err
    with pytest.raises(ValueError, match="does not exist"):
        plot([], tmp_path / "nowhere" / "p.png")


def test_a_wrong_setting_stops_the_run_instead_of_failing_every_video(llm, data, tiny, tmp_path):
    out = tmp_path / "run.jsonl"
    with pytest.raises(ValueError, match="3 frames"):
        run_shard(_config("mlvu", data["mlvu"], tiny, out, frames=3), llm=llm)  # wap takes whole 4-frame clips
    assert not out.exists()


@pytest.mark.parametrize("frames, match", [(3, "3 frames: the wap encoder takes a positive multiple of 4"),
                                           (400_000, "more than the LLM's context of")])
def test_a_wrong_frame_count_is_refused_before_the_weights_load(data, tiny, tmp_path, monkeypatch, capsys, frames,
                                                                 match):
    monkeypatch.setattr("liteframe.llm.videollm.load_weights", lambda *a: pytest.fail("the weights loaded first"))
    assert main(["eval", "--benchmark", "mlvu", "--data", str(data["mlvu"]), "--model", str(tiny), "--encoder", "wap",
                 "--frames", str(frames), "--out", str(tmp_path / "run.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err
