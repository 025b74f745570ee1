"""`liteframe ask` and `liteframe bench e2e` through the command line: JSON output, and one-line errors with exit
code 2 for bad videos, model folders, encoders and frame counts."""
import json
import shutil

import pytest

from liteframe.cli import main
from liteframe.errors import InputError
from liteframe.testing import save_tiny_internvl
from liteframe.models import LiteFrameEncoder, Teacher, tiny_student_config

from videos import REAL_VIDEOS as VIDEOS
BBB = str(VIDEOS / "bbb_short.mp4")
SIZE = 56  # 4 x 4 patches: the cheapest grid that pixel shuffle and the student's 2 x 2 downsampling accept


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_internvl(tmp_path_factory.mktemp("tiny_internvl"), image_size=SIZE)


@pytest.fixture(scope="module")
def student_dir(checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("student")
    teacher = Teacher.from_pretrained(checkpoint)
    LiteFrameEncoder.from_teacher(teacher, tiny_student_config(image_size=SIZE)).save_pretrained(folder)
    return folder


def test_ask_json(checkpoint, capsys):
    rc = main(["ask", BBB, "What happens?", "--model", str(checkpoint), "--encoder", "wap", "--frames", "8",
               "--max-new-tokens", "3", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frames"] == 8 and out["encoder"] == "wap"
    assert out["visual_tokens"] == 2  # 8 frames -> 2 clips of 2 x 2 ViT tokens -> 1 LLM token each
    assert isinstance(out["answer"], str) and 1 <= len(out["tokens"]) <= 3
    assert {"decode", "preprocess", "vit", "llm_prefill", "generation", "total"} == set(out["latency_ms"])


def test_ask_prints_answer_and_latency_table(checkpoint, student_dir, capsys):
    rc = main(["ask", BBB, "What happens?", "--model", str(checkpoint), "--encoder", f"student:{student_dir}",
               "--frames", "4", "--max-new-tokens", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "4 frames, encoder student:" in out and "| decode | preprocess |" in out and "llm_prefill" in out


def _one_line_error(capfd, argv, match):
    """Exit code 2 and one line on stderr, read at the file descriptor: a line that transformers' logging handler
    writes counts too."""
    capfd.readouterr()
    assert main(argv) == 2
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    return err


def test_bad_inputs_exit_2_with_one_line(checkpoint, student_dir, tmp_path, capfd):
    model = ["--model", str(checkpoint)]
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    _one_line_error(capfd, ["ask", str(not_video), "q", *model], "notes.mp4")
    _one_line_error(capfd, ["ask", str(tmp_path / "missing.mp4"), "q", *model], "missing.mp4")
    _one_line_error(capfd, ["ask", BBB, "q", "--model", str(tmp_path)], "no config.json")
    (tmp_path / "config.json").write_text('{"model_type": "qwen2"}')
    _one_line_error(capfd, ["ask", BBB, "q", "--model", str(tmp_path)], "model_type 'qwen2' is not supported")
    (tmp_path / "config.json").write_text((checkpoint / "config.json").read_text())
    _one_line_error(capfd, ["ask", BBB, "q", "--model", str(tmp_path)], "no tokenizer_config.json")
    _one_line_error(capfd, ["ask", BBB, "q", *model, "--encoder", f"student:{student_dir}", "--frames", "6"],
                    "error: 6 frames: the student:")
    _one_line_error(capfd, ["ask", BBB, "q", *model, "--encoder", "wap", "--frames", "1"], "error: 1 frame: ")
    _one_line_error(capfd, ["ask", BBB, "q", *model, "--frames", "100000"], "more than the LLM's context")
    _one_line_error(capfd, ["ask", BBB, "q", *model, "--compression", "8"], "compression '8': choose 4, 16, 64")
    _one_line_error(capfd, ["ask", BBB, "q", *model, "--encoder", "wap", "--compression", "64"],
                    "leaves a 1 x 1 token grid at 56 px")
    _one_line_error(capfd, ["ask", BBB, "q", *model, "--encoder", f"student:{student_dir}", "--compression", "4"],
                    "compresses 16x (4, 2, 2), not 4x (1, 2, 2)")
    _one_line_error(capfd, ["ask", BBB, "q", *model, "--encoder", "sharpen"], "unknown encoder")
    _one_line_error(capfd, ["ask", BBB, "q", *model, "--encoder", f"student:{tmp_path / 'nope'}"], "nope")


def test_frame_counts_and_prompts_are_refused_before_the_weights_load(checkpoint, student_dir, monkeypatch, capfd):
    monkeypatch.setattr("liteframe.llm.videollm.load_weights", lambda *a: pytest.fail("the weights loaded first"))
    model = ["--model", str(checkpoint)]
    _one_line_error(capfd, ["ask", BBB, "q", *model, "--encoder", f"student:{student_dir}", "--frames", "6"],
                    "error: 6 frames: the student:")
    _one_line_error(capfd, ["ask", BBB, "q", *model, "--encoder", "wap", "--frames", "100000"],
                    "error: the prompt has 444516 tokens (25000 visual, from 100000 frames), more than the LLM's "
                    "context of 32768")
    _one_line_error(capfd, ["ask", BBB, "why " * 40_000, *model, "--frames", "4"], "more than the LLM's context")
    _one_line_error(capfd, ["ask", BBB, "q", *model, "--max-new-tokens", "0"],
                    "error: max_new_tokens 0: an answer needs at least 1 new token")


def test_broken_checkpoint_files_are_one_line_naming_the_folder(checkpoint, tmp_path, capfd):
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    ask = ["ask", BBB, "q", "--model", str(broken), "--frames", "4", "--max-new-tokens", "1"]
    weights = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    err = _one_line_error(capfd, ask, f"model folder {broken}: cannot load the weights (SafetensorError")
    assert "Traceback" not in err
    (broken / "model.safetensors").write_bytes(weights)
    config = json.loads((checkpoint / "config.json").read_text())
    config["text_config"]["intermediate_size"] += 8
    (broken / "config.json").write_text(json.dumps(config))
    _one_line_error(capfd, ask, "tensors disagree with config.json, e.g. model.language_model.layers.0.mlp")
    (broken / "config.json").write_text((checkpoint / "config.json").read_text())
    (broken / "tokenizer.json").write_text('{"version": "1.0", "model": {garbled')
    _one_line_error(capfd, ask, f"model folder {broken}: cannot load the tokenizer from tokenizer.json")


@pytest.mark.parametrize("flags, match", [(["--device", "foo"], "device 'foo' is not a torch device"),
                                          (["--device", "cuda:99"], "device 'cuda:99': ")])
def test_bad_device_is_one_line(checkpoint, capfd, flags, match):
    _one_line_error(capfd, ["ask", BBB, "q", "--model", str(checkpoint), *flags], match)


def test_bench_e2e_table_json_and_plot(checkpoint, tmp_path, capsys):
    plot = tmp_path / "e2e.png"
    rc = main(["bench", "e2e", "--model", str(checkpoint), "--video", BBB, "--dense-frames", "4",
               "--frames", "8", "--encoders", "wap,student", "--repeats", "1", "--warmup", "0", "--new-tokens", "2",
               "--front-ends", "new,old", "--json", "--plot", str(plot)])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["setting"], r["frames"], r["front end"]) for r in rows] == [
        (name, frames, front) for name, frames in [("dense", 4), ("wap", 8), ("student", 8)] for front in ("new", "old")]
    assert [r["visual tokens"] for r in rows] == [16, 16, 2, 2, 2, 2]
    assert all(r["total ms"] >= r["ViT ms"] + r["LLM prefill ms"] for r in rows)
    assert all(0 < int(r["front-end share"].rstrip("%")) < 100 for r in rows)
    assert plot.stat().st_size > 1000


def test_bench_e2e_compares_the_incremental_prefill_with_the_whole_one(checkpoint):
    from liteframe.bench.e2e import run

    rows = run(model=str(checkpoint), video=BBB, dense_frames=[4], frames=[8], encoders=["wap"], repeats=1,
               warmup=0, new_tokens=1, prefills=["incremental", "whole"])
    assert [(r["setting"], r["prefill"]) for r in rows] == [(name, prefill) for name in ("dense", "wap")
                                                            for prefill in ("incremental", "whole")]
    assert all(r["total ms"] >= r["ViT ms"] + r["LLM prefill ms"] for r in rows)
    with pytest.raises(InputError, match="prefill late: choose from incremental, whole"):
        run(model=str(checkpoint), video=BBB, prefills=["late"])


def test_bench_e2e_run_returns_rows_at_a_compression(checkpoint):
    from liteframe.bench.e2e import run

    rows = run(model=str(checkpoint), video=BBB, dense_frames=[4], frames=[8], encoders=["wap"], compression=4,
               repeats=1, warmup=0, new_tokens=1)
    assert [(r["setting"], r["compression"], r["visual tokens"]) for r in rows] == [("dense", "none", 16),
                                                                                  ("wap", "4x", 8)]


def test_ask_at_64x_and_with_timestamps(tmp_path, capsys):
    """At 112 px (8 x 8 patches) a (4, 4, 4) block leaves 2 x 2 tokens per clip, one LLM token after the shuffle."""
    model = ["--model", str(save_tiny_internvl(tmp_path / "ck112", image_size=112))]
    plain = ["ask", BBB, "What happens?", *model, "--encoder", "wap", "--frames", "8", "--max-new-tokens", "2", "--json"]
    assert main([*plain, "--compression", "64"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["visual_tokens"] == 2 and out["slot_tokens"] == [1, 1]
    assert main(plain) == 0
    without = json.loads(capsys.readouterr().out)
    assert main([*plain, "--timestamps"]) == 0
    with_times = json.loads(capsys.readouterr().out)
    assert without["slot_tokens"] == with_times["slot_tokens"] == [4, 4]
    assert with_times["prompt_tokens"] > without["prompt_tokens"]  # "Frame1-4 (0.5s-3.5s): " against "Frame1-4: "


def test_version_and_help(capsys):
    from liteframe import __version__

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.strip() == f"liteframe {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "Long-video question answering" in out and "One `_add_<command>`" not in out


def test_compression_as_a_block_and_a_count_of_no_frames(checkpoint, capfd):
    """`--compression t,h,w` names a block (issue 20); `--frames 0` says what is wrong with it, for any encoder."""
    ask = ["ask", BBB, "What happens?", "--model", str(checkpoint), "--frames", "8", "--max-new-tokens", "1", "--json"]
    assert main([*ask, "--encoder", "wap", "--compression", "4,2,2"]) == 0
    block = json.loads(capfd.readouterr().out)
    assert main([*ask, "--encoder", "wap", "--compression", "16"]) == 0
    assert json.loads(capfd.readouterr().out)["slot_tokens"] == block["slot_tokens"] == [1, 1]
    _one_line_error(capfd, ["ask", BBB, "q", "--model", str(checkpoint), "--frames", "0"],
                    "error: 0 frames: the dense encoder needs at least 1 frame")
    _one_line_error(capfd, ["ask", BBB, "q", "--model", str(checkpoint), "--compression", "4,2"],
                    "compression '4,2': choose 4, 16, 64 or a block t,h,w")


def test_an_internal_bug_shows_its_traceback(checkpoint, monkeypatch):
    """Only bad input is one line with exit 2; a bug in the library is not hidden behind one."""
    def broken(*args, **kwargs):
        raise ValueError("a bug, not the user's input")

    monkeypatch.setattr("liteframe.llm.ask", broken)
    with pytest.raises(ValueError, match="a bug"):
        main(["ask", BBB, "q", "--model", str(checkpoint)])
