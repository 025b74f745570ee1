"""Qwen3-VL (dense, MoE) and Qwen3.5 (dense, MoE) as liteframe families, on tiny random checkpoints in the hub's
layout, against transformers' own code: the processor's frame budget, timestamps, pixels, patch layout and prompt
(`Qwen3VLProcessor.__call__` itself, with a stand-in for its torchvision-bound video processor); then the dense
path through `VideoLLM` (visual tokens and every DeepStack level against `get_video_features`, positions against
`get_rope_index`, first-token logits against the model's forward, greedy answers against its `generate`), the prefix
reused across questions on Qwen3.5's hybrid cache, and the LoRA targets."""
from __future__ import annotations

import copy
import json
import types
import warnings
from dataclasses import replace
from unittest import mock

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoConfig
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
from transformers.image_utils import SizeDict
from transformers.processing_utils import ProcessorMixin
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.video_utils import VideoMetadata

from liteframe.errors import InputError
from liteframe.llm import LLMInputs, VideoLLM, build_input_ids, get_family, make_slots
from liteframe.llm.family import check_tokenizer
from liteframe.llm.lora import add_lora
from liteframe.llm.qwen3 import VideoBudget, data_config, slot_time
from liteframe.llm.qwen3.frames import MEAN
from liteframe.llm.qwen3.positions import rope_positions
from liteframe.llm.qwen3.vision import patchify
from liteframe.testing.qwen3 import VIDEO_PREPROCESSOR
from liteframe.testing.videos import make_video
from liteframe.video import open_video
from liteframe.video.scale import torchvision_bicubic
from test_videollm import _FirstScores as FirstScores

TYPES = ["qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"]
FPS = 8.0


@pytest.fixture(scope="module")
def llms(qwen3_folders):
    return {t: VideoLLM.from_pretrained(qwen3_folders[t], device="cpu", dtype=torch.float32) for t in TYPES}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("v") / "v.mp4", num_frames=24, fps=int(FPS), width=100, height=70)


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


def published_positions(ids: list[int], video_id: int, places: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Slow reference of the Qwen3-VL rule, token by token: text ids grow by 1 in all three axes; the tokens of a
    timestamp run starting at id s get (s, s + row, s + column); the next text starts at the largest id so far + 1."""
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
    return out


# --- the checkpoint's files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", TYPES)
def test_tiny_checkpoint_has_the_hub_layout(llms, qwen3_folders, model_type):
    folder, llm = qwen3_folders[model_type], llms[model_type]
    assert AutoConfig.from_pretrained(folder).model_type == model_type and llm.family is get_family(model_type)
    assert json.loads((folder / "video_preprocessor_config.json").read_text()) == VIDEO_PREPROCESSOR
    assert llm.encoder.data.size == VideoBudget(4096, 25165824)
    deepstack = getattr(llm.model.config.vision_config, "deepstack_visual_indexes", [])
    assert len(deepstack) == (2 if model_type.startswith("qwen3_vl") else 0)
    if model_type.startswith("qwen3_5"):  # the hybrid LLM: 3 gated delta-net layers, then full attention
        assert llm.model.config.text_config.layer_types == ["linear_attention"] * 3 + ["full_attention"]
    check_tokenizer(llm.family, llm.tokenizer, llm.model)
    other = copy.deepcopy(llm.model.config)
    other.video_token_id += 1
    with pytest.raises(InputError, match="different checkpoints"):
        check_tokenizer(llm.family, llm.tokenizer, types.SimpleNamespace(config=other))


@pytest.mark.parametrize("model_type", ["qwen3_vl", "qwen3_5"])
def test_chat_templates_render_as_the_released_ones(llms, model_type):
    tokenizer = llms[model_type].tokenizer
    video = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Why?"}]}]
    text = tokenizer.apply_chat_template(video, add_generation_prompt=True, tokenize=False)
    prompt = "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>Why?<|im_end|>\n<|im_start|>assistant\n"
    if model_type == "qwen3_vl":  # no default system message, no thinking
        assert text == prompt
    else:  # Qwen3.5 opens the answer with <think>, or an empty block when thinking is off
        assert text == prompt + "<think>\n"
        off = tokenizer.apply_chat_template(video, add_generation_prompt=True, tokenize=False, enable_thinking=False)
        assert off == prompt + "<think>\n\n</think>\n\n"
    assert "<think>" in tokenizer.get_vocab() and "<think>" not in tokenizer.all_special_tokens


# --- frames ----------------------------------------------------------------------------------------------------


def test_budget_is_read_from_the_checkpoint_and_bad_configs_are_refused(tmp_path):
    config = dict(VIDEO_PREPROCESSOR, size={"shortest_edge": 100, "longest_edge": 5000}, image_std=[0.25] * 3)
    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps(config))
    data = data_config(tmp_path)
    assert (data.size, data.mean, data.std, data.frames_per_step) == (VideoBudget(100, 5000), MEAN, (0.25,) * 3, 2)
    capped = {**config, "cap_pixels_per_frame": True, "max_video_tokens": 10}
    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps(capped))
    assert data_config(tmp_path).size == VideoBudget(100, 5000, 10 * 32 * 32)
    bad_configs = [({"size": {"shortest_edge": 10}}, "integers"), ({"patch_size": 14}, "patch"),
                   ({"size": {"shortest_edge": 10, "longest_edge": 5}}, "integers")]
    for bad, reason in bad_configs:
        (tmp_path / "video_preprocessor_config.json").write_text(json.dumps({**VIDEO_PREPROCESSOR, **bad}))
        with pytest.raises(InputError, match=reason):
            data_config(tmp_path)
    assert data_config(tmp_path / "missing").size == VideoBudget(128 * 1024, 768 * 1024)  # the class's defaults
    with pytest.raises(InputError, match="only 'processor' applies"):
        data_config(tmp_path, "qwen-vl-utils")


@given(frames=st.integers(2, 800), height=st.integers(8, 2000), width=st.integers(8, 2000),
       low=st.sampled_from([4096, 128 * 1024]), high=st.sampled_from([786432, 25165824]), cap=st.booleans())
def test_frame_size_is_the_processors(frames, height, width, low, high, cap):
    """`Qwen3VLVideoProcessor.resize` itself, with the torchvision resize it ends with replaced by the size asked."""
    if max(height, width) > 200 * min(height, width):
        return
    processor = Qwen3VLVideoProcessor.__new__(Qwen3VLVideoProcessor)
    with mock.patch.object(BaseVideoProcessor, "resize", lambda self, image, size, resample: (size.height, size.width),
                           create=True):
        videos = torch.zeros(1, 1, 1, 1, 1).expand(1, frames, 3, height, width)  # only its shape is read
        expected = Qwen3VLVideoProcessor.resize(processor, videos, SizeDict(shortest_edge=low, longest_edge=high), None,
                                                32, 2, cap_pixels_per_frame=cap)
    assert VideoBudget(low, high, 768 * 32 * 32 if cap else None)(frames, height, width) == expected


def test_frame_size_is_a_budget_for_the_whole_video():
    budget = VideoBudget(4096, 25165824)  # the released checkpoints' budget
    # 720p: a short clip keeps near-native size, 64 frames shrink so that frames x pixels fit 24576 x 32 x 32
    assert budget(8, 720, 1280) == (704, 1280) and budget(64, 720, 1280) == (448, 832)
    for frames in (2, 7, 64, 768):
        h, w = budget(frames, 480, 854)
        assert h % 32 == w % 32 == 0 and (frames + frames % 2) * h * w <= budget.max_pixels
        assert (frames + frames % 2) * (budget.largest(frames)[0] * budget.largest(frames)[1]) <= budget.max_pixels
    assert budget(4, 20, 20) == (32, 32)  # small frames are scaled up to one merged token
    with pytest.raises(InputError, match="at least 2"):
        budget(1, 480, 854)
    with pytest.raises(InputError, match="aspect ratio"):
        budget(4, 32, 32 * 300)


def test_pixels_and_patches_are_the_processors(qwen3_folders):
    frames = frames_of(5)
    data = data_config(qwen3_folders["qwen3_vl"])  # the released budget: 100 x 70 frames keep their size
    x = data(frames[:4], total=5)  # a chunk of a 5-frame video: sized for the whole video
    assert x.shape == (4, 3, 64, 96)
    x = data(frames)
    assert x.shape == (6, 3, 64, 96) and torch.equal(x[5], x[4])  # odd count: the last frame repeated
    resized = torchvision_bicubic(frames, (64, 96))  # torchvision's uint8 pixels (tests/test_scale.py)
    reference = (resized.double() / 255 - 0.5) / 0.5  # the processor's rescale then normalise, in float64
    torch.testing.assert_close(x[:5].double(), reference, rtol=0, atol=1e-6)
    rows, grid = patchify(x)  # the processor's own patchify (plain torch) lays out the same rows
    expected, t, h, w = Qwen3VLVideoProcessor.patchify(None, x[:5][None], 16, 2, 2)
    assert torch.equal(rows, expected[0]) and grid == (t, h, w) == (3, 4, 6)


@torch.no_grad()
def test_chunks_are_sized_for_the_whole_video(llms, video):
    """With a budget that 6 frames of 100 x 70 exceed, every chunk of 2 is resized as the 6-frame video is."""
    llm, budget = llms["qwen3_vl"], VideoBudget(4096, 6 * 32 * 64)
    encoders = []
    for chunk_frames in (2, 32):
        encoder = llm.with_encoder("dense").encoder
        encoder.data = replace(encoder.data, size=budget)
        encoders.append(VideoLLM(llm.model, llm.tokenizer, encoder, chunk_frames=chunk_frames).encode(video, 6))
    size = budget(6, 70, 100)
    assert size != budget(2, 70, 100) and encoders[0].visual.grid == encoders[1].visual.grid == (3, *(
        side // 32 for side in size))
    torch.testing.assert_close(encoders[0].tokens, encoders[1].tokens, rtol=0, atol=1e-6)


@given(indices=st.lists(st.integers(0, 3000), min_size=1, max_size=40).map(sorted),
       fps=st.sampled_from([7.0, 24.0, 29.97, 30.0]))
def test_a_pairs_time_is_the_processors_timestamp(indices, fps):
    times = [i / fps for i in indices]
    padded = times + times[-1:] * (len(times) % 2)
    slots = make_slots(padded, [1] * (len(padded) // 2), 2)
    assert [slot_time(s) for s in slots] == Qwen3VLProcessor._calculate_timestamps(None, list(indices), fps, 2)


# --- prompt and positions --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", ["qwen3_vl", "qwen3_5"])
@pytest.mark.parametrize("frames, grid", [(6, (3, 4, 6)), (5, (3, 2, 2)), (2, (1, 8, 4))])
def test_dense_prompt_ids_and_positions_are_the_processors(llms, model_type, frames, grid):
    llm = llms[model_type]
    tokenizer, model = llm.tokenizer, llm.model
    fps, indices = 29.97, [0, 15, 30, 45, 60, 75][:frames]
    t, h, w = grid
    padded = [i / fps for i in indices] + [indices[-1] / fps] * (frames % 2)
    for question in ("What happens?", " Why, after 2.5 seconds?\nAnswer briefly.", ""):
        ids, end = build_input_ids(tokenizer, llm.family, make_slots(padded, [h * w // 4] * t, 2), question)
        expected, mm_types = processor_inputs(tokenizer, question, grid, indices, fps)
        assert torch.equal(ids, expected)
        assert ids[0, end - 1] == tokenizer.convert_tokens_to_ids("<|vision_end|>") and end == int(
            (mm_types[0] == 2).nonzero().max()) + 2
    index = torch.arange(h * w // 4).repeat(t)
    positions = rope_positions(ids[0] == model.config.video_token_id, index // (w // 2), index % (w // 2))
    want, _ = model.model.get_rope_index(ids, mm_token_type_ids=mm_types, video_grid_thw=torch.tensor([grid]))
    assert torch.equal(positions, want)


def test_a_reduced_slot_gets_one_run_at_its_span_mean_time(llms):
    llm = llms["qwen3_vl"]
    times = [0.5 * i for i in range(16)]
    slots = make_slots(times, [3, 0], 8)  # two 8-frame clips (a 16x grid reducer's), the second emptied
    ids, _ = build_input_ids(llm.tokenizer, llm.family, slots, "Q?", slot_text=["subtitle one"])
    text = llm.tokenizer.decode(ids[0])
    assert "user\nsubtitle one\n<1.8 seconds><|vision_start|>" + "<|video_pad|>" * 3 + "<|vision_end|>Q?" in text
    assert text.count("seconds>") == 1
    with pytest.raises(InputError, match="<|video_pad|>"):
        build_input_ids(llm.tokenizer, llm.family, slots, "a <|video_pad|> in the question")


@given(runs=st.lists(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=5),
                     min_size=1, max_size=4),
       gaps=st.lists(st.integers(1, 4), min_size=5, max_size=5))
def test_reduced_positions_follow_the_published_rule(runs, gaps):
    """Runs of kept tokens at any (row, column) of their grids (set reducers), separated by text."""
    ids, places = [9] * gaps[0], []
    for run, gap in zip(runs, gaps[1:]):
        ids += [1] * len(run) + [9] * gap
        places += run
    rows, cols = (torch.tensor(c) for c in zip(*places))
    positions = rope_positions(torch.tensor(ids) == 1, rows, cols)
    assert positions[:, 0].T.tolist() == [list(p) for p in published_positions(ids, 1, places)]


# --- the dense path through VideoLLM ---------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", TYPES)
@torch.no_grad()
def test_dense_path_equals_transformers(llms, video, model_type):
    """5 frames (odd: the last repeated) through `VideoLLM`: visual tokens and every DeepStack level, prompt ids with
    timestamps, positions, first-token logits and the greedy answer equal transformers' own, from the same pixels."""
    llm = llms[model_type]
    model, tokenizer = llm.model, llm.tokenizer
    indices = [0, 5, 10, 15, 20]
    with pytest.warns(UserWarning, match="padded to 6"):
        enc = llm.encode(video, timestamps=[i / FPS for i in indices])
    with open_video(video) as reader:
        pixels = llm.encoder.data(reader.read(enc.timestamps).data)
    rows, grid = patchify(pixels)
    features = model.model.get_video_features(pixel_values_videos=rows, video_grid_thw=torch.tensor([grid]))
    torch.testing.assert_close(enc.tokens[0], features.pooler_output[0], rtol=0, atol=1e-6)
    levels = getattr(features, "deepstack_features", None) or []
    assert len(enc.visual.levels) == len(levels) == (2 if model_type.startswith("qwen3_vl") else 0)
    for ours, theirs in zip(enc.visual.levels, levels):
        torch.testing.assert_close(ours[0], theirs[0], rtol=0, atol=1e-6)  # the one video's part

    question = "What happens after 1.5 seconds?"
    ids, _ = build_input_ids(tokenizer, llm.family, enc.slots, question)
    expected_ids, mm_types = processor_inputs(tokenizer, question, grid, indices, FPS)
    text = tokenizer.decode(ids[0])  # pairs (0, 5), (10, 15), (20, 20) of frames at 8 fps
    assert torch.equal(ids, expected_ids) and "<0.3 seconds>" in text and "<1.6 seconds>" in text and "<2.5 se" in text
    inputs = llm.inputs(ids, enc)
    want, _ = model.model.get_rope_index(ids, mm_token_type_ids=mm_types, video_grid_thw=torch.tensor([grid]))
    assert torch.equal(inputs.position_ids, want)

    first = FirstScores()
    answer = llm.answer(enc, question, max_new_tokens=5, logits_processor=[first])
    hf = dict(input_ids=ids, pixel_values_videos=rows, video_grid_thw=torch.tensor([grid]), mm_token_type_ids=mm_types)
    # Qwen3.5's gated delta rule sums in 64-token chunks: the prefix prefilled apart regroups its sums
    atol = 2e-4 if model_type.startswith("qwen3_5") else 1e-5
    torch.testing.assert_close(first.scores, model(**hf).logits[:, -1], rtol=0, atol=atol)
    model.model.rope_deltas = None
    expected = model.generate(**hf, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False)
    assert answer.tokens == expected[0, ids.shape[1]:].tolist()
    if enc.visual.levels:  # the levels do reach the LLM
        without = FirstScores()
        plain = replace(enc, visual=replace(enc.visual, levels=()), prefix=None)
        llm.answer(plain, question, max_new_tokens=1, logits_processor=[without])
        assert (without.scores - first.scores).abs().max() > 1e-3


@pytest.mark.parametrize("model_type", TYPES)
@torch.no_grad()
def test_answers_reusing_the_video_prefix_equal_fresh_ones(llms, video, model_type):
    """The second question on one encoding decodes into a copy of the stored prefix (KV cache and, on Qwen3.5,
    convolution and recurrent states) and answers as a fresh prefill does; the stored prefix stays as it was."""
    llm = llms[model_type]
    enc = llm.encode(video, 6)
    llm.answer(enc, "What happens?", max_new_tokens=3)
    stored = enc.prefix[1]
    snapshot = copy.deepcopy(stored)
    question = "Is the pancake caught? Answer yes or no."
    cached, fresh = FirstScores(), FirstScores()
    again = llm.answer(enc, question, max_new_tokens=4, logits_processor=[cached])
    alone = llm.answer(llm.encode(video, 6), question, max_new_tokens=4, logits_processor=[fresh])
    assert again.prefill_tokens < again.prompt_tokens == alone.prefill_tokens
    assert again.tokens == alone.tokens and enc.prefix[1] is stored
    torch.testing.assert_close(cached.scores, fresh.scores, rtol=0, atol=1e-5)
    for layer, kept in zip(stored.layers, snapshot.layers):  # decoding never touched the stored prefix
        for name in ("keys", "values"):
            if getattr(layer, name, None) is not None:
                assert torch.equal(getattr(layer, name), getattr(kept, name))
        for i, state in getattr(layer, "recurrent_states", {}).items():
            assert torch.equal(state, kept.recurrent_states[i]) and torch.equal(layer.conv_states[i],
                                                                                kept.conv_states[i])
    if model_type == "qwen3_5":  # why the prefix is copied: a hybrid cache cannot be cropped back
        decoded = copy.deepcopy(stored)
        llm.model.model.language_model(input_ids=torch.tensor([[5]]), cache=decoded, use_cache=True)
        with pytest.raises(RuntimeError, match="does not track past states"):
            decoded.crop(stored.get_seq_length())


@torch.no_grad()
def test_a_batch_keeps_each_prompts_deepstack_features(llms, video):
    """LMA's batch (right-padded, DeepStack features concatenated in batch order): each prompt's hidden states equal
    its own forward's."""
    llm = llms["qwen3_vl"]
    enc = llm.encode(video, 4)
    items = [llm.inputs(build_input_ids(llm.tokenizer, llm.family, enc.slots, q)[0], enc)
             for q in ("Why?", "What happens in the video, and when?")]
    batch = LLMInputs.batch(items)
    assert [len(level) for level in batch.deepstack] == [2 * enc.visual_tokens] * 2
    lm = llm.model.get_decoder()
    together = lm(**batch.forward_kwargs()).last_hidden_state
    for i, item in enumerate(items):
        alone = lm(**item.forward_kwargs()).last_hidden_state[0]
        torch.testing.assert_close(together[i, :len(alone)], alone, rtol=0, atol=1e-5)


# --- LoRA ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", TYPES)
def test_lora_targets_the_language_model_only(qwen3_folders, model_type):
    family = get_family(model_type)
    model = family.checkpoint_class.from_pretrained(qwen3_folders[model_type])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        peft = add_lora(model)
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
    assert all(any(f".layers.{i}." in n for n in wrapped) for i in range(layers))  # every layer adapted
    assert not any(p.requires_grad for n, p in peft.named_parameters() if "lora_" not in n)
    with warnings.catch_warnings():  # `train_projector`: the mergers into the LLM's width train too
        warnings.simplefilter("ignore", FutureWarning)
        peft = add_lora(family.checkpoint_class.from_pretrained(qwen3_folders[model_type]), train_projector=True)
    trained = {n.split(".modules_to_save")[0].removeprefix("base_model.model.model.visual.")
               for n, p in peft.named_parameters() if p.requires_grad and "lora_" not in n}
    levels = 2 if model_type.startswith("qwen3_vl") else 0
    assert trained == {"merger", *(f"deepstack_merger_list.{i}" for i in range(levels))}
