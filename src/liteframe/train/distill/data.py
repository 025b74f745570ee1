"""Training data: a manifest of videos -> clips of T frames (T/4 dense 4-frame clips), decoded in DataLoader workers.

Which frames a video gives in an epoch is a pure function of (seed, view, video index), where view = epoch for
targets computed on the fly and epoch % cache_views for cached targets. So the clip a cached target was computed on
is found again exactly, and a resumed run sees the same clips as an uninterrupted one, whatever the worker count.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from liteframe.compression import DEFAULT
from liteframe.errors import InputError
from liteframe.video import FrameSample, SampleReads, TrainSampler, VideoDecodeError, VideoInfo, normalize, \
    open_video


@dataclass(frozen=True)
class ManifestEntry:
    video: str
    start: float | None = None
    end: float | None = None


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """JSON lines `{"video": path, "start": s, "end": s}` (start/end optional, seconds); relative paths are
    relative to the manifest. Blank lines are ignored."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise InputError(f"{path}: cannot read the manifest ({err.strerror or err})") from err
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            video = Path(row["video"])
            start, end = row.get("start"), row.get("end")
            if start is not None and end is not None and not float(end) > float(start) >= 0:
                raise ValueError(f"need 0 <= start < end, got start={start}, end={end}")
            entries.append(ManifestEntry(str(video if video.is_absolute() else path.parent / video),
                                         None if start is None else float(start), None if end is None else float(end)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise InputError(f"{path}:{number}: not a manifest line {{\"video\": path, \"start\": s, \"end\": s}} "
                             f"({err})") from err
    if not entries:
        raise InputError(f"{path}: the manifest lists no videos")
    return entries


def manifest_digest(entries: list[ManifestEntry]) -> str:
    """sha256 of the manifest's content, so a target cache knows which videos its indices refer to."""
    return hashlib.sha256(json.dumps([dataclasses.astuple(e) for e in entries]).encode()).hexdigest()


class ClipDataset(Dataset):
    """Item i -> `{"pixels": float (T, 3, S, S), "index": int, "indices": int64 (T,), "skipped": [reasons]}`.

    A video that fails to decode (or misses some of the clip's frames: `SampleReads`) is skipped: the next video in
    the manifest stands in, and the failure travels with the item so the training loop can count and log it."""

    def __init__(self, entries: list[ManifestEntry], frames: int, size: int, fps: tuple[float, float], seed: int):
        self.entries, self.size = entries, size
        self.sampler = TrainSampler(DEFAULT.clip_frames(), budgets=(frames,), rates=tuple(fps), seed=seed)
        self.view = 0
        self.reads = SampleReads()

    def set_view(self, view: int) -> None:
        """Which clip of every video this epoch reads (call before creating the epoch's DataLoader iterator)."""
        self.view = view

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return first_decodable(self.item, i, len(self.entries))

    def item(self, i: int) -> dict[str, Any]:
        """Video i's item for this view, with no stand-in; VideoDecodeError if it fails."""
        pixels, sample = self.load(i, self.view)
        return {"pixels": pixels, "index": i, "indices": torch.from_numpy(sample.indices)}

    def load(self, i: int, view: int) -> tuple[torch.Tensor, FrameSample]:
        """Decode video i's clip for `view` -> (float (T, 3, S, S), its FrameSample); VideoDecodeError if it fails."""
        entry = self.entries[i]
        with self.reads(), open_video(entry.video) as reader:  # frames that did not decode: VideoDecodeError
            sample = clip_sample(self.sampler, reader.info, entry, key=view * len(self.entries) + i)
            frames = reader.read(sample.timestamps, size=self.size)  # ask's own resize ("exact")
        return normalize(frames.data), sample


def first_decodable(item: Callable[[int], dict[str, Any]], i: int, n: int) -> dict[str, Any]:
    """`item(i)`, or when it raises VideoDecodeError the next index's that does (wrapping at `n`), with the reasons
    for the ones skipped under `"skipped"`."""
    skipped = []
    for k in range(n):
        try:
            return {**item((i + k) % n), "skipped": skipped}
        except VideoDecodeError as err:
            skipped.append(str(err))
    raise InputError(f"no video in the manifest decodes ({n} tried; first: {skipped[0]})")


def clip_sample(sampler: TrainSampler, info: VideoInfo, entry: ManifestEntry, key: int) -> FrameSample:
    """The training clip of a video, inside the manifest's [start, end] window when it gives one."""
    if entry.start is None and entry.end is None:
        return sampler(info, key)
    first = round((entry.start or 0.0) * info.fps)
    last = min(info.num_frames, round(entry.end * info.fps)) if entry.end is not None else info.num_frames
    if last <= first:
        raise VideoDecodeError(f"{entry.video}: window {entry.start}-{entry.end}s lies outside the video "
                               f"({info.duration:.2f}s)")
    sample = sampler(dataclasses.replace(info, frame_count=last - first), key)
    indices = sample.indices + first
    return FrameSample(indices, indices / info.fps, sample.repeated)


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of items; skipped-video reasons are concatenated."""
    batch = {"pixels": torch.stack([it["pixels"] for it in items]),
             "index": torch.tensor([it["index"] for it in items]),
             "indices": torch.stack([it["indices"] for it in items]),
             "skipped": [reason for it in items for reason in it["skipped"]]}
    if "target" in items[0]:
        batch["target"] = torch.stack([it["target"] for it in items])
    return batch
