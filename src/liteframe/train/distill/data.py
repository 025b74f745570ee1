"""Training data: a manifest of videos -> clips of T frames (T/4 dense 4-frame clips; for a Qwen teacher at
16x and 64x, T/8 dense 8-frame clips: the compression's 4 frame pairs), decoded in DataLoader workers.

Which frames a video gives in an epoch is a pure function of (seed, view, video index), where view = epoch for
targets computed on the fly and epoch % cache_views for cached targets. So the clip a cached target was computed on
is found again exactly, and a resumed run sees the same clips as an uninterrupted one, whatever the worker count.

The frames are what `ask` feeds the student of the teacher's family (`frames_config`): InternVL's square (resized by
the decoder, ImageNet's mean and std) for every teacher but Qwen's, whose are its checkpoint processor's pixels at the
student's square (torchvision's resize in uint8, the checkpoint's mean and std).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from liteframe.compression import DEFAULT, Compression
from liteframe.errors import InputError
from liteframe.llm.data import DataConfig, Square
from liteframe.llm.qwen import data_config
from liteframe.llm.qwen3 import data_config as qwen3_data_config
from liteframe.models import Teacher
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


def frames_config(teacher: Teacher, folder: str, size: int) -> DataConfig:
    """The frames CTD reads for `teacher` (loaded from `folder`) and its student, `size` px square: for a Qwen
    checkpoint its processor's (`liteframe.llm.qwen.data_config`, `liteframe.llm.qwen3.data_config`: mean, std and
    frame pairs) at that square, what `ask` feeds its student; for any other teacher InternVL's square."""
    processor = _PROCESSORS.get(teacher.vision.config.model_type)
    if processor is not None:
        return dataclasses.replace(processor(folder), size=Square(size))
    return DataConfig(Square(size))


# a Qwen tower's model_type -> the data config of its checkpoint's processor
_PROCESSORS = {"qwen2_5_vl_vision": data_config, **dict.fromkeys(
    ("qwen3_vl_vision", "qwen3_vl_moe_vision", "qwen3_5_vision", "qwen3_5_moe_vision"), qwen3_data_config)}


def clip_frames(frames_per_step: int, compression: Compression) -> int:
    """Frames of one dense clip of the training sampler: 4 (SPEC 5), or the compression's clip of grid steps of
    `frames_per_step` frames when it is longer (8 frames, 4 pairs, for Qwen2.5-VL at 16x and 64x)."""
    return math.lcm(DEFAULT.clip_frames(), compression.clip_frames(frames_per_step))


def check_clip(teacher: str, frames: int, compression: Compression) -> None:
    """One line, before anything loads, unless `frames` is whole clips for the teacher folder `teacher`."""
    per_step = getattr(Teacher.config_of(teacher), "temporal_patch_size", 1)
    clip = clip_frames(per_step, compression)
    if frames % clip:
        raise InputError(f"frames={frames} must be a multiple of {clip}: the {compression.ratio}x clip of "
                         f"{compression.clip} grid steps of {per_step} frames each (teacher {teacher})")


class ClipDataset(Dataset):
    """Item i -> `{"pixels": float (T, 3, S, S), "index": int, "indices": int64 (T,), "skipped": [reasons]}`.

    `data`: the frames' size and normalisation (None: InternVL's square of `size` px); `clip`: the frames of one
    dense clip (`clip_frames`). A video that fails to decode (or misses some of the clip's frames: `SampleReads`) is
    skipped: the next video in
    the manifest stands in, and the failure travels with the item so the training loop can count and log it."""

    def __init__(self, entries: list[ManifestEntry], frames: int, size: int, fps: tuple[float, float], seed: int,
                 data: DataConfig | None = None, clip: int = DEFAULT.clip_frames()):
        self.entries, self.size, self.data = entries, size, data or DataConfig(Square(size))
        self.sampler = TrainSampler(clip, budgets=(frames,), rates=tuple(fps), seed=seed)
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
            # ask's own front end: resized as decoded ("exact"), or as decoded then by the data config
            frames = reader.read(sample.timestamps, size=self.data.decode_size)
        return (normalize(frames.data) if self.data.decode_size else self.data(frames.data)), sample


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
