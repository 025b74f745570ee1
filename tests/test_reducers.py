import json
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from liteframe import TokenGrid
from liteframe.compression import COMPRESSIONS, Compression
from liteframe.errors import InputError
from liteframe.grid import TokenSet
from liteframe.reduce import REDUCERS, Merge, fastvid, get_reducer, prumerge, tome
from liteframe.reduce.fastvid import segment_starts
from liteframe.reduce.prumerge import spread_order
from liteframe.reduce.tome import merge_to

GRID = ["wap", "avg", "max", "subsample"]
SETS = ["tome", "tome-clip", "prumerge", "fastvid"]


def with_attention(patches, cls=None, seed=0, ck=6):
    """A grid carrying random ViT attention: scores a softmax row over CLS and patches, keys `(.., ck)`."""
    g = torch.Generator().manual_seed(seed)
    b, t, h, w, _ = patches.shape
    row = torch.randn(b, t, 1 + h * w, generator=g, dtype=patches.dtype).mul(2).softmax(-1)
    keys = torch.randn(b, t, h, w, ck, generator=g, dtype=patches.dtype)
    return TokenGrid(patches, cls, row[..., 1:].reshape(b, t, h, w), keys)


def test_registry_declares_stage_and_attention():
    assert set(REDUCERS.names()) == set(GRID + SETS)
    assert {name: get_reducer(name).stage for name in REDUCERS.names()} == {
        **{name: "grid" for name in GRID}, **{name: "set" for name in SETS}}
    assert [name for name in REDUCERS.names() if get_reducer(name).needs_attention] == ["prumerge", "fastvid"]
    with pytest.raises(ValueError, match="unknown reducer 'nope'; choose from wap"):
        get_reducer("nope")


@pytest.mark.parametrize("name", GRID)
@pytest.mark.parametrize("ratio", [4, 16, 64])
def test_grid_reducers_pool_the_compression_block(name, ratio):
    compression = COMPRESSIONS[ratio]
    grid = TokenGrid(torch.randn(1, 8, 8, 8, 3), torch.randn(1, 8, 3))
    reducer = get_reducer(name)
    t, h, w = compression.block
    for spec in (ratio, compression, str(ratio) + "x"):
        out = reducer(grid, spec)
        assert out.patches.shape == (1, 8 // t, 8 // h, 8 // w, 3) and out.cls.shape == (1, 8 // t, 3)
        assert reducer.num_tokens(8, 8, 8, spec) == out.patches[0, ..., 0].numel() == 512 // ratio
    torch.testing.assert_close(reducer(grid).patches, reducer(grid, 16).patches)  # default: 16x


def test_avg_follows_any_block():
    x = torch.randn(1, 2, 6, 3, 4)
    out = get_reducer("avg")(TokenGrid(x), Compression((2, 3, 1))).patches
    torch.testing.assert_close(out, x.view(1, 1, 2, 2, 3, 3, 1, 4).mean(dim=(2, 4, 6)))


@settings(max_examples=12, deadline=None)
@given(name=st.sampled_from(SETS), b=st.integers(1, 2), t=st.integers(1, 9), side=st.integers(2, 6),
       compression=st.sampled_from([4, 16, (2, 1, 1)]), cls=st.booleans(), seed=st.integers(0, 2**16))
def test_set_reducers_return_exactly_the_budget(name, b, t, side, compression, cls, seed):
    g = torch.Generator().manual_seed(seed)
    grid = with_attention(torch.randn(b, t, side, side, 5, generator=g),
                          torch.randn(b, t, 5, generator=g) if cls else None, seed)
    reducer = get_reducer(name)
    ratio = Compression(compression).ratio if isinstance(compression, tuple) else compression
    n = math.ceil(t * side * side / ratio)
    refused = None
    if name == "tome-clip" and t % 4:
        refused = "not whole clips"
    elif name.startswith("tome") and n < (t if name == "tome" else t // 4):
        refused = "at least one token per"
    if refused:  # refused when the count is asked (before any video is decoded), and by the reducer itself
        for call in (lambda: reducer.num_tokens(t, side, side, compression), lambda: reducer(grid, compression)):
            with pytest.raises(InputError, match=refused):
                call()
        return
    assert reducer.num_tokens(t, side, side, compression) == n
    out = reducer(grid, compression)
    assert isinstance(out, TokenSet) and out.tokens.shape == (b, n, 5) and torch.isfinite(out.tokens).all()
    assert out.steps == t and (out.counts().sum(1) == n).all()
    order = out.step * (side * side + 1) + out.pos  # original order: time, then raster (extra tokens last)
    assert (order[:, 1:] > order[:, :-1]).all() and (out.pos <= side * side).all()


@pytest.mark.parametrize("name", SETS)
def test_each_token_sits_at_the_frame_and_position_it_mostly_comes_from(name):
    """A grid of distinct one-hot tokens: each output's largest weight is on the input token at its place (ToMe's
    survivor, PruMerge's kept token, FastVID's salient token or anchor); PruMerge's extra tokens sit last."""
    x = torch.eye(64).view(1, 4, 4, 4, 64)
    out = get_reducer(name)(with_attention(x, torch.randn(1, 4, 64)), 4)
    placed = out.pos < 16
    own = out.tokens[0].gather(1, (out.step * 16 + out.pos).clamp_max(63)[0, :, None])[:, 0]
    assert (own[placed[0]] == out.tokens[0, placed[0]].amax(-1)).all() and (own[placed[0]] > 0).all()
    assert (~placed).sum() == (4 if name == "prumerge" else 0)


def test_merge_applies_its_entries_as_one_sparse_product():
    x = torch.randn(2, 2, 2, 2, 3, dtype=torch.float64)
    row, col = torch.tensor([[0, 0, 1, 2], [1, 2, 0, 0]]), torch.tensor([[0, 5, 7, 3], [1, 1, 6, 2]])
    weight = torch.tensor([[1.0, 0.5, 2.0, 0.0], [1.0, -1.0, 3.0, 0.25]], dtype=torch.float64)
    frame, pos = torch.tensor([[0, 1, 1], [0, 0, 1]]), torch.tensor([[0, 3, 4], [1, 2, 2]])
    out = Merge(frame, pos, row, col, weight).apply(x)
    dense = torch.zeros(2, 3, 8, dtype=torch.float64)
    for v in range(2):
        for r, c, w in zip(row[v], col[v], weight[v]):
            dense[v, r, c] += w
    torch.testing.assert_close(out.tokens, dense @ x.view(2, 8, 3))
    assert out.steps == 2 and out.counts().tolist() == [[1, 2], [2, 1]]


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
    out = tome(TokenGrid(x.view(2, 3, 4, 4, 8)), 3 * 14)
    survivors = [i for i in range(16) if i not in (4, 10)]
    expected = x[:, :, survivors].clone()
    expected[:, :, survivors.index(11)] = x[:, :, 10] * 2  # size-weighted mean of x and 3x
    torch.testing.assert_close(out.tokens, expected.reshape(2, 42, 8))
    assert out.pos.tolist() == [survivors * 3] * 2 and out.step.tolist() == [[0] * 14 + [1] * 14 + [2] * 14] * 2


def test_tome_over_a_clip_merges_a_repeated_frame_into_one():
    """Frame 1 repeats frame 0; with 9 tokens a frame, each token and its repeat sit on opposite sides of the
    bipartite split, so halving the clip merges exactly the repeats: one frame's tokens remain, each of size 2."""
    frame = torch.randn(1, 1, 3, 3, 8)
    x = torch.cat([frame, frame], 1)
    tokens, size, where, owner = merge_to(x.view(1, 1, 18, 8), torch.tensor([9]))
    assert torch.equal(size, torch.full((1, 9), 2.0))
    assert torch.equal(owner[:, :9], owner[:, 9:]) and sorted(owner[0, :9].tolist()) == list(range(9))
    rows = lambda t: t.reshape(-1, 8)[t.reshape(-1, 8)[:, 0].argsort()]  # noqa: E731
    torch.testing.assert_close(rows(tokens), rows(frame))
    clip = tome(TokenGrid(x), 9, clip=2)
    torch.testing.assert_close(clip.tokens, tokens)
    assert torch.equal(clip.step * 9 + clip.pos, where)
    assert not torch.allclose(rows(tome(TokenGrid(x), 9).tokens), rows(frame))  # frame by frame, distinct tokens merge


@settings(max_examples=10, deadline=None)
@given(g=st.integers(1, 4), n=st.integers(2, 40), seed=st.integers(0, 2**16), data=st.data())
def test_tome_preserves_the_size_weighted_mean(g, n, seed, data):
    k = data.draw(st.integers(1, n - 1))
    keep = k + torch.tensor(data.draw(st.lists(st.integers(0, 1), min_size=g, max_size=g)))
    x = torch.randn(2, g, n, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    tokens, size, _, _ = merge_to(x, keep)
    assert tokens.shape == (2, int(keep.sum()), 6)
    groups = torch.repeat_interleave(torch.arange(g), keep)
    for j in range(g):
        torch.testing.assert_close(size[:, groups == j].sum(-1), torch.full((2,), float(n), dtype=torch.float64))
        torch.testing.assert_close((tokens[:, groups == j] * size[:, groups == j, None]).sum(1), x[:, j].sum(1))


@pytest.mark.parametrize("name", GRID + SETS)
@pytest.mark.parametrize("compression", [4, 16, 64])
def test_levels_follow_the_one_decision_on_the_patches(name, compression):
    """Levels `[3x, y, x + y]` of patches `x`: the patches reduce as without levels, and the levels as `3 out`,
    `out(y)` and `out + out(y)`, which fails wherever a decision is retaken per level (WAP's weights, max's
    positions, ToMe's matching, PruMerge's and FastVID's choices)."""
    shapes = [(1, 8, 8, 8, 16)] + ([(1, 6, 5, 7, 8)] if name in GRID else [])  # the second: partial blocks
    for shape in shapes:
        g = torch.Generator().manual_seed(len(shape) + shape[1])
        x, y = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        plain = with_attention(x)
        grid = TokenGrid(x, None, plain.scores, plain.keys, (3 * x, y, x + y))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # padding to whole blocks is announced, and tested, above
            out, alone = get_reducer(name)(grid, compression), get_reducer(name)(plain, compression)
        if name in GRID:
            assert torch.equal(out.patches, alone.patches)
            ours = out.patches
        else:
            assert torch.equal(out.step, alone.step) and torch.equal(out.pos, alone.pos)
            torch.testing.assert_close(out.tokens, alone.tokens, rtol=0, atol=1e-6)
            ours = out.tokens
        scaled, other, both = out.levels
        assert other.shape == ours.shape
        torch.testing.assert_close(scaled, 3 * ours, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(both, ours + other, rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(t=st.sampled_from([1, 2, 4, 8]), h=st.integers(1, 6), w=st.integers(1, 6), clip=st.sampled_from([1, 2, 4]),
       keep=st.floats(0.0, 1.0), seed=st.integers(0, 3))
def test_tomes_merge_is_its_rounds_of_size_weighted_averages(t, h, w, clip, keep, seed):
    """ToMe's decision, a `Merge` of means over the tokens merged together, gives the tokens its rounds compute."""
    if t % clip:
        return
    x = torch.randn(2, t, h, w, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    groups = t // clip
    num_tokens = groups + round(keep * (t * h * w - groups))
    tokens, size, where, owner = merge_to(x.view(2, groups, clip * h * w, 8), budget_per_group(groups, num_tokens))
    out = tome(TokenGrid(x), num_tokens, clip)
    torch.testing.assert_close(out.tokens, tokens)
    assert torch.equal(out.step * h * w + out.pos, where)
    counts = torch.zeros(2, num_tokens, dtype=torch.float64).scatter_add_(1, owner, torch.ones_like(x[..., 0].view(2, -1)))
    torch.testing.assert_close(counts, size)  # each output stands for the inputs it owns


def budget_per_group(groups, total):
    return torch.tensor(budgets(groups, total))


def budgets(frames, total):
    return [(t + 1) * total // frames - t * total // frames for t in range(frames)]


def prumerge_reference(x, score, keys, num_tokens, h, w):
    """BASELINES' PruMerge+ token by token in float64: `(T, n, C), (T, n), (T, n, Ck)` -> `(num_tokens, C)`."""
    out = []
    spread = spread_order(h, w)
    for t, k in enumerate(budgets(len(x), num_tokens)):
        a = score[t]
        q1, q3 = a.quantile(0.25), a.quantile(0.75)
        outliers = sorted((j for j in range(len(a)) if a[j] > q3 + 1.5 * (q3 - q1)), key=lambda j: -a[j])
        rest = sorted((j for j in range(len(a)) if j not in outliers), key=lambda j: -spread[j])
        kept = sorted((outliers + rest)[: max(k - 1, 0)])
        unit = F.normalize(keys[t], dim=-1)
        for i in kept:
            others = sorted((j for j in range(len(a)) if j != i), key=lambda j: -float(unit[i] @ unit[j]))[:32]
            out.append(x[t, i] + sum(a[j] * x[t, j] for j in others))
        if k:
            out.append(sum(a[j] * x[t, j] for j in range(len(a)) if j not in kept))
    return torch.stack(out)


@pytest.mark.parametrize("side, num_tokens", [(4, 16), (6, 40), (8, 24)])
def test_prumerge_matches_a_slow_reference(side, num_tokens):
    torch.manual_seed(side)
    x = torch.randn(1, 3, side, side, 5, dtype=torch.float64)
    grid = with_attention(x, torch.randn(1, 3, 5, dtype=torch.float64), seed=side)
    scores = grid.scores.clone()
    scores[0, 1, 1, 2] = 0.5  # a planted outlier
    grid = TokenGrid(grid.patches, grid.cls, scores, grid.keys)
    out = prumerge(grid, num_tokens)
    n = side * side
    ref = prumerge_reference(x[0].view(3, n, 5), scores[0].view(3, n), grid.keys[0].view(3, n, 6), num_tokens,
                             side, side)
    torch.testing.assert_close(out.tokens[0], ref)
    assert (out.pos[out.step == 1] == 1 * side + 2).any()  # the outlier is kept


def test_prumerge_keeps_a_planted_outlier_and_tops_up_with_spread_tokens():
    x = torch.randn(1, 2, 8, 8, 16)
    grid = with_attention(x)
    scores = torch.full((1, 2, 8, 8), 0.001)  # equal attention: no outliers (IQR 0)...
    scores[0, 1, 3, 5] = 0.9  # ...but this token
    out = prumerge(TokenGrid(x, None, scores, grid.keys), 10)  # 5 per frame: 4 kept and the extra token
    assert sorted(spread_order(8, 8).topk(4).indices.tolist()) == [0, 4, 32, 36]  # (3, 5) is no spread pick
    assert out.pos.tolist() == [[0, 4, 32, 36, 64, 0, 4, 29, 32, 64]]


def fastvid_reference(x, score, cls, num_tokens):
    """BASELINES' FastVID token by token in float64: `(T, n, C), (T, n), (T, C)` -> `(num_tokens, C)`."""
    t_all, n, c = x.shape
    retain = budgets(t_all, num_tokens)
    context = [int(r * 0.4) for r in retain]
    g = F.normalize(cls, dim=-1)
    sim = [float(g[t] @ g[t + 1]) for t in range(t_all - 1)]
    cuts = set(sorted(range(t_all - 1), key=lambda i: sim[i])[:7]) | {i for i in range(t_all - 1) if sim[i] < 0.9}
    starts = [0] + [i + 1 for i in sorted(cuts)] + [t_all]
    salient = [set(sorted(range(n), key=lambda j: -score[t, j])[: retain[t] - context[t]]) for t in range(t_all)]
    out = {(t, j): x[t, j] for t in range(t_all) for j in salient[t]}
    for s0, s1 in zip(starts[:-1], starts[1:]):
        frames = list(range(s1 - 1, s0 - 1, -4))
        budget = sum(context[s0:s1])
        quotas = [budget // len(frames) + (i < budget % len(frames)) for i in range(len(frames))]
        members = [(t, j) for t in range(s0, s1) for j in range(n) if j not in salient[t]]
        for f, quota in zip(frames, quotas):
            cand = [j for j in range(n) if j not in salient[f]]
            dist = {(i, j): float((x[f, i] - x[f, j]).norm()) / c**0.5 for i in cand for j in cand}
            density = {i: math.exp(-sum(sorted(dist[i, j] ** 2 for j in cand)[:4]) / min(4, len(cand))) for i in cand}
            farthest = max(dist.values())
            delta = {i: min([dist[i, j] for j in cand if density[j] > density[i]], default=farthest) for i in cand}
            anchors = sorted(cand, key=lambda i: -density[i] * delta[i])[:quota]
            joined = {a: [] for a in anchors}
            for t, j in members:
                cos = [float(F.cosine_similarity(x[t, j], x[f, a], dim=0)) for a in anchors]
                joined[anchors[cos.index(max(cos))]].append(x[t, j])
            for a in anchors:
                w = max(1 / (len(joined[a]) + 1), 0.6)
                out[f, a] = w * x[f, a] + (1 - w) * torch.stack(joined[a]).mean(0)
    return torch.stack([out[key] for key in sorted(out)]), sorted(out)


def planted_segments(t=17, n=16, c=8, seed=0):
    """Frames 0-9 one slowly drifting scene (neighbours ~0.99 similar); frames 10-16 each a scene of its own."""
    g = torch.Generator().manual_seed(seed)
    cls = torch.randn(t, c, generator=g, dtype=torch.float64)
    cls[:10] = cls[0] + 0.02 * torch.randn(10, c, generator=g, dtype=torch.float64)
    x = torch.randn(1, t, 4, n // 4, c, generator=g, dtype=torch.float64)
    return with_attention(x, cls[None], seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_fastvid_matches_a_slow_reference(seed):
    grid = planted_segments(seed=seed)
    assert segment_starts(grid.cls).nonzero()[:, 1].tolist() == [0, *range(10, 17)]
    out = fastvid(grid, 17 * 5)  # 5 a frame: 3 salient, 2 context; frames 9, 5, 1 anchor 7, 7 and 6 of segment 0-9
    ref, where = fastvid_reference(grid.patches[0].view(17, 16, 8), grid.scores[0].view(17, 16), grid.cls[0], 85)
    torch.testing.assert_close(out.tokens[0], ref)
    assert list(zip(out.step[0].tolist(), out.pos[0].tolist())) == where
    assert out.counts()[0, :10].tolist() == [3, 9, 3, 3, 3, 10, 3, 3, 3, 10]


def two_scenes(b=1, t=16, cut=10, n=16, c=32, seed=0):
    """Frames [0, cut) show scene u, the rest scene v (orthogonal), each with small noise."""
    g = torch.Generator().manual_seed(seed)
    u, v = torch.zeros(c), torch.zeros(c)
    u[: c // 2], v[c // 2:] = 1.0, 1.0
    scene = torch.where(torch.arange(t)[:, None] < cut, u, v)  # (t, c)
    scale = 1 + torch.rand(b, t, n, 1, generator=g)
    patches = scene[None, :, None] * scale + 0.05 * torch.randn(b, t, n, c, generator=g)
    cls = scene + 0.02 * torch.randn(b, t, c, generator=g)
    return with_attention(patches.view(b, t, 4, n // 4, c), cls, seed), u, v


def test_fastvid_cuts_at_a_planted_scene_change():
    grid, _, _ = two_scenes(b=2, cut=10)
    starts = segment_starts(grid.cls)
    assert starts[:, 10].all() and starts[:, 0].all()
    assert starts.sum(1).tolist() == [8, 8]  # c = 8 segments: the scene change and the 6 next least similar pairs


def test_fastvid_never_merges_across_the_scene_change():
    grid, u, v = two_scenes(cut=10)
    out = fastvid(grid, 64)
    assert out.tokens.shape == (1, 64, 32)
    on_u = F.cosine_similarity(out.tokens[0], u, dim=-1) > 0.9
    on_v = F.cosine_similarity(out.tokens[0], v, dim=-1) > 0.9
    assert (on_u ^ on_v).all() and (on_u == (out.step[0] < 10)).all()


def test_fastvid_keeps_the_most_attended_token_of_every_frame():
    grid = with_attention(torch.randn(1, 8, 4, 4, 16))
    out = fastvid(grid, 32)
    top = grid.scores[0].view(8, 16).argmax(-1)
    most_attended = grid.patches[0].view(8, 16, 16)[torch.arange(8), top]
    assert ((most_attended[:, None] - out.tokens[0]).abs().amax(-1).amin(-1) == 0).all()


@pytest.mark.parametrize("name", ["prumerge", "fastvid"])
def test_attention_reducers_need_the_vits_scores(name):
    with pytest.raises(ValueError, match=f"{name} ranks tokens by the ViT's own CLS attention.*attention=True"):
        get_reducer(name)(TokenGrid(torch.randn(1, 4, 4, 4, 3), torch.randn(1, 4, 3)))


@pytest.mark.parametrize("reduce", [tome, prumerge, fastvid])
@pytest.mark.parametrize("patches, queries, match", [
    (torch.randn(1, 4, 0, 2, 3), torch.randn(1, 4, 3), r"empty input: patches \(1, 4, 0, 2, 3\)"),
    (torch.randn(1, 4, 2, 2, 3).int(), torch.randn(1, 4, 3), r"floating-point"),
])
def test_set_reducers_reject_bad_input(reduce, patches, queries, match):
    b, t, h, w, _ = patches.shape
    grid = TokenGrid(patches, queries, torch.rand(b, t, h, w), torch.randn(b, t, h, w, 2))
    with pytest.raises(ValueError, match=match):
        reduce(grid, 4)


@pytest.mark.parametrize("name", GRID + SETS)
def test_non_finite_values_raise(name):
    patches = torch.randn(1, 4, 4, 4, 3)
    patches[0, 2, 1, 1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"patches \(1, 4, 4, 4, 3\) contain NaN or infinite"):
        get_reducer(name)(with_attention(patches, torch.randn(1, 4, 3)))


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
@pytest.mark.parametrize("name", GRID + SETS)
def test_bf16_in_bf16_out_close_to_float32(name, device):
    grid = with_attention(torch.randn(1, 8, 4, 4, 16), torch.randn(1, 8, 16))
    low = TokenGrid(*(getattr(grid, f).bfloat16().to(device) for f in ("patches", "cls", "scores", "keys")))
    high = TokenGrid(*(getattr(low, f).float() for f in ("patches", "cls", "scores", "keys")))
    reducer = get_reducer(name)
    out, ref = reducer(low), reducer(high)
    out, ref = (out.patches, ref.patches) if reducer.stage == "grid" else (out.tokens, ref.tokens)
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
    big = ["--frames", "16", "--size", "16"]  # 64x keeps 1 token per 8 x 8 shuffled frame
    assert main(args + big + ["--json", "--compression", "64"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["LLM tokens"] for row in rows} == {16} and {row["compression"] for row in rows} == {"64x (4, 4, 4)"}
    assert main(args[:3] + ["0"] + args[4:]) == 2
    assert "frames 0, size 8, channels 8 and repeats 1 must be positive" in capsys.readouterr().err
    assert main(args + ["--device", "nonsense"]) == 2
    assert "device 'nonsense'" in capsys.readouterr().err
    assert main(args + ["--compression", "3"]) == 2
    assert "compression '3'" in capsys.readouterr().err
