"""Video input: decoding (`open_video`), frame sampling (`sample_frames`), preprocessing (`preprocess`), and
`load_video`, the one call that turns a file into model-ready pixels."""
from __future__ import annotations

import os

import torch

from liteframe.video.decode import (DECODERS, Frames, VideoDecodeError, VideoDecodeWarning, VideoInfo, VideoReader,
                                    open_video)
from liteframe.video.preprocess import preprocess
from liteframe.video.sampling import SAMPLERS, FrameSample, TrainSampler, sample_frames


def load_video(path: str | os.PathLike, num_frames: int, strategy: str = "clips", size: int = 448,
               backend: str = "pyav", device: torch.device | str | None = None,
               **sampling_kw) -> tuple[torch.Tensor, FrameSample]:
    """A video file -> (pixels float32 (N, 3, size, size), the FrameSample that chose them). Decodes only the sampled
    frames; `sampling_kw` go to the strategy (e.g. rate=2.0); preprocessing runs on `device` (default CPU)."""
    with open_video(path, backend) as reader:
        sample = sample_frames(reader.info, num_frames, strategy, **sampling_kw)
        frames = reader.read(sample.timestamps)
    return preprocess(frames.data, size, device=device), sample


__all__ = ["DECODERS", "SAMPLERS", "FrameSample", "Frames", "TrainSampler", "VideoDecodeError", "VideoDecodeWarning",
           "VideoInfo", "VideoReader", "load_video", "open_video", "preprocess", "sample_frames"]
