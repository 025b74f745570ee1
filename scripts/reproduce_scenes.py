"""Every training clip of a `reproduce_cpu.py` run, scene by scene: each student's cosine to WAP(teacher) beside the
teacher's average pooling. A student that trains a few parameters (the keyframe students) has not learned these
scenes, so they test it on the whole corpus where the held-out set has six scenes.

    python scripts/reproduce_scenes.py --out runs/reproduce [--students ctd-keyframe ctd-keyframe-tome]

Writes `scenes.json` and `scenes.md` in `--out`.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import torch

from liteframe.models import LiteFrameEncoder, Teacher
from liteframe.reduce import avg_pool, wap
from liteframe.tables import format_table
from liteframe.train.distill import DistillConfig
from liteframe.train.distill.data import ClipDataset, read_manifest

sys.path.insert(0, str(Path(__file__).parent))
from reproduce_cpu import FULL, clip_cosines  # noqa: E402


def scene(video: str) -> str:
    """`clips/flower-pan-right-flip.mp4` -> `flower`: the photograph or video a clip was made from."""
    name = re.sub(r"(-flip)?\.mp4$", "", Path(video).name)
    return re.sub(r"-(pan-right|pan-down|zoom-in|zoom-out|path\d+)$", "", name)


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="a reproduce_cpu.py output folder")
    parser.add_argument("--students", nargs="+", default=["ctd-keyframe", "ctd-keyframe-tome"])
    args = parser.parse_args(argv)
    out = args.out.resolve()
    warnings.simplefilter("once")  # the teacher's note on its resized positions, once
    run = DistillConfig.load(out / "runs" / args.students[0] / "config.yaml")  # the runs' teacher and frame size
    teacher = Teacher.from_pretrained(run.teacher)
    students = {name: LiteFrameEncoder.from_pretrained(out / "runs" / name / "student").eval()
                for name in args.students}
    entries = read_manifest(out / "data" / "train.jsonl")
    data = ClipDataset(entries, FULL.frames, run.image_size, (2.0, 8.0), 0)  # view 0, as the runs evaluate theirs
    scores: dict[str, list[float]] = defaultdict(list)
    for start in range(0, len(entries), FULL.batch):
        pixels = torch.stack([data.load(i, 0)[0] for i in range(start, min(start + FULL.batch, len(entries)))])
        grid = teacher(pixels)
        target = wap(grid.patches, grid.queries, (4, 2, 2))
        scores["teacher + avg pool"] += clip_cosines(avg_pool(grid.patches, 16), target).tolist()
        for name, student in students.items():
            scores[name] += clip_cosines(student(pixels).patches, target).tolist()
        print(f"{min(start + FULL.batch, len(entries))}/{len(entries)} clips", flush=True)
    scenes = [scene(str(e.video)) for e in entries]
    rows = []
    for name in sorted(set(scenes), key=lambda s: scenes.index(s)) + ["all"]:
        picks = [i for i, s in enumerate(scenes) if name in ("all", s)]
        rows.append({"scene": name, "clips": len(picks),
                     **{model: sum(v[i] for i in picks) / len(picks) for model, v in scores.items()}})
    (out / "scenes.json").write_text(json.dumps({"clips": scenes, "scores": scores, "rows": rows}, indent=1) + "\n")
    table = format_table(rows, ["scene", "clips", *scores])
    (out / "scenes.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
