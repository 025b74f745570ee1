"""Tiny copies of the three benchmarks in their published layouts and real field names, over the shared videos:
MLVU and LongVideoBench also in the layouts lmms-eval reads (`sy1998/MLVU_dev`'s parquet with the options inside
the question; LongVideoBench's validation parquet with `option0`..`option4` and "N/A").

Each benchmark gets two good videos (3 questions each for Video-MME) and, where asked, a corrupt one.
"""
from __future__ import annotations

import json
from pathlib import Path

from videos import REAL_VIDEOS

BBB, PANCAKE = REAL_VIDEOS / "bbb_short.mp4", REAL_VIDEOS / "flipping_a_pancake.mkv"
FONT = '<font color="white" size=".72c">{}</font>'


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)


def _broken(dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)


def videomme_rows(with_broken: bool = False) -> list[dict]:
    videos = [("001", "bbbShort001", "short", "Film & Television", "Animation"),
              ("002", "pancakeFlip2", "medium", "Life Record", "Food")]
    if with_broken:
        videos.append(("003", "brokenVid003", "long", "Knowledge", "Technology"))
    tasks = ["Action Recognition", "Counting Problem", "Object Reasoning"]
    return [
        {"video_id": vid, "duration": duration, "domain": domain, "sub_category": sub,
         "url": f"https://www.youtube.com/watch?v={yt}", "videoID": yt, "question_id": f"{vid}-{k + 1}",
         "task_type": tasks[k], "question": f"What happens in part {k + 1}?",
         "options": ["A. A rabbit wakes up.", "B. A pancake flips.", "C. Nothing.", "D. It rains."],
         "answer": "ABCD"[k]}
        for vid, yt, duration, domain, sub in videos for k in range(3)
    ]


def make_videomme(root: Path, with_broken: bool = False) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "videomme").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(videomme_rows(with_broken)), root / "videomme" / "test-00000-of-00001.parquet")
    _link(BBB, root / "data" / "bbbShort001.mp4")
    _link(PANCAKE, root / "data" / "pancakeFlip2.mkv")
    if with_broken:
        _broken(root / "data" / "brokenVid003.mp4")
    (root / "subtitle").mkdir()
    srt = "".join(f"{i + 1}\n00:00:{2 * i:02d},000 --> 00:00:{2 * i + 1:02d},500\n{FONT.format(f'line {i + 1}')}\n\n"
                  for i in range(5))
    (root / "subtitle" / "bbbShort001.srt").write_text(srt, encoding="utf-8")
    return root


MLVU_ITEMS = {
    "1_plotQA": [{"video": "bbb_short.mp4", "duration": 10.0, "question": "What does the rabbit do?",
                  "candidates": ["sleeps", "eats", "flies", "swims"], "answer": "eats", "question_type": "plotQA"}],
    "4_count": [{"video": "pancake.mkv", "duration": 10.4, "question": "How many flips?",
                 "candidates": ["1", "2", "3"], "answer": "1", "question_type": "count"},
                {"video": "pancake.mkv", "duration": 10.4, "question": "How many pans?",
                 "candidates": ["1", "2", "3", "4"], "answer": "4", "question_type": "count"}],
    "9_summary": [{"video": "bbb_short.mp4", "duration": 10.0, "question": "Summarise.", "answer": "A rabbit.",
                   "question_type": "summary"}],
}


def mlvu_lmms_rows() -> list[dict]:
    """The multiple-choice items as `sy1998/MLVU_dev` stores them (its dataset card's fields): the options inside
    `question` as `(A) ...` lines, `answer` a letter, `video_name` in one flat folder."""
    return [{"video_name": item["video"], "duration": item["duration"],
             "question": item["question"] + "\n" + "".join(f"({'ABCDE'[k]}) {c}\n"
                                                          for k, c in enumerate(item["candidates"])),
             "candidates": item["candidates"], "answer": "ABCDE"[item["candidates"].index(item["answer"])],
             "task_type": item["question_type"], "question_id": f"{item['question_type']}_{i}"}
            for name in ("1_plotQA", "4_count") for i, item in enumerate(MLVU_ITEMS[name])]


def make_mlvu_lmms(root: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "mlvu").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(mlvu_lmms_rows()), root / "mlvu" / "test-00000-of-00001.parquet")
    _link(BBB, root / "bbb_short.mp4")
    _link(PANCAKE, root / "pancake.mkv")
    return root


def make_mlvu(root: Path) -> Path:
    (root / "json").mkdir(parents=True)
    for name, items in MLVU_ITEMS.items():
        (root / "json" / f"{name}.json").write_text(json.dumps(items), encoding="utf-8")
    _link(BBB, root / "video" / "1_plotQA" / "bbb_short.mp4")
    _link(PANCAKE, root / "video" / "4_count" / "pancake.mkv")
    return root


def lvb_items() -> list[dict]:
    base = {"question_wo_referring_query": "", "position": [], "topic_category": "NP-News-Programs",
            "level": "L2-Relation", "view_count": 10}
    return [
        {**base, "video_id": "bbbLvb", "id": "bbbLvb_0", "question": "Which animal appears?",
         "candidates": ["a rabbit", "a bird", "a fish", "a cat", "a dog"], "correct_choice": 0,
         "question_category": "S2E", "video_path": "bbbLvb.mp4", "subtitle_path": "bbbLvb_en.json",
         "duration_group": 15, "starting_timestamp_for_subtitles": 0.0, "duration": 10.0},
        {**base, "video_id": "panLvb", "id": "panLvb_0", "question": "What is cooked?",
         "candidates": ["eggs", "a pancake", "rice", "soup"], "correct_choice": 1,
         "question_category": "T3O", "video_path": "panLvb.mkv", "subtitle_path": "panLvb_en.json",
         "duration_group": 60, "starting_timestamp_for_subtitles": 1.0, "duration": 10.4},
    ]


LVB_SUBS = {
    "bbbLvb_en.json": [{"start": "00:00:00.500", "end": "00:00:02.000", "line": "Hello there."},
                       {"start": "00:00:04.000", "end": "00:00:04.300", "line": "Quick one."},
                       {"start": "00:00:09.000", "end": "00:00:09.900", "line": "Goodbye."}],
    "panLvb_en.json": [{"timestamp": [2.0, 4.5], "text": "Flip it now."},
                       {"timestamp": [8.0, None], "text": "Done."}],
}


def lvb_rows() -> list[dict]:
    """The items as the validation parquet stores them: `option0`..`option4`, "N/A" where there is none."""
    return [{**{k: v for k, v in item.items() if k != "candidates"},
             **{f"option{k}": (item["candidates"] + ["N/A"] * 5)[k] for k in range(5)}} for item in lvb_items()]


def make_longvideobench(root: Path, parquet: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(lvb_rows()), root / "validation-00000-of-00001.parquet")
    else:
        (root / "lvb_val.json").write_text(json.dumps(lvb_items()), encoding="utf-8")
    _link(BBB, root / "videos" / "bbbLvb.mp4")
    _link(PANCAKE, root / "videos" / "panLvb.mkv")
    (root / "subtitles").mkdir()
    for name, items in LVB_SUBS.items():
        (root / "subtitles" / name).write_text(json.dumps(items), encoding="utf-8")
    return root


def make_all(root: Path) -> dict[str, Path]:
    """Every benchmark's fixture in every layout under `root`, by name."""
    return {"videomme": make_videomme(root / "videomme", with_broken=True), "mlvu": make_mlvu(root / "mlvu"),
            "mlvu-lmms": make_mlvu_lmms(root / "mlvu-lmms"), "longvideobench": make_longvideobench(root / "lvb"),
            "lvb-parquet": make_longvideobench(root / "lvb-parquet", parquet=True)}


LMMS_EVAL = "lmms-eval==0.7.3"


def lmms_eval_root() -> Path:
    """The real lmms-eval 0.7.3 wheel, unpacked (not installed: its dependencies pin old PyAV) into a cache folder;
    the test calling this is skipped with the reason when pip cannot fetch it."""
    import os
    import subprocess
    import sys
    import zipfile

    import pytest

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "liteframe-tests" / "lmms_eval-0.7.3"
    if not (cache / "lmms_eval").is_dir():
        wheels = cache.with_name(cache.name + "-wheel")
        done = subprocess.run([sys.executable, "-m", "pip", "download", LMMS_EVAL, "--no-deps", "-q", "-d",
                               str(wheels)], capture_output=True, text=True)
        found = sorted(wheels.glob("lmms_eval-*.whl"))
        if done.returncode or not found:
            pytest.skip(f"cannot download {LMMS_EVAL} from PyPI: {done.stderr.strip()[-200:]}")
        tmp = cache.with_name(cache.name + f".tmp-{os.getpid()}")
        with zipfile.ZipFile(found[0]) as wheel:
            wheel.extractall(tmp)
        tmp.rename(cache)
    return cache


def lmms_functions(root: Path, relative: str, names: list[str], namespace: dict) -> dict:
    """The named top-level functions (and constants) of one of lmms-eval's task modules, compiled from its source
    into `namespace` (its module imports decord, cv2 and datasets, which the tests do not install)."""
    import ast

    path = root / "lmms_eval" / relative
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def name(node):
        if isinstance(node, ast.FunctionDef):
            return node.name
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            return node.targets[0].id
        return None

    wanted = [node for node in tree.body if name(node) in names]
    assert {name(n) for n in wanted} == set(names), f"{path} lacks some of {names}"
    exec(compile(ast.Module(wanted, type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102
    return namespace
