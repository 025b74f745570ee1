"""The reads of a training sample's frames (LMA's and CTD's alike): the sample is used when every requested frame
decoded and skipped when some did not, and the warnings of its reads are shown once per job, not once per sample."""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

from liteframe.video.info import VideoDecodeError, VideoDecodeWarning


class SampleReads:
    """`with reads():` around the reads of one sample. A `VideoDecodeWarning` that missed requested frames (they
    repeat another: decoding failed where they lie) becomes a `VideoDecodeError`, the sample's skip; one that missed
    none (decoding failed between the frames read: `ask` answers on such a video too) passes. Every warning that
    passes is shown once per cause (the line that warns) over this object's life, a job's: the same warning for
    every sample and step (a reducer padding each frame size's grid) says nothing new, and recording the block's
    warnings resets Python's own once-per-place memory, which would show it every time."""

    def __init__(self):
        self.shown: set[tuple] = set()

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        missed = [w.message for w in caught if isinstance(w.message, VideoDecodeWarning) and w.message.missed]
        if missed:
            raise VideoDecodeError(str(missed[0]))
        for w in caught:
            cause = (w.category, w.filename, w.lineno)
            if cause not in self.shown:
                self.shown.add(cause)
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
