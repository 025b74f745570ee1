"""Video input: decoding (`open_video`), frame sampling (`sample_frames`), preprocessing (`preprocess`,
`normalize`), and the calls that turn a file into model-ready pixels: `load_video` at once, `stream_video` in chunks
decoded in the background."""
from __future__ import annotations

from liteframe.video.decode import VideoReader, open_video
from liteframe.video.info import Frames, VideoDecodeError, VideoDecodeWarning, VideoInfo
from liteframe.video.preprocess import RESIZERS, normalize, preprocess
from liteframe.video.sampling import SAMPLERS, FrameSample, TrainSampler, sample_frames
from liteframe.video.stream import Chunk, VideoStream, load_video, stream_video

__all__ = ["RESIZERS", "SAMPLERS", "Chunk", "FrameSample", "Frames", "TrainSampler", "VideoDecodeError",
           "VideoDecodeWarning", "VideoInfo", "VideoReader", "VideoStream", "load_video", "normalize", "open_video",
           "preprocess", "sample_frames", "stream_video"]
