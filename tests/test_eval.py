"""Benchmark readers, prompts, letter parsing and metrics, checked against lmms-eval 0.7.3's own task code."""
from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import types

import numpy as np
import pytest
from hypothesis import given, strategies as st

import evaldata
from liteframe.errors import InputError
from liteframe.eval import build_prompt, extract_letter, load_benchmark, parse_longvideobench, score, summarize
from liteframe.eval.datasets import Question
from liteframe.eval.prompts import videomme_subtitles
from liteframe.video import open_video


@pytest.fixture(scope="module")
def lmms():
    return evaldata.lmms_eval_root()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmarks")
    return {"videomme": evaldata.make_videomme(root / "videomme", with_broken=True),
            "mlvu": evaldata.make_mlvu(root / "mlvu"), "longvideobench": evaldata.make_longvideobench(root / "lvb")}


# --- readers


def test_videomme_reader_fields(data):
    qs = load_benchmark("videomme", data["videomme"])
    assert [q.question_id for q in qs[:3]] == ["001-1", "001-2", "001-3"]
    assert qs[0].video.name == "bbbShort001.mp4" and qs[3].video.name == "pancakeFlip2.mkv"  # the .mkv fallback
    assert qs[0].groups == {"duration": "short", "domain": "Film & Television", "sub_category": "Animation",
                            "task_type": "Action Recognition"}
    assert qs[0].options[0] == "A. A rabbit wakes up." and qs[2].answer == "C" and qs[0].subtitles is None
    sub = load_benchmark("videomme-sub", data["videomme"])
    assert sub[0].subtitles == data["videomme"] / "subtitle" / "bbbShort001.srt"


def test_mlvu_reader_letters_and_task_types(data):
    qs = load_benchmark("mlvu", data["mlvu"])
    assert [(q.question_id, q.groups["task_type"], q.answer) for q in qs] == [
        ("plotQA_0", "plotQA", "B"), ("count_0", "count", "A"), ("count_1", "count", "D")]  # summary left out
    assert qs[1].video == data["mlvu"] / "video" / "4_count" / "pancake.mkv" and qs[1].video.exists()


def test_mlvu_reader_accepts_the_outer_folder(data, tmp_path):
    (tmp_path / "MLVU").symlink_to(data["mlvu"])
    assert len(load_benchmark("mlvu", tmp_path)) == 3


def test_longvideobench_reader(data):
    qs = load_benchmark("longvideobench", data["longvideobench"])
    assert qs[0].answer == "A" and qs[1].answer == "B" and len(qs[0].options) == 5
    assert qs[1].groups == {"duration_group": "60", "question_category": "T3O"}
    assert qs[1].extra == {"duration": 10.4, "subtitle_start": 1.0} and qs[1].subtitles.is_file()


@pytest.mark.parametrize("benchmark, expect", [("videomme", "videomme/test-\\*.parquet"),
                                               ("mlvu", "json/\\*.json"), ("longvideobench", "lvb_val.json")])
def test_wrong_layout_is_one_line(tmp_path, benchmark, expect):
    with pytest.raises(InputError, match=expect) as err:
        load_benchmark(benchmark, tmp_path)
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)


def test_bad_annotation_files_name_the_file(tmp_path):
    (tmp_path / "lvb_val.json").write_text('[{"id": 1}]')
    with pytest.raises(InputError, match=r"lvb_val.json: item 0 lacks question"):
        load_benchmark("longvideobench", tmp_path)
    (tmp_path / "lvb_val.json").write_text("{not json")
    with pytest.raises(InputError, match="lvb_val.json: not valid JSON"):
        load_benchmark("longvideobench", tmp_path)
    (tmp_path / "videomme").mkdir()
    (tmp_path / "videomme" / "test-0.parquet").write_bytes(b"garbage")
    with pytest.raises(InputError, match="test-0.parquet: not a readable parquet table"):
        load_benchmark("videomme", tmp_path)
    with pytest.raises(InputError, match="choose one of"):
        load_benchmark("mmbench", tmp_path)


# --- prompts, against lmms-eval's own functions run on the same document


def _lmms_videomme(lmms, cache_dir):
    info = open_video(evaldata.BBB).info
    capture = types.SimpleNamespace(get=lambda prop: {"fps": info.fps, "count": info.num_frames}[prop])
    cv2 = types.SimpleNamespace(VideoCapture=lambda path: capture, CAP_PROP_FPS="fps", CAP_PROP_FRAME_COUNT="count")
    names = ["videomme_doc_to_text", "videomme_doc_to_text_subtitle", "extract_subtitles", "load_subtitles",
             "parse_subtitle_time", "convert_time_to_frame"]
    ns = {"os": os, "re": re, "np": np, "cv2": cv2, "base_cache_dir": str(cache_dir.parent),
          "cache_name": cache_dir.name}
    return evaldata.lmms_functions(lmms, "tasks/videomme/utils.py", names, ns), info


def test_videomme_prompts_equal_lmms_eval(lmms, data):
    ns, info = _lmms_videomme(lmms, data["videomme"])
    post = {"post_prompt": "\nAnswer with the option's letter from the given choices directly."}  # videomme.yaml
    for row, q in zip(evaldata.videomme_rows(), load_benchmark("videomme", data["videomme"])):
        assert build_prompt(q).text == ns["videomme_doc_to_text"](row, post)
    # with subtitles: lmms-eval samples 32 frames uniformly by index; give ours the same frames
    frames = np.linspace(0, info.num_frames - 1, 32, dtype=int)
    prompts = []
    for row, q in zip(evaldata.videomme_rows(), load_benchmark("videomme-sub", data["videomme"])):
        prompts.append(build_prompt(q, (frames / info.fps).tolist(), info.fps).text)
        assert prompts[-1] == ns["videomme_doc_to_text_subtitle"](row, {"frame_num": 32})
    assert "below: \nline 1\nline 2\nline 3\nline 4\nline 5\nSelect" in prompts[0]
    assert "below: \nNo subtitles available\nSelect" in prompts[3]  # the pancake video has no .srt


def test_videomme_subtitles_are_those_under_the_frames(data):
    path = data["videomme"] / "subtitle" / "bbbShort001.srt"  # line i on screen from 2i s to 2i + 1.5 s
    assert videomme_subtitles(path, [0.2, 4.6, 4.8], 25.0) == ["line 1", "line 3"]
    assert videomme_subtitles(path, [1.6, 3.7], 25.0) == []


def test_mlvu_prompt_equals_lmms_eval(lmms, data):
    ns = evaldata.lmms_functions(lmms, "tasks/mlvu/utils.py", ["mlvu_doc_to_text"], {})
    kwargs = {"pre_prompt": "", "post_prompt": "\nOnly give the best option.\nBest option: ("}  # mlvu_dev.yaml
    items = [i for name in ("1_plotQA", "4_count") for i in evaldata.MLVU_ITEMS[name]]
    for item, q in zip(items, load_benchmark("mlvu", data["mlvu"])):
        # lmms-eval reads MLVU_dev converted to one table whose question holds the lettered candidates
        doc = {"question": item["question"] + "\n" + "".join(f"({'ABCD'[i]}) {c}\n"
                                                            for i, c in enumerate(item["candidates"]))}
        assert build_prompt(q).text == ns["mlvu_doc_to_text"](doc, kwargs)


@pytest.mark.parametrize("frames_per_slot", [1, 4])
def test_longvideobench_interleaved_prompt_equals_lmms_eval(lmms, data, frames_per_slot):
    subtitles = data["longvideobench"] / "subtitles"
    ns = {"json": json, "os": os,
          "_resolve_dataset_dir": lambda *_: (str(subtitles), {"max_num_frames": 16})}
    names = ["longvideobench_doc_to_text", "compute_frame_timestamps", "insert_subtitles_into_frames",
             "timestamp_to_seconds"]
    ns = evaldata.lmms_functions(lmms, "tasks/longvideobench/utils.py", names, ns)
    kwargs = {"pre_prompt": "", "post_prompt": "Answer with the option's letter from the given choices directly.\n",
              "insert_interleave_subtitles": True}  # longvideobench_val_i.yaml
    for item, q in zip(evaldata.lvb_items(), load_benchmark("longvideobench", data["longvideobench"])):
        doc = {**item, **{f"option{i}": (item["candidates"] + ["N/A"] * 5)[i] for i in range(5)}}
        times = ns["compute_frame_timestamps"](item["duration"], 16)
        slots = [(first, first + frames_per_slot - 1) for first in range(1, len(times) + 1, frames_per_slot)]
        prompt = build_prompt(q, times, 25.0, slots)
        slots = [f"{text}\n" if text else "" for text in prompt.slot_text]
        video = "\n".join(f"{s}" + "\n".join(["<image>"] * frames_per_slot) for s in slots)
        expected = ns["longvideobench_doc_to_text"](doc, kwargs)
        if frames_per_slot == 1:
            assert f"{video}\n{prompt.text}" == expected
        else:  # lines inside a clip move before it: same lines, same order
            assert re.sub(r"<image>\n?", "", f"{video}\n{prompt.text}") == re.sub(r"<image>\n?", "", expected)
    assert "Flip it now." in expected and "Done." in expected


# --- letter extraction


@pytest.fixture(scope="module")
def lmms_extract(lmms):
    path = lmms / "lmms_eval" / "tasks" / "_task_utils" / "mcq_extract.py"
    spec = importlib.util.spec_from_file_location("lmms_mcq_extract", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.extract_mcq_answer


@pytest.mark.parametrize("text, letter", [
    ("The best answer is (B).", "B"), ("B) because the rabbit eats", "B"), ("b", ""), ("c) lowercase", ""),
    ("I cannot tell from the video", ""), ("Does it rain? Clearly D", "D"), ("no letter here", ""), ("", ""), ("Answer: C", "C"),
    ("A. A book on the table", "A"), ("(A) is wrong, the answer is (D)", "D"), ("D. A book", "D")])
def test_tricky_outputs_match_lmms_eval(lmms_extract, text, letter):
    assert extract_letter(text) == letter == lmms_extract(text, choices=["A", "B", "C", "D"])


@given(st.text(alphabet="ABCDEabcd ().:,!?;'\"答案是选theanswrisbcoy\n", max_size=40))
def test_extraction_equals_lmms_eval_on_any_text(lmms_extract, text):
    assert extract_letter(text) == lmms_extract(text, choices=["A", "B", "C", "D"])


def test_longvideobench_parsing_equals_its_own(lmms):
    ns = evaldata.lmms_functions(lmms, "tasks/longvideobench/utils.py", ["parse_multi_choice_response"],
                                 {"re": re, "random": random})
    for text in ["The best answer is D.", "D. A book", "Best option: (C)", "e) lower, then B", "The answer A", "ABC"]:
        assert parse_longvideobench(text) == ns["parse_multi_choice_response"](text, list("ABCDE"), {})
    assert parse_longvideobench("nothing to see") == ""


# --- metrics


def _q(benchmark, qid, answer, options=4, **groups):
    return Question(benchmark, qid, evaldata.BBB, "?", tuple("wxyz"[:options]), answer, groups)


def test_scores():
    assert score(_q("videomme", "1", "B"), "The best answer is (B).") == {"prediction": "B", "correct": True}
    assert score(_q("mlvu", "1", "C"), "A) sleeps") == {"prediction": "A", "correct": False}
    lvb = score(_q("longvideobench", "x", "A", 5), "no idea")
    assert lvb["prediction"] == "" and lvb["guess"] in "ABCDE" and lvb == score(_q("longvideobench", "x", "A", 5), "")
    assert lvb["correct"] == (lvb["guess"] == "A")


def test_summaries_by_group_on_hand_made_records():
    def rec(benchmark, correct, **groups):
        return {"benchmark": benchmark, "correct": correct, **groups, "latency_ms": {}}

    mlvu = [rec("mlvu", c, task_type=t) for t, c in [("count", True), ("count", False), ("count", False),
                                                     ("needle", True)]]
    rows = {r["group"]: r for r in summarize(mlvu)}
    assert rows["overall"]["accuracy"] == pytest.approx((100 / 3 + 100) / 2)  # mean over task types
    assert rows["task_type=count"]["questions"] == 3
    vm = [rec("videomme", c, duration=d, domain="Knowledge", task_type="OCR Problems")
          for d, c in [("short", True), ("short", True), ("long", False), ("long", True)]]
    vm.append({"benchmark": "videomme", "question_id": "q", "error": "VideoDecodeError: broken"})
    rows = {r["group"]: r for r in summarize(vm)}
    assert rows["overall"]["accuracy"] == 75 and rows["overall"]["questions"] == 4
    assert rows["duration=long"]["accuracy"] == 50 and rows["failed"]["questions"] == 1
    lvb = [rec("longvideobench", c, duration_group=g, question_category="S2E")
           for g, c in [("15", True), ("60", False), ("60", False)]]
    rows = {r["group"]: r for r in summarize(lvb)}
    assert rows["overall"]["accuracy"] == pytest.approx(100 / 3) and rows["duration_group=15"]["accuracy"] == 100


def test_a_bad_srt_time_line_is_one_line_naming_the_file(tmp_path):
    from liteframe.eval.prompts import parse_srt

    path = tmp_path / "v.srt"
    path.write_text("1\n00:00:01,000 --> 00:00:02,000\nfine\n\n2\n00:00:03 --> 00:00:04,000\nbroken\n")
    with pytest.raises(InputError, match=r"v\.srt: bad subtitle time line '00:00:03 --> 00:00:04,000'"):
        parse_srt(path)


def test_more_options_than_letters_is_one_line_naming_the_item(tmp_path):
    # the prompts and the parser know A-E: a sixth option was an IndexError before
    items = evaldata.lvb_items()
    items[1]["candidates"] = [f"option {k}" for k in range(6)]
    (tmp_path / "lvb_val.json").write_text(json.dumps(items))
    with pytest.raises(InputError, match=r"lvb_val.json: item 1: candidates must be a list of 1 to 5 options"):
        load_benchmark("longvideobench", tmp_path)
    items = evaldata.lvb_items()
    items[0]["correct_choice"] = 7
    (tmp_path / "lvb_val.json").write_text(json.dumps(items))
    with pytest.raises(InputError, match=r"item 0: correct_choice 7 is not the index of a candidate"):
        load_benchmark("longvideobench", tmp_path)
