"""`liteframe probe`: what is in each video file and how much of it decodes."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Sequence

from liteframe.video.decode import VideoDecodeError, open_video


def probe(path: str | os.PathLike) -> dict:
    """The stream's declared facts plus a full decode count; raises VideoDecodeError when nothing decodes."""
    with open_video(path) as reader:
        decodable, failure = reader.count_decodable()
        info = dataclasses.asdict(reader.info)
    declared = info.pop("frame_count")
    return {**info, "frames_declared": declared, "frames_decodable": decodable, "decode_error": failure}


def run_probe(paths: Sequence[str], as_json: bool = False) -> int:
    """Print one line (or JSON object) per readable file; one line per unreadable file on stderr.
    Returns 0 when every file has decodable frames, else 2."""
    status = 0
    for path in paths:
        try:
            facts = probe(path)
        except VideoDecodeError as err:
            print(f"liteframe probe: error: {err}", file=sys.stderr)
            status = 2
            continue
        print(json.dumps(facts) if as_json else _line(facts), flush=True)
    return status


def _line(f: dict) -> str:
    declared = f["frames_declared"] if f["frames_declared"] is not None else "none"
    text = (f"{f['path']}: {f['container']} {f['codec']} {f['width']}x{f['height']} rotation {f['rotation']}, "
            f"{f['fps']:.3g} fps, {f['duration']:.2f} s, frames declared {declared}, decodable {f['frames_decodable']}")
    return text + (f" (some frames fail to decode: {f['decode_error']})" if f["decode_error"] else "")


__all__ = ["probe", "run_probe"]
