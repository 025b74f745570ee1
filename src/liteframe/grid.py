"""Token grids: what a ViT gives per video, in the layout reducers and encoders share."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TokenGrid:
    """Patch tokens `(B, T, H, W, C)` and, for ViTs that have one, a CLS token per frame `(B, T, C)`.

    With the ViT's attention (`Teacher(pixels, attention=True)`, for the reducers that `needs_attention`):
    `scores (B, T, H, W)`, the last layer's CLS attention row over the patches (softmax over all tokens, CLS
    included), and `keys (B, T, H, W, Ck)`, that layer's keys at the patches.

    `levels`: further grids shaped like `patches` that must follow every reducer's decision on the patches (Qwen3-VL's
    DeepStack features of intermediate ViT blocks, which its LLM adds at the visual tokens' places): a grid reducer
    pools them with the patches' weights or positions, a set reducer applies its `Merge` to them."""

    patches: torch.Tensor
    cls: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    keys: torch.Tensor | None = None
    levels: tuple[torch.Tensor, ...] = ()

    def __post_init__(self):
        if self.patches.ndim != 5:
            raise ValueError(f"patches must be (B, T, H, W, C), got shape {tuple(self.patches.shape)}")
        if self.cls is not None and self.cls.shape != self.patches.shape[:2] + self.patches.shape[-1:]:
            raise ValueError(
                f"cls must be (B, T, C) = {tuple(self.patches.shape[:2] + self.patches.shape[-1:])} "
                f"to match patches {tuple(self.patches.shape)}, got {tuple(self.cls.shape)}"
            )
        if self.scores is not None and self.scores.shape != self.patches.shape[:4]:
            raise ValueError(f"scores must be (B, T, H, W) = {tuple(self.patches.shape[:4])} to match patches "
                             f"{tuple(self.patches.shape)}, got {tuple(self.scores.shape)}")
        if self.keys is not None and (self.keys.ndim != 5 or self.keys.shape[:4] != self.patches.shape[:4]):
            raise ValueError(f"keys must be (B, T, H, W, Ck) with (B, T, H, W) = {tuple(self.patches.shape[:4])} "
                             f"of patches {tuple(self.patches.shape)}, got {tuple(self.keys.shape)}")
        self.levels = tuple(self.levels)
        _check_levels(self.levels, self.patches, "patches")

    @property
    def shape(self) -> torch.Size:
        return self.patches.shape

    @property
    def queries(self) -> torch.Tensor:
        """`(B, T, C)`: the frame's CLS, or its mean patch token for ViTs without one (SPEC 3)."""
        return self.cls if self.cls is not None else self.patches.mean(dim=(2, 3))

    @classmethod
    def from_hf(cls, hidden: torch.Tensor, frames: int, has_cls: bool = True) -> TokenGrid:
        """`(B*T, [1 +] H*W, C)` -> grid with `T = frames`; the patch grid must be square."""
        bt, n, c = hidden.shape
        if bt % frames:
            raise ValueError(f"hidden states {tuple(hidden.shape)}: {bt} rows is not a multiple of {frames} frames")
        side = int(round((n - has_cls) ** 0.5))
        if side * side != n - has_cls:
            raise ValueError(f"hidden states {tuple(hidden.shape)}: {n - has_cls} patch tokens is not a square grid")
        hidden = hidden.view(bt // frames, frames, n, c)
        cls_tok = hidden[:, :, 0] if has_cls else None
        return cls(hidden[:, :, int(has_cls):].reshape(bt // frames, frames, side, side, c), cls_tok)

    def tokens(self) -> torch.Tensor:
        """`(B, T, H, W, C) -> (B, T*H*W, C)` in time-then-raster order."""
        b, c = self.patches.shape[0], self.patches.shape[-1]
        return self.patches.reshape(b, -1, c)

    def stacked(self) -> torch.Tensor:
        """`(B, (1+L)*T, H, W, C)`: the patches, then each of the L levels, along time (CTD's tokens and targets,
        which compare a student's levels to its teacher's as more tokens)."""
        return torch.cat([self.patches, *self.levels], dim=1)

    def pixel_shuffle(self) -> TokenGrid:
        """`(B, T, H, W, C) -> (B, T, H/2, W/2, 4C)`, InternVL's channel order; CLS tiled 4x so that
        `<cls, token>` still sums the CLS's dot products with the four merged patches. Scores of the four merged
        patches add up (the attention the CLS pays the merged token), and their keys are concatenated in the
        patches' channel order (`(B, T, H/2, W/2, 4Ck)`: the cosine of two merged tokens' keys weighs the four
        patch pairs by their key norms); levels are shuffled as the patches."""
        return TokenGrid(
            pixel_shuffle(self.patches),
            None if self.cls is None else self.cls.repeat(1, 1, 4),
            None if self.scores is None else pixel_shuffle(self.scores[..., None]).sum(-1),
            None if self.keys is None else pixel_shuffle(self.keys),
            tuple(pixel_shuffle(level) for level in self.levels),
        )


def pixel_shuffle(x: torch.Tensor) -> torch.Tensor:
    """`(..., H, W, C) -> (..., H/2, W/2, 4C)`: channel block `(dh, dw)` holds patch `(2i + dh, 2j + dw)`,
    the order of `transformers`' `InternVLModel.pixel_shuffle` with ratio 0.5."""
    *lead, h, w, c = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"pixel shuffle needs an even grid, got H x W = {h} x {w} in shape {tuple(x.shape)}")
    x = x.reshape(*lead, h // 2, 2, w // 2, 2, c).transpose(-4, -3)
    return x.reshape(*lead, h // 2, w // 2, 4 * c)


@dataclass
class TokenSet:
    """What a set reducer keeps of a grid `(B, T, H, W, C)`: `tokens (B, N, C)` in original (time, then raster)
    order, with each token's grid `step (B, N)` (a frame, or a frame pair for Qwen2.5-VL) and raster position
    `pos (B, N)` (`h*W + w`) in that step. The prompt gives one slot per step (or per clip) holding `counts()`
    tokens; FastVID's counts vary by step."""

    tokens: torch.Tensor
    step: torch.Tensor
    pos: torch.Tensor
    steps: int  # T of the grid the tokens came from
    levels: tuple[torch.Tensor, ...] = ()  # the grid's levels `(B, N, C)`, merged as the tokens were

    def __post_init__(self):
        if self.tokens.ndim != 3 or self.step.shape != self.tokens.shape[:2] or self.pos.shape != self.step.shape:
            raise ValueError(f"TokenSet: tokens (B, N, C), step and pos (B, N) disagree: {tuple(self.tokens.shape)}, "
                             f"{tuple(self.step.shape)}, {tuple(self.pos.shape)}")
        self.levels = tuple(self.levels)
        _check_levels(self.levels, self.tokens, "tokens")

    def counts(self) -> torch.Tensor:
        """`(B, T)` tokens kept per grid step."""
        ones = torch.ones_like(self.step)
        return torch.zeros(self.step.shape[0], self.steps, dtype=torch.long, device=self.step.device).scatter_add_(
            1, self.step, ones)


def _check_levels(levels: tuple[torch.Tensor, ...], like: torch.Tensor, name: str) -> None:
    for level in levels:
        if level.shape != like.shape:
            raise ValueError(f"a level {tuple(level.shape)} must have the shape of the {name} {tuple(like.shape)}")
