"""Chat manifests for LMA, in the layouts the video instruction data is published in.

A JSON list, or JSON lines, of samples in either layout:
- conversations (LLaVA-Video-178K, InternVL's fine-tuning data): `{"id", "video": path, "conversations":
  [{"from": "human", "value": "<video>\\nQuestion"}, {"from": "gpt", "value": "Answer"}, ...]}`; turns alternate
  human / gpt, and the first question holds the placeholder of the video. LLaVA-Video-178K is written for
  LLaVA-NeXT's trainer, which knows only `<image>` (its data loader reads a sample with a `video` through the same
  `<image>` token), so `<image>` is the video's placeholder as well as `<video>`.
- captions (ShareGPT4Video): `{"video_id", "video_path": path, "captions": [{"idx": "0", "content": ...}, ...,
  {"idx": "-1", "content": caption of the whole video}]}`: one turn, `CAPTION_PROMPT` answered by the whole-video
  caption (the per-clip captions describe stretches the sampled frames need not show).

A file that is not such a list, or a row in neither layout, is an input error (one line naming the file and row).
Rows that are well formed but unusable (no placeholder, an empty answer, no whole-video caption) are not errors:
training skips them and counts them, as it does videos that fail to decode.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from liteframe.errors import InputError, one_line

PLACEHOLDERS = ("<video>", "<image>")  # the video's place in the first question, in order of preference
ROLES = ("human", "gpt")
CAPTION_PROMPT = "Describe this video in detail."
LAYOUTS = ('{"id", "video", "conversations": [{"from": "human", "value": "<video>\\nQ"}, {"from": "gpt", "value": '
           '"A"}]} or {"video_id", "video_path", "captions": [{"idx": "-1", "content": "caption"}]}')


@dataclass(frozen=True)
class ChatSample:
    """One row: `turns` are (question, answer) pairs, the placeholder taken out of the first question; `problem`
    says why the row cannot train (None when it can)."""

    id: str
    video: str
    turns: tuple[tuple[str, str], ...]
    problem: str | None = None


def read_chat_manifest(path: str | Path, video_root: str | Path | None = None) -> list[ChatSample]:
    """A JSON or JSONL chat manifest -> samples; a relative video path resolves against `video_root` (default: the
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
        return InputError(f"{path}: {where}: {reason}; expected {LAYOUTS}")

    if not isinstance(row, dict):
        raise bad(f"a {type(row).__name__}, not a sample")
    caption = "captions" in row and "conversations" not in row
    keys = ("video_id", "video_path", "captions") if caption else ("id", "video", "conversations")
    missing = [k for k in keys if k not in row]
    if missing:
        raise bad(f"lacks {', '.join(missing)}")
    video = row[keys[1]]
    if not isinstance(video, str) or not video:
        raise bad(f"`{keys[1]}` is not a path")
    video = Path(video)
    video = str(video if video.is_absolute() else root / video)
    if caption:
        return _caption_sample(str(row["video_id"]), video, row["captions"], bad)
    turns = row["conversations"]
    if not isinstance(turns, list) or not turns:
        raise bad("`conversations` is not a non-empty list")
    for i, turn in enumerate(turns):
        if not (isinstance(turn, dict) and isinstance(turn.get("value"), str) and turn.get("from") == ROLES[i % 2]):
            raise bad(f"turn {i + 1} is not {{\"from\": \"{ROLES[i % 2]}\", \"value\": text}} (turns alternate "
                      "human, gpt)")
    values = [t["value"] for t in turns] + ([""] if len(turns) % 2 else [])  # a last question without an answer
    pairs = tuple(zip(values[0::2], values[1::2]))
    placeholder = next((p for p in PLACEHOLDERS if p in pairs[0][0]), None)
    problem = None
    if placeholder is None:
        problem = "no <video> or <image>"  # in the first question, where the video goes
    elif not all(answer.strip() for _, answer in pairs):
        problem = "empty answer"
    first = pairs[0][0]
    if placeholder:  # the video goes first, as LLaVA-NeXT's trainer moves it
        first = first.replace(placeholder + "\n", "", 1).replace(placeholder, "", 1).strip()
    return ChatSample(str(row["id"]), video, ((first, pairs[0][1]),) + pairs[1:], problem)


def _caption_sample(sample_id: str, video: str, captions: object, bad) -> ChatSample:
    if not (isinstance(captions, list) and all(isinstance(c, dict) and isinstance(c.get("content"), str)
                                               for c in captions)):
        raise bad("`captions` is not a list of {\"idx\", \"content\": text}")
    whole = next((c["content"] for c in captions if str(c.get("idx")) == "-1"), "")
    return ChatSample(sample_id, video, ((CAPTION_PROMPT, whole),),
                      None if whole.strip() else "no whole-video caption (idx -1)")
