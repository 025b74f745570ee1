"""The compression contract (SPEC 3, 4): one value object that every part derives its numbers from.

A `Compression` is a block `(t, h, w)` over a ViT's token grid. Grid reducers pool these blocks, the student's
strides multiply to it, CTD distils from WAP with it, the sampler draws clips of `t` grid steps, set reducers keep
`1/ratio` of the tokens, and the prompt gives one slot per clip. A grid step is one frame for InternVL and a frame
pair for Qwen2.5-VL (`frames_per_step`), so the same block spans `t * frames_per_step` frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from liteframe.errors import InputError


@dataclass(frozen=True)
class Compression:
    """Block `(t, h, w)` over the token grid `(T, H, W)`: `ratio = t*h*w` tokens become one."""

    block: tuple[int, int, int]

    def __post_init__(self):
        block = tuple(self.block)
        if len(block) != 3 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in block):
            raise InputError(f"a compression block is three positive integers (t, h, w), got {self.block!r}")
        object.__setattr__(self, "block", block)

    @property
    def ratio(self) -> int:
        return math.prod(self.block)

    @property
    def clip(self) -> int:
        """Grid steps merged in time: the clip length of the sampler, the student and the prompt's slots."""
        return self.block[0]

    def clip_frames(self, frames_per_step: int = 1) -> int:
        """Input frames behind one clip: `t` for InternVL, `2t` for Qwen2.5-VL's frame pairs."""
        return self.clip * frames_per_step

    def budget(self, t: int, h: int, w: int) -> int:
        """Tokens a set reducer keeps of a `(T, H, W)` grid: `ceil(T*H*W / ratio)`, a grid reducer's count whenever
        the grid is whole blocks."""
        return math.ceil(t * h * w / self.ratio)

    def grid_tokens(self, t: int, h: int, w: int) -> int:
        """Tokens a grid reducer gives of a `(T, H, W)` grid, padded to whole blocks (SPEC 3)."""
        bt, bh, bw = self.block
        return math.ceil(t / bt) * math.ceil(h / bh) * math.ceil(w / bw)

    def __str__(self) -> str:
        return f"{self.ratio}x {self.block}"


# Named settings: `--compression 4|16|64` everywhere. 16x is the paper's (SPEC 3).
COMPRESSIONS: dict[int, Compression] = {
    4: Compression((1, 2, 2)),
    16: Compression((4, 2, 2)),
    64: Compression((4, 4, 4)),
}
DEFAULT = COMPRESSIONS[16]


def get_compression(value: int | str | tuple | Compression | None = None) -> Compression:
    """What a user gives (a flag, a config value, a keyword of a public function) -> `Compression`: a named ratio
    (`16`, `"16"`, `"16x"`), a block (`(4, 2, 2)`, `"4,2,2"`), or a `Compression`; None is the default 16x. The
    one place compressions are parsed: everything past the public entry points takes a `Compression`."""
    if value is None:
        return DEFAULT
    if isinstance(value, Compression):
        return value
    if isinstance(value, (tuple, list)):
        return Compression(tuple(value))
    key = str(value).strip().lower().removesuffix("x")
    if key.isdigit() and int(key) in COMPRESSIONS:
        return COMPRESSIONS[int(key)]
    parts = [p.strip() for p in key.strip("()").split(",")]
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return Compression(tuple(int(p) for p in parts))
    raise InputError(f"compression {value!r}: choose {', '.join(map(str, COMPRESSIONS))} or a block t,h,w")
