"""`liteframe eval` end to end on each benchmark's fixture (every layout) with the tiny checkpoint: one encoding per
video, failures recorded and retried, reasoning tags, resume of the same run only, locking, signals, sharding, the
summary, `eval report` and its plot."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import evaldata
from liteframe.cli import main
from liteframe.compression import get_compression
from liteframe.errors import InputError
from liteframe.eval.identity import run_identity
from liteframe.eval.backend import load_llm
from liteframe.eval.records import read_output, read_records, write_output
from liteframe.eval.report import figure, pareto, plot, report_rows
from liteframe.eval.runner import EvalConfig, evaluate, merge_shards, run_shard, shard_path
from liteframe.models import LiteFrameEncoder, tiny_student_config
from liteframe.testing import save_tiny_internvl, save_tiny_qwen

REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_internvl(tmp_path_factory.mktemp("tiny") / "tiny")


@pytest.fixture(scope="module")
def llm(tiny):
    return load_llm(tiny, "wap", device="cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return evaldata.make_all(tmp_path_factory.mktemp("benchmarks"))


class Counting:
    """The real pipeline, counting encodings (of the video and of the visual encoder's chunks) and answers;
    `reply` replaces the generated text (a reasoning model's answer)."""

    def __init__(self, llm, fail_after: int | None = None, reply: str | None = None, interrupt_at: int | None = None):
        self.llm, self.fail_after, self.reply, self.interrupt_at = llm, fail_after, reply, interrupt_at
        self.family, self.incremental = llm.family, llm.incremental
        self.encodes, self.answers, self.chunks, self.prompts = [], 0, 0, []
        visual = llm.encoder
        original = visual.encode_chunk

        def chunk(pixels):
            self.chunks += 1
            return original(pixels)

        self._restore = lambda: visual.__dict__.pop("encode_chunk")
        visual.encode_chunk = chunk

    def check(self, frames):
        return self.llm.check(frames)

    def encode(self, video, frames, prefill=False):
        self.encodes.append(video.name)
        return self.llm.encode(video, frames, prefill=prefill)

    def answer(self, enc, question, **kwargs):
        if self.fail_after is not None and self.answers == self.fail_after:
            raise KeyboardInterrupt  # the run is killed between two answers
        if self.answers == self.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while this answer is generated
        self.answers += 1
        self.prompts.append((question, kwargs.get("slot_text")))
        reply = self.llm.answer(enc, question, **kwargs)
        if self.reply is not None:
            reply.answer = self.reply
        return reply

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._restore()


def _config(benchmark, data, tiny, out, frames=4, **kwargs):
    return EvalConfig(benchmark, str(data), str(tiny), "wap", frames, str(out), **kwargs)


def test_videomme_one_encoding_per_video_and_a_failure_recorded(llm, data, tiny, tmp_path):
    config = _config("videomme-sub", data["videomme"], tiny, tmp_path / "run.jsonl")
    with Counting(llm) as counting:
        rows = evaluate(config, counting)
    assert counting.encodes == ["bbbShort001.mp4", "pancakeFlip2.mkv", "brokenVid003.mp4"]  # 9 questions
    assert counting.chunks == 2 and counting.answers == 6  # the broken video never reaches the encoder
    identity, records = read_output(tmp_path / "run.jsonl")
    assert identity["benchmark"] == "videomme-sub" and identity["model"] == str(tiny.resolve())
    assert [r["question_id"] for r in records] == [f"00{v}-{k}" for v in (1, 2, 3) for k in (1, 2, 3)]
    good, bad = records[0], records[-1]
    assert {"benchmark", "question_id", "video", "prediction", "raw", "answer", "correct", "duration", "domain",
            "sub_category", "task_type", "frames", "visual_tokens", "latency_ms"} <= good.keys()
    assert set(good["latency_ms"]) == {"decode", "preprocess", "vit", "llm_prefill", "generation", "total"}
    assert good["correct"] == (good["prediction"] == good["answer"]) and good["visual_tokens"] > 0
    assert "brokenVid003.mp4" in bad["error"] and "\n" not in bad["error"] and "prediction" not in bad
    summary = {r["group"]: r for r in rows}
    assert summary["overall"]["questions"] == 6 and summary["failed"]["questions"] == 3
    assert summary["overall"]["lmms-eval"] == summary["overall"]["accuracy"]
    assert {"sub_category=Animation", "sub_category=Food"} <= summary.keys()  # lmms-eval's sub-category breakdown
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
    assert out.read_text().count("\n") == 10  # the identity and 9 answers: the cut line is gone
    ids = [r["question_id"] for r in read_records(out)]
    assert sorted(ids) == sorted(f"00{v}-{k}" for v in (1, 2, 3) for k in (1, 2, 3)) and len(ids) == 9
    with Counting(llm) as counting:  # complete: nothing left to do, the model is not even asked
        run_shard(config, llm=counting)
    assert counting.encodes == []
    text = out.read_text()
    out.write_text(text[:-1])  # killed just before the newline: the record is whole and kept
    assert len(read_records(out)) == 9 and out.read_text() == text


def test_resume_only_the_same_run(llm, data, tiny, tmp_path):
    out = tmp_path / "run.jsonl"
    evaluate(_config("mlvu", data["mlvu"], tiny, out), llm)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    twin = save_tiny_internvl(tmp_path / "elsewhere" / "tiny", seed=1)  # another model in a folder of the same name
    assert (twin / "config.json").read_bytes() == (tiny / "config.json").read_bytes()  # only the weights differ
    cases = [(_config("mlvu", data["mlvu"], tiny, out, adapter=str(adapter)),
              r"adapter None there, '.*adapter' here; adapter files differ"),
             (_config("mlvu", data["mlvu"], twin, out), r"model '.*tiny' there, '.*elsewhere/tiny' here; model files "
                                                        r"differ \(weights\)"),
             (EvalConfig("mlvu", str(data["mlvu"]), str(tiny), "dense", 4, str(out)), "encoder 'wap' there, 'dense'"),
             (_config("mlvu", data["mlvu"], tiny, out, keep_reasoning=True), "keep reasoning False there, True here")]
    for config, difference in cases:
        with pytest.raises(ValueError, match=rf"--out .*run.jsonl: holds another run \({difference}") as err:
            run_shard(config, llm=llm)
        assert "\n" not in str(err.value)
    template = tiny / "chat_template.jinja"
    saved = template.read_text()
    template.write_text(saved + "\n")  # a settings file besides config.json changed is a change too
    try:
        with pytest.raises(ValueError, match=r"model files differ \(config\)"):
            run_shard(_config("mlvu", data["mlvu"], tiny, out), llm=llm)
    finally:
        template.write_text(saved)
    old = tmp_path / "old.jsonl"  # written before runs had an identity
    old.write_text("".join(line for line in out.read_text().splitlines(keepends=True) if '"run"' not in line))
    with pytest.raises(ValueError, match="without a run identity"):
        run_shard(_config("mlvu", data["mlvu"], tiny, old), llm=llm)
    identity, records = read_output(out)  # identified another way (file by file, before liteframe.identity)
    write_output(old, {**identity, "identity": None, "model files": {"config.json": "9a1f"}}, records)
    with pytest.raises(ValueError, match="holds answers of a run identified another way .*remove it to start over"):
        run_shard(_config("mlvu", data["mlvu"], tiny, old), llm=llm)
    assert len(read_records(out)) == 3  # nothing was touched


def test_the_compression_is_the_block_the_encoder_uses(llm, data, tiny, tmp_path):
    out = tmp_path / "run.jsonl"
    evaluate(_config("mlvu", data["mlvu"], tiny, out), llm)  # the default: 16x
    assert read_output(out)[0]["compression"] == [4, 2, 2]
    for same in ("16", "16x", "4,2,2"):  # the same run: resumed, nothing asked again
        with Counting(llm) as counting:
            evaluate(_config("mlvu", data["mlvu"], tiny, out, compression=same), counting)
        assert counting.answers == 0
    with pytest.raises(ValueError, match=r"compression \[4, 2, 2\] there, \[4, 4, 4\] here"):
        run_shard(_config("mlvu", data["mlvu"], tiny, out, compression="64"), llm=llm)
    student = tmp_path / "student"  # a student compresses with its own block, whatever --compression says
    LiteFrameEncoder(tiny_student_config(compression=get_compression(64))).save_pretrained(student)
    for given in (None, "64"):
        config = EvalConfig("mlvu", str(data["mlvu"]), str(tiny), f"student:{student}", 4, str(out), given)
        assert run_identity(config)["compression"] == [4, 4, 4]


def test_the_cli_refuses_another_run_in_one_line_before_loading(data, tiny, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run.jsonl"
    args = ["eval", "--benchmark", "mlvu", "--data", str(data["mlvu"]), "--model", str(tiny), "--encoder", "wap",
            "--out", str(out), "--device", "cpu"]
    assert main([*args, "--frames", "4"]) == 0
    capsys.readouterr()
    monkeypatch.setattr("liteframe.llm.videollm.load_weights", lambda *a: pytest.fail("the weights loaded first"))
    assert main([*args, "--frames", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "frames 4 there, 8 here" in err


def test_a_second_eval_on_the_same_out_is_refused(data, tiny, tmp_path, capsys):
    out = tmp_path / "run.jsonl"
    hold = textwrap.dedent("""
        import sys, time
        from liteframe.io import output_lock
        with output_lock(sys.argv[1], "eval output"):
            print("held", flush=True)
            time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["eval", "--benchmark", "mlvu", "--data", str(data["mlvu"]), "--model", str(tiny), "--out",
                     str(out), "--device", "cpu"]) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"eval output {out} is in use by pid {holder.pid}" in err
    assert not out.exists()


def test_eval_claims_its_output_as_training_does_and_removes_a_dead_writers_leftovers(llm, data, tiny, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / f".run.jsonl.tmp-{dead}").write_text("half a merge")  # left by a run killed while merging
    (tmp_path / f".other.jsonl.tmp-{dead}").write_text("another output's")
    evaluate(_config("mlvu", data["mlvu"], tiny, tmp_path / "run.jsonl"), llm)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".other.jsonl.tmp-{dead}", ".run.jsonl.lock", "run.jsonl"]


def test_a_missing_subtitle_file_fails_its_question_and_retry_failed_asks_again(llm, data, tiny, tmp_path):
    root = evaldata.make_longvideobench(tmp_path / "lvb")
    gone = root / "subtitles" / "bbbLvb_en.json"
    saved = gone.read_text()
    gone.unlink()
    out = tmp_path / "lvb.jsonl"
    rows = {r["group"]: r for r in evaluate(_config("longvideobench", root, tiny, out), llm)}
    first, second = read_records(out)
    assert "bbbLvb_en.json: no such subtitle file" in first["error"] and "correct" in second  # the run went on
    assert rows["failed"]["questions"] == 1 and rows["overall"]["questions"] == 1
    gone.write_text(saved)
    with Counting(llm) as counting:  # restored, but a failed question is not asked again unless told
        evaluate(_config("longvideobench", root, tiny, out), counting)
    assert counting.answers == 0
    with Counting(llm) as counting:
        rows = {r["group"]: r for r in evaluate(_config("longvideobench", root, tiny, out, retry_failed=True),
                                               counting)}
    assert counting.encodes == ["bbbLvb.mp4"] and counting.answers == 1
    assert "failed" not in rows and rows["overall"]["questions"] == 2
    assert [("error" in r, r["question_id"]) for r in read_records(out)] == [(False, "bbbLvb_0"), (False, "panLvb_0")]
    assert out.read_text().count("\n") == 3  # the identity and one line per question


def test_a_video_too_large_for_the_context_fails_its_questions_and_the_run_goes_on(data, tmp_path, monkeypatch):
    """Qwen2.5-VL's token count follows each video's frame size: a video with more tokens than the context fails its
    own questions, with the reason, instead of stopping the run there (a rerun stopped at the same video)."""
    qwen = save_tiny_qwen(tmp_path / "qwen", processor_files=True)
    llm = load_llm(qwen, "dense", device="cpu")
    # 4 frames: 132 visual tokens for bbb_short (320 x 176), 270 for the pancake (426 x 240)
    monkeypatch.setattr(llm.model.config.text_config, "max_position_embeddings", 250)
    out = tmp_path / "run.jsonl"
    rows = evaluate(EvalConfig("mlvu", str(data["mlvu"]), str(qwen), "dense", 4, str(out)), llm)
    records = read_records(out)
    failed = [r for r in records if "error" in r]
    assert {r["video"] for r in failed} == {"pancake.mkv"} and len(failed) == 2
    assert "270 visual tokens" in failed[0]["error"] and "more than the LLM's context of 250" in failed[0]["error"]
    assert all("prediction" in r for r in records if r["video"] == "bbb_short.mp4")
    assert {r["group"]: r["questions"] for r in rows}["failed"] == 2


@pytest.mark.parametrize("keep, prediction", [(False, "B"), (True, "C")])
def test_reasoning_blocks_are_stripped_unless_kept(llm, data, tiny, tmp_path, keep, prediction):
    with Counting(llm, reply="<think>C.</think>B is correct") as counting:
        evaluate(_config("mlvu", data["mlvu"], tiny, tmp_path / "run.jsonl", keep_reasoning=keep), counting)
    records = read_records(tmp_path / "run.jsonl")
    assert [r["prediction"] for r in records] == [prediction] * 3
    assert records[0]["raw"] == "<think>C.</think>B is correct" and records[0]["correct"] == (prediction == "B")


@pytest.mark.parametrize("layout", ["mlvu", "mlvu-lmms"])
def test_mlvu_end_to_end_in_each_layout_and_a_partial_run_marked(llm, data, tiny, tmp_path, layout):
    with Counting(llm) as counting:
        rows = evaluate(_config("mlvu", data[layout], tiny, tmp_path / "run.jsonl"), counting)
    assert counting.encodes == ["bbb_short.mp4", "pancake.mkv"] and counting.answers == 3
    assert counting.prompts[1][0] == ("How many flips?\n(A) 1\n(B) 2\n(C) 3\n\nOnly give the best option.\n"
                                      "Best option: (")
    overall = rows[0]
    assert overall["partial"] == "2 of 7 task types"  # plotQA and count only
    assert overall["lmms-eval"] == pytest.approx(overall["accuracy"] * 2 / 7)
    records = read_records(tmp_path / "run.jsonl")
    assert [r["question_id"] for r in records] == ["plotQA_0", "count_0", "count_1"]


@pytest.mark.parametrize("layout", ["longvideobench", "lvb-parquet"])
def test_longvideobench_end_to_end_with_interleaved_subtitles(llm, data, tiny, tmp_path, layout):
    with Counting(llm) as counting:
        rows = evaluate(_config("longvideobench", data[layout], tiny, tmp_path / "lvb.jsonl", 8), counting)
    assert {r["group"] for r in rows} >= {"overall", "duration_group=15", "question_category=T3O"}
    assert rows[0]["lmms-eval"] == round(rows[0]["accuracy"] / 100, 5)
    seen = [slot_text for _, slot_text in counting.prompts]
    assert len(seen) == 2 and len(seen[0]) == 2  # wap: one slot per 4-frame clip
    assert "Hello there." in seen[0][0] and "Flip it now." in "".join(seen[1])
    assert "D. a cat\nE. a dog\n" in counting.prompts[0][0] and "E." not in counting.prompts[1][0]


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
    identity, records = read_output(out)
    assert identity["frames"] == 4 and [r["question_id"] for r in records] == ["plotQA_0", "count_0", "count_1"]
    assert not shard_path(out, 0, 2).exists() and not shard_path(out, 1, 2).exists()


def test_torchrun_two_ranks_answer_each_question_once(tiny, data, tmp_path):
    out = tmp_path / "run.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(29400 + os.getpid() % 1000), "-m", "liteframe.cli", "eval", "--benchmark", "mlvu",
                           "--data", str(data["mlvu"]), "--model", str(tiny), "--encoder", "wap", "--frames", "4",
                           "--out", str(out), "--device", "cpu"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [r["question_id"] for r in read_records(out)] == ["plotQA_0", "count_0", "count_1"]
    assert "task_type=count" in done.stdout and done.stdout.count("overall") == 1  # rank 0 prints the summary
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.jsonl.lock", "run.jsonl"]  # the shards are merged


SLOW = textwrap.dedent("""
    import sys, time
    from liteframe.cli import main
    from liteframe.llm import VideoLLM

    answer = VideoLLM.answer
    def slow(*args, **kwargs):
        time.sleep(0.4)  # long enough for the test's signal to land mid-run
        return answer(*args, **kwargs)
    VideoLLM.answer = slow
    sys.exit(main(sys.argv[1:]))
""")


def test_sigterm_says_where_it_stopped_and_the_rerun_resumes(tiny, data, tmp_path):
    out = tmp_path / "run.jsonl"
    args = ["eval", "--benchmark", "videomme", "--data", str(data["videomme"]), "--model", str(tiny), "--encoder",
            "wap", "--frames", "4", "--out", str(out), "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", SLOW, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.monotonic() + 120
    while not (out.is_file() and out.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.05)  # the identity and a first answer are on disk
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr[-2000:]
    kept = len(read_records(out))
    assert 1 <= kept < 9 and "Traceback" not in stderr
    assert f"liteframe eval: stopped by SIGTERM: {kept} answers kept in {out}; run the same command to resume" in stderr
    assert main(args) == 0 and len(read_records(out)) == 9


def test_ctrl_c_stops_with_130_and_the_same_message(llm, data, tiny, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run.jsonl"
    with Counting(llm, interrupt_at=1) as counting:
        monkeypatch.setattr("liteframe.eval.backend.load_llm", lambda *a, **k: counting)
        assert main(["eval", "--benchmark", "videomme", "--data", str(data["videomme"]), "--model", str(tiny),
                     "--encoder", "wap", "--frames", "4", "--out", str(out)]) == 130
    assert counting.answers == 2  # the answer under way is kept, no other is asked
    assert capsys.readouterr().err == (f"liteframe eval: stopped by SIGINT: 2 answers kept in {out}; run the same "
                                       "command to resume\n")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is gone with the run


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
    assert "partial" in table[0] and "mlvu 2 of 7 task types (lmms-eval " in table[2]
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = report_rows([first, second])
    assert [(r["encoder"], r["frames"]) for r in rows] == [("wap", 4), ("wap", 8)]
    assert rows[1]["tokens/frame"] == rows[0]["tokens/frame"] and rows[0]["avg acc"] == rows[0]["mlvu"]
    assert rows[0]["total ms"] > rows[0]["ViT ms"] > 0 and rows[0]["failed"] == 0


def _row(encoder, frames, ms, acc, **benchmarks):
    return {"model": "m", "encoder": encoder, "frames": frames, "compression": None, "total ms": ms, "avg acc": acc,
            "partial": benchmarks.pop("partial", None), **dict.fromkeys(("videomme", "videomme-sub", "mlvu",
                                                                        "longvideobench")), **benchmarks}


def test_the_plot_joins_only_the_pareto_frontier_and_says_what_each_point_averages():
    rows = [_row("wap", 16, 100.0, 40.0, mlvu=40.0), _row("wap", 32, 200.0, 35.0, mlvu=35.0, videomme=35.0),
            _row("wap", 64, 300.0, 50.0, mlvu=48.0, videomme=52.0, partial="mlvu 3 of 7 task types (lmms-eval 20.6)"),
            _row("dense", 16, 150.0, 45.0, videomme=45.0)]
    fig = figure(rows)
    ax = fig.axes[0]
    assert ax.get_title() == "Accuracy against latency: Pareto frontier per encoder"
    lines = {tuple(line.get_xdata()): tuple(line.get_ydata()) for line in ax.lines}
    assert lines == {(100.0, 300.0): (40.0, 50.0), (150.0,): (45.0,)}  # the 32-frame run is drawn, not joined
    assert sorted(len(c.get_offsets()) for c in ax.collections) == [1, 3]
    labels = sorted(t.get_text() for t in ax.texts)
    assert labels == ["16f MLVU", "16f VM", "32f VM,MLVU", "64f VM,MLVU*"]


def test_pareto_frontier():
    assert pareto([(1, 1), (2, 3), (3, 2), (3, 3), (2, 3)]) == [True, True, False, False, True]
    points = [(i % 7, (i * 5) % 11) for i in range(30)]
    front = [p for p, on in zip(points, pareto(points)) if on]
    for x, y in points:  # every point off the frontier has a frontier point at least as fast and as accurate
        assert any(fx <= x and fy >= y for fx, fy in front)


def test_cli_bad_input_is_one_line(tmp_path, tiny, capsys):
    assert main(["eval", "--benchmark", "mlvu", "--data", str(tmp_path), "--model", str(tiny), "--out",
                 str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "json/*.json" in err
    assert main(["eval", "report", str(tmp_path / "missing.jsonl")]) == 2
    (tmp_path / "bad.jsonl").write_text("not json\n{}\n")
    assert main(["eval", "report", str(tmp_path / "bad.jsonl")]) == 2
    assert "line 1 is not JSON" in capsys.readouterr().err
    with pytest.raises(InputError, match="does not exist"):
        plot([], tmp_path / "nowhere" / "p.png")
    with pytest.raises(InputError, match="p.txt: matplotlib cannot write .txt files"):
        plot([], tmp_path / "p.txt")


def test_an_out_that_cannot_be_written_is_one_line_before_loading(data, tiny, tmp_path, monkeypatch, capfd):
    monkeypatch.setattr("liteframe.llm.videollm.load_weights", lambda *a: pytest.fail("the weights loaded first"))
    (tmp_path / ".run.jsonl.lock").mkdir()  # as a read-only folder does (for root too): the lock cannot be opened
    assert main(["eval", "--benchmark", "mlvu", "--data", str(data["mlvu"]), "--model", str(tiny), "--encoder", "wap",
                 "--frames", "4", "--out", str(tmp_path / "run.jsonl")]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and f"eval output {tmp_path / 'run.jsonl'}: cannot write there" in err


def test_an_out_file_that_cannot_be_written_is_one_line_before_loading(data, tiny, tmp_path, monkeypatch, capfd):
    out = tmp_path / "run.jsonl"
    out.write_text("")  # kept from an earlier run, now read-only
    out.chmod(0o444)
    if os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode:
        pytest.skip("root writes a read-only file, and this file system cannot make it immutable")
    monkeypatch.setattr("liteframe.llm.videollm.load_weights", lambda *a: pytest.fail("the weights loaded first"))
    try:
        assert main(["eval", "--benchmark", "mlvu", "--data", str(data["mlvu"]), "--model", str(tiny), "--encoder",
                     "wap", "--frames", "4", "--out", str(out)]) == 2
    finally:
        subprocess.run(["chattr", "-i", str(out)], capture_output=True)
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and f"eval output {out}: cannot write there (" in err


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
