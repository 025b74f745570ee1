"""`liteframe frames`: a contact sheet of the sampled frames with their timestamps, to see what the model sees."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from liteframe.errors import InputError
from liteframe.video.decode import open_video
from liteframe.video.sampling import sample_frames

THUMB_WIDTH = 240
LABEL_HEIGHT = 16
MIN_COLUMNS = 4


def contact_sheet(path: str | os.PathLike, num_frames: int = 16, strategy: str = "clips",
                  out: str | os.PathLike = "sheet.png", **sampling_kw) -> Image.Image:
    """Sample, decode and tile the frames (whole clips per row, at least 4 frames, so each row of a `clips` sheet of
    4-frame clips is one clip), each labelled with its frame index and time; saves to `out` and returns the image.
    `sampling_kw` go to the strategy (`clip_frames` for `clips`)."""
    _check_out(Path(out))  # before decoding, which is the slow part
    with open_video(path) as reader:
        sample = sample_frames(reader.info, num_frames, strategy, **sampling_kw)
        frames = reader.read(sample.timestamps)
    h, w = frames.data.shape[-2:]
    thumb = (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w)))
    clip = sampling_kw.get("clip_frames", 1)
    columns = clip * -(-MIN_COLUMNS // clip)
    rows = -(-len(sample) // columns)
    sheet = Image.new("RGB", (columns * thumb[0], rows * (thumb[1] + LABEL_HEIGHT)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (frame, index, t) in enumerate(zip(frames.data.permute(0, 2, 3, 1).numpy(), sample.indices,
                                              frames.pts.numpy())):
        x, y = (k % columns) * thumb[0], (k // columns) * (thumb[1] + LABEL_HEIGHT)
        sheet.paste(Image.fromarray(np.ascontiguousarray(frame)).resize(thumb, Image.BILINEAR), (x, y + LABEL_HEIGHT))
        draw.text((x + 4, y + 2), f"#{index}  {t:.2f}s", fill="black")
    sheet.save(out)
    return sheet


def _check_out(out: Path) -> None:
    folder = out.parent
    if not folder.is_dir():
        raise InputError(f"--out {out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"--out {out}: folder {folder} is not writable")
    if Image.registered_extensions().get(out.suffix.lower()) not in Image.SAVE:
        raise InputError(f"--out {out}: cannot write a {out.suffix or 'suffix-less'} image; use .png or .jpg")


__all__ = ["contact_sheet"]
