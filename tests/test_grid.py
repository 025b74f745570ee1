import pytest
import torch
from hypothesis import given, settings, strategies as st
from transformers import InternVLConfig, InternVLModel

from liteframe import TokenGrid, pixel_shuffle


def to_hf(grid: TokenGrid) -> torch.Tensor:
    """The inverse of `TokenGrid.from_hf`: `(B*T, [1 +] H*W, C)`, CLS first where there is one."""
    tokens = grid.patches.flatten(2, 3)
    if grid.cls is not None:
        tokens = torch.cat([grid.cls[:, :, None], tokens], 2)
    return tokens.flatten(0, 1)


@settings(max_examples=20, deadline=None)
@given(b=st.integers(1, 2), t=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4), c=st.integers(1, 6))
def test_pixel_shuffle_matches_transformers(b, t, h, w, c):
    x = torch.randn(b * t, 2 * h, 2 * w, c)
    ref = InternVLModel.pixel_shuffle(None, x, scale_factor=0.5)
    assert torch.equal(pixel_shuffle(x.view(b, t, 2 * h, 2 * w, c)).reshape(b * t, h, w, 4 * c), ref)


def test_pixel_shuffle_through_internvl_image_features():
    """The projector sees the same features whether they come from transformers or from our grid."""
    cfg = InternVLConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                           image_size=56, patch_size=14),
        text_config=dict(model_type="qwen2", hidden_size=48, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, vocab_size=128),
    )
    model = InternVLModel(cfg).eval()
    pixels = torch.randn(3, 3, 56, 56)
    with torch.no_grad():
        ref = model.get_image_features(pixels).pooler_output
        hidden = model.vision_tower(pixel_values=pixels).last_hidden_state
        grid = TokenGrid.from_hf(hidden, frames=3).pixel_shuffle()
        ours = model.multi_modal_projector(grid.tokens()).reshape(3, -1, 48)
    assert torch.equal(ours, ref.reshape(3, -1, 48))


@pytest.mark.parametrize("has_cls", [True, False])
def test_hf_round_trip(has_cls):
    hidden = torch.randn(2 * 3, int(has_cls) + 16, 5)
    grid = TokenGrid.from_hf(hidden, frames=3, has_cls=has_cls)
    assert grid.patches.shape == (2, 3, 4, 4, 5)
    assert torch.equal(to_hf(grid), hidden)
    expected = hidden[:, 0].view(2, 3, 5) if has_cls else hidden.view(2, 3, 16, 5).mean(2)
    torch.testing.assert_close(grid.queries, expected)


def test_shuffled_cls_keeps_dot_products():
    grid = TokenGrid(torch.randn(1, 2, 4, 4, 3), torch.randn(1, 2, 3))
    shuffled = grid.pixel_shuffle()
    direct = torch.einsum("btc,bthwc->bthw", grid.cls, grid.patches)
    summed = direct.reshape(1, 2, 2, 2, 2, 2).sum(dim=(3, 5))
    torch.testing.assert_close(torch.einsum("btc,bthwc->bthw", shuffled.cls, shuffled.patches), summed)


@pytest.mark.parametrize(
    "hidden,frames,match",
    [((6, 17, 4), 4, "not a multiple"), ((6, 16, 4), 3, "not a square"), ((2, 6, 4), 2, "not a square")],
)
def test_from_hf_rejects_bad_shapes(hidden, frames, match):
    with pytest.raises(ValueError, match=match):
        TokenGrid.from_hf(torch.randn(hidden), frames=frames)


def test_grid_rejects_mismatched_cls():
    with pytest.raises(ValueError, match=r"\(B, T, C\)"):
        TokenGrid(torch.randn(1, 2, 2, 2, 3), torch.randn(1, 3, 3))


def test_pixel_shuffle_carries_scores_summed_and_keys_concatenated():
    patches, scores, keys = torch.randn(2, 3, 4, 6, 5), torch.rand(2, 3, 4, 6), torch.randn(2, 3, 4, 6, 7)
    shuffled = TokenGrid(patches, None, scores, keys).pixel_shuffle()
    assert shuffled.scores.shape == (2, 3, 2, 3) and shuffled.keys.shape == (2, 3, 2, 3, 28)
    torch.testing.assert_close(shuffled.scores, scores.view(2, 3, 2, 2, 3, 2).sum(dim=(3, 5)))
    assert torch.equal(shuffled.keys, pixel_shuffle(keys))  # the patches' channel order
    # merged token (1, 2) holds patches (2..3, 4..5): its keys, in (dh, dw) blocks, and their summed scores
    assert torch.equal(shuffled.keys[..., 1, 2, 7:14], keys[..., 2, 5, :])
    torch.testing.assert_close(shuffled.scores[..., 1, 2], scores[..., 2:4, 4:6].sum((-1, -2)))
    plain = TokenGrid(patches).pixel_shuffle()
    assert plain.scores is None and plain.keys is None


@pytest.mark.parametrize("field, shape, match", [
    ("scores", (1, 2, 2, 3), r"scores must be \(B, T, H, W\) = \(1, 2, 2, 2\)"),
    ("keys", (1, 2, 2, 2), r"keys must be \(B, T, H, W, Ck\)"),
    ("keys", (1, 2, 3, 2, 4), r"keys must be \(B, T, H, W, Ck\)"),
])
def test_grid_rejects_mismatched_attention(field, shape, match):
    with pytest.raises(ValueError, match=match):
        TokenGrid(torch.randn(1, 2, 2, 2, 3), **{field: torch.randn(shape)})
