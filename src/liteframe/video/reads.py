"""The reads of a training sample's frames (LMA's and CTD's alike): the sample is used when every requested frame
decoded and skipped when some did not."""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

from liteframe.video.info import VideoDecodeError, VideoDecodeWarning


class SampleReads:
    """`with reads():` around the reads of one sample. A `VideoDecodeWarning` that missed requested frames (they
    repeat another: decoding failed where they lie) becomes a `VideoDecodeError`, the sample's skip; one that missed
    none (decoding failed between the frames read: `ask` answers on such a video too) and any other warning pass."""

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        missed = [w.message for w in caught if isinstance(w.message, VideoDecodeWarning) and w.message.missed]
        if missed:
            raise VideoDecodeError(str(missed[0]))
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
