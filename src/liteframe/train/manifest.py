"""Chat manifests for LMA: the video instruction format of LLaVA-Video-178K and InternVL's fine-tuning data.

A JSON list, or JSON lines, of `{"id": ..., "video": path, "conversations": [{"from": "human", "value":
"<video>\\nQuestion"}, {"from": "gpt", "value": "Answer"}, ...]}`; turns alternate human / gpt, and the first human
turn holds the `<video>` placeholder. A file that is not such a list, or a row without these fields, is an input
error (one line naming the file and row). Rows that are well formed but unusable (no `<video>`, an empty answer) are
not errors: training skips them and counts them (`Skips`), as it does videos that fail to decode.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from liteframe.errors import InputError, one_line

VIDEO = "<video>"
ROLES = ("human", "gpt")
log = logging.getLogger("liteframe.train")


@dataclass(frozen=True)
class ChatSample:
    """One row: `turns` are (question, answer) pairs, the `<video>` placeholder taken out of the first question;
    `problem` says why the row cannot train (None when it can)."""

    id: str
    video: str
    turns: tuple[tuple[str, str], ...]
    problem: str | None = None


def read_chat_manifest(path: str | Path, video_root: str | Path | None = None) -> list[ChatSample]:
    """A JSON or JSONL chat manifest -> samples; a relative `video` resolves against `video_root` (default: the
    manifest's folder)."""
    path = Path(path)
    root = Path(video_root) if video_root else path.parent
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the manifest ({one_line(err)})") from None
    rows = _rows(path, text)
    samples = [_sample(path, where, row, root) for where, row in rows]
    if not samples:
        raise InputError(f"{path}: the manifest lists no samples")
    return samples


def _rows(path: Path, text: str) -> list[tuple[str, object]]:
    """(where, row) pairs: `row 3` in a JSON list, `line 7` in JSON lines."""
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: not valid JSON ({one_line(err)})") from None
        return [(f"row {i}", row) for i, row in enumerate(data, start=1)]
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append((f"line {number}", json.loads(line)))
            except json.JSONDecodeError as err:
                raise InputError(f"{path}: line {number}: not valid JSON ({one_line(err)}); a chat manifest is a "
                                 "JSON list or JSON lines of samples") from None
    if len(rows) == 1 and not isinstance(rows[0][1], dict):
        raise InputError(f"{path}: a chat manifest is a JSON list or JSON lines of samples, not a "
                         f"{type(rows[0][1]).__name__}")
    return rows


def _sample(path: Path, where: str, row: object, root: Path) -> ChatSample:
    def bad(reason: str) -> InputError:
        return InputError(f"{path}: {where}: {reason}; expected {{\"id\", \"video\", \"conversations\": "
                          "[{\"from\": \"human\", \"value\": \"<video>\\nQ\"}, {\"from\": \"gpt\", \"value\": \"A\"}]}")

    if not isinstance(row, dict):
        raise bad(f"a {type(row).__name__}, not a sample")
    missing = [k for k in ("id", "video", "conversations") if k not in row]
    if missing:
        raise bad(f"lacks {', '.join(missing)}")
    if not isinstance(row["video"], str) or not row["video"]:
        raise bad("`video` is not a path")
    turns = row["conversations"]
    if not isinstance(turns, list) or not turns:
        raise bad("`conversations` is not a non-empty list")
    for i, turn in enumerate(turns):
        if not (isinstance(turn, dict) and isinstance(turn.get("value"), str) and turn.get("from") == ROLES[i % 2]):
            raise bad(f"turn {i + 1} is not {{\"from\": \"{ROLES[i % 2]}\", \"value\": text}} (turns alternate "
                      "human, gpt)")
    values = [t["value"] for t in turns] + ([""] if len(turns) % 2 else [])  # a last question without an answer
    pairs = tuple(zip(values[0::2], values[1::2]))
    problem = None
    if VIDEO not in pairs[0][0]:
        problem = f"no {VIDEO}"  # in the first question, where the video goes
    elif not all(answer.strip() for _, answer in pairs):
        problem = "empty answer"
    first = pairs[0][0].replace(VIDEO + "\n", "", 1).replace(VIDEO, "", 1).strip()
    video = Path(row["video"])
    return ChatSample(str(row["id"]), str(video if video.is_absolute() else root / video),
                      ((first, pairs[0][1]),) + pairs[1:], problem)


class Skips:
    """Samples skipped during training: every skip counted by reason, each (sample, reason) logged once."""

    def __init__(self):
        self.counts: Counter[str] = Counter()
        self._logged: set[tuple[str, str]] = set()

    def add(self, sample_id: str, reason: str, detail: str = "") -> None:
        self.counts[reason] += 1
        if (sample_id, reason) not in self._logged:
            self._logged.add((sample_id, reason))
            log.warning("sample %s skipped (%s%s); logged once, counted each time", sample_id, reason,
                        f": {detail}" if detail else "")

    @property
    def total(self) -> int:
        return sum(self.counts.values())
