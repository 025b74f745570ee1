"""Video input: decoding (`open_video`), frame sampling (`sample_frames`), preprocessing (`preprocess`,
`normalize`, `torchvision_bicubic`), the calls that turn a file into model-ready pixels (`load_video` at once,
`stream_video` in chunks decoded in the background), live sources sampled as they arrive (`open_live`), and the
reads of a training sample (`SampleReads`: skipped when requested frames did not decode)."""
from __future__ import annotations

from liteframe.video.decode import VideoReader, open_video
from liteframe.video.info import Frames, VideoDecodeError, VideoDecodeWarning, VideoInfo
from liteframe.video.live import LiveStream, open_live
from liteframe.video.preprocess import RESIZERS, normalize, preprocess
from liteframe.video.reads import SampleReads
from liteframe.video.sampling import SAMPLERS, FrameSample, TrainSampler, sample_frames
from liteframe.video.scale import torchvision_bicubic
from liteframe.video.stream import Chunk, VideoStream, load_video, stream_video

__all__ = ["RESIZERS", "SAMPLERS", "Chunk", "FrameSample", "Frames", "LiveStream", "SampleReads", "TrainSampler",
           "VideoDecodeError", "VideoDecodeWarning", "VideoInfo", "VideoReader", "VideoStream", "load_video",
           "normalize", "open_live", "open_video", "preprocess", "sample_frames", "stream_video", "torchvision_bicubic"]
