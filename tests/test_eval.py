"""The benchmark tasks (readers in every layout, prompts, letter parsing, reasoning tags, aggregation), checked
against lmms-eval 0.7.3's own task code run on the same documents."""
from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import types
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, strategies as st

import evaldata
from liteframe.errors import InputError
from liteframe.eval import TASKS, Frames, Question, extract_letter, parse_longvideobench, strip_reasoning
from liteframe.eval.tasks.videomme import parse_srt, subtitles_at
from liteframe.video import open_video

VIDEOMME, VIDEOMME_SUB, MLVU, LVB = (TASKS.get(n) for n in ("videomme", "videomme-sub", "mlvu", "longvideobench"))


@pytest.fixture(scope="module")
def lmms():
    return evaldata.lmms_eval_root()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return evaldata.make_all(tmp_path_factory.mktemp("benchmarks"))


class Logger:
    """lmms-eval's `eval_logger`, keeping what its aggregations log."""

    def __init__(self):
        self.lines = []

    def info(self, message, *args):
        self.lines.append(message)


# --- readers


def test_registry_holds_the_four_tasks():
    assert TASKS.names() == ["videomme", "videomme-sub", "mlvu", "longvideobench"]
    assert [(t.lmms_eval, t.max_new_tokens) for t in (VIDEOMME, VIDEOMME_SUB, MLVU, LVB)] == [
        ("videomme", 16), ("videomme_w_subtitle", 16), ("mlvu_dev", 16), ("longvideobench_val_i", 32)]
    with pytest.raises(ValueError, match="unknown benchmark 'mmbench'; choose from videomme"):
        TASKS.get("mmbench")


def test_videomme_reader_fields(data):
    qs = VIDEOMME.load(data["videomme"])
    assert [q.question_id for q in qs[:3]] == ["001-1", "001-2", "001-3"]
    assert qs[0].video.name == "bbbShort001.mp4" and qs[3].video.name == "pancakeFlip2.mkv"  # the .mkv fallback
    assert qs[0].groups == {"duration": "short", "domain": "Film & Television", "sub_category": "Animation",
                            "task_type": "Action Recognition"}
    assert qs[0].options[0] == "A. A rabbit wakes up." and qs[2].answer == "C" and qs[0].subtitles is None
    sub = VIDEOMME_SUB.load(data["videomme"])
    assert sub[0].subtitles == data["videomme"] / "subtitle" / "bbbShort001.srt"


def test_mlvu_reader_letters_and_task_types(data):
    qs = MLVU.load(data["mlvu"])
    assert [(q.question_id, q.groups["task_type"], q.answer) for q in qs] == [
        ("plotQA_0", "plotQA", "B"), ("count_0", "count", "A"), ("count_1", "count", "D")]  # summary left out
    assert qs[1].video == data["mlvu"] / "video" / "4_count" / "pancake.mkv" and qs[1].video.exists()
    assert qs[1].question == "How many flips?\n(A) 1\n(B) 2\n(C) 3\n"  # lmms-eval's document


def test_mlvu_in_lmms_eval_layout_reads_as_the_original(data):
    original, lmms = MLVU.load(data["mlvu"]), MLVU.load(data["mlvu-lmms"])
    assert [(q.question_id, q.question, q.options, q.answer, q.groups, q.video.name) for q in lmms] == [
        (q.question_id, q.question, q.options, q.answer, q.groups, q.video.name) for q in original]
    assert all(q.video.parent == data["mlvu-lmms"] and q.video.exists() for q in lmms)  # one flat folder


def test_mlvu_reader_accepts_the_outer_folder(data, tmp_path):
    (tmp_path / "MLVU").symlink_to(data["mlvu"])
    assert len(MLVU.load(tmp_path)) == 3


def test_longvideobench_reader(data):
    qs = LVB.load(data["longvideobench"])
    assert qs[0].answer == "A" and qs[1].answer == "B" and len(qs[0].options) == 5
    assert qs[1].groups == {"duration_group": "60", "question_category": "T3O"}
    assert qs[1].extra == {"duration": 10.4, "subtitle_start": 1.0} and qs[1].subtitles.is_file()
    assert LVB.load(data["lvb-parquet"]) == [
        Question(q.benchmark, q.question_id, data["lvb-parquet"] / "videos" / q.video.name, q.question, q.options,
                 q.answer, q.groups, data["lvb-parquet"] / "subtitles" / q.subtitles.name, q.extra) for q in qs]
    assert len(LVB.load(data["lvb-parquet"])[1].options) == 4  # "N/A" is no option


@pytest.mark.parametrize("task, expect", [(VIDEOMME, "videomme/test-\\*.parquet"),
                                          (MLVU, "json/\\*.json annotations and no mlvu/test-\\*.parquet"),
                                          (LVB, "no lvb_val.json and no validation-\\*.parquet")])
def test_wrong_layout_is_one_line(tmp_path, task, expect):
    with pytest.raises(InputError, match=expect) as err:
        task.load(tmp_path)
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)


def test_bad_annotation_files_name_the_file(tmp_path):
    (tmp_path / "lvb_val.json").write_text('[{"id": 1}]')
    with pytest.raises(InputError, match=r"lvb_val.json: item 0 lacks question"):
        LVB.load(tmp_path)
    (tmp_path / "lvb_val.json").write_text("{not json")
    with pytest.raises(InputError, match="lvb_val.json: not valid JSON"):
        LVB.load(tmp_path)
    (tmp_path / "videomme").mkdir()
    (tmp_path / "videomme" / "test-0.parquet").write_bytes(b"garbage")
    with pytest.raises(InputError, match="test-0.parquet: not a readable parquet table"):
        VIDEOMME.load(tmp_path)


def test_bad_rows_in_the_lmms_eval_layouts_name_the_item(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = evaldata.lvb_rows()
    rows[1]["option1"], rows[1]["option3"] = "N/A", "a dog"  # an option after an absent one
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "validation-00000-of-00001.parquet")
    with pytest.raises(InputError, match=r"validation-00000-of-00001.parquet: item 1: an option follows an \"N/A\""):
        LVB.load(tmp_path)
    (tmp_path / "mlvu").mkdir()
    for change, match in [({"answer": "E"}, r"item 0: answer 'E' is not the letter of one of the question's"),
                          ({"task_type": "summary"}, r"item 0: task_type 'summary' is not one of the dev set's")]:
        rows = evaldata.mlvu_lmms_rows()
        rows[0].update(change)
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "mlvu" / "test-00000-of-00001.parquet")
        with pytest.raises(InputError, match=match):
            MLVU.load(tmp_path)


def test_more_options_than_letters_is_one_line_naming_the_item(tmp_path):
    # the prompts and the parser know A-E: a sixth option was an IndexError before
    items = evaldata.lvb_items()
    items[1]["candidates"] = [f"option {k}" for k in range(6)]
    (tmp_path / "lvb_val.json").write_text(json.dumps(items))
    with pytest.raises(InputError, match=r"lvb_val.json: item 1: candidates must be a list of 1 to 5 options"):
        LVB.load(tmp_path)
    items = evaldata.lvb_items()
    items[0]["correct_choice"] = 7
    (tmp_path / "lvb_val.json").write_text(json.dumps(items))
    with pytest.raises(InputError, match=r"item 0: correct_choice 7 is not the index of a candidate"):
        LVB.load(tmp_path)


# --- prompts, against lmms-eval's own functions run on the same document


def _lmms_videomme(lmms, cache_dir):
    """lmms-eval's Video-MME prompt functions, OpenCV's capture replaced by the same header fields read with PyAV
    (a path that does not exist gives 0 fps and 0 frames, as an unopened `cv2.VideoCapture` does)."""
    def capture(path):
        info = open_video(path).info if os.path.exists(path) else None
        fields = {"fps": info.fps, "count": info.num_frames} if info else {"fps": 0.0, "count": 0}
        return types.SimpleNamespace(get=fields.get)

    cv2 = types.SimpleNamespace(VideoCapture=capture, CAP_PROP_FPS="fps", CAP_PROP_FRAME_COUNT="count")
    names = ["videomme_doc_to_text", "videomme_doc_to_text_subtitle", "extract_subtitles", "load_subtitles",
             "parse_subtitle_time", "convert_time_to_frame"]
    ns = {"os": os, "re": re, "np": np, "cv2": cv2, "base_cache_dir": str(cache_dir.parent),
          "cache_name": cache_dir.name}
    return evaldata.lmms_functions(lmms, "tasks/videomme/utils.py", names, ns)


def test_videomme_prompts_equal_lmms_eval(lmms, data):
    ns = _lmms_videomme(lmms, data["videomme"])
    info = open_video(evaldata.BBB).info
    post = {"post_prompt": "\nAnswer with the option's letter from the given choices directly."}  # videomme.yaml
    for row, q in zip(evaldata.videomme_rows(), VIDEOMME.load(data["videomme"])):
        assert VIDEOMME.prompt(q).text == ns["videomme_doc_to_text"](row, post)
    # with subtitles: lmms-eval samples 32 frames uniformly by index; give ours the same frames
    frames = np.linspace(0, info.num_frames - 1, 32, dtype=int)
    prompts = []
    for row, q in zip(evaldata.videomme_rows()[:3], VIDEOMME_SUB.load(data["videomme"])):
        prompts.append(VIDEOMME_SUB.prompt(q, Frames((frames / info.fps).tolist(), fps=info.fps)).text)
        assert prompts[-1] == ns["videomme_doc_to_text_subtitle"](row, {"frame_num": 32})
    assert "below: \nline 1\nline 2\nline 3\nline 4\nline 5\nSelect" in prompts[0]


def test_videomme_subtitles_are_those_under_the_frames(data):
    path = data["videomme"] / "subtitle" / "bbbShort001.srt"  # line i on screen from 2i s to 2i + 1.5 s
    assert subtitles_at(path, [0.2, 4.6, 4.8], 25.0) == ["line 1", "line 3"]
    assert subtitles_at(path, [1.6, 3.7], 25.0) == []


def _odd_subtitles(root):
    """A Video-MME copy whose .srt has what lmms-eval treats differently: 300 lines of 1/30 s (so that the sampled
    lines' indices pass a Python set's table size), a line without the <font> tag, two blocks at one time; and the
    .mkv video with subtitles of its own."""
    font = evaldata.FONT
    stamp = lambda t: f"00:00:{int(t):02d},{round(t % 1 * 1000):03d}"  # noqa: E731
    blocks = [(i / 30, (i + 1) / 30, font.format(f"line {i}")) for i in range(300)]
    blocks[39] = (blocks[39][0], blocks[39][1], "no tag on this one")  # lines 1, 10, 20, 29, 39, 49 ... are sampled
    blocks.insert(49, (blocks[49][0], blocks[49][1], font.format("first of two at one time")))
    srt = "".join(f"{k + 1}\n{stamp(a)} --> {stamp(b)}\n{text}\n\n" for k, (a, b, text) in enumerate(blocks))
    data = evaldata.make_videomme(root)
    (data / "subtitle" / "bbbShort001.srt").write_text(srt, encoding="utf-8")
    (data / "subtitle" / "pancakeFlip2.srt").write_text(f"1\n00:00:01,000 --> 00:00:09,000\n{font.format('hi')}\n\n")
    return data


def test_lmms_eval_subtitles_reproduce_its_text_and_ours_differ_as_documented(lmms, tmp_path):
    data = _odd_subtitles(tmp_path / "videomme")
    ns = _lmms_videomme(lmms, data)
    for row, q in zip(evaldata.videomme_rows(), VIDEOMME_SUB.load(data)):
        info = open_video(q.video).info
        expected = ns["videomme_doc_to_text_subtitle"](row, {"frame_num": 32})
        frames = Frames(fps=info.fps, frame_count=info.num_frames)
        assert VIDEOMME_SUB.prompt(q, frames, "lmms-eval").text == expected
    bbb, pancake = VIDEOMME_SUB.load(data)[0], VIDEOMME_SUB.load(data)[3]
    info = open_video(evaldata.BBB).info
    times = (np.linspace(0, info.num_frames - 1, 32, dtype=int) / info.fps).tolist()
    ours = VIDEOMME_SUB.prompt(bbb, Frames(times, fps=info.fps)).text
    theirs = VIDEOMME_SUB.prompt(bbb, Frames(times, fps=info.fps, frame_count=info.num_frames), "lmms-eval").text
    ours_lines, their_lines = (text.split("below: \n")[1].split("\nSelect")[0].split("\n") for text in (ours, theirs))
    assert "no tag on this one" in ours_lines and "no tag on this one" not in their_lines  # a line without <font>
    assert {"first of two at one time", "line 49"} <= set(ours_lines)  # two blocks at one time: both kept
    assert "first of two at one time" not in their_lines  # lmms-eval keeps one text per time
    ours_order, their_order = ([int(s.split()[1]) for s in lines if s.startswith("line")]
                               for lines in (ours_lines, their_lines))
    assert ours_order == sorted(ours_order) and their_order != sorted(their_order)  # file order; set order
    mkv_ours = VIDEOMME_SUB.prompt(pancake, Frames([1.0, 5.0], fps=30.0)).text
    mkv_theirs = VIDEOMME_SUB.prompt(pancake, Frames([1.0, 5.0], fps=30.0, frame_count=311), "lmms-eval").text
    assert "below: \nhi\nSelect" in mkv_ours and "below: \n\nSelect" in mkv_theirs  # .mkv: lmms-eval's are empty


def test_mlvu_prompt_equals_lmms_eval(lmms, data):
    ns = evaldata.lmms_functions(lmms, "tasks/mlvu/utils.py", ["mlvu_doc_to_text"], {})
    kwargs = {"pre_prompt": "", "post_prompt": "\nOnly give the best option.\nBest option: ("}  # mlvu_dev.yaml
    for layout in ("mlvu", "mlvu-lmms"):
        for row, q in zip(evaldata.mlvu_lmms_rows(), MLVU.load(data[layout])):
            assert MLVU.prompt(q).text == ns["mlvu_doc_to_text"](row, kwargs)


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
    for layout in ("longvideobench", "lvb-parquet"):
        for doc, q in zip(evaldata.lvb_rows(), LVB.load(data[layout])):
            times = ns["compute_frame_timestamps"](doc["duration"], 16)
            slots = [(first, first + frames_per_slot - 1) for first in range(1, len(times) + 1, frames_per_slot)]
            prompt = LVB.prompt(q, Frames(times, slots))
            slots = [f"{text}\n" if text else "" for text in prompt.slot_text]
            video = "\n".join(f"{s}" + "\n".join(["<image>"] * frames_per_slot) for s in slots)
            expected = ns["longvideobench_doc_to_text"](doc, kwargs)
            if frames_per_slot == 1:
                assert f"{video}\n{prompt.text}" == expected
            else:  # lines inside a clip move before it: same lines, same order
                assert re.sub(r"<image>\n?", "", f"{video}\n{prompt.text}") == re.sub(r"<image>\n?", "", expected)
    assert "Flip it now." in expected and "Done." in expected


def test_a_missing_longvideobench_subtitle_file_is_an_input_error_naming_it(data, tmp_path):
    q = LVB.load(data["longvideobench"])[0]
    q = Question(q.benchmark, q.question_id, q.video, q.question, q.options, q.answer, q.groups,
                 tmp_path / "gone_en.json", q.extra)
    with pytest.raises(InputError, match=r"gone_en.json: no such subtitle file"):
        LVB.prompt(q, Frames([1.0, 2.0]))


def test_a_bad_srt_time_line_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "v.srt"
    path.write_text("1\n00:00:01,000 --> 00:00:02,000\nfine\n\n2\n00:00:03 --> 00:00:04,000\nbroken\n")
    with pytest.raises(InputError, match=r"v\.srt: bad subtitle time line '00:00:03 --> 00:00:04,000'"):
        parse_srt(path)


# --- letter extraction and reasoning tags


@pytest.fixture(scope="module")
def lmms_module(lmms):
    def load(relative):
        spec = importlib.util.spec_from_file_location(relative.replace("/", "_"), lmms / "lmms_eval" / relative)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="module")
def lmms_extract(lmms_module):
    return lmms_module("tasks/_task_utils/mcq_extract.py").extract_mcq_answer


@pytest.fixture(scope="module")
def lmms_strip(lmms_module):
    return lmms_module("api/reasoning.py").strip_reasoning_tags


@pytest.mark.parametrize("text, letter", [
    ("The best answer is (B).", "B"), ("B) because the rabbit eats", "B"), ("b", ""), ("c) lowercase", ""),
    ("I cannot tell from the video", ""), ("Does it rain? Clearly D", "D"), ("no letter here", ""), ("", ""),
    ("Answer: C", "C"), ("A. A book on the table", "A"), ("(A) is wrong, the answer is (D)", "D"),
    ("D. A book", "D")])
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


TAGS = [["<think>", "</think>"], ["<analysis>", "</analysis>"]]  # lmms-eval's --reasoning_tags default


@pytest.mark.parametrize("text, stripped", [
    ("<think>C.</think>B is correct", "B is correct"), ("<think>no end", "<think>no end"),
    ("opened by the template, A? </think> C", "C"), ("<analysis>A</analysis> <think>B</think> D", "D"),
    ("<THINK>A</THINK> B", "<THINK>A</THINK> B")])
def test_reasoning_blocks_are_stripped_as_lmms_eval_does(lmms_strip, text, stripped):
    assert strip_reasoning(text) == stripped == lmms_strip(text, TAGS)


@given(st.lists(st.sampled_from(["<think>", "</think>", "<analysis>", "</analysis>", "A", "B.", " ", "\n", "x"]),
                max_size=12))
def test_reasoning_stripping_equals_lmms_eval_on_any_text(lmms_strip, parts):
    text = "".join(parts)
    assert strip_reasoning(text) == lmms_strip(text, TAGS)


def test_a_reasoning_answer_scores_its_final_letter():
    q = Question("videomme", "1", evaldata.BBB, "?", tuple("ABCD"), "B")
    assert VIDEOMME.score(q, strip_reasoning("<think>C.</think>B is correct")) == {"prediction": "B",
                                                                                  "correct": True}
    assert VIDEOMME.score(q, "<think>C.</think>B is correct")["prediction"] == "C"  # what it scored before


# --- scores and aggregation, against lmms-eval's own aggregation functions


def _q(benchmark, qid, answer, options=4, **groups):
    return Question(benchmark, qid, evaldata.BBB, "?", tuple("wxyz"[:options]), answer, groups)


def test_scores():
    assert VIDEOMME.score(_q("videomme", "1", "B"), "The best answer is (B).") == {"prediction": "B", "correct": True}
    assert MLVU.score(_q("mlvu", "1", "C"), "A) sleeps") == {"prediction": "A", "correct": False}
    lvb = LVB.score(_q("longvideobench", "x", "A", 5), "no idea")
    assert lvb["prediction"] == "" and lvb["guess"] in "ABCDE" and lvb == LVB.score(_q("longvideobench", "x", "A", 5),
                                                                                     "")
    assert lvb["correct"] == (lvb["guess"] == "A")


def _records(benchmark, fields, n, seed=0):
    rng = random.Random(seed)
    return [{"benchmark": benchmark, "question_id": str(i), "correct": rng.random() < 0.5,
             **{k: rng.choice(v) for k, v in fields.items()}, "latency_ms": {}} for i in range(n)]


def _logged(logger, label):
    """`{name: percent}` from lmms-eval's log lines `Evaluation on <label>: <name>: <x>%`."""
    found = [re.fullmatch(rf"Evaluation on {label}: (.*):\s*(-?[\d.]+)%", str(line)) for line in logger.lines]
    return {m.group(1): float(m.group(2)) for m in found if m}


def test_videomme_aggregation_equals_lmms_eval_with_sub_categories(lmms):
    logger = Logger()
    names = ["VIDEO_TYPE", "CATEGORIES", "SUB_CATEGORIES", "TASK_CATEGORIES", "videomme_aggregate_results"]
    ns = evaldata.lmms_functions(lmms, "tasks/videomme/utils.py", names, {"eval_logger": logger})
    records = _records("videomme", {"duration": ["short", "medium", "long"],
                                    "domain": ["Knowledge", "Film & Television", "Life Record"],
                                    "sub_category": ["Animation", "Food", "Technology", "Law", "Literature & Art"],
                                    "task_type": ["OCR Problems", "Counting Problem", "Object Reasoning"]}, 60)
    records.append({"benchmark": "videomme", "question_id": "x", "error": "VideoDecodeError: broken"})
    answered = [r for r in records if "error" not in r]
    theirs = ns["videomme_aggregate_results"]([
        {"duration": r["duration"], "category": r["domain"], "sub_category": r["sub_category"],
         "task_category": r["task_type"], "pred_answer": "A" if r["correct"] else "B", "answer": "A"}
        for r in answered])
    rows = {r["group"]: r for r in VIDEOMME.aggregate(records)}
    assert rows["overall"]["accuracy"] == pytest.approx(theirs) == rows["overall"]["lmms-eval"]
    assert rows["overall"]["questions"] == 60 and rows["failed"]["questions"] == 1
    for label, field in [("video Type", "duration"), ("Categories", "domain"), ("Video Sub Categories", "sub_category"),
                         ("Task Categories", "task_type")]:
        logged = {k: v for k, v in _logged(logger, label).items() if f"{field}={k}" in rows or v != 0}
        assert logged == {g.split("=", 1)[1]: round(r["accuracy"], 1) for g, r in rows.items()
                          if g.startswith(f"{field}=")}, label


def test_mlvu_aggregation_equals_lmms_eval_and_a_partial_run_says_so(lmms):
    ns = evaldata.lmms_functions(lmms, "tasks/mlvu/utils.py", ["mlvu_aggregate_results_dev"],
                                 {"eval_logger": Logger()})
    for types_present, partial in [(["count", "needle", "order"], True),
                                   (["plotQA", "needle", "ego", "count", "order", "anomaly_reco", "topic_reasoning"],
                                    False)]:
        records = _records("mlvu", {"task_type": types_present}, 40, seed=len(types_present))
        theirs = ns["mlvu_aggregate_results_dev"]([
            {"task_type": r["task_type"], "pred_answer": "A" if r["correct"] else "B", "answer": "A"}
            for r in records])
        rows = {r["group"]: r for r in MLVU.aggregate(records)}
        by_type = [rows[f"task_type={t}"]["accuracy"] for t in types_present]
        assert rows["overall"]["lmms-eval"] == pytest.approx(theirs)
        assert rows["overall"]["accuracy"] == pytest.approx(sum(by_type) / len(by_type))
        assert rows["overall"].get("partial") == ("3 of 7 task types" if partial else None)
        assert (rows["overall"]["accuracy"] != pytest.approx(theirs)) == partial


def test_longvideobench_aggregation_reported_as_lmms_eval_reports_it(lmms):
    logger = Logger()
    names = ["longvideobench_aggregate_results", "evaluate_longvideobench", "eval_multi_choice",
             "calculate_ins_level_acc"]
    ns = evaldata.lmms_functions(lmms, "tasks/longvideobench/utils.py", names,
                                 {"eval_logger": logger, "defaultdict": defaultdict})
    records = _records("longvideobench", {"duration_group": ["15", "60", "600", "3600"],
                                          "question_category": ["S2E", "T3O", "E2O"]}, 50)
    theirs = ns["longvideobench_aggregate_results"]([
        {"id": r["question_id"], "duration_group": int(r["duration_group"]), "question_category":
         r["question_category"], "answer": "A", "parsed_pred": "A" if r["correct"] else "C"} for r in records])
    rows = {r["group"]: r for r in LVB.aggregate(records)}
    assert rows["overall"]["lmms-eval"] == theirs and 0 < theirs < 1  # a fraction, rounded to 5 places
    printed = logger.lines[-1]
    for group, row in rows.items():
        if group != "overall":
            value = group.split("=")[1]
            assert printed[int(value) if value.isdigit() else value]["acc"] == round(row["accuracy"] / 100, 5)
    assert printed["Overall"]["num"] == 2 * rows["overall"]["questions"]  # each question under two subsets
