import json
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from liteframe import TokenGrid
from liteframe.reduce import REDUCERS, block_for, fastvid, get_reducer, prumerge, tome
from liteframe.reduce.fastvid import segment_starts
from liteframe.reduce.prumerge import spread_order
from liteframe.reduce.tome import merge_to

GRID = ["wap", "avg", "max", "subsample"]
SETS = ["tome", "tome-clip", "prumerge", "fastvid"]


def test_registry_has_every_reducer():
    assert set(REDUCERS.names()) == set(GRID + SETS)
    assert all(get_reducer(name).keeps_grid == (name in GRID) for name in REDUCERS.names())
    with pytest.raises(ValueError, match="unknown reducer 'nope'; choose from wap"):
        get_reducer("nope")


def test_block_for_compression():
    assert block_for(16) == (4, 2, 2) and block_for(4) == (1, 2, 2) and block_for(2) == (2, 1, 1)
    with pytest.raises(ValueError, match="positive integer"):
        block_for(0)


@settings(max_examples=12, deadline=None)
@given(name=st.sampled_from(SETS), b=st.integers(1, 2), t=st.integers(1, 9), side=st.integers(2, 6),
       compression=st.sampled_from([2, 4, 16]), cls=st.booleans(), seed=st.integers(0, 2**16))
def test_set_reducers_return_exactly_the_budget(name, b, t, side, compression, cls, seed):
    g = torch.Generator().manual_seed(seed)
    grid = TokenGrid(torch.randn(b, t, side, side, 5, generator=g), torch.randn(b, t, 5, generator=g) if cls else None)
    reducer = get_reducer(name)
    n = reducer.num_tokens(t, side, side, compression)
    assert n == math.ceil(t * side * side / compression)
    if name == "tome-clip" and t % 4:
        with pytest.raises(ValueError, match="multiple of 4"):
            reducer(grid, compression)
        return
    if name.startswith("tome") and n < (t if name == "tome" else t // 4):
        with pytest.raises(ValueError, match="1 token per group"):
            reducer(grid, compression)
        return
    out = reducer(grid, compression)
    assert out.shape == (b, n, 5) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", GRID)
def test_grid_reducers_count_matches_num_tokens(name):
    grid = TokenGrid(torch.randn(2, 8, 6, 4, 3), torch.randn(2, 8, 3))
    reducer = get_reducer(name)
    out = reducer(grid)
    assert out.patches.shape == (2, 2, 3, 2, 3) and out.cls.shape == (2, 2, 3)
    assert reducer.num_tokens(8, 6, 4) == 12
    uneven = TokenGrid(torch.randn(1, 5, 3, 4, 3), torch.randn(1, 5, 3))
    with pytest.warns(UserWarning, match="padding by repeating"):
        out = reducer(uneven)
    assert out.patches.shape == (1, 2, 2, 2, 3) and reducer.num_tokens(5, 3, 4) == 8
    torch.testing.assert_close(out.cls, torch.stack([uneven.cls[:, :4].mean(1), uneven.cls[:, 4]], 1))


def test_avg_and_max_pool_the_blocks():
    x = torch.randn(1, 4, 2, 4, 3)
    grid = TokenGrid(x)
    blocks = x.view(1, 1, 4, 1, 2, 2, 2, 3).permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(1, 1, 1, 2, 3, 16)
    torch.testing.assert_close(get_reducer("avg")(grid).patches, blocks.mean(-1))
    torch.testing.assert_close(get_reducer("max")(grid).patches, blocks.amax(-1))


def test_subsample_keeps_the_first_frame_top_left_of_each_block():
    index = torch.arange(8 * 4 * 6, dtype=torch.float32).view(1, 8, 4, 6, 1)
    out = get_reducer("subsample")(TokenGrid(index)).patches
    frames, rows, cols = torch.meshgrid(torch.tensor([0, 4]), torch.tensor([0, 2]), torch.tensor([0, 2, 4]),
                                        indexing="ij")
    assert torch.equal(out[0, ..., 0], (frames * 24 + rows * 6 + cols).float())


def test_tome_merges_duplicated_tokens_first():
    x = torch.randn(2, 3, 16, 8)
    x[:, :, 5] = x[:, :, 4]  # even-odd pairs: one from each side of the bipartite split
    x[:, :, 11] = x[:, :, 10] * 3  # same direction, so cosine similarity 1
    out = tome(x.view(2, 3, 4, 4, 8), None, 3 * 14)
    survivors = [i for i in range(16) if i not in (4, 10)]
    expected = x[:, :, survivors].clone()
    expected[:, :, survivors.index(11)] = x[:, :, 10] * 2  # size-weighted mean of x and 3x
    torch.testing.assert_close(out, expected.reshape(2, 42, 8))


def test_tome_over_a_clip_merges_a_repeated_frame_into_one():
    """Frame 1 repeats frame 0; with 9 tokens a frame, each token and its repeat sit on opposite sides of the
    bipartite split, so halving the clip merges exactly the repeats: one frame's tokens remain, each of size 2."""
    frame = torch.randn(1, 1, 3, 3, 8)
    x = torch.cat([frame, frame], 1)
    tokens, size = merge_to(x.view(1, 1, 18, 8), torch.tensor([9]))
    assert torch.equal(size, torch.full((1, 9), 2.0))
    rows = lambda t: t.reshape(-1, 8)[t.reshape(-1, 8)[:, 0].argsort()]  # noqa: E731
    torch.testing.assert_close(rows(tokens), rows(frame))
    torch.testing.assert_close(tome(x, None, 9, clip=2), tokens)
    assert not torch.allclose(rows(tome(x, None, 9)), rows(frame))  # frame by frame, distinct tokens must merge


@settings(max_examples=10, deadline=None)
@given(g=st.integers(1, 4), n=st.integers(2, 40), seed=st.integers(0, 2**16), data=st.data())
def test_tome_preserves_the_size_weighted_mean(g, n, seed, data):
    k = data.draw(st.integers(1, n - 1))
    keep = k + torch.tensor(data.draw(st.lists(st.integers(0, 1), min_size=g, max_size=g)))
    x = torch.randn(2, g, n, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    tokens, size = merge_to(x, keep)
    assert tokens.shape == (2, int(keep.sum()), 6)
    groups = torch.repeat_interleave(torch.arange(g), keep)
    for j in range(g):
        torch.testing.assert_close(size[:, groups == j].sum(-1), torch.full((2,), float(n), dtype=torch.float64))
        torch.testing.assert_close((tokens[:, groups == j] * size[:, groups == j, None]).sum(1), x[:, j].sum(1))


def test_prumerge_keeps_a_planted_outlier():
    torch.manual_seed(0)
    x, q = torch.randn(1, 2, 8, 8, 16), torch.randn(1, 2, 16)
    planted = 8 * F.normalize(q[0, 1], dim=0) * 16**0.5  # far more attention than any other token
    x[0, 1, 3, 5] = planted
    assert sorted(spread_order(8, 8).topk(4).indices.tolist()) == [0, 4, 32, 36]  # (3, 5) is no spread pick
    out = prumerge(x, q, 8)  # 4 per frame
    assert F.cosine_similarity(out[0, 4:], planted, dim=-1).max() > 0.999
    assert F.cosine_similarity(out[0, :4], planted, dim=-1).max() < 0.9


def test_prumerge_tops_up_with_spread_tokens_and_merges_the_rest():
    """With no outlier every kept token is a spread pick, each the attention-weighted mean of itself and its group."""
    x = torch.randn(1, 1, 4, 4, 8)
    q = torch.zeros(1, 1, 8)  # equal attention: no outliers, equal weights
    out = prumerge(x, q, 4)
    kept = x.view(16, 8)[[0, 2, 8, 10]]
    owner = (F.normalize(x.view(16, 8), dim=-1) @ F.normalize(kept, dim=-1).T).argmax(-1)
    owner[[0, 2, 8, 10]] = torch.arange(4)
    expected = torch.stack([x.view(16, 8)[owner == j].mean(0) for j in range(4)])
    torch.testing.assert_close(out[0], expected)


def two_scenes(b=1, t=16, cut=10, n=16, c=32, seed=0):
    """Frames [0, cut) show scene u, the rest scene v (orthogonal), each with small noise."""
    g = torch.Generator().manual_seed(seed)
    u, v = torch.zeros(c), torch.zeros(c)
    u[: c // 2], v[c // 2:] = 1.0, 1.0
    scene = torch.where(torch.arange(t)[:, None] < cut, u, v)  # (t, c)
    scale = 1 + torch.rand(b, t, n, 1, generator=g)
    patches = scene[None, :, None] * scale + 0.05 * torch.randn(b, t, n, c, generator=g)
    cls = scene + 0.02 * torch.randn(b, t, c, generator=g)
    return patches.view(b, t, 4, n // 4, c), cls, u, v


def test_fastvid_cuts_at_a_planted_scene_change():
    _, cls, _, _ = two_scenes(b=2, cut=10)
    starts = segment_starts(cls)
    assert starts[:, 10].all() and starts[:, 0].all()
    assert starts.sum(1).tolist() == [8, 8]  # c = 8 segments: the scene change and the 6 next least similar pairs


def test_fastvid_never_merges_across_the_scene_change():
    patches, cls, u, v = two_scenes(cut=10)
    out = fastvid(patches, cls, 64)
    assert out.shape == (1, 64, 32)
    on_u = F.cosine_similarity(out[0], u, dim=-1) > 0.9
    on_v = F.cosine_similarity(out[0], v, dim=-1) > 0.9
    assert (on_u ^ on_v).all()
    assert on_u.sum() == 40 and on_v.sum() == 24  # 4 tokens per frame, in original order
    assert on_u[:40].all()


def test_fastvid_keeps_the_most_attended_token_of_every_frame():
    x, q = torch.randn(1, 8, 4, 4, 16), torch.randn(1, 8, 16)
    out = fastvid(x, q, 32)
    top = torch.einsum("tnc,tc->tn", x[0].view(8, 16, 16), q[0]).argmax(-1)
    most_attended = x[0].view(8, 16, 16)[torch.arange(8), top]
    assert ((most_attended[:, None] - out[0]).abs().amax(-1).amin(-1) == 0).all()


@pytest.mark.parametrize("reduce", [tome, prumerge, fastvid])
@pytest.mark.parametrize("patches, queries, match", [
    (torch.randn(4, 2, 2, 3), torch.randn(1, 4, 3), r"\(4, 2, 2, 3\)"),
    (torch.randn(2, 4, 2, 2, 3), torch.randn(1, 4, 3), r"differ: patches \(2, 4, 2, 2, 3\), queries \(1, 4, 3\)"),
    (torch.randn(1, 4, 2, 2, 3), torch.randn(1, 4, 5), r"queries \(1, 4, 5\)"),
    (torch.randn(1, 4, 0, 2, 3), torch.randn(1, 4, 3), r"empty input: patches \(1, 4, 0, 2, 3\)"),
])
def test_set_reducers_reject_bad_shapes(reduce, patches, queries, match):
    with pytest.raises(ValueError, match=match):
        reduce(patches, queries, 4)


@pytest.mark.parametrize("name", GRID + SETS)
def test_non_finite_values_raise(name):
    patches = torch.randn(1, 4, 4, 4, 3)
    patches[0, 2, 1, 1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"patches \(1, 4, 4, 4, 3\) contain NaN or infinite"):
        get_reducer(name)(TokenGrid(patches, torch.randn(1, 4, 3)))


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
@pytest.mark.parametrize("name", GRID + SETS)
def test_bf16_in_bf16_out_close_to_float32(name, device):
    grid = TokenGrid(torch.randn(1, 8, 4, 4, 16, device=device), torch.randn(1, 8, 16, device=device))
    low = TokenGrid(grid.patches.bfloat16(), grid.cls.bfloat16())
    reducer = get_reducer(name)
    out, ref = reducer(low), reducer(TokenGrid(low.patches.float(), low.cls.float()))
    out, ref = (out.patches, ref.patches) if reducer.keeps_grid else (out, ref)
    assert out.dtype == torch.bfloat16 and out.device.type == device
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)


def test_bench_reducers_cli_prints_every_reducer_beside_a_copy(capsys):
    from liteframe.cli import main

    args = ["bench", "reducers", "--frames", "8", "--size", "8", "--channels", "8", "--repeats", "1", "--warmup", "0"]
    assert main(args + ["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["reducer"] for row in rows] == REDUCERS.names()
    assert {row["input"] for row in rows} == {"8x8x8x8", "8x4x4x32"}  # set reducers see the pixel shuffle
    assert all(row["LLM tokens"] == 8 and row["copy ms"] > 0 and row["x copy"] > 0 for row in rows)
    assert main(args[:3] + ["0"] + args[4:]) == 2
    assert "frames 0, size 8, channels 8 and repeats 1 must be positive" in capsys.readouterr().err
    assert main(args + ["--device", "nonsense"]) == 2
    assert "device 'nonsense'" in capsys.readouterr().err
