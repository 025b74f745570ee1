"""Qwen2.5-VL behind liteframe: preprocessing, dense and reduced visual tokens, their mRoPE positions, the prompt,
and generation through `inputs_embeds` (no transformers class is patched).

Qwen's ViT patchifies frame pairs (temporal patch 2, 14 px patches) and its merger turns each 2x2 group of patches
into one LLM token; there is no CLS token. The grid a reducer sees is the merger's output viewed as
`(T/2, H/28, W/28, D_llm)`: Qwen's patch order keeps each 2x2 group contiguous and the groups in raster order, so
a grid step is a frame pair and a `(4, 2, 2)` block spans 8 frames (`Compression.clip_frames(FRAMES_PER_STEP)`).
Grid and set reducers both act there, after the merger; nothing follows them but the LLM.

WAP's query (and PruMerge's and FastVID's per-token score) is the frame pair's mean token (SPEC 3: the query of a
ViT without CLS); it is the default because SPEC 3 names it and it costs nothing. `attention_scores` also gives the
attention each merged token receives in the last ViT block (FlashVID's score for Qwen), computed in query chunks
without materialising the attention map; feeding it to a reducer needs a per-token `scores` input in the reducer
interface, which today takes one query per frame.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision
from transformers.vision_utils import get_vision_window_index

from liteframe.compression import get_compression
from liteframe.errors import InputError, model_type, one_line
from liteframe.grid import TokenGrid, TokenSet
from liteframe.llm.qwen_positions import rope_positions, set_positions, video_positions

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
                    device: torch.device | str | None = None) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """uint8 `(N, 3, H, W)` -> float32 pixel rows `(T*h*w, 3*2*14*14)` in Qwen's patch order and the patch grid
    `(T, h, w)`, T = ceil(N / 2): bicubic resize to `smart_resize` (antialiased, rounded to uint8 as the processor's
    uint8 output is), CLIP mean/std."""
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"preprocess_qwen expects uint8 frames (N, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")
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
    return patchify(out)


def patchify(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """`(2T, 3, H, W)` -> rows `(T*h*w, 3*2*14*14)` ordered (step, merged row, merged column, 2x2 group) and the
    grid `(T, h, w)` in patches: the processor's layout, which the ViT and its merger assume."""
    n, c, height, width = x.shape
    t, h, w = n // FRAMES_PER_STEP, height // PATCH, width // PATCH
    x = x.view(t, FRAMES_PER_STEP, c, h // MERGE, MERGE, PATCH, w // MERGE, MERGE, PATCH)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(t * h * w, c * FRAMES_PER_STEP * PATCH * PATCH), (t, h, w)


def video_grid(model: Qwen2_5_VLForConditionalGeneration, pixels: torch.Tensor,
               grid: tuple[int, int, int]) -> torch.Tensor:
    """Pixel rows and patch grid `(T, h, w)` -> merged tokens `(T, h/2, w/2, D_llm)`: the ViT and merger's output
    (`get_video_features(...).pooler_output`) viewed as a grid."""
    visual = model.model.visual
    out = visual(pixels.to(visual.dtype), grid_thw=torch.tensor([grid], device=pixels.device))
    t, h, w = grid
    return out.pooler_output.view(t, h // MERGE, w // MERGE, -1)


def attention_scores(model: Qwen2_5_VLForConditionalGeneration, pixels: torch.Tensor, grid: tuple[int, int, int],
                     chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Merged tokens `(T, h/2, w/2, D_llm)` and the attention each receives in the last ViT block `(T, h/2, w/2)`,
    the kind of score FlashVID takes from Qwen's ViT; the aggregation is ours: summed over the queries of its frame
    pair and over its 4 patches, averaged over heads.
    The last block must be a full-attention one (every released Qwen2.5-VL's is)."""
    visual = model.model.visual
    last = len(visual.blocks) - 1
    if last not in visual.fullatt_block_indexes:
        raise ValueError(f"the last ViT block ({last}) uses windowed attention; attention_scores needs a full one")
    seen = {}
    hook = visual.blocks[last].attn.register_forward_pre_hook(
        lambda module, args, kwargs: seen.update(x=args[0] if args else kwargs["hidden_states"],
                                                 rope=kwargs["position_embeddings"]), with_kwargs=True)
    try:
        tokens = video_grid(model, pixels, grid)
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


@dataclass
class QwenVideo:
    """What the LLM reads of one video: `tokens (N, D_llm)` in prompt order and their mRoPE ids `(3, N)` relative
    to the video's first position."""

    tokens: torch.Tensor
    positions: torch.Tensor


def encode_video(model: Qwen2_5_VLForConditionalGeneration, pixels: torch.Tensor, grid: tuple[int, int, int],
                 seconds_per_step: float, reducer=None, compression=None) -> QwenVideo:
    """Pixel rows (`preprocess_qwen`) -> `QwenVideo`, dense or through `reducer` on the merged grid.
    Grid reducers give a reduced grid `(t', h', w')` whose time ids advance `t/t'` times as far per step; set
    reducers must return a `TokenSet`, whose tokens keep their original (t, h, w) ids."""
    interval = model.config.vision_config.tokens_per_second * seconds_per_step
    tokens = video_grid(model, pixels, grid)
    t, h, w, d = tokens.shape
    if reducer is None:
        return QwenVideo(tokens.reshape(-1, d), video_positions(t, h, w, interval, tokens.device))
    compression = get_compression(compression)
    out = reducer(TokenGrid(tokens[None]), compression.ratio)  # reducers take the named ratio until the redesign
    if isinstance(out, TokenGrid):
        steps = compression.clip
        tt, hh, ww = out.shape[1:4]
        if math.ceil(t / steps) != tt:
            raise ValueError(f"grid reducer gave {tt} steps of {t}, not blocks of {steps} as compression {compression}")
        return QwenVideo(out.patches.reshape(-1, d), video_positions(tt, hh, ww, interval * steps, tokens.device))
    if not isinstance(out, TokenSet):
        raise InputError(f"{type(reducer).__name__} returns tokens without their grid positions (a TokenSet), which "
                         "Qwen2.5-VL's 3D positions need")
    return QwenVideo(out.tokens[0], set_positions(out.frame[0], out.pos[0], w, interval))


def seconds_per_step(timestamps) -> float:
    """Seconds one grid step (frame pair) spans: 2 x the mean spacing of the sampled frames (Qwen's
    `second_per_grid_ts = temporal_patch_size / fps`); 1 for a single frame."""
    if len(timestamps) < 2:
        return 1.0
    return FRAMES_PER_STEP * float(timestamps[-1] - timestamps[0]) / (len(timestamps) - 1)


def build_qwen_input_ids(tokenizer, question: str, video_tokens: int) -> torch.Tensor:
    """`(1, L)` prompt ids in the checkpoint's chat template, the video (`<|vision_start|>` `video_tokens` x
    `<|video_pad|>` `<|vision_end|>`) before the question: `Qwen2_5_VLProcessor`'s layout."""
    if VIDEO_PAD in question:
        raise InputError(f"the question must not contain {VIDEO_PAD}: it is the video placeholder")
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"])
    is_pad = ids == tokenizer.convert_tokens_to_ids(VIDEO_PAD)
    if int(is_pad.sum()) != 1:
        raise InputError(f"tokenizer of {tokenizer.name_or_path or 'the model'}: its chat template gives "
                         f"{int(is_pad.sum())} {VIDEO_PAD} for one video: not a Qwen2.5-VL checkpoint")
    return ids.repeat_interleave(torch.where(is_pad, video_tokens, 1))[None]


def prompt_inputs(model: Qwen2_5_VLForConditionalGeneration, tokenizer, video: QwenVideo,
                  question: str) -> dict[str, torch.Tensor]:
    """`input_ids`, `inputs_embeds` with the video's tokens in its placeholders, `attention_mask` and mRoPE
    `position_ids (3, 1, L)`: what `model(**inputs)` and `model.generate(**inputs)` take."""
    device = model.device
    ids = build_qwen_input_ids(tokenizer, question, video.tokens.shape[0]).to(device)
    context = model.config.text_config.max_position_embeddings
    if ids.shape[1] > context:
        raise InputError(f"{ids.shape[1]} prompt tokens ({video.tokens.shape[0]} visual) exceed the LLM's context of "
                         f"{context}: use fewer frames, fewer pixels or a reducer")
    embeds = model.get_input_embeddings()(ids)
    is_video = ids == model.config.video_token_id
    embeds = embeds.masked_scatter(is_video[..., None], video.tokens.to(device, embeds.dtype))
    positions, _ = rope_positions(is_video[0], video.positions)
    return {"input_ids": ids, "inputs_embeds": embeds, "attention_mask": torch.ones_like(ids),
            "position_ids": positions}


def generate(model: Qwen2_5_VLForConditionalGeneration, tokenizer, video: QwenVideo, question: str,
             **generate_kwargs) -> list[int]:
    """Greedy (unless `generate_kwargs` say otherwise) answer token ids. transformers continues the position ids
    from the prompt's last one + 1, which is the rope delta of `rope_positions` applied to each new token."""
    inputs = prompt_inputs(model, tokenizer, video, question)
    kwargs = {"max_new_tokens": 64, "do_sample": False, "pad_token_id": tokenizer.pad_token_id, **generate_kwargs}
    out = model.generate(**inputs, **kwargs)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


def load_qwen(directory: str | Path, dtype: torch.dtype = torch.float32,
              device: torch.device | str = "cpu") -> tuple[Qwen2_5_VLForConditionalGeneration, object]:
    """A native Qwen2.5-VL folder -> (model, tokenizer), with one-line errors for a wrong or broken folder."""
    kind = model_type(directory)
    if kind != "qwen2_5_vl":
        raise InputError(f"model folder {directory}: model_type {kind!r} is not 'qwen2_5_vl'")
    try:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(directory, dtype=dtype).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except Exception as err:  # noqa: BLE001  loaders raise OSError, ValueError and tokenizers' bare Exceptions
        raise InputError(f"model folder {directory}: cannot load the checkpoint ({one_line(err)})") from None
    if tokenizer.convert_tokens_to_ids(VIDEO_PAD) != model.config.video_token_id:
        raise InputError(f"model folder {directory}: the tokenizer's {VIDEO_PAD} is not config.json's video_token_id")
    return model, tokenizer
