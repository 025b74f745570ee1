"""Qwen3-VL (dense, MoE) and Qwen3.5 (dense, MoE) pieces on tiny random checkpoints in the hub's layout, against
transformers' own code: the processor's frame budget, sampling, timestamps, patch layout and prompt text
(`Qwen3VLProcessor.__call__` itself, with a stand-in for its torchvision-bound video processor), the vision tower
and every DeepStack level (`get_video_features`), the positions (`get_rope_index`, and a slow reference of the
published rule for reduced runs), first-token logits (the model's own forward), greedy generation (the model's own
`generate`), the prefix cache reused across questions on Qwen3.5's hybrid cache, and the LoRA targets."""
from __future__ import annotations

import json
import types
import warnings
from unittest import mock

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoTokenizer
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
from transformers.processing_utils import ProcessorMixin
from transformers.video_utils import VideoMetadata

from liteframe.errors import InputError
from liteframe.llm.tiny import build_tokenizer
from liteframe.llm.prompt import make_slots
from liteframe.llm.qwen3.frames import (
    VideoBudget, frame_size, normalize, pair_times, patchify, preprocess, processor_indices, resize_frames,
)
from liteframe.llm.qwen3.llm import fork_cache, generate, llm_inputs, prefill
from liteframe.llm.qwen3.lora import lora_targets
from liteframe.llm.qwen3.positions import grid_places, rope_positions
from liteframe.llm.qwen3.prompt import Qwen3Layout, input_ids, slot_time
from liteframe.llm.qwen3.tiny import FAMILIES, VIDEO_PREPROCESSOR, save_tiny_qwen3
from liteframe.llm.qwen3.vision import Qwen3Vision

TYPES = list(FAMILIES)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """model_type -> (folder, model, tokenizer) of each tiny checkpoint, loaded as a user loads the real one."""
    out = {}
    for model_type in TYPES:
        folder = save_tiny_qwen3(tmp_path_factory.mktemp(model_type), model_type)
        model = FAMILIES[model_type][0].from_pretrained(folder).eval()
        out[model_type] = folder, model, AutoTokenizer.from_pretrained(folder)
    return out


def frames_of(n: int, height: int = 70, width: int = 100, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, height, width), dtype=torch.uint8, generator=generator)


class StandInVideoProcessor:
    """What `Qwen3VLProcessor` reads of its video processor: the merge sizes, and a call giving the grid and the
    frames' metadata (the real one needs torchvision, absent here)."""

    merge_size, temporal_patch_size = 2, 2

    def __init__(self, grid: tuple[int, int, int], indices: list[int], fps: float):
        self.grid, self.metadata = grid, VideoMetadata(total_num_frames=max(indices) + 1, fps=fps,
                                                       frames_indices=list(indices))

    def __call__(self, videos, **kwargs):
        return {"pixel_values_videos": torch.zeros(1), "video_grid_thw": torch.tensor([self.grid]),
                "video_metadata": [self.metadata]}


def processor_inputs(tokenizer, question: str, grid: tuple[int, int, int], indices: list[int], fps: float):
    """`Qwen3VLProcessor(text=chat template, videos=...)` itself: its own `__init__` (the class check of its
    sub-processors skipped) and `__call__` -> `input_ids (1, L)` and `mm_token_type_ids (1, L)`."""
    with mock.patch.object(ProcessorMixin, "check_argument_for_proper_class", lambda self, name, arg: None):
        processor = Qwen3VLProcessor(image_processor=None, tokenizer=tokenizer,
                                     video_processor=StandInVideoProcessor(grid, indices, fps))
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    out = processor(text=[text], videos=[torch.zeros(len(indices), 3, 32, 32)], return_tensors="pt")
    return out["input_ids"], out["mm_token_type_ids"]


def published_positions(ids: list[int], video_id: int, places: list[tuple[int, int]]):
    """Slow reference of the Qwen3-VL rule, token by token: text ids grow by 1 in all three axes; the tokens of a
    timestamp run starting at id s get (s, s + row, s + column); the next text starts at the largest id so far + 1.
    -> ids per token and the rope delta."""
    out, next_id, start, place = [], 0, 0, iter(places)
    for i, tok in enumerate(ids):
        if tok != video_id:
            out.append((next_id,) * 3)
            next_id += 1
            continue
        if i == 0 or ids[i - 1] != video_id:
            start = next_id
        row, col = next(place)
        out.append((start, start + row, start + col))
        if i + 1 == len(ids) or ids[i + 1] != video_id:
            next_id = max(max(p) for p in out) + 1
    return out, next_id - len(ids)


def dense_inputs(model, tokenizer, frames: torch.Tensor, timestamps: list[float], question: str):
    """The dense path's prompt ids, `Qwen3Inputs`, video prefix length, and the processor-layout pixel rows and grid
    that transformers' own forward takes."""
    pixels = preprocess(frames, len(frames))
    stack = Qwen3Vision(model.model.visual)(pixels[None])
    t, h, w = stack.grid.shape[1:4]
    padded = timestamps + timestamps[-1:] * (len(timestamps) % 2)
    ids, end = input_ids(tokenizer, make_slots(padded, [h * w] * t, 2), question)
    rows, cols = grid_places(torch.arange(h * w).repeat(t), w)
    inputs = llm_inputs(model, ids, stack.grid.tokens(), [level.flatten(1, 3) for level in stack.levels], rows, cols)
    return ids, inputs, end, patchify(pixels)


# --- tiny checkpoints ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", TYPES)
def test_tiny_checkpoint_has_the_hub_layout(tiny, model_type):
    folder, model, tokenizer = tiny[model_type]
    assert AutoConfig.from_pretrained(folder).model_type == model_type
    assert json.loads((folder / "video_preprocessor_config.json").read_text()) == VIDEO_PREPROCESSOR
    assert VideoBudget.from_folder(folder) == VideoBudget(4096, 25165824)
    ids = tokenizer.convert_tokens_to_ids
    assert (model.config.video_token_id, model.config.vision_start_token_id, model.config.vision_end_token_id) == (
        ids("<|video_pad|>"), ids("<|vision_start|>"), ids("<|vision_end|>"))
    deepstack = getattr(model.config.vision_config, "deepstack_visual_indexes", [])
    assert len(deepstack) == (2 if model_type.startswith("qwen3_vl") else 0)
    if model_type.startswith("qwen3_5"):  # the hybrid LLM: 3 gated delta-net layers, then full attention
        assert model.config.text_config.layer_types == ["linear_attention"] * 3 + ["full_attention"]


@pytest.mark.parametrize("model_type", ["qwen3_vl", "qwen3_5"])
def test_chat_templates_render_as_the_released_ones(tiny, model_type):
    tokenizer = tiny[model_type][2]
    video = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Why?"}]}]
    text = tokenizer.apply_chat_template(video, add_generation_prompt=True, tokenize=False)
    prompt = "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>Why?<|im_end|>\n<|im_start|>assistant\n"
    if model_type == "qwen3_vl":  # no default system message, no thinking
        assert text == prompt
    else:  # Qwen3.5 opens the answer with <think>, or an empty block when thinking is off
        assert text == prompt + "<think>\n"
        off = tokenizer.apply_chat_template(video, add_generation_prompt=True, tokenize=False, enable_thinking=False)
        assert off == prompt + "<think>\n\n</think>\n\n"
        past = video + [{"role": "assistant", "content": "<think>\nhm\n</think>\n\nB"}, video[0]]
        rendered = tokenizer.apply_chat_template(past, tokenize=False)
        assert "<|im_start|>assistant\nB<|im_end|>" in rendered  # earlier turns' reasoning is dropped
    system = [{"role": "system", "content": "Be brief."}] + video
    assert tokenizer.apply_chat_template(system, tokenize=False).startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert "<think>" in tokenizer.get_vocab() and "<think>" not in tokenizer.all_special_tokens


# --- frames ----------------------------------------------------------------------------------------------------


def test_budget_is_read_from_the_checkpoint_and_bad_configs_are_refused(tmp_path):
    config = dict(VIDEO_PREPROCESSOR, size={"shortest_edge": 100, "longest_edge": 5000}, fps=1)
    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps(config))
    assert VideoBudget.from_folder(tmp_path) == VideoBudget(100, 5000, 1.0)
    bad_configs = [({"size": {"shortest_edge": 10}}, "integer shortest_edge"), ({"patch_size": 14}, "patch"),
                   ({"size": {"shortest_edge": 10, "longest_edge": 5}}, "empty"), ({"image_std": [1, 1, 1]}, "std")]
    for bad, reason in bad_configs:
        (tmp_path / "video_preprocessor_config.json").write_text(json.dumps({**VIDEO_PREPROCESSOR, **bad}))
        with pytest.raises(InputError, match=reason):
            VideoBudget.from_folder(tmp_path)
    with pytest.raises(InputError, match="cannot read"):
        VideoBudget.from_folder(tmp_path / "missing")


def test_frame_size_is_a_budget_for_the_whole_video():
    # 720p: a short clip keeps near-native size, 64 frames shrink so that frames x pixels fit 24576 x 32 x 32.
    assert frame_size(8, 720, 1280) == (704, 1280)
    assert frame_size(64, 720, 1280) == (448, 832)
    for frames in (2, 7, 64, 768):
        h, w = frame_size(frames, 480, 854)
        assert h % 32 == w % 32 == 0 and (frames + frames % 2) * h * w <= VideoBudget().max_pixels
    assert frame_size(4, 20, 20) == (32, 32)  # small frames are scaled up to one merged token
    with pytest.raises(InputError, match="at least 2"):
        frame_size(1, 480, 854)
    with pytest.raises(InputError, match="aspect ratio"):
        frame_size(4, 32, 32 * 300)


def test_preprocess_resizes_normalises_and_pairs_as_the_processor():
    frames = frames_of(5)
    x = preprocess(frames, total_frames=5)
    assert x.shape == (6, 3, 64, 96) and torch.equal(x[5], x[4])  # odd count: the last frame repeated
    resized = resize_frames(frames, (64, 96))
    reference = (resized.double() / 255 - 0.5) / 0.5  # the processor's rescale then normalise, in float64
    torch.testing.assert_close(x[:5].double(), reference, rtol=0, atol=1e-6)
    flat = resize_frames(torch.full((2, 3, 70, 100), 77, dtype=torch.uint8), (64, 96))
    assert flat.dtype == torch.uint8 and bool((flat == 77).all())  # a resize keeps a flat frame flat
    black_white = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 2, 1).expand(1, 3, 2, 1)
    assert torch.equal(normalize(black_white)[0, :, :, 0], torch.tensor([[-1.0, 1.0]] * 3))
    # the processor's own patchify (plain torch) lays out the same rows
    rows, grid = patchify(x)
    expected, t, h, w = Qwen3VLVideoProcessor.patchify(None, x[:5][None], 16, 2, 2)
    assert torch.equal(rows, expected[0]) and grid == (t, h, w) == (3, 4, 6)


@given(total=st.integers(1, 5000), fps=st.sampled_from([1.0, 8.0, 23.976, 30.0, 60.0]))
def test_default_sampling_is_the_processors(total, fps):
    stand_in = types.SimpleNamespace(fps=2, min_frames=4, max_frames=768)
    expected = Qwen3VLVideoProcessor.sample_frames(stand_in, VideoMetadata(total_num_frames=total, fps=fps))
    assert processor_indices(total, fps).tolist() == expected.tolist()


@given(indices=st.lists(st.integers(0, 3000), min_size=1, max_size=40).map(sorted),
       fps=st.sampled_from([7.0, 24.0, 29.97, 30.0]))
def test_pair_times_are_the_processors_timestamps(indices, fps):
    expected = Qwen3VLProcessor._calculate_timestamps(None, list(indices), fps, 2)
    assert pair_times([i / fps for i in indices]) == expected


# --- vision ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", TYPES)
def test_backbone_is_get_video_features_with_every_deepstack_level(tiny, model_type):
    model = tiny[model_type][1]
    pixels = preprocess(frames_of(7), 7)
    rows, grid = patchify(pixels)
    with torch.no_grad():
        stack = Qwen3Vision(model.model.visual)(pixels[None])
        expected = model.model.get_video_features(pixel_values_videos=rows, video_grid_thw=torch.tensor([grid]))
        halves = [Qwen3Vision(model.model.visual)(part[None]) for part in pixels.split(4)]  # chunks of whole pairs
    t, h, w = grid
    assert stack.grid.shape == (1, t, h // 2, w // 2, 64)
    torch.testing.assert_close(stack.grid.tokens()[0], expected.pooler_output[0], rtol=0, atol=1e-6)
    levels = getattr(expected, "deepstack_features", None) or []
    assert len(stack.levels) == len(levels) == (2 if model_type.startswith("qwen3_vl") else 0)
    for ours, theirs in zip(stack.levels, levels):
        assert ours.shape == stack.grid.shape
        torch.testing.assert_close(ours.flatten(1, 3)[0], theirs[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.cat([p.grid.patches for p in halves], 1), stack.grid.patches, rtol=0, atol=1e-5)
    for i, level in enumerate(stack.levels):
        torch.testing.assert_close(torch.cat([p.levels[i] for p in halves], 1), level, rtol=0, atol=1e-5)
    scored = Qwen3Vision(model.model.visual)(pixels[None], attention=True).grid
    assert scored.scores.shape == stack.grid.shape[:4] and torch.equal(scored.keys, scored.patches)


# --- prompt ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", ["qwen3_vl", "qwen3_5"])
@pytest.mark.parametrize("frames, grid", [(6, (3, 4, 6)), (5, (3, 2, 2)), (2, (1, 8, 4))])
@pytest.mark.parametrize("question", ["What happens?", " Why, after 2.5 seconds?\nAnswer briefly.", ""])
def test_dense_prompt_ids_are_the_processors(tiny, model_type, frames, grid, question):
    tokenizer = tiny[model_type][2]
    fps, indices = 29.97, [0, 15, 30, 45, 60, 75][:frames]
    t, h, w = grid
    times = pair_times([i / fps for i in indices])
    padded = [i / fps for i in indices] + [indices[-1] / fps] * (frames % 2)
    slots = make_slots(padded, [h * w // 4] * t, 2)
    assert [slot_time(s) for s in slots] == times
    ids, end = input_ids(tokenizer, slots, question)
    expected, mm_types = processor_inputs(tokenizer, question, grid, indices, fps)
    assert torch.equal(ids, expected)
    assert torch.equal(ids == tokenizer.convert_tokens_to_ids("<|video_pad|>"), mm_types == 2)
    vision_end = tokenizer.convert_tokens_to_ids("<|vision_end|>")
    assert ids[0, end - 1] == vision_end and not (ids[0, end:] == vision_end).any()


def test_layout_checks_the_tokenizer_against_the_model(tiny):
    _, model, tokenizer = tiny["qwen3_vl"]
    Qwen3Layout().check_tokenizer(tokenizer, model)
    other = tiny["qwen3_5"][1]
    other_id, other.config.video_token_id = other.config.video_token_id, other.config.video_token_id + 1
    try:
        with pytest.raises(InputError, match="different checkpoints"):
            Qwen3Layout().check_tokenizer(tokenizer, other)
    finally:
        other.config.video_token_id = other_id
    with pytest.raises(InputError, match="not a Qwen3-VL or Qwen3.5 checkpoint"):
        Qwen3Layout().check_tokenizer(build_tokenizer(), model)


def test_a_reduced_slot_gets_one_run_at_its_span_mean_time(tiny):
    tokenizer = tiny["qwen3_vl"][2]
    times = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0, 7.5]
    slots = make_slots(times, [3, 0], 8)  # two 8-frame clips (a 16x grid reducer's), the second emptied
    ids, _ = input_ids(tokenizer, slots, "Q?", slot_text=["subtitle one"])
    text = tokenizer.decode(ids[0])
    assert "user\nsubtitle one\n<1.8 seconds><|vision_start|>" + "<|video_pad|>" * 3 + "<|vision_end|>Q?" in text
    assert text.count("seconds>") == 1
    with pytest.raises(InputError, match="<|video_pad|>"):
        input_ids(tokenizer, slots, "a <|video_pad|> in the question")


# --- positions -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", ["qwen3_vl", "qwen3_5"])
@pytest.mark.parametrize("grid", [(1, 2, 2), (3, 4, 6), (2, 10, 4)])
def test_dense_positions_are_get_rope_index(tiny, model_type, grid):
    _, model, tokenizer = tiny[model_type]
    t, h, w = grid
    indices = list(range(0, 10 * 2 * t, 10))
    ids, mm_types = processor_inputs(tokenizer, "Where?", grid, indices, 10.0)
    rows, cols = grid_places(torch.arange(h * w // 4).repeat(t), w // 2)
    positions, delta = rope_positions(ids[0] == model.config.video_token_id, rows, cols)
    expected, deltas = model.model.get_rope_index(ids, mm_token_type_ids=mm_types, video_grid_thw=torch.tensor([grid]))
    assert torch.equal(positions, expected) and delta == int(deltas)


@given(runs=st.lists(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=5),
                     min_size=1, max_size=4),
       gaps=st.lists(st.integers(1, 4), min_size=5, max_size=5))
def test_reduced_positions_follow_the_published_rule(runs, gaps):
    """Runs of kept tokens at any (row, column) of their grids (set reducers), separated by text."""
    ids, places = [9] * gaps[0], []
    for run, gap in zip(runs, gaps[1:]):
        ids += [1] * len(run) + [9] * gap
        places += run
    is_video = torch.tensor(ids) == 1
    rows, cols = (torch.tensor(c) for c in zip(*places))
    positions, delta = rope_positions(is_video, rows, cols)
    expected, expected_delta = published_positions(ids, 1, places)
    assert positions[:, 0].T.tolist() == [list(p) for p in expected] and delta == expected_delta


def test_positions_refuse_a_count_mismatch():
    with pytest.raises(ValueError, match="3 video placeholders"):
        rope_positions(torch.tensor([0, 1, 1, 1, 0]).bool(), torch.zeros(2, dtype=torch.long), torch.zeros(2))


# --- the language model ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", TYPES)
def test_first_token_logits_are_the_models_forward(tiny, model_type):
    _, model, tokenizer = tiny[model_type]
    ids, inputs, _, (rows, grid) = dense_inputs(model, tokenizer, frames_of(6), [0.0, 0.5, 1.0, 1.5, 2.0, 2.5], "Why?")
    mm_types = (ids == model.config.video_token_id).int() * 2
    with torch.no_grad():
        logits, _ = prefill(model, inputs, ids.shape[1])
        expected = model(input_ids=ids, pixel_values_videos=rows, video_grid_thw=torch.tensor([grid]),
                         mm_token_type_ids=mm_types).logits[:, -1]
        torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
        if inputs.deepstack:  # the levels do reach the LLM
            without, _ = prefill(model, inputs.__class__(**{**vars(inputs), "deepstack": []}), ids.shape[1])
            assert (without - expected).abs().max() > 1e-3


@pytest.mark.parametrize("model_type", TYPES)
def test_generation_from_the_prefilled_prefix_is_the_models_generate(tiny, model_type):
    _, model, tokenizer = tiny[model_type]
    ids, inputs, end, (rows, grid) = dense_inputs(model, tokenizer, frames_of(5, seed=1), [0.0, 0.4, 0.8, 1.2, 1.6],
                                                  "What happens?")
    mm_types = (ids == model.config.video_token_id).int() * 2
    with torch.no_grad():
        _, cache = prefill(model, inputs, end)
        greedy = dict(max_new_tokens=6, do_sample=False, output_logits=True, return_dict_in_generate=True)
        ours = generate(model, ids, inputs, cache, **greedy)
        model.model.rope_deltas = None
        expected = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values_videos=rows,
                                  video_grid_thw=torch.tensor([grid]), mm_token_type_ids=mm_types, **greedy)
    assert torch.equal(ours.sequences, expected.sequences)
    # Qwen3.5's gated delta rule sums in 64-token chunks: prefilling the prefix and the rest apart regroups its sums.
    atol = 2e-4 if model_type.startswith("qwen3_5") else 1e-5
    torch.testing.assert_close(torch.stack(ours.logits), torch.stack(expected.logits), rtol=0, atol=atol)


@pytest.mark.parametrize("model_type", ["qwen3_5", "qwen3_vl"])
def test_prefix_reuse_across_questions_forks_the_cache(tiny, model_type):
    """Answers reusing one prefilled video prefix (forked per question) equal answers prefilled afresh; the stored
    prefix stays as it was. On Qwen3.5 the rollback `VideoLLM.answer` uses today (`crop`) is refused."""
    _, model, tokenizer = tiny[model_type]
    frames, times = frames_of(6, seed=2), [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    _, inputs, end, _ = dense_inputs(model, tokenizer, frames, times, "")
    greedy = dict(max_new_tokens=5, do_sample=False, output_logits=True, return_dict_in_generate=True)
    with torch.no_grad():
        _, stored = prefill(model, inputs, end)
        snapshot = fork_cache(stored)
        for question in ("What happens?", "Is the pancake caught? Answer yes or no."):
            ids, fresh_inputs, fresh_end, _ = dense_inputs(model, tokenizer, frames, times, question)
            assert fresh_end == end and torch.equal(fresh_inputs.embeds[:, :end], inputs.embeds[:, :end])
            reused = generate(model, ids, fresh_inputs, fork_cache(stored), **greedy)
            _, fresh = prefill(model, fresh_inputs, end)
            expected = generate(model, ids, fresh_inputs, fresh, **greedy)
            assert torch.equal(reused.sequences, expected.sequences)
            torch.testing.assert_close(torch.stack(reused.logits), torch.stack(expected.logits), rtol=0, atol=1e-5)
    for layer, kept in zip(stored.layers, snapshot.layers):  # decoding never touched the stored prefix
        for name in ("keys", "values"):
            if getattr(layer, name, None) is not None:
                assert torch.equal(getattr(layer, name), getattr(kept, name))
        for i, state in getattr(layer, "recurrent_states", {}).items():
            assert torch.equal(state, kept.recurrent_states[i])
            assert torch.equal(layer.conv_states[i], kept.conv_states[i])
    if model_type == "qwen3_5":
        decoded = fork_cache(stored)
        generate(model, ids, fresh_inputs, decoded, max_new_tokens=2, do_sample=False)
        with pytest.raises(RuntimeError, match="does not track past states"):
            decoded.crop(end - decoded.get_seq_length())


# --- LoRA ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", TYPES)
def test_lora_targets_the_language_model_only(tiny, model_type):
    folder = tiny[model_type][0]
    model = FAMILIES[model_type][0].from_pretrained(folder)
    with warnings.catch_warnings():  # PEFT 0.21 reads a property transformers 5 deprecates
        warnings.simplefilter("ignore", FutureWarning)
        peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05,
                                                target_modules=lora_targets(model_type)))
    wrapped = {name.removeprefix("base_model.model.").split(".lora_A")[0] for name, _ in peft.named_parameters()
               if ".lora_A." in name}
    leaves = {name.split("language_model.layers.")[1].split(".", 1)[1] for name in wrapped}
    assert all(".language_model.layers." in name for name in wrapped)  # nothing of the vision tower or mergers
    attention = {f"self_attn.{p}_proj" for p in "qkvo"}
    mlp = {f"mlp.{p}_proj" for p in ("gate", "up", "down")}
    linear = {f"linear_attn.{p}" for p in ("in_proj_qkv", "in_proj_z", "in_proj_a", "in_proj_b", "out_proj")}
    shared = {f"mlp.shared_expert.{p}_proj" for p in ("gate", "up", "down")}
    expected = {"qwen3_vl": attention | mlp, "qwen3_vl_moe": attention, "qwen3_5": attention | mlp | linear,
                "qwen3_5_moe": attention | linear | shared}[model_type]
    assert leaves == expected
    layers = model.config.text_config.num_hidden_layers
    per_layer = {i: {n for n in wrapped if f".layers.{i}." in n} for i in range(layers)}
    assert all(per_layer.values())  # every layer adapted
    assert not any(p.requires_grad for n, p in peft.named_parameters() if "lora_" not in n)
    with pytest.raises(InputError, match="qwen2_5_vl"):
        lora_targets("qwen2_5_vl")
