"""The `keyframe-tome` student: ToMe inside its blocks (models/merge.py), its key frame's tokens carried to the
clip's frames (mixers.Propagate), WAP with its own CLS; each part against a slow float64 reference."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from liteframe.models import LiteFrameConfig, LiteFrameEncoder
from liteframe.models.flops import count_flops
from liteframe.models.merge import TokenMerge, redundancy
from liteframe.models.mixers import Propagate
from liteframe.reduce import wap


def _config(**overrides) -> LiteFrameConfig:
    return LiteFrameConfig(**{**dict(width=64, depth=6, heads=4, mlp=128, image=112, out_dim=64,
                                     temporal="keyframe-tome", teacher_layers=tuple(range(6))), **overrides})


def _merge_reference(tokens, sizes, owner, delta, metric, r):
    """One ToMe round on one sequence of patch tokens, with Python lists: the even tokens (A) each find their
    most similar odd token (B) by the cosine of `metric`; the r best-matched A tokens are averaged into their
    match, weighted by size; A tokens kept go first, in order of their match score, then B."""
    if r == 0:
        return tokens, sizes, owner, delta
    a, b = list(range(0, len(tokens), 2)), list(range(1, len(tokens), 2))
    unit = [m / m.norm() for m in metric]
    best = {i: max(b, key=lambda j: float(unit[i] @ unit[j])) for i in a}
    score = {i: float(unit[i] @ unit[best[i]]) for i in a}
    ranked = sorted(a, key=lambda i: -score[i])
    gone, kept = ranked[:r], ranked[r:]
    new_tokens, new_sizes = [tokens[i] for i in kept], [sizes[i] for i in kept]
    where = {i: k for k, i in enumerate(kept)}
    for j in b:
        into = [i for i in gone if best[i] == j]
        total = sizes[j] + sum(sizes[i] for i in into)
        new_tokens.append((sizes[j] * tokens[j] + sum(sizes[i] * tokens[i] for i in into)) / total)
        new_sizes.append(total)
        where[j] = len(new_tokens) - 1
        where.update({i: where[j] for i in into})
    new_owner = [where[o] for o in owner]
    new_delta = [d + tokens[o] - new_tokens[n] for d, o, n in zip(delta, owner, new_owner)]
    return new_tokens, new_sizes, new_owner, new_delta


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 3), patches=st.integers(4, 20), prefix=st.integers(0, 2), c=st.integers(1, 6),
       seed=st.integers(0, 999), data=st.data())
def test_token_merge_matches_a_slow_reference(n, patches, prefix, c, seed, data):
    """Two ToMe rounds, then unmerging, equal the reference for every sequence: the tokens, their sizes (and the
    proportional attention's log sizes), and each original patch's token plus its own residual."""
    torch.manual_seed(seed)
    x = torch.randn(n, prefix + patches, c, dtype=torch.float64)
    merging = TokenMerge(x, prefix)
    r1 = data.draw(st.integers(0, patches // 2))
    r2 = data.draw(st.integers(0, (patches - r1) // 2))
    refs = [([t for t in x[s, prefix:]], [1.0] * patches, list(range(patches)), [torch.zeros(c)] * patches)
            for s in range(n)]
    for r in (r1, r2):
        keys = torch.randn(n, 2, x.shape[1], 3, dtype=torch.float64)
        x = merging.merge(x, keys, r)
        refs = [_merge_reference(*ref, keys[s, :, prefix:].mean(0), r) for s, ref in enumerate(refs)]
        bias = merging.bias()  # none until a token stands for more than one patch
        assert (bias is None) == all(size == 1 for ref in refs for size in ref[1])
        for s, (tokens, sizes, _, _) in enumerate(refs):
            torch.testing.assert_close(x[s, prefix:], torch.stack(tokens))
            if bias is not None:
                torch.testing.assert_close(bias[s, 0, 0, prefix:], torch.tensor(sizes).log().double())
        x = x + torch.randn_like(x)  # what a block adds between rounds: each patch keeps its own delta
        refs = [(list(x[s, prefix:]), *ref[1:]) for s, ref in enumerate(refs)]
    out = merging.unmerge(x)
    for s, (tokens, _, owner, delta) in enumerate(refs):
        torch.testing.assert_close(out[s, prefix:], torch.stack([tokens[o] + d for o, d in zip(owner, delta)]))
    assert torch.equal(out[:, :prefix], x[:, :prefix])


def test_token_merge_refuses_more_than_half():
    merging = TokenMerge(torch.zeros(1, 9, 2), prefix=1)
    with pytest.raises(ValueError, match="at most half of the 8 patch tokens in a block, not 5"):
        merging.merge(torch.zeros(1, 9, 2), torch.zeros(1, 1, 9, 2), 5)


def _propagate_reference(frames, tokens, temperature, distance, radius=2):
    """Per frame and patch: softmax over the key frame's patches within `radius` (Chebyshev) of
    (cosine of centred 2 x 2-averaged colour thumbnails - distance * Euclidean offset) / temperature."""
    t, _, height, width = frames.shape
    h, w, _ = tokens.shape
    key = (t - 1) // 2
    thumbs = F.avg_pool2d(frames, 2)
    side = thumbs.shape[-1] // w

    def thumb(f, i, j):
        v = thumbs[f, :, i * side:(i + 1) * side, j * side:(j + 1) * side].flatten()
        v = v - v.mean()
        return v / v.norm()

    out = torch.empty(t, h, w, tokens.shape[-1], dtype=tokens.dtype)
    for f in range(t):
        for i in range(h):
            for j in range(w):
                if f == key:
                    out[f, i, j] = tokens[i, j]
                    continue
                near = [(y, x) for y in range(i - radius, i + radius + 1) for x in range(j - radius, j + radius + 1)
                        if 0 <= y < h and 0 <= x < w]
                logits = torch.stack([(thumb(f, i, j) @ thumb(key, y, x) - distance * math.hypot(y - i, x - j))
                                      / temperature for y, x in near])
                weights = logits.softmax(0)
                out[f, i, j] = sum(wt * tokens[y, x] for wt, (y, x) in zip(weights, near))
    return out


@pytest.mark.parametrize("t, h, w", [(4, 3, 5), (2, 6, 2), (3, 1, 1)])
def test_propagate_matches_a_slow_reference(t, h, w):
    torch.manual_seed(t * h * w)
    mixer = Propagate(temperature=0.3, distance=0.2).double()
    frames = torch.randn(2, t, 3, h * 14, w * 14, dtype=torch.float64)
    tokens = torch.randn(2, h, w, 5, dtype=torch.float64)
    with torch.no_grad():
        out = mixer(frames, tokens)
    for s in range(2):
        torch.testing.assert_close(out[s], _propagate_reference(frames[s], tokens[s], 0.3, 0.2))


def test_untrained_without_merges_is_wap_of_the_teacher_on_each_key_frame_carried_to_its_clip(teacher):
    """Cropped whole, untrained and merging nothing, the student is the teacher (transformers' own tower) on each
    clip's second frame, its tokens carried to the clip's frames and WAP-pooled over the 16x block with its CLS."""
    student = LiteFrameEncoder.from_teacher(teacher, _config()).double()
    teacher = teacher.double()  # (the fixture is this module's own)
    assert student.config.block == (4, 2, 2) and len(student.downsample) == 0
    pixels = torch.randn(2, 8, 3, 112, 112, dtype=torch.float64)
    with torch.no_grad():
        grid = student(pixels)
        ref = teacher(pixels[:, 1::4])
        carried = student.propagate(pixels.unflatten(1, (2, 4)).flatten(0, 1), ref.patches.flatten(0, 1))
        pooled = wap(carried, ref.cls.flatten(0, 1)[:, None].expand(-1, 4, -1), (4, 2, 2))
    assert grid.shape == (2, 2, 4, 4, 64)
    torch.testing.assert_close(grid.patches, pooled.reshape(2, 2, 4, 4, 64))
    torch.testing.assert_close(grid.cls, ref.cls)


def test_merging_duplicated_patches_changes_nothing_and_merges_cut_the_flops(teacher):
    """ToMe with proportional attention is exact for identical tokens: with no position table and each pair of
    horizontally adjacent patches equal (ToMe's A and B sides), merging every pair in the first block gives the
    unmerged output. Merges cut the FLOPs counted on the meta device."""
    plain = LiteFrameEncoder.from_teacher(teacher, _config()).double()
    merged = LiteFrameEncoder.from_teacher(teacher, _config(merge=(32, 0, 0, 0, 0, 0))).double()
    with torch.no_grad():
        for model in (plain, merged):
            model.pos_embed.zero_()
    column = torch.tensor([x // 28 * 14 + x % 14 for x in range(112)])  # patches 2k and 2k + 1 read the same pixels
    pixels = torch.randn(1, 4, 3, 112, 56, dtype=torch.float64)[..., column]
    noise = torch.randn(1, 4, 3, 112, 112, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(merged(pixels).patches, plain(pixels).patches)
        assert not torch.allclose(merged(noise).patches, plain(noise).patches)  # other tokens merge with loss
    shape = (1, 4, 3, 112, 112)
    with torch.device("meta"):
        flops = [count_flops(LiteFrameEncoder(_config(merge=m)), shape).total
                 for m in ((), (8, 8, 8, 4, 0, 0), (24, 8, 4, 2, 1, 0))]
    assert flops[0] > flops[1] > flops[2]


def test_config_names_every_misfit_at_once():
    with pytest.raises(ValueError) as err:
        _config(scale=0.5, cls_token=False, merge=(40, 20))
    assert str(err.value) == ("keyframe-tome needs scale 1 without redundancy (it reads its key frames whole); "
                              "keyframe-tome needs a CLS token; merge has 2 counts for 6 blocks; merge: block 1 cannot "
                              "merge 40 of its 64 patch tokens (at most half)")
    with pytest.raises(ValueError, match=r"keyframe-tome needs scale below 1 with redundancy \(the size"):
        _config(redundancy=0.6)
    with pytest.raises(ValueError, match="merge: only the keyframe-tome variant has it; redundancy: only the"):
        _config(temporal="keyframe", merge=(1,) * 6, redundancy=0.5)


def test_save_load_round_trip(tmp_path, teacher):
    model = LiteFrameEncoder.from_teacher(teacher, _config(merge=(8, 8, 4, 4, 2, 2))).eval()
    with torch.no_grad():
        model.propagate.distance.fill_(0.3)
    model.save_pretrained(tmp_path)
    loaded = LiteFrameEncoder.from_pretrained(tmp_path)
    assert loaded.config == model.config and loaded.config.merge == (8, 8, 4, 4, 2, 2)
    pixels = torch.randn(1, 4, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(loaded(pixels).patches, model(pixels).patches)


def test_redundancy_matches_a_slow_reference():
    torch.manual_seed(0)
    emb = torch.randn(3, 5, 4, 3, dtype=torch.float64)
    emb[1, :, 0, 0] = emb[1, :, 2, 1]  # a patch with an exact twin
    ref = []
    for frame in emb.flatten(2).unbind(0):
        unit = [v / v.norm() for v in frame.T]
        ref.append(sum(max(float(u @ v) for j, v in enumerate(unit) if j != i) for i, u in enumerate(unit)) / len(unit))
    torch.testing.assert_close(redundancy(emb), torch.tensor(ref, dtype=torch.float32))


def test_clips_without_redundant_patches_skip_tome_and_are_read_smaller(teacher):
    """With `redundancy`, a key frame of noise (no patch like another) goes through the blocks at `scale` without
    merges, its tokens area-resampled: the teacher on the resized key frame; a key frame of repeated patches takes
    the merging path, as the same student without the fallback computes it. One batch holds both."""
    routed = LiteFrameEncoder.from_teacher(teacher, _config(merge=(8, 8, 4, 4, 2, 2), redundancy=0.5, scale=0.75))
    plain = LiteFrameEncoder(_config(merge=(8, 8, 4, 4, 2, 2)))
    plain.load_state_dict({k: v for k, v in routed.state_dict().items() if k != "small_pos_embed"})
    routed, plain, teacher = routed.double(), plain.double(), teacher.double()
    torch.manual_seed(0)
    noise = torch.randn(1, 4, 3, 112, 112, dtype=torch.float64)
    tiles = torch.randn(1, 4, 3, 14, 14, dtype=torch.float64).repeat(1, 1, 1, 8, 8)  # every patch alike
    with torch.no_grad():
        assert redundancy(routed.patch_embed(noise[:, 1])) < 0.5 < redundancy(routed.patch_embed(tiles[:, 1]))
        both = routed(torch.cat([noise, tiles]))
        torch.testing.assert_close(both.patches[1:], plain(tiles).patches)
        key = F.interpolate(noise[:, 1], size=(84, 84), mode="bicubic", antialias=True, align_corners=False)
        ref = teacher(key[:, None])
        windows = [slice(0, 2), slice(1, 3), slice(3, 5), slice(4, 6)]  # 6 -> 4 by area
        pooled = torch.stack([torch.stack([ref.patches[:, :, i, j].mean((2, 3)) for j in windows], 2)
                              for i in windows], 2)
        torch.testing.assert_close(both.patches[:1], pooled)
        torch.testing.assert_close(both.cls[:1], ref.cls)
    with torch.device("meta"):  # FLOPs count the costlier, merging path, and the redundancy's product of patches
        shape = (1, 4, 3, 112, 112)
        flops = [count_flops(LiteFrameEncoder(m.config), shape) for m in (routed, plain)]
    assert flops[0].paper == flops[1].paper and flops[0].total == flops[1].total + 2 * 64 * 64 * 64
