"""Reducers over a Qwen3-VL grid with DeepStack levels (`liteframe.llm.qwen3.deepstack`): each reducer's output on
the final tokens is the registered reducer's own, and the one decision is applied to every level (a level equal to
the tokens, scaled, reduces to the reducer's output, scaled; levels reduce additively, which a decision retaken per
level would break). Then every reducer on a tiny Qwen3-VL and Qwen3.5: its budget, one timestamp run per slot, the
positions against a slow reference of the published rule, and generation."""
from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from liteframe.compression import get_compression
from liteframe.grid import TokenGrid
from liteframe.llm.prompt import make_slots
from liteframe.llm.qwen import query_scores
from liteframe.llm.qwen3.deepstack import PLANS, reduce_grid, reduce_set, tome_plan, visual_tokens
from liteframe.llm.qwen3.frames import preprocess
from liteframe.llm.qwen3.llm import generate, llm_inputs, prefill
from liteframe.llm.qwen3.positions import grid_places
from liteframe.llm.qwen3.prompt import input_ids
from liteframe.llm.qwen3.tiny import FAMILIES, save_tiny_qwen3
from liteframe.llm.qwen3.vision import DeepStackGrid, Qwen3Vision
from liteframe.reduce import REDUCERS
from liteframe.reduce.tome import tome
from test_qwen3 import published_positions

GRID_REDUCERS = ["wap", "avg", "max", "subsample"]
SET_REDUCERS = ["tome", "tome-clip", "prumerge", "fastvid"]


def stacked(shape: tuple[int, ...], seed: int = 0) -> tuple[DeepStackGrid, torch.Tensor, torch.Tensor]:
    """A grid with the scores and keys set reducers read, and the levels `[3 * tokens, other, tokens + other]`."""
    gen = torch.Generator().manual_seed(seed)
    patches, other = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    grid = TokenGrid(patches, scores=query_scores(patches), keys=patches)
    return DeepStackGrid(grid, [3 * patches, other, patches + other]), patches, other


@pytest.mark.parametrize("name", GRID_REDUCERS)
@pytest.mark.parametrize("compression", [4, 16, 64])
@pytest.mark.parametrize("shape", [(1, 8, 6, 6, 16), (1, 6, 5, 7, 8)])
def test_grid_reducers_take_one_decision_for_every_level(name, compression, shape):
    stack, _, _ = stacked(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # padding to whole blocks is announced, and tested, elsewhere
        out = reduce_grid(name, stack, compression)
        expected = REDUCERS.get(name)(stack.grid, compression).patches
    assert torch.equal(out.grid.patches, expected)
    scaled, other, both = out.levels
    torch.testing.assert_close(scaled, 3 * expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(both, expected + other, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", SET_REDUCERS)
@pytest.mark.parametrize("compression", [4, 16, 64])
@pytest.mark.parametrize("shape", [(1, 8, 6, 6, 16), (1, 4, 5, 7, 8)])
def test_set_reducers_take_one_decision_for_every_level(name, compression, shape):
    stack, _, _ = stacked(shape, seed=1)
    reducer = REDUCERS.get(name)
    try:
        expected = reducer(stack.grid, compression)
    except ValueError as err:  # more tokens than the budget: the reducer itself refuses, and so does its plan
        with pytest.raises(ValueError, match=str(err).split(";")[0][:20]):
            reduce_set(name, stack, compression)
        return
    out = reduce_set(name, stack, compression)
    assert out.tokens.tokens.shape[1] == reducer.num_tokens(*shape[1:4], compression)
    assert torch.equal(out.tokens.frame, expected.frame) and torch.equal(out.tokens.pos, expected.pos)
    torch.testing.assert_close(out.tokens.tokens, expected.tokens, rtol=0, atol=1e-5)
    scaled, other, both = out.levels
    torch.testing.assert_close(scaled, 3 * expected.tokens, rtol=0, atol=3e-5)
    torch.testing.assert_close(both, expected.tokens + other, rtol=0, atol=3e-5)
    assert out.grid == shape[1:4]


@settings(max_examples=40)
@given(t=st.sampled_from([1, 2, 4, 8]), h=st.integers(1, 6), w=st.integers(1, 6), clip=st.sampled_from([1, 2, 4]),
       keep=st.floats(0.0, 1.0), seed=st.integers(0, 3))
def test_tome_plan_is_tome(t, h, w, clip, keep, seed):
    if t % clip:
        return
    patches = torch.randn(2, t, h, w, 8, generator=torch.Generator().manual_seed(seed))
    num_tokens = t // clip + round(keep * (t * h * w - t // clip))
    expected = tome(TokenGrid(patches), num_tokens, clip)
    merge = tome_plan(TokenGrid(patches), num_tokens, clip)
    out = merge.apply(patches)
    assert torch.equal(out.frame, expected.frame) and torch.equal(out.pos, expected.pos)
    torch.testing.assert_close(out.tokens, expected.tokens, rtol=0, atol=1e-5)
    # every input token is in exactly one output, with weight 1 / the output's size
    counts = torch.zeros(2, num_tokens).scatter_add_(1, merge.row, torch.ones_like(merge.weight))
    torch.testing.assert_close(merge.weight, 1 / counts.gather(1, merge.row))


def test_every_reducer_has_a_plan_or_a_grid_stage():
    assert set(PLANS) | set(GRID_REDUCERS) == set(REDUCERS.names())
    with pytest.raises(ValueError, match="not a grid reducer"):
        reduce_grid("tome", stacked((1, 4, 2, 2, 4))[0])
    with pytest.raises(ValueError, match="not a set reducer"):
        reduce_set("wap", stacked((1, 4, 2, 2, 4))[0])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = {}
    for model_type in ("qwen3_vl", "qwen3_5"):
        folder = save_tiny_qwen3(tmp_path_factory.mktemp(model_type), model_type)
        out[model_type] = FAMILIES[model_type][0].from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    return out


@pytest.mark.parametrize("model_type", ["qwen3_vl", "qwen3_5"])
def test_every_reducer_meets_its_budget_and_generates(tiny, model_type):
    """8 frames of 128 px: a (4, 4, 4) merged grid; at 16x the grid reducers pool (4, 2, 2) blocks into one 8-frame
    slot, the set reducers keep 4 tokens over the 4 pairs."""
    model, tokenizer = tiny[model_type]
    frames = torch.randint(0, 256, (8, 3, 128, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    times = [0.25 * i for i in range(8)]
    compression = get_compression(16)
    with torch.no_grad():
        stack = Qwen3Vision(model.model.visual)(preprocess(frames, 8)[None], attention=True)
        t, h, w = stack.grid.shape[1:4]
        for name in GRID_REDUCERS + SET_REDUCERS:
            reducer = REDUCERS.get(name)
            if reducer.stage == "grid":
                visual, levels = visual_tokens(reduce_grid(name, stack, compression), compression.clip_frames(2))
            else:
                visual, levels = visual_tokens(reduce_set(name, stack, compression), 2)
            assert visual.tokens.shape[1] == reducer.num_tokens(t, h, w, compression) == 4
            assert len(levels) == len(stack.levels) and all(lv.shape == visual.tokens.shape for lv in levels)
            slots = make_slots(times, visual.counts, visual.step_frames)
            ids, end = input_ids(tokenizer, slots, "What happens?")
            assert tokenizer.decode(ids[0]).count(" seconds><|vision_start|>") == len(slots)
            rows, cols = grid_places(visual.pos, visual.grid[2])
            inputs = llm_inputs(model, ids, visual.tokens, levels, rows, cols)
            is_video = (ids[0] == model.config.video_token_id).tolist()
            expected, delta = published_positions(ids[0].tolist(), model.config.video_token_id,
                                                  list(zip(rows.tolist(), cols.tolist())))
            assert inputs.positions[:, 0].T.tolist() == [list(p) for p in expected] and inputs.rope_delta == delta
            assert sum(is_video) == 4
            _, cache = prefill(model, inputs, end)
            out = generate(model, ids, inputs, cache, max_new_tokens=2, do_sample=False)
            assert out.shape[1] == ids.shape[1] + 2
