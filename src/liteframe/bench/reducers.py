"""`liteframe bench reducers`: every reducer on a teacher-sized grid, each beside a plain copy of its input."""
from __future__ import annotations

import math

import torch

from liteframe.compression import Compression, get_compression
from liteframe.devices import resolve_device, resolve_dtype
from liteframe.errors import InputError
from liteframe.grid import TokenGrid
from liteframe.reduce import REDUCERS, get_reducer
from liteframe.timing import median_ms

COLUMNS = ["reducer", "stage", "input", "compression", "LLM tokens", "ms", "copy ms", "x copy"]


def video_grid(frames: int, size: int, channels: int, device: str, dtype: torch.dtype, scenes: int = 4) -> TokenGrid:
    """`(1, frames, size, size, channels)` that looks like video to the reducers: `scenes` static scenes, each
    frame its scene plus noise (neighbouring frames ~0.9 similar), so that FastVID finds realistic segments. The
    attention stands in for the teacher's: scores the CLS's softmax row `<cls, token> / sqrt(C)` over CLS and
    patches, keys the patches themselves."""
    g = torch.Generator(device).manual_seed(0)
    scene = (torch.arange(frames, device=device) * scenes // frames)[None]
    patches = torch.randn(1, frames, size, size, channels, generator=g, device=device, dtype=dtype).mul_(0.3)
    patches += torch.randn(scenes, size, size, channels, generator=g, device=device, dtype=dtype)[scene]
    cls = torch.randn(scenes, channels, generator=g, device=device, dtype=dtype)[scene]
    cls = cls + 0.3 * torch.randn(cls.shape, generator=g, device=device, dtype=dtype)
    logits = torch.cat([cls[..., None, :], patches.flatten(2, 3)], 2).float() @ cls[..., None].float()
    scores = (logits[..., 0] / math.sqrt(channels)).softmax(-1)[..., 1:].view(1, frames, size, size)
    return TokenGrid(patches, cls, scores.to(dtype), patches)


def run(frames: int = 256, size: int = 32, channels: int = 1024, device: str = "cpu", dtype: str | None = None,
        repeats: int = 5, warmup: int = 1, compression: Compression | int | None = None) -> list[dict]:
    """One row per reducer: median ms of `reducer(grid, compression)` and of `grid.patches.clone()` timed beside it.
    Grid reducers see the ViT grid; set reducers its pixel shuffle (`size/2 x size/2 x 4C`), where they sit in
    the InternVL path (the same bytes; the shuffle itself is not timed). LLM tokens: what reaches the projector,
    after the pixel shuffle for grid reducers."""
    if min(frames, size, channels, repeats) < 1 or warmup < 0:
        raise InputError(f"frames {frames}, size {size}, channels {channels} and repeats {repeats} must be positive "
                         f"and warmup {warmup} not negative")
    compression = get_compression(compression)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    grid = video_grid(frames, size, channels, device, dtype)
    shuffled = grid.pixel_shuffle() if size % 2 == 0 else grid
    rows = []
    with torch.inference_mode():
        for name in REDUCERS.names():
            reducer = get_reducer(name)
            subject = grid if reducer.stage == "grid" else shuffled
            copy_ms = median_ms(lambda: subject.patches.clone(), repeats, warmup, device)
            ms = median_ms(lambda: reducer(subject, compression), repeats, warmup, device)
            tokens = reducer.num_tokens(*subject.shape[1:4], compression)
            rows.append({"reducer": name, "stage": reducer.stage, "input": "x".join(map(str, subject.shape[1:])),
                         "compression": str(compression),
                         "LLM tokens": tokens // 4 if reducer.stage == "grid" and shuffled is not grid else tokens,
                         "ms": ms, "copy ms": copy_ms, "x copy": ms / copy_ms})
    return rows
