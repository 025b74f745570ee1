"""Qwen2.5-VL (native `transformers` format, `model_type` `qwen2_5_vl`) as a `VideoLLM` family: preprocessing,
the backbone the encoder pipeline runs, the prompt layout and the mRoPE positions of its visual tokens.

Qwen's ViT patchifies frame pairs (temporal patch 2, 14 px patches) and its merger turns each 2x2 group of patches
into one LLM token; there is no CLS token. The backbone (`QwenVision`) is the ViT and merger, its grid the merger's
output viewed as `(T/2, H/28, W/28, D_llm)`: Qwen's patch order keeps each 2x2 group contiguous and the groups in
raster order. So the pipeline's pixel shuffle and projector are identities, a grid step is a frame pair and a
`(4, 2, 2)` block spans 8 frames (`Compression.clip_frames(2)`); grid and set reducers both act on the merged grid.

WAP's query is the frame pair's mean token (SPEC 3: the query of a ViT without CLS), and PruMerge's and FastVID's
per-token score is the same query's softmax over the pair's tokens, with the tokens themselves as keys (the
documented substitute for a CLS attention row and the ViT's keys). It is the default because SPEC 3 names it and it
costs nothing. `attention_scores` gives the alternative FlashVID takes from Qwen's ViT, the attention each merged
token receives in the last ViT block, computed in query chunks without materialising the attention map; it is not
wired into the encoders.

Tokens enter the LLM through `inputs_embeds` at the `<|video_pad|>` run of the checkpoint's chat template, with
position ids liteframe computes (`liteframe.llm.qwen_positions`): no transformers class is patched. There is no
LiteFrame student for Qwen's ViT yet.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision
from transformers.vision_utils import get_vision_window_index

from liteframe.compression import Compression
from liteframe.errors import InputError
from liteframe.grid import TokenGrid
from liteframe.llm.encoders import VisualEncoder, VisualTokens, stage_encoder
from liteframe.llm.qwen_positions import rope_positions, set_positions
from liteframe.video.preprocess import check_frames

FRAMES_PER_STEP = 2  # Qwen2.5-VL's temporal patch: one grid step is a frame pair
PATCH = 14
MERGE = 2
FACTOR = PATCH * MERGE  # sides are multiples of 28
# The pixel budget per frame of transformers' Qwen2-VL video processor (qwen-vl-utils' VIDEO_MIN/MAX_PIXELS).
MIN_PIXELS = 128 * FACTOR * FACTOR
MAX_PIXELS = 768 * FACTOR * FACTOR
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VIDEO_PAD = "<|video_pad|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
_CHUNK = 32  # frames converted to float at once: bounds memory for long 720p videos
_SCORE_ELEMENTS = 1 << 27  # attention scores held at once by `received_attention` (512 MB in float32)


def smart_resize(height: int, width: int, factor: int = FACTOR, min_pixels: int = MIN_PIXELS,
                 max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Qwen's resize rule: sides rounded to multiples of `factor`, then scaled (keeping the aspect ratio) into
    `[min_pixels, max_pixels]`."""
    if not 0 < min_pixels <= max_pixels:
        raise InputError(f"pixel budget [{min_pixels}, {max_pixels}]: need 0 < min_pixels <= max_pixels")
    if min(height, width) < 1 or max(height, width) > 200 * min(height, width):
        raise InputError(f"frame size {height}x{width}: Qwen2.5-VL needs sides >= 1 and an aspect ratio under 200")
    h, w = round(height / factor) * factor, round(width / factor) * factor
    if h * w > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / scale / factor) * factor)
        w = max(factor, math.floor(width / scale / factor) * factor)
    elif h * w < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * scale / factor) * factor, math.ceil(width * scale / factor) * factor
    return h, w


def pair_frames(frames: torch.Tensor) -> torch.Tensor:
    """`(N, ...) -> (N + N % 2, ...)`: an odd count repeats the last frame, as Qwen's processor does, and says so."""
    if len(frames) % FRAMES_PER_STEP == 0:
        return frames
    warnings.warn(f"Qwen2.5-VL reads frame pairs: {len(frames)} frames padded to {len(frames) + 1} by repeating "
                  "the last frame", stacklevel=2)
    return torch.cat([frames, frames[-1:]])


def preprocess_qwen(frames: torch.Tensor, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 `(N, 3, H, W)` -> float32 `(N + N % 2, 3, H', W')`, `(H', W') = smart_resize(H, W)`: bicubic resize
    (antialiased, rounded to uint8 as the processor's uint8 output is), CLIP mean/std; an odd count repeats the last
    frame (`pair_frames`)."""
    check_frames(frames, "preprocess_qwen")
    frames = pair_frames(frames)
    device = torch.device(device) if device is not None else frames.device
    height, width = smart_resize(*frames.shape[-2:], min_pixels=min_pixels, max_pixels=max_pixels)
    mean = torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1)
    out = torch.empty(len(frames), 3, height, width, device=device)
    for start in range(0, len(frames), _CHUNK):
        x = frames[start:start + _CHUNK].to(device, non_blocking=True).float()
        x = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
        out[start:start + _CHUNK] = (x.clamp_(0, 255).round_() / 255 - mean) / std
    return out


def patchify(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """`(2T, 3, H, W)` -> rows `(T*h*w, 3*2*14*14)` ordered (step, merged row, merged column, 2x2 group) and the
    grid `(T, h, w)` in patches: the processor's layout, which the ViT and its merger assume."""
    n, c, height, width = x.shape
    t, h, w = n // FRAMES_PER_STEP, height // PATCH, width // PATCH
    x = x.view(t, FRAMES_PER_STEP, c, h // MERGE, MERGE, PATCH, w // MERGE, MERGE, PATCH)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(t * h * w, c * FRAMES_PER_STEP * PATCH * PATCH), (t, h, w)


def video_grid(visual: nn.Module, pixels: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Qwen's vision model (`model.model.visual`), pixel rows and patch grid `(T, h, w)` -> merged tokens
    `(T, h/2, w/2, D_llm)`: the ViT and merger's output (`get_video_features(...).pooler_output`) viewed as a grid."""
    out = visual(pixels.to(visual.dtype), grid_thw=torch.tensor([grid], device=pixels.device))
    t, h, w = grid
    return out.pooler_output.view(t, h // MERGE, w // MERGE, -1)


def attention_scores(visual: nn.Module, pixels: torch.Tensor, grid: tuple[int, int, int],
                     chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Merged tokens `(T, h/2, w/2, D_llm)` and the attention each receives in the last ViT block `(T, h/2, w/2)`,
    the kind of score FlashVID takes from Qwen's ViT; the aggregation is ours: summed over the queries of its frame
    pair and over its 4 patches, averaged over heads.
    The last block must be a full-attention one (every released Qwen2.5-VL's is)."""
    last = len(visual.blocks) - 1
    if last not in visual.fullatt_block_indexes:
        raise ValueError(f"the last ViT block ({last}) uses windowed attention; attention_scores needs a full one")
    seen = {}
    hook = visual.blocks[last].attn.register_forward_pre_hook(
        lambda module, args, kwargs: seen.update(x=args[0] if args else kwargs["hidden_states"],
                                                 rope=kwargs["position_embeddings"]), with_kwargs=True)
    try:
        tokens = video_grid(visual, pixels, grid)
    finally:
        hook.remove()
    received = received_attention(visual.blocks[last].attn, seen["x"], seen["rope"], grid[0], chunk)
    # The ViT runs in window order, in whole 2x2 groups: sum each group, then undo the window permutation.
    window, _ = get_vision_window_index(torch.tensor([grid]), MERGE, visual.window_size, visual.patch_size)
    merged = received.view(-1, MERGE * MERGE).sum(1)[torch.argsort(window.to(received.device))]
    return tokens, merged.view(tokens.shape[:3])


def received_attention(attn, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], steps: int,
                       chunk: int | None = None) -> torch.Tensor:
    """The attention block `attn`'s input `(N, C)` over `steps` equal frame pairs -> `(N,)` attention each token
    receives, summed over its pair's queries, averaged over heads; `chunk` query rows per pair at a time (default:
    as many as keep the scores within `_SCORE_ELEMENTS`)."""
    n = x.shape[0]
    chunk = chunk or max(1, _SCORE_ELEMENTS // (n * attn.num_heads))
    q, k = attn.qkv(x).reshape(n, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)[:2]
    q, k = apply_rotary_pos_emb_vision(q, k, *rope)
    q, k = (z.float().view(steps, n // steps, attn.num_heads, -1).transpose(1, 2) for z in (q, k))  # (T, H, n, d)
    received = torch.zeros(steps, n // steps, device=x.device)
    for start in range(0, n // steps, chunk):  # T x heads x chunk x n/T scores at a time
        probs = (q[:, :, start:start + chunk] @ k.transpose(-1, -2) * attn.scaling).softmax(-1)
        received += probs.sum(2).mean(1)
    return received.reshape(n)


def seconds_per_step(timestamps) -> float:
    """Seconds one grid step (frame pair) spans: 2 x the mean spacing of the sampled frames (Qwen's
    `second_per_grid_ts = temporal_patch_size / fps`); 1 for a single frame."""
    if len(timestamps) < 2:
        return 1.0
    return FRAMES_PER_STEP * float(timestamps[-1] - timestamps[0]) / (len(timestamps) - 1)


def query_scores(patches: torch.Tensor) -> torch.Tensor:
    """`(B, T, H, W, C) -> (B, T, H, W)`: the softmax over each step's tokens of their dot product with the step's
    mean token (its WAP query) over sqrt(C), in float32: the per-token score PruMerge and FastVID read on Qwen."""
    b, t, h, w, c = patches.shape
    x = patches.float()
    logits = torch.einsum("bthwc,btc->bthw", x, x.mean(dim=(2, 3)) / math.sqrt(c))
    return logits.reshape(b, t, h * w).softmax(-1).view(b, t, h, w)


class QwenVision(nn.Module):
    """Qwen's ViT and merger as the pipeline's backbone: normalised frames `(1, T, 3, H, W)` (T even, sides multiples
    of 28) -> `TokenGrid (1, T/2, H/28, W/28, D_llm)`. `attention`: the grid also carries `query_scores` and the
    tokens as keys (the substitute for a CLS attention row; see the module docstring)."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    def forward(self, pixels: torch.Tensor, attention: bool = False) -> TokenGrid:
        if pixels.shape[0] != 1:
            raise ValueError(f"QwenVision encodes one video at a time, got a batch of {pixels.shape[0]}")
        rows, grid = patchify(pixels[0])
        patches = video_grid(self.visual, rows, grid)[None]
        return TokenGrid(patches, scores=query_scores(patches), keys=patches) if attention else TokenGrid(patches)


class QwenEncoder(VisualEncoder):
    """The pipeline in front of Qwen2.5-VL: frames resized by `smart_resize` within the pixel budget, in pairs."""

    min_pixels, max_pixels = MIN_PIXELS, MAX_PIXELS

    def frame_size(self, size: tuple[int, int] | None = None) -> tuple[int, int]:
        """`smart_resize` of `size`; unknown: a square frame filling the pixel budget (the most tokens a frame of
        ordinary shape gives)."""
        side = math.isqrt(self.max_pixels)
        return smart_resize(*(size or (side, side)), min_pixels=self.min_pixels, max_pixels=self.max_pixels)

    def preprocess(self, frames: torch.Tensor, device: torch.device) -> torch.Tensor:
        return preprocess_qwen(frames, self.min_pixels, self.max_pixels, device)[None]


class Qwen25VL:
    """Qwen2.5-VL. `Qwen2_5_VLProcessor` expands the template's `<|vision_start|><|video_pad|><|vision_end|>` into
    one run of `<|video_pad|>`, one per merged token, with no frame labels (time enters through the positions);
    liteframe gives each slot its count of pads inside that one run, so the prompt is the processor's."""

    model_type = "qwen2_5_vl"
    checkpoint_class = Qwen2_5_VLForConditionalGeneration
    frames_per_step = FRAMES_PER_STEP

    def check_tokenizer(self, tokenizer, model) -> None:
        """One line unless the tokenizer has Qwen's vision tokens and its `<|video_pad|>` is the model's."""
        vocab = tokenizer.get_vocab()
        missing = [t for t in (VISION_START, VIDEO_PAD, VISION_END) if t not in vocab]
        if missing:
            raise InputError(f"tokenizer of {tokenizer.name_or_path or 'the model'} has no {', '.join(missing)}: "
                             "not a Qwen2.5-VL checkpoint")
        if self.context_id(tokenizer) != model.config.video_token_id:
            raise InputError(f"tokenizer's {VIDEO_PAD} id {self.context_id(tokenizer)} is not the model's "
                             f"video_token_id {model.config.video_token_id}: tokenizer and weights come from "
                             "different checkpoints")

    def video_placeholder(self, tokenizer) -> str:
        return VISION_START + VIDEO_PAD + VISION_END

    def context_token(self, tokenizer) -> str:
        return VIDEO_PAD

    def context_id(self, tokenizer) -> int:
        return tokenizer.convert_tokens_to_ids(VIDEO_PAD)

    def end_id(self, tokenizer) -> int:
        return tokenizer.convert_tokens_to_ids(VISION_END)

    def video_text(self, tokenizer, labels: Sequence[str], slot_text: Sequence[str | None] | None = None) -> str:
        """The video as one run, a pad per slot (repeated later); slot texts (e.g. subtitles) go on lines before
        it, since text inside the run would break Qwen's one-video layout."""
        lines = "".join(f"{text}\n" for text in slot_text or [] if text)
        return lines + VISION_START + VIDEO_PAD * len(labels) + VISION_END

    def encoder(self, model, spec: str, compression: Compression | int | str | None = None) -> QwenEncoder:
        """`dense` or a reducer name on the merged grid (a student does not exist for Qwen's ViT yet)."""
        if spec.startswith("student:"):
            raise InputError(f"encoder {spec}: there is no LiteFrame student for Qwen2.5-VL's ViT yet; use dense or "
                             "a reducer")
        visual = model.model.visual
        if visual is None:
            raise InputError("this VideoLLM dropped its vision tower: load it again with from_pretrained")
        return stage_encoder(QwenEncoder, spec, QwenVision(visual), nn.Identity(), compression, FRAMES_PER_STEP,
                             FACTOR, image_size=None, shuffle=False)

    def drop_vision(self, model) -> None:
        model.model.visual = None

    def llm_inputs(self, model, ids: torch.Tensor, visual: VisualTokens,
                   timestamps: Sequence[float]) -> dict[str, torch.Tensor]:
        """Prompt ids `(1, L)` and the video's tokens (sampled at `timestamps`) -> `inputs_embeds (1, L, d)` with
        the tokens in the `<|video_pad|>` run and mRoPE `position_ids (3, 1, L)`: each token keeps its (t, h, w)
        place in the grid it came from, a grid step advancing `tokens_per_second` x its seconds in time ids."""
        embeds = model.get_input_embeddings()(ids)
        is_video = ids == model.config.video_token_id
        embeds = embeds.masked_scatter(is_video[..., None], visual.tokens.to(embeds.dtype))
        seconds = seconds_per_step(timestamps) * visual.step_frames / FRAMES_PER_STEP
        interval = model.config.vision_config.tokens_per_second * seconds
        video = set_positions(visual.frame, visual.pos, visual.grid[2], interval)
        positions, _ = rope_positions(is_video[0], video)
        return {"inputs_embeds": embeds, "position_ids": positions}

    def context_length(self, model) -> int:
        return model.config.text_config.max_position_embeddings
