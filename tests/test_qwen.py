"""Qwen2.5-VL as a `VideoLLM` family, on a tiny random native checkpoint: preprocessing against Qwen's published rule
and transformers' own patchify, the dense pipeline's tokens and logits against transformers' own forward, mRoPE
positions against a slow reference written from the paper's rule, and every reducer through `VideoLLM`."""
from __future__ import annotations

import ast
import json
import importlib.util
import math
import types
import warnings
from dataclasses import replace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.vision_utils import get_vision_window_index

from liteframe.compression import get_compression
from liteframe.errors import InputError
from liteframe.grid import TokenGrid
from liteframe.llm import VideoLLM, VisualTokens, build_input_ids, get_family, make_slots
from liteframe.llm.family import check_tokenizer
from liteframe.llm.qwen.positions import rope_positions, set_positions
from liteframe.llm.qwen.vision import (MAX_PIXELS, MIN_PIXELS, PixelBudget, data_config, patchify, query_scores,
                                       smart_resize, video_grid)
from liteframe.llm.videollm import EncodedVideo
from liteframe.reduce import REDUCERS
from liteframe.testing.qwen import qwen_config, save_tiny_qwen
from liteframe.testing.videos import make_video
from liteframe.timing import LATENCY_KEYS
from liteframe.video.info import VideoInfo
from liteframe.video.scale import torchvision_bicubic


def preprocess_qwen(frames, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS):
    """Qwen2.5-VL's data config with another pixel budget, applied to uint8 frames."""
    return replace(data_config(), size=PixelBudget(min_pixels, max_pixels))(frames)


def video_positions(t, h, w, interval):
    """The relative ids of a whole `(t, h, w)` merged grid: every place kept."""
    index = torch.arange(t * h * w)
    return set_positions(index // (h * w), index % (h * w), w, interval)


# Qwen's rule as published (transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize), kept here as data.
def published_smart_resize(height, width, factor=28, min_pixels=56 * 56, max_pixels=14 * 14 * 4 * 1280):
    if max(height, width) / min(height, width) > 200:
        raise ValueError("absolute aspect ratio must be smaller than 200")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def processor_patchify():
    """transformers' `Qwen2VLVideoProcessor.patchify`, compiled from the installed source: its module imports
    torchvision, which this environment lacks, but the method itself is plain torch."""
    path = importlib.util.find_spec("transformers.models.qwen2_vl").submodule_search_locations[0]
    tree = ast.parse(open(f"{path}/video_processing_qwen2_vl.py").read())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Qwen2VLVideoProcessor")
    method = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "patchify")
    namespace = {"torch": torch}
    exec(compile(ast.Module([method], []), path, "exec"), namespace)
    return namespace["patchify"]


def paper_positions(ids: list[int], video_id: int, video: list[tuple[float, int, int]]) -> list[tuple[int, int, int]]:
    """Slow reference of the Qwen2-VL/2.5-VL rule, token by token: text ids grow by 1 in all three axes; a video
    token at (time in temporal ids, row, column) gets (start + floor(time), start + row, start + column); the next
    text starts at the largest id so far + 1."""
    out, next_id, start, v = [], 0, 0, iter(video)
    for i, tok in enumerate(ids):
        if tok != video_id:
            out.append((next_id,) * 3)
            next_id += 1
            continue
        if i == 0 or ids[i - 1] != video_id:  # the video's first token: its ids start here
            start = next_id
        time, row, col = next(v)
        out.append((start + math.floor(time), start + row, start + col))
        if i + 1 == len(ids) or ids[i + 1] != video_id:
            next_id = max(max(p) for p in out) + 1
    return out


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    return VideoLLM.from_pretrained(save_tiny_qwen(tmp_path_factory.mktemp("qwen") / "tiny"), device="cpu",
                                    dtype=torch.float32)


@pytest.fixture(scope="module")
def qwen(llm):
    return llm.model, llm.tokenizer


@pytest.fixture(scope="module")
def frames():
    """8 normalised frames (4 frame pairs) of 112 x 168 px -> a 4 x 8 x 12 patch grid, 4 x 4 x 6 merged tokens."""
    torch.manual_seed(0)
    raw = torch.randint(0, 256, (8, 3, 112, 168), dtype=torch.uint8)
    return preprocess_qwen(raw, min_pixels=112 * 112, max_pixels=112 * 168)


@pytest.fixture(scope="module")
def clip(frames):
    """The pixel rows and patch grid of `frames`, as Qwen's processor gives them."""
    return patchify(frames)


# --- preprocessing ---------------------------------------------------------------------------------------------

@given(st.integers(1, 3000), st.integers(1, 3000), st.integers(1, 400), st.integers(1, 4000))
def test_smart_resize_is_the_published_rule(height, width, low, high):
    min_pixels, max_pixels = 28 * 28 * min(low, high), 28 * 28 * max(low, high)
    try:
        want = published_smart_resize(height, width, 28, min_pixels, max_pixels)
    except ValueError:
        with pytest.raises(InputError, match="aspect ratio"):
            smart_resize(height, width, 28, min_pixels, max_pixels)
        return
    assert smart_resize(height, width, 28, min_pixels, max_pixels) == want


def test_smart_resize_rejects_an_empty_budget():
    with pytest.raises(InputError, match="min_pixels <= max_pixels"):
        smart_resize(100, 100, min_pixels=56 * 56 * 4, max_pixels=56 * 56)


def test_patch_order_is_the_processors_and_odd_frames_pad_the_last():
    torch.manual_seed(1)
    video = torch.randn(7, 3, 56, 84)
    paired = torch.cat([video, video[-1:]])
    raw = torch.randint(0, 256, (7, 3, 56, 84), dtype=torch.uint8)
    padded = preprocess_qwen(raw, min_pixels=56 * 84, max_pixels=56 * 84)  # 56 x 84 already: normalised only
    assert data_config().padding(7) == 1 and padded.shape[0] == 8 and torch.equal(padded[7], padded[6])
    rows, grid = patchify(paired)
    want, *want_grid = processor_patchify()(None, video[None], patch_size=14, merge_size=2,
                                                      temporal_patch_size=2)
    assert grid == tuple(want_grid) == (4, 4, 6)
    assert torch.equal(rows, want[0])
    # Rows 4k..4k+3 are the 2x2 group of merged token k = (t, i, j) in raster order: patch (2i + dh, 2j + dw).
    t, i, j, dh, dw = 3, 1, 2, 1, 0
    k = (t * 2 + i) * 3 + j
    patch = paired[2 * t:2 * t + 2, :, (2 * i + dh) * 14:(2 * i + dh + 1) * 14, (2 * j + dw) * 14:(2 * j + dw + 1) * 14]
    assert torch.equal(rows[4 * k + 2 * dh + dw], patch.permute(1, 0, 2, 3).reshape(-1))


def test_even_frames_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = preprocess_qwen(torch.zeros(4, 3, 30, 40, dtype=torch.uint8), min_pixels=56 * 56)
    assert x.shape == (4, 3, 56, 84)  # 30 x 40 -> 56 x 84 (min_pixels)


# --- visual tokens ---------------------------------------------------------------------------------------------

@torch.no_grad()
def test_dense_tokens_are_get_video_features_viewed_as_the_merged_grid(qwen, clip):
    model, _ = qwen
    pixels, grid = clip
    tokens = video_grid(model.model.visual, pixels, grid)
    want = model.get_video_features(pixels, torch.tensor([grid])).pooler_output[0]
    assert tokens.shape == (4, 4, 6, 64)
    assert torch.equal(tokens.reshape(-1, 64), want)
    # The merger reads each 2x2 group as 4 consecutive rows: token k is the merger of the rows of group k.
    seen = {}
    hook = model.model.visual.merger.register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    video_grid(model.model.visual, pixels, grid)
    hook.remove()
    window, _ = get_vision_window_index(torch.tensor([grid]), 2, model.model.visual.window_size, 14)
    groups = seen["x"].view(-1, 4, 32)[torch.argsort(window)]  # raster order of merged tokens
    merger = model.model.visual.merger
    k = (2 * 4 + 3) * 6 + 5  # token (2, 3, 5)
    assert torch.allclose(merger.mlp(merger.ln_q(groups[k]).view(-1)), tokens[2, 3, 5], atol=1e-6)


# --- positions -------------------------------------------------------------------------------------------------

def _prompt(before: int, n: int, after: int, video_id: int = 7) -> torch.Tensor:
    return torch.tensor([1] * before + [video_id] * n + [2] * after)


@given(st.integers(1, 5), st.integers(1, 4), st.integers(1, 4), st.sampled_from([0.5, 1.0, 2.0, 7.3]),
       st.integers(0, 6), st.integers(0, 6))
def test_dense_and_grid_reduced_positions_follow_the_paper_rule(t, h, w, interval, before, after):
    ids = _prompt(before, t * h * w, after)
    positions, delta = rope_positions(ids == 7, video_positions(t, h, w, interval))
    video = [(step * interval, row, col) for step in range(t) for row in range(h) for col in range(w)]
    want = paper_positions(ids.tolist(), 7, video)
    assert positions.shape == (3, 1, len(ids))
    assert positions[:, 0].T.tolist() == [list(p) for p in want]
    assert delta == max(max(p) for p in want) + 1 - len(ids)


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.data())
def test_set_reduced_positions_keep_each_tokens_original_place(t, h, w, data):
    kept = sorted(data.draw(st.sets(st.integers(0, t * h * w - 1), min_size=1)))
    frame, pos = torch.tensor(kept) // (h * w), torch.tensor(kept) % (h * w)
    ids = _prompt(3, len(kept), 4)
    positions, delta = rope_positions(ids == 7, set_positions(frame, pos, w, 2.0))
    video = [(2.0 * (i // (h * w)), (i % (h * w)) // w, i % w) for i in kept]
    want = paper_positions(ids.tolist(), 7, video)
    assert positions[:, 0].T.tolist() == [list(p) for p in want]
    assert delta == max(max(p) for p in want) + 1 - len(ids)


@torch.no_grad()
def test_dense_positions_against_transformers_get_rope_index(qwen):
    model, _ = qwen
    t, h, w = 3, 4, 6  # merged grid; transformers takes the patch grid (t, 2h, 2w)
    ids = _prompt(5, t * h * w, 4, model.config.video_token_id)[None]
    types_ = (ids == model.config.video_token_id).int() * 2
    for seconds, agrees in [(0.5, True), (4.0, False)]:  # temporal ids 0, 1, 2 or 0, 8, 16 (tokens_per_second 2)
        hf, hf_delta = model.model.get_rope_index(ids, types_, video_grid_thw=torch.tensor([[t, 2 * h, 2 * w]]),
                                                  second_per_grid_ts=torch.tensor([seconds]))
        ours, delta = rope_positions(ids[0] == model.config.video_token_id, video_positions(t, h, w, 2 * seconds))
        video_end = 5 + t * h * w
        assert torch.equal(ours[..., :video_end], hf[..., :video_end])  # text before and the video agree
        assert torch.equal(ours[..., video_end:], hf[..., video_end:]) == agrees
        # transformers 5.25 starts the text after the video at start + max(h, w) (here 5 + 6), not at max id + 1:
        # past a few seconds that overlaps the video's temporal ids. liteframe keeps the published rule.
        assert int(hf[0, 0, video_end]) == 5 + max(h, w)
        assert int(ours[0, 0, video_end]) == 5 + max(h - 1, w - 1, math.floor((t - 1) * 2 * seconds)) + 1
        if agrees:
            assert int(hf_delta) == delta
        else:  # its delta is still (largest id + 1) - L: its generation jumps from its last prompt id (5 + 6 + 3)
            assert int(hf[0, 0, -1]) == 5 + 6 + 3 and ids.shape[1] + int(hf_delta) == 5 + 16 + 1


# --- prompt, logits, generation ----------------------------------------------------------------------------------

def _slots(counts, step=2):
    return make_slots([0.0] * len(counts) * step, counts, step)


def _encoded(llm, visual: VisualTokens, seconds: float) -> EncodedVideo:
    """An `EncodedVideo` of frames sampled at `2 / seconds` fps (so `seconds` per frame pair) holding `visual`."""
    frames = len(visual.counts) * visual.frames_per_step
    times = [i * seconds / 2 for i in range(frames)]
    return EncodedVideo("v", llm.encoder.name, frames, times, 2 / seconds,
                        make_slots(times, visual.counts, visual.frames_per_step), visual,
                        dict.fromkeys(LATENCY_KEYS, 0.0))


def test_prompt_is_the_processors_layout(qwen):
    _, tokenizer = qwen
    family = get_family("qwen2_5_vl")
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                    "<|vision_start|><|video_pad|><|vision_end|>What happens?<|im_end|>\n<|im_start|>assistant\n")
    processor = types.SimpleNamespace(video_processor=types.SimpleNamespace(merge_size=2), video_token="<|video_pad|>")
    pads = Qwen2_5_VLProcessor.replace_video_token(processor, {"video_grid_thw": torch.tensor([[4, 8, 12]])}, 0)
    want = tokenizer(text.replace("<|video_pad|>", pads), add_special_tokens=False)["input_ids"]
    ids, video_end = build_input_ids(tokenizer, family, _slots([24] * 4), "What happens?")
    assert ids[0].tolist() == want
    assert want[video_end - 1] == tokenizer.convert_tokens_to_ids("<|vision_end|>")  # the cached prefix ends there
    with pytest.raises(InputError, match="must not contain"):
        build_input_ids(tokenizer, family, _slots([4]), "<|vision_start|><|video_pad|><|vision_end|>?")


def test_a_prompt_longer_than_the_context_fails_before_decoding(llm, monkeypatch):
    monkeypatch.setattr(llm.model.config.text_config, "max_position_embeddings", 64)
    with pytest.raises(InputError, match="more than the LLM's context of 64"):
        llm.check(8, "What happens?", VideoInfo("v.mp4", "mp4", "h264", 392, 280, 0, 8.0, 2.0, 16))  # 4 x 140


@torch.no_grad()
def test_dense_pipeline_tokens_and_first_logits_equal_transformers(llm, frames, clip):
    model, tokenizer, family = llm.model, llm.tokenizer, llm.family
    pixels, grid = clip
    visual = llm.encoder(frames[None])
    want = model.get_video_features(pixels, torch.tensor([grid])).pooler_output[0]
    assert torch.equal(visual.tokens[0], want)  # bit-identical: the backbone is the ViT + merger, nothing after
    assert visual.counts == [24] * 4 and visual.grid == (4, 4, 6) and visual.frames_per_step == 2
    assert llm.encoder.layout(8, (280, 392)) == llm.encoder.layout(7, (112, 168)) == (4, 10 * 14 * 4)  # min_pixels
    ids, _ = build_input_ids(tokenizer, family, _slots(visual.counts), "What happens?")
    mm_types = (ids == model.config.video_token_id).int() * 2
    for seconds in (0.5, 4.0):  # transformers' text positions agree with ours at 0.5 s per pair, not at 4 s
        inputs = family.llm_inputs(model, ids, visual, 2 / seconds)
        ours = model(**inputs.forward_kwargs()).logits[0, -1]
        hf = dict(input_ids=ids, pixel_values_videos=pixels, video_grid_thw=torch.tensor([grid]),
                  second_per_grid_ts=torch.tensor([seconds]), mm_token_type_ids=mm_types)
        if seconds == 0.5:
            assert torch.allclose(ours, model(**hf).logits[0, -1], atol=1e-5)
        else:  # transformers' own injection, with our positions
            assert torch.allclose(ours, model(**hf, position_ids=inputs.position_ids).logits[0, -1], atol=1e-5)
            assert not torch.allclose(ours, model(**hf).logits[0, -1], atol=1e-3)


@torch.no_grad()
def test_generation_continues_from_the_rope_delta(llm, frames):
    model, tokenizer = llm.model, llm.tokenizer
    enc = _encoded(llm, llm.encoder(frames[None]), 4.0)
    answer = llm.answer(enc, "What happens?", max_new_tokens=4, eos_token_id=None)
    ids, _ = build_input_ids(tokenizer, llm.family, enc.slots, "What happens?")
    inputs = llm.family.llm_inputs(model, ids, enc.visual, enc.fps)
    is_video = ids[0] == model.config.video_token_id
    _, delta = rope_positions(is_video, video_positions(4, 4, 6, 8.0))
    assert delta != 0  # 96 video tokens take 25 temporal ids: a position is not an index
    embeds, positions, want = inputs.inputs_embeds, inputs.position_ids, []
    for _ in range(4):  # no cache: the whole sequence each step, new tokens at index + delta
        token = model(inputs_embeds=embeds, position_ids=positions).logits[0, -1].argmax()
        want.append(int(token))
        embeds = torch.cat([embeds, model.get_input_embeddings()(token.view(1, 1))], 1)
        positions = torch.cat([positions, torch.full((3, 1, 1), embeds.shape[1] - 1 + delta)], -1)
    assert answer.tokens == want
    again = llm.answer(enc, "What happens?", max_new_tokens=4, eos_token_id=None)  # from the cached video prefix
    assert again.tokens == want and again.prefill_tokens < again.prompt_tokens


@pytest.mark.parametrize("name", REDUCERS.names())
@torch.no_grad()
def test_every_reducer_meets_its_budget_and_generates(llm, frames, name):
    runner = llm.with_encoder(name, 16)
    runner.encoder.data = replace(runner.encoder.data, size=PixelBudget(112 * 112, 112 * 168))  # `frames`' budget
    compression = get_compression(16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # grid reducers pad the 4 x 6 grid's partial blocks, and say so
        visual = runner.encoder(frames[None])
    t, h, w = 4, 4, 6
    grid_stage = runner.encoder.grid_stage is not None
    want = compression.grid_tokens(t, h, w) if grid_stage else compression.budget(t, h, w)
    assert visual.tokens.shape == (1, want, 64) and runner.encoder.layout(8, (112, 168))[1] == want
    enc = _encoded(runner, visual, 1.0)
    ids, _ = build_input_ids(llm.tokenizer, llm.family, enc.slots, "What happens?")
    positions = llm.family.llm_inputs(llm.model, ids, visual, enc.fps).position_ids[:, 0]
    is_video = ids[0] == llm.model.config.video_token_id
    video = positions[:, is_video] - int(is_video.nonzero()[0])  # ids relative to the video's first position
    if grid_stage:  # a (1, 2, 3) grid whose steps span 8 frames: time ids 4 pair steps apart (here only one)
        assert visual.grid == (1, 2, 3) and video[0].unique().tolist() == [0]
        assert video[1:].amax(1).tolist() == [1, 2]
    else:  # each kept token keeps its place in the 4 x 4 x 6 grid, 2 time ids per pair (1 s, 2 tokens/s)
        assert torch.equal(video, torch.stack([2 * visual.step, visual.pos // 6, visual.pos % 6]))
    assert len(runner.answer(enc, "What happens?", max_new_tokens=3, eos_token_id=None).tokens) == 3


@torch.no_grad()
def test_attention_reducers_get_the_query_score_and_the_tokens_as_keys(llm, frames):
    grid = llm.with_encoder("prumerge").encoder.backbone(frames[None], attention=True)
    assert isinstance(grid, TokenGrid) and torch.equal(grid.keys, grid.patches)
    x = grid.patches.double()
    logits = torch.einsum("bthwc,btc->bthw", x, x.mean((2, 3))) / 8  # sqrt(64)
    want = logits.flatten(2).softmax(-1).view_as(logits)
    assert torch.allclose(grid.scores.double(), want, atol=1e-6) and torch.equal(query_scores(grid.patches),
                                                                                 grid.scores)


def test_a_token_set_keeps_its_original_positions(llm):
    keep = torch.tensor([0, 7, 23, 30, 50, 95])  # of a 4 x 4 x 6 grid
    visual = VisualTokens(torch.zeros(1, 6, 64), [3, 1, 1, 1], 2, keep // 24, keep % 24, (4, 4, 6))
    enc = _encoded(llm, visual, 1.0)
    ids, _ = build_input_ids(llm.tokenizer, llm.family, enc.slots, "What happens?")
    positions = llm.family.llm_inputs(llm.model, ids, visual, enc.fps).position_ids[:, 0]
    is_video = ids[0] == llm.model.config.video_token_id
    video = positions[:, is_video] - int(is_video.nonzero()[0])
    assert video.T.tolist() == [[2 * (i // 24), (i % 24) // 6, i % 6] for i in keep.tolist()]


@torch.no_grad()
def test_real_video_end_to_end_with_odd_frames(llm, tmp_path):
    path = make_video(tmp_path / "v.mp4", num_frames=24, fps=8, width=64, height=48)
    with pytest.warns(UserWarning, match="7 frames padded to 8"):
        answer = llm.ask(path, "What happens?", frames=7, max_new_tokens=2, min_new_tokens=2)
    # 48 x 64 -> 280 x 392 (scaled up to the 128-token floor): 10 x 14 merged tokens per pair, 4 pairs
    assert (answer.frames, answer.visual_tokens, answer.slot_tokens, len(answer.tokens)) == (7, 560, [140] * 4, 2)
    assert set(answer.latency_ms) == set(LATENCY_KEYS) and all(v >= 0 for v in answer.latency_ms.values())
    wap = llm.with_encoder("wap")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 10 x 14 grid pads its partial blocks
        assert wap.ask(path, "What happens?", frames=16, max_new_tokens=1).visual_tokens == 2 * 5 * 7
    with pytest.raises(InputError, match="multiple of 8 frames"):
        wap.ask(path, "What happens?", frames=12)
    with pytest.raises(InputError, match="student folder runs/x: not found"):
        llm.with_encoder("student:runs/x")


def test_load_rejects_an_unknown_family_and_a_foreign_tokenizer(llm, tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llava"}')
    with pytest.raises(InputError, match="model_type 'llava' is not supported"):
        VideoLLM.from_pretrained(tmp_path)
    with pytest.raises(InputError, match="no config.json"):
        VideoLLM.from_pretrained(tmp_path / "missing")
    other = types.SimpleNamespace(get_vocab=lambda: {}, name_or_path="x")
    with pytest.raises(InputError, match="not a Qwen2.5-VL checkpoint"):
        check_tokenizer(llm.family, other, llm.model)


def test_7b_shapes_have_qwen25_vl_7b_parameter_count():
    with torch.device("meta"):  # shapes only, no memory
        model = Qwen2_5_VLForConditionalGeneration(qwen_config("7b"))
    assert sum(p.numel() for p in model.parameters()) == 8_292_166_656  # Qwen2.5-VL-7B-Instruct: 8.29B
    assert model.model.visual.blocks[-1].attn.num_heads == 16 and len(model.model.visual.blocks) == 32


def test_preprocessing_in_chunks_equals_one_pass():
    frames = torch.randint(0, 256, (35, 3, 30, 40), dtype=torch.uint8)  # more than one 32-frame chunk, odd
    x = preprocess_qwen(frames, min_pixels=56 * 56)
    levels = torchvision_bicubic(frames, (56, 84)).double()
    mean, std = (torch.tensor(v, dtype=torch.float64).view(1, 3, 1, 1) for v in ((0.48145466, 0.4578275, 0.40821073),
                                                                              (0.26862954, 0.26130258, 0.27577711)))
    assert x.shape == (36, 3, 56, 84) and torch.equal(x[35], x[34])
    assert torch.allclose(x[:35].double(), (levels / 255 - mean) / std, atol=1e-5)


def test_bench_e2e_qwen_rows(tmp_path):
    from liteframe.bench.e2e import run

    path = make_video(tmp_path / "v.mp4", num_frames=24, fps=8, width=64, height=48)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = run(video=str(path), dense_frames=(4,), frames=(16,), repeats=1, warmup=0, new_tokens=1,
                   device="cpu", model_family="qwen2_5_vl")
    # the untrained tiny student reads 112 px squares: 2 x 2 merged tokens per clip of 8 frames
    assert [(r["setting"], r["frames"], r["visual tokens"]) for r in rows] == [("dense", 4, 2 * 140), ("wap", 16, 70),
                                                                             ("student", 16, 2 * 4)]
    with pytest.raises(InputError, match="needs a CUDA device"):
        run(random_size="7b", device="cpu", model_family="qwen2_5_vl")
    with pytest.raises(InputError, match="random size '8b' of qwen2_5_vl"):
        run(random_size="8b", device="cpu", model_family="qwen2_5_vl")


def test_cli_ask_with_wap_on_a_qwen_folder(llm, tmp_path, capsys):
    from liteframe.cli import main

    folder = save_tiny_qwen(tmp_path / "tiny")
    path = make_video(tmp_path / "v.mp4", num_frames=24, fps=8, width=64, height=48)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["ask", str(path), "What happens?", "--model", str(folder), "--encoder", "wap", "--frames", "16",
                   "--max-new-tokens", "2", "--device", "cpu", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["frames"], out["encoder"], out["visual_tokens"], out["slot_tokens"]) == (16, "wap", 70, [35, 35])
    assert main(["ask", str(path), "q", "--model", str(folder), "--encoder", "student:x", "--device", "cpu"]) == 2
    assert "student folder x: not found" in capsys.readouterr().err


def test_eval_runs_on_qwen_with_subtitles_before_the_video(llm, tmp_path):
    import evaldata
    from liteframe.eval.runner import EvalConfig, evaluate, read_records

    data = evaldata.make_longvideobench(tmp_path / "lvb")
    seen = []
    real = llm.answer

    def answer(enc, question, **kwargs):
        ids, _ = build_input_ids(llm.tokenizer, llm.family, enc.slots, question, slot_text=kwargs["slot_text"])
        seen.append(llm.tokenizer.decode(ids[0]))
        return real(enc, question, **kwargs)

    llm.answer = answer
    try:
        out = tmp_path / "lvb.jsonl"
        evaluate(EvalConfig("longvideobench", str(data), str(llm.folder), "dense", 4, str(out)), llm)
    finally:
        del llm.answer
    records = read_records(out)
    assert len(records) == 2 and len(seen) == 2 and not any("error" in r for r in records)
    assert "Hello there." in seen[0] and seen[0].index("Hello there.") < seen[0].index("<|vision_start|>")
    assert seen[0].count("<|vision_start|>") == 1  # one video run, as Qwen's processor lays it out


@torch.no_grad()
def test_chunked_encoding_equals_one_pass(llm, tmp_path):
    """Qwen's ViT attends within each frame pair, so chunks of whole pairs give the one-pass tokens; the set stage
    (here FastVID, with its scores) still chooses over the whole video."""
    path = make_video(tmp_path / "v.mp4", num_frames=24, fps=8, width=64, height=48)
    whole = llm.with_encoder("fastvid")
    chunked = VideoLLM(llm.model, llm.tokenizer, whole.encoder, chunk_frames=2)
    a, b = whole.encode(path, 6), chunked.encode(path, 6)
    assert a.slots == b.slots and torch.equal(a.visual.step, b.visual.step)
    assert torch.equal(a.visual.pos, b.visual.pos)
    assert torch.allclose(a.visual.tokens, b.visual.tokens, atol=1e-5)
    with pytest.raises(InputError, match="multiple of the fastvid encoder's 2-frame clips"):
        VideoLLM(llm.model, llm.tokenizer, whole.encoder, chunk_frames=3)
