"""The CLS attention row the teacher exposes, against the attention matrix transformers itself computes."""
import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPVisionConfig, InternVLVisionConfig, SiglipVisionConfig

from liteframe.models.teacher import Teacher, last_layer_attention


def tiny(kind, heads=1, qk_norm=False):
    common = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=heads, intermediate_size=32,
                  image_size=28, patch_size=7)
    if kind == "internvl":
        return InternVLVisionConfig(**common, use_qk_norm=qk_norm)
    return (CLIPVisionConfig if kind == "clip" else SiglipVisionConfig)(**common)


def eager_row(teacher, frames):
    """transformers' own last-layer attention, eager: (B*T, heads, N, N) -> the CLS row of its one head."""
    vision = type(teacher.vision)(teacher.vision.config).eval()
    vision.load_state_dict(teacher.vision.state_dict())
    vision.config._attn_implementation = "eager"
    with torch.no_grad():
        attentions = vision(pixel_values=frames, output_attentions=True).attentions
    return attentions[-1][:, 0, 0]


@pytest.mark.parametrize("kind, qk_norm", [("internvl", False), ("internvl", True), ("clip", False)])
def test_scores_are_the_last_layers_cls_attention_row(kind, qk_norm):
    torch.manual_seed(0)
    teacher = Teacher.from_config(tiny(kind, qk_norm=qk_norm))
    if qk_norm:  # random norm weights, so that skipping the norms would show
        attn = teacher.vision.encoder.layer[-1].attention
        attn.q_norm.weight.data.uniform_(0.5, 2), attn.k_norm.weight.data.uniform_(0.5, 2)
    pixels = torch.randn(2, 3, 3, 28, 28)
    with torch.no_grad():
        grid = teacher(pixels, attention=True)
        plain = teacher(pixels)
    row = eager_row(teacher, pixels.flatten(0, 1))  # (6, 1 + 16): the CLS attends to itself too
    assert grid.scores.shape == (2, 3, 4, 4) and grid.keys.shape == (2, 3, 4, 4, 16)
    torch.testing.assert_close(grid.scores.reshape(6, 16), row[:, 1:], rtol=1e-5, atol=1e-6)
    assert (grid.scores.sum((2, 3)) < 1).all()  # the CLS's share of its own row is not among the patches'
    assert torch.equal(grid.patches, plain.patches) and plain.scores is None and plain.keys is None


def test_several_heads_use_one_full_width_head():
    """PruMerge's reference: one query of width C against the keys, scale C^-1/2, whatever the head count."""
    torch.manual_seed(0)
    teacher = Teacher.from_config(tiny("internvl", heads=4))
    assert teacher.vision.config.attention_bias is False
    frames = torch.randn(2, 3, 28, 28)
    layer = teacher.vision.encoder.layer[-1]
    seen = {}
    layer.attention.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    with torch.no_grad(), last_layer_attention(teacher.vision, has_cls=True) as found:
        teacher.vision(pixel_values=frames)
        x = seen["x"].double()
        q = F.linear(x[:, 0], layer.attention.q_proj.weight.double())
        k = F.linear(x, layer.attention.k_proj.weight.double())
    ref = torch.softmax(torch.einsum("nc,nkc->nk", q, k) / 16**0.5, -1)[:, 1:]
    torch.testing.assert_close(found["scores"].double(), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(found["keys"].double(), k[:, 1:], rtol=1e-5, atol=1e-5)


def test_without_cls_the_query_is_the_mean_patch_query():
    torch.manual_seed(0)
    teacher = Teacher.from_config(tiny("siglip"))
    pixels = torch.randn(1, 2, 3, 28, 28)
    attn = teacher.vision.encoder.layers[-1].self_attn
    seen = {}
    attn.q_proj.register_forward_hook(lambda m, a, out: seen.setdefault("q", out))
    with torch.no_grad():
        grid = teacher(pixels, attention=True)
    ref = torch.softmax(torch.einsum("nc,nkc->nk", seen["q"].mean(1), grid.keys.view(2, 16, 16)) / 4, -1)
    torch.testing.assert_close(grid.scores.view(2, 16), ref)
    torch.testing.assert_close(grid.scores.sum((2, 3)), torch.ones(1, 2))  # no CLS: the row is all patches
