import itertools
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from liteframe import TokenGrid
from liteframe.compression import COMPRESSIONS
from liteframe.reduce import get_reducer, wap, wap_weights


def wap_reference(patches, queries, block):
    """SPEC 3 written out token by token, in float64."""
    x, q = patches.double(), queries.double()
    b, tt, hh, ww, c = x.shape
    t, h, w = block
    out = torch.zeros(b, tt // t, hh // h, ww // w, c, dtype=torch.float64)
    for n, i, j, k in itertools.product(range(b), range(tt // t), range(hh // h), range(ww // w)):
        keys = [(i * t + dt, j * h + dh, k * w + dw) for dt in range(t) for dh in range(h) for dw in range(w)]
        s = torch.stack([q[n, f] @ x[n, f, r, col] / math.sqrt(c) for f, r, col in keys])
        a = torch.softmax(s, 0)
        out[n, i, j, k] = sum(a[m] * x[n, f, r, col] for m, (f, r, col) in enumerate(keys))
    return out


blocks = st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3))


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 2), nblk=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 2)),
       block=blocks, c=st.integers(1, 8), scale=st.floats(0.1, 5.0), seed=st.integers(0, 2**16))
def test_wap_matches_reference(b, nblk, block, c, scale, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (b, *(n * s for n, s in zip(nblk, block)), c)
    patches = torch.randn(shape, generator=g) * scale
    queries = torch.randn(b, shape[1], c, generator=g) * scale
    out = wap(patches, queries, block)
    assert out.shape == (b, *nblk, c) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), wap_reference(patches, queries, block), rtol=1e-4, atol=1e-4)


@settings(max_examples=10, deadline=None)
@given(t=st.integers(1, 7), h=st.integers(1, 5), w=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_uneven_grid_is_padded_by_repeating_the_last_frame_row_and_column(t, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    patches, queries = torch.randn(1, t, h, w, 3, generator=g), torch.randn(1, t, 3, generator=g)
    pad = lambda n, s: list(range(n)) + [n - 1] * (-n % s)  # noqa: E731
    padded = patches[:, pad(t, 4)][:, :, pad(h, 2)][:, :, :, pad(w, 2)]
    expected = wap_reference(padded, queries[:, pad(t, 4)], (4, 2, 2))
    if t % 4 or h % 2 or w % 2:
        with pytest.warns(UserWarning, match="padding by repeating"):
            out = wap(patches, queries)
    else:
        out = wap(patches, queries)
    assert out.shape == (1, math.ceil(t / 4), math.ceil(h / 2), math.ceil(w / 2), 3)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_weights_sum_to_one_per_block():
    patches, queries = torch.randn(2, 8, 4, 6, 5) * 3, torch.randn(2, 8, 5) * 3
    a = wap_weights(patches, queries, (4, 2, 2))
    assert a.shape == (2, 2, 2, 3, 16) and (a >= 0).all()
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 2, 2, 3))


def test_constant_block_returns_the_constant():
    value = torch.randn(3)
    patches = value.expand(1, 4, 2, 2, 3).clone()
    torch.testing.assert_close(wap(patches, torch.randn(1, 4, 3) * 10), value.view(1, 1, 1, 1, 3))


def test_equal_scores_give_average_pooling():
    """Queries orthogonal to every token make every score 0."""
    patches = torch.zeros(2, 8, 4, 4, 6)
    patches[..., :3] = torch.randn(2, 8, 4, 4, 3)
    queries = torch.zeros(2, 8, 6)
    queries[..., 3:] = torch.randn(2, 8, 3)
    avg = patches.view(2, 2, 4, 2, 2, 2, 2, 6).mean(dim=(2, 4, 6))
    torch.testing.assert_close(wap(patches, queries), avg)
    torch.testing.assert_close(get_reducer("avg")(TokenGrid(patches)).patches, avg)


def test_permuting_tokens_inside_a_block_changes_nothing():
    """Swap frames inside each temporal block (with their queries) and rows/columns inside spatial blocks."""
    patches, queries = torch.randn(1, 8, 4, 4, 5), torch.randn(1, 8, 5)
    frames, rows, cols = [2, 0, 3, 1, 5, 7, 4, 6], [1, 0, 3, 2], [1, 0, 2, 3]
    permuted = patches[:, frames][:, :, rows][:, :, :, cols]
    torch.testing.assert_close(wap(permuted, queries[:, frames]), wap(patches, queries))


def test_gradients_reach_patches_and_queries():
    patches = torch.randn(1, 4, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    queries = torch.randn(1, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, q: wap(p, q), (patches, queries))


def test_bf16_input_keeps_dtype_and_scores_in_float32():
    patches, queries = torch.randn(1, 4, 4, 4, 16) * 4, torch.randn(1, 4, 16) * 4
    out = wap(patches.bfloat16(), queries.bfloat16())
    assert out.dtype == torch.bfloat16
    ref = wap_reference(patches.bfloat16().float(), queries.bfloat16().float(), (4, 2, 2))
    torch.testing.assert_close(out.double(), ref, rtol=2e-2, atol=2e-2)


def test_reducer_keeps_the_grid_and_averages_cls():
    grid = TokenGrid(torch.randn(2, 8, 4, 4, 3), torch.randn(2, 8, 3))
    reducer = get_reducer("wap")
    out = reducer(grid)
    assert reducer.stage == "grid" and not reducer.needs_attention and out.shape == (2, 2, 2, 2, 3)
    assert reducer.num_tokens(8, 4, 4) == out.patches[0].numel() // 3 == 8
    torch.testing.assert_close(out.cls, grid.cls.view(2, 2, 4, 3).mean(2))
    torch.testing.assert_close(out.patches, wap(grid.patches, grid.cls))
    no_cls = reducer(TokenGrid(grid.patches))
    assert no_cls.cls is None
    torch.testing.assert_close(no_cls.patches, wap(grid.patches, grid.patches.mean(dim=(2, 3))))


@pytest.mark.parametrize("patches, queries, match", [
    (torch.randn(4, 2, 2, 3), torch.randn(1, 4, 3), r"\(4, 2, 2, 3\)"),
    (torch.randn(1, 4, 2, 2, 3), torch.randn(4, 3), r"queries \(4, 3\)"),
    (torch.randn(2, 4, 2, 2, 3), torch.randn(1, 4, 3), r"differ: patches \(2, 4, 2, 2, 3\), queries \(1, 4, 3\)"),
    (torch.randn(1, 4, 2, 2, 3), torch.randn(1, 4, 5), r"queries \(1, 4, 5\)"),
    (torch.randn(1, 0, 2, 2, 3), torch.randn(1, 0, 3), r"empty input: patches \(1, 0, 2, 2, 3\)"),
])
def test_bad_shapes_raise_naming_them(patches, queries, match):
    with pytest.raises(ValueError, match=match):
        wap(patches, queries)


@pytest.mark.parametrize("where", ["patches", "queries"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_raise(where, bad):
    patches, queries = torch.randn(1, 4, 2, 2, 3), torch.randn(1, 4, 3)
    (patches if where == "patches" else queries).view(-1)[5] = bad
    with pytest.raises(ValueError, match=f"{where} .* NaN or infinite"):
        wap(patches, queries)


@pytest.mark.parametrize("ratio", [4, 16, 64])
def test_compression_sets_the_block(ratio):
    compression = COMPRESSIONS[ratio]
    patches, queries = torch.randn(1, 8, 4, 4, 3), torch.randn(1, 8, 3)
    torch.testing.assert_close(wap(patches, queries, ratio), wap(patches, queries, compression.block))
    torch.testing.assert_close(wap(patches, queries, compression).double(),
                               wap_reference(patches, queries, compression.block), rtol=1e-5, atol=1e-5)


def test_scores_and_softmax_stay_float32_under_autocast():
    """Under autocast the einsum would run as a bf16 bmm: the distillation targets must not round differently
    from the held-out ones computed without it."""
    patches, queries = torch.randn(2, 8, 4, 4, 32) * 3, torch.randn(2, 8, 32) * 3
    ref = wap(patches, queries)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        weights = wap_weights(patches, queries, (4, 2, 2))
        out = wap(patches, queries)
    assert weights.dtype == out.dtype == torch.float32
    torch.testing.assert_close(weights, wap_weights(patches, queries, (4, 2, 2)), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


def test_the_finite_check_can_be_left_to_the_caller():
    """`check=False` (hot paths: no host sync) returns NaN where the input has it instead of raising."""
    patches, queries = torch.randn(1, 8, 2, 2, 3), torch.randn(1, 8, 3)
    patches[0, 5, 1, 1, 2] = float("nan")
    out = wap(patches, queries, check=False)
    assert out[0, 1].isnan().all() and out[0, 0].isfinite().all()
    with pytest.raises(ValueError, match="NaN or infinite"):
        wap(patches, queries)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_matches_cpu(dtype):
    patches, queries = torch.randn(2, 8, 4, 4, 16), torch.randn(2, 8, 16)
    cpu = wap(patches.to(dtype), queries.to(dtype))
    torch.testing.assert_close(wap(patches.to(dtype).cuda(), queries.to(dtype).cuda()).cpu(), cpu,
                               rtol=2e-2, atol=2e-2)
