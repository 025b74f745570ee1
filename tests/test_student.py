import json
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from liteframe.compression import COMPRESSIONS
from liteframe.errors import InputError
from liteframe.models import (STUDENTS, VARIANTS, LiteFrameConfig, LiteFrameEncoder, Teacher, create_student,
                              student_config, tiny_internvl_config, tiny_student_config, to_llm_tokens)
from liteframe.models.mixers import Downsample, TemporalAttention, TemporalConv


def _randomise(model):
    """Give the zero-initialised temporal branches and average-pooling downsamplings random weights."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".mixer." in name or name.startswith("downsample."):
                p.copy_(torch.randn_like(p) * 0.2)
    return model


def _reference(model, pixels):
    """Slow float64 LiteFrame forward written from SPEC 4, one clip and one frame at a time."""
    cfg, p = model.config, {k: v.double() for k, v in model.state_dict().items()}
    heads, c = cfg.heads, cfg.width
    after = {i: j for j, (i, _) in enumerate(cfg.stages)}
    outs, clss = [], []
    for video in pixels.double():
        for clip in video.split(cfg.compression.clip):
            frames = []
            for frame in clip:
                emb = F.conv2d(frame[None], p["patch_embed.weight"], p["patch_embed.bias"], stride=cfg.patch)[0]
                h, w = emb.shape[1:]
                frames.append(torch.cat([p["cls_token"][0], emb.flatten(1).T]) + p["pos_embed"][0])
            x = torch.stack(frames)  # (t, 1 + h*w, C)
            for i in range(cfg.depth):
                b = f"blocks.{i}."
                y = F.layer_norm(x, (c,), p[b + "norm1.weight"], p[b + "norm1.bias"], cfg.eps)
                seq = y.reshape(1, -1, c) if cfg.temporal == "stattn" else y
                q, k, v = (seq @ p[b + "attn.qkv.weight"].T + p[b + "attn.qkv.bias"]).chunk(3, dim=-1)
                split = lambda z: z.unflatten(-1, (heads, c // heads)).transpose(-3, -2)  # noqa: E731
                att = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(c // heads), dim=-1)
                y = (att @ split(v)).transpose(-3, -2).flatten(-2)
                y = y @ p[b + "attn.proj.weight"].T + p[b + "attn.proj.bias"]
                x = x + p[b + "ls1"] * y.reshape(x.shape)
                if cfg.temporal in ("dwconv", "conv") and x.shape[0] > 1:
                    weight, bias = p[b + "mixer.conv.weight"], p[b + "mixer.conv.bias"]  # (C, C/groups, 3)
                    padded = F.pad(x[:, 1:].permute(1, 2, 0), (1, 1))  # (P, C, t + 2)
                    delta = torch.zeros_like(x[:, 1:])
                    for t in range(x.shape[0]):
                        window = padded[..., t : t + 3]  # (P, C, 3)
                        if cfg.temporal == "dwconv":
                            delta[t] = (window * weight[:, 0]).sum(-1) + bias
                        else:
                            delta[t] = torch.einsum("pik,oik->po", window, weight) + bias
                    x = torch.cat([x[:, :1], x[:, 1:] + delta], dim=1)
                y = F.layer_norm(x, (c,), p[b + "norm2.weight"], p[b + "norm2.bias"], cfg.eps)
                y = F.gelu(y @ p[b + "mlp.fc1.weight"].T + p[b + "mlp.fc1.bias"]) @ p[b + "mlp.fc2.weight"].T
                x = x + p[b + "ls2"] * (y + p[b + "mlp.fc2.bias"])
                if i + 1 in after:
                    j = after[i + 1]
                    st_, sh, sw = cfg.strides[j]
                    weight, bias = p[f"downsample.{j}.conv.weight"][:, 0], p[f"downsample.{j}.conv.bias"]
                    t = x.shape[0]
                    blocks = x[:, 1:].reshape(t // st_, st_, h // sh, sh, w // sw, sw, c)
                    patches = (blocks.permute(0, 2, 4, 6, 1, 3, 5) * weight).sum((-3, -2, -1)) + bias
                    h, w = h // sh, w // sw
                    cls = x[:, 0].reshape(t // st_, st_, c).mean(1)
                    x = torch.cat([cls[:, None], patches.reshape(t // st_, h * w, c)], dim=1)
            x = x @ p["head.weight"].T + p["head.bias"]
            outs.append(x[:, 1:].reshape(-1, h, w, cfg.out_dim))
            clss.append(x[:, 0])
    b = pixels.shape[0]
    return torch.cat(outs).reshape(b, -1, h, w, cfg.out_dim), torch.cat(clss).reshape(b, -1, cfg.out_dim)


@pytest.mark.parametrize("temporal, compression", [("dwconv", 16), ("conv", 16), ("stattn", 16), ("spatial16", 16),
                                                  ("none", 16), ("dwconv", 64), ("dwconv", 4), ("spatial16", 64)])
def test_forward_matches_float64_reference(temporal, compression):
    torch.manual_seed(1)
    model = LiteFrameEncoder(tiny_student_config(temporal, image_size=112, compression=compression))
    model = _randomise(model).double().eval()
    pixels = torch.randn(2, 8, 3, 112, 112, dtype=torch.float64)
    with torch.no_grad():
        grid = model(pixels)
    patches, cls = _reference(model, pixels)
    torch.testing.assert_close(grid.patches, patches)
    torch.testing.assert_close(grid.cls, cls)


@pytest.mark.parametrize("temporal, shape", [("none", (2, 8, 8, 8, 64)), ("dwconv", (2, 2, 4, 4, 64)),
                                             ("conv", (2, 2, 4, 4, 64)), ("tempattn", (2, 2, 4, 4, 64)),
                                             ("stattn", (2, 2, 4, 4, 64)), ("spatial16", (2, 8, 2, 2, 64))])
def test_variant_shapes(temporal, shape):
    model = LiteFrameEncoder(tiny_student_config(temporal, image_size=112))
    grid = model(torch.randn(2, 8, 3, 112, 112))
    assert grid.shape == shape and grid.cls.shape == shape[:2] + shape[-1:]


@pytest.mark.parametrize("name, strides, shape", [
    ("liteframe-b", ((2, 2, 2), (2, 1, 1)), (1, 2, 16, 16, 1024)),  # SPEC 4: 16 LLM tokens per frame
    ("liteframe-b-64x", ((2, 2, 2), (2, 2, 2)), (1, 2, 8, 8, 1024)),  # 4 per frame
    ("liteframe-b-4x", ((1, 2, 2),), (1, 8, 16, 16, 1024)),  # 64 per frame
])
def test_named_configs_follow_their_compression(name, strides, shape):
    cfg = student_config(name)
    assert cfg.strides == strides and cfg.compression == COMPRESSIONS[int(name.partition("-b")[2][1:-1] or 16)]
    t, h, w = cfg.compression.block
    with torch.device("meta"):
        grid = create_student(name)(torch.empty(1, 8, 3, 448, 448))
    assert grid.shape == shape == (1, 8 // t, 32 // h, 32 // w, 1024)
    assert grid.pixel_shuffle().patches[0].numel() // 4096 == 8 * 256 // cfg.compression.ratio


@pytest.mark.parametrize("compression", [4, 16, 64])
def test_spatial_variant_spends_the_ratio_on_space(compression):
    grid = LiteFrameEncoder(tiny_student_config("spatial16", image_size=112, compression=compression))(
        torch.randn(1, 4, 3, 112, 112))
    assert grid.shape[1] == 4 and 64 // (grid.shape[2] * grid.shape[3]) == compression


def test_registry_names_and_the_one_tiny_student():
    assert STUDENTS.names() == ["liteframe-b", "liteframe-b-4x", "liteframe-b-64x",
                                "liteframe-tiny", "liteframe-tiny-4x", "liteframe-tiny-64x",
                                "liteframe-qwen2.5", "liteframe-qwen2.5-4x", "liteframe-qwen2.5-64x",
                                "liteframe-qwen2.5-tiny", "liteframe-qwen2.5-tiny-4x", "liteframe-qwen2.5-tiny-64x",
                                "liteframe-qwen3.5", "liteframe-qwen3.5-4x", "liteframe-qwen3.5-64x",
                                "liteframe-qwen3.5-tiny", "liteframe-qwen3.5-tiny-4x", "liteframe-qwen3.5-tiny-64x",
                                "liteframe-qwen3-vl", "liteframe-qwen3-vl-4x", "liteframe-qwen3-vl-64x",
                                "liteframe-qwen3-vl-tiny", "liteframe-qwen3-vl-tiny-4x", "liteframe-qwen3-vl-tiny-64x"]
    assert tiny_student_config() == student_config("liteframe-tiny")
    assert student_config("liteframe-tiny-64x") == student_config("liteframe-tiny", compression=(4, 4, 4))
    assert create_student("liteframe-tiny", temporal="conv").config.temporal == "conv"
    assert student_config("liteframe-b") is not student_config("liteframe-b")  # callers may change their copy
    with pytest.raises(ValueError, match="unknown LiteFrame student 'liteframe-l'; choose from liteframe-b"):
        create_student("liteframe-l")
    with pytest.raises(InputError, match="student liteframe-tiny: .*colour"):
        student_config("liteframe-tiny", colour=1)
    with pytest.raises(InputError, match="compression 32"):
        student_config("liteframe-tiny", compression=32)


def test_full_size_default_on_meta():
    """LiteFrame-B at 448 px: (B, T/4, 16, 16, 1024), i.e. 16 LLM tokens per input frame after pixel shuffle."""
    with torch.device("meta"):
        model = LiteFrameEncoder()
        grid = model(torch.empty(1, 8, 3, 448, 448))
    assert grid.shape == (1, 2, 16, 16, 1024) and grid.cls.shape == (1, 2, 1024)
    assert grid.pixel_shuffle().patches[0].numel() // 4096 == 16 * 8
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(86e6, rel=0.05)


def test_bad_shapes_raise():
    model = LiteFrameEncoder(tiny_student_config())
    with pytest.raises(ValueError, match="T = 6 frames, not a multiple of 4"):
        model(torch.randn(1, 6, 3, 56, 56))
    with pytest.raises(ValueError, match="multiple of 28"):
        model(torch.randn(1, 4, 3, 42, 42))
    with pytest.raises(ValueError, match="unknown LiteFrame variant 'lstm'"):
        LiteFrameConfig(temporal="lstm")


def test_crop_tensors_are_teacher_slices(teacher):
    cfg = tiny_student_config()
    s = LiteFrameEncoder.from_teacher(teacher, cfg).state_dict()
    t = teacher.vision.state_dict()
    c, m = cfg.width, cfg.mlp
    expected = {
        "patch_embed.weight": t["embeddings.patch_embeddings.projection.weight"][:c],
        "patch_embed.bias": t["embeddings.patch_embeddings.projection.bias"][:c],
        "cls_token": t["embeddings.cls_token"][:, :, :c],
        "pos_embed": t["embeddings.position_embeddings"][:, :, :c],
        "head.weight": torch.eye(64, 32),  # identity onto the teacher's first 32 channels
        "head.bias": torch.zeros(64),
    }
    for i, j in enumerate([1, 3, 5]):  # every second of the 6 teacher blocks, ending on the last
        a, b = f"blocks.{i}.", f"encoder.layer.{j}."
        # heads 0..1 of 0..3 are rows 0..31 of each of q, k, v
        expected[a + "attn.qkv.weight"] = torch.cat([t[f"{b}attention.{x}_proj.weight"][:c, :c] for x in "qkv"])
        expected[a + "attn.qkv.bias"] = torch.cat([t[f"{b}attention.{x}_proj.bias"][:c] for x in "qkv"])
        expected[a + "attn.proj.weight"] = t[b + "attention.projection_layer.weight"][:c, :c]
        expected[a + "attn.proj.bias"] = t[b + "attention.projection_layer.bias"][:c]
        expected[a + "ls1"], expected[a + "ls2"] = t[b + "lambda_1"][:c], t[b + "lambda_2"][:c]
        for ours, theirs in (("norm1", "layernorm_before"), ("norm2", "layernorm_after")):
            expected[f"{a}{ours}.weight"] = t[f"{b}{theirs}.weight"][:c]
            expected[f"{a}{ours}.bias"] = t[f"{b}{theirs}.bias"][:c]
        expected[a + "mlp.fc1.weight"] = t[b + "mlp.fc1.weight"][:m, :c]
        expected[a + "mlp.fc1.bias"] = t[b + "mlp.fc1.bias"][:m]
        expected[a + "mlp.fc2.weight"] = t[b + "mlp.fc2.weight"][:c, :m]
        expected[a + "mlp.fc2.bias"] = t[b + "mlp.fc2.bias"][:c]
    cropped = {k for k in s if ".mixer." not in k and not k.startswith("downsample.")}
    assert cropped == set(expected)
    for key, value in expected.items():
        assert torch.equal(s[key], value), key


def test_full_crop_reproduces_the_teacher(teacher):
    """Cropping all blocks at full width with no temporal parts gives back the teacher exactly: this checks the
    fused qkv, LayerScale, norms, positions and CLS layouts end to end."""
    cfg = LiteFrameConfig(width=64, depth=6, heads=4, mlp=128, image=56, out_dim=64, temporal="none",
                          downsample_after=(), teacher_layers=tuple(range(6)))
    student = LiteFrameEncoder.from_teacher(teacher, cfg).double()
    teacher.double()
    for size in (56, 112):  # native and resized position embeddings
        pixels = torch.randn(1, 4, 3, size, size, dtype=torch.float64)
        with torch.no_grad():
            ref, grid = teacher(pixels), student(pixels)
        torch.testing.assert_close(grid.patches, ref.patches)
        torch.testing.assert_close(grid.cls, ref.cls)
    teacher.float()


def test_from_teacher_folder(tmp_path):
    from transformers import InternVLForConditionalGeneration

    InternVLForConditionalGeneration(tiny_internvl_config()).save_pretrained(tmp_path)
    student = LiteFrameEncoder.from_teacher(tmp_path, tiny_student_config())
    assert student(torch.randn(1, 4, 3, 56, 56)).shape == (1, 1, 2, 2, 64)
    with pytest.raises(ValueError, match="head dim"):
        LiteFrameEncoder.from_teacher(Teacher.from_config(tiny_internvl_config()), tiny_student_config(heads=4))


def test_crop_accepts_a_teacher_that_keeps_its_final_norm():
    """InternViT-format teachers converted from other ViTs keep their final LayerNorm (`use_mean_pooling: false`);
    the crop never reads it (CTD's targets include it), so it crops as the teacher without one."""
    from liteframe.models import tiny_vision_config

    torch.manual_seed(0)
    plain = Teacher.from_config(tiny_vision_config())
    config = tiny_vision_config()
    config.use_mean_pooling = False
    normed = Teacher.from_config(config)
    normed.vision.load_state_dict(plain.vision.state_dict(), strict=False)
    assert isinstance(normed.vision.layernorm, torch.nn.LayerNorm)
    assert isinstance(plain.vision.layernorm, torch.nn.Identity)
    a = LiteFrameEncoder.from_teacher(plain, tiny_student_config()).state_dict()
    b = LiteFrameEncoder.from_teacher(normed, tiny_student_config()).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_crop_refusal_leads_with_the_reason_and_names_only_what_differs(teacher):
    with pytest.raises(InputError) as err:
        LiteFrameEncoder.from_teacher(teacher, tiny_student_config(heads=4, width=96, mlp=64, qkv_bias=False))
    message = str(err.value)
    assert message == ("crop init: the student does not fit the teacher: head dim: student 24, teacher 16; "
                       "qkv bias: student False, teacher True; width 96 exceeds the teacher's 64; "
                       "out_dim 64 is below the width 96")


@pytest.mark.parametrize("temporal", ["dwconv", "conv", "tempattn"])
def test_untrained_temporal_mixers_are_identity_residuals(teacher, temporal):
    student = LiteFrameEncoder.from_teacher(teacher, tiny_student_config(temporal))
    x = torch.randn(3, 4, 16, 32)
    for block in student.blocks:
        assert torch.equal(block.mixer(x), torch.zeros_like(x))
    # and the whole block equals the same block without its mixer
    block = student.blocks[0]
    y = torch.randn(2, 4, 17, 32)
    with torch.no_grad():
        out = block(y)
        block.mixer, mixer = None, block.mixer
        assert torch.equal(out, block(y))
        block.mixer = mixer


@pytest.mark.parametrize("temporal", ["dwconv", "spatial16"])
def test_untrained_downsampling_is_average_pooling(teacher, temporal):
    student = LiteFrameEncoder.from_teacher(teacher, tiny_student_config(temporal)).double()
    for down in student.downsample:
        st_, sh, sw = down.stride
        x = torch.randn(3, 4, 1 + 4 * 4, 32, dtype=torch.float64)
        with torch.no_grad():
            y, h, w = down(x, 4, 4)
        grid = x[:, :, 1:].reshape(3, 4, 4, 4, 32).permute(0, 4, 1, 2, 3)
        pooled = F.avg_pool3d(grid, down.stride).permute(0, 2, 3, 4, 1).reshape(3, 4 // st_, h * w, 32)
        torch.testing.assert_close(y[:, :, 1:], pooled, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(y[:, :, 0], x[:, :, 0].reshape(3, 4 // st_, st_, 32).mean(2))


def _keyframe_config(**overrides) -> LiteFrameConfig:
    """The whole tiny teacher as a keyframe student: 112 px frames resized to 84 (6 x 6 patches), 16x."""
    return LiteFrameConfig(**{**dict(width=64, depth=6, heads=4, mlp=128, image=112, out_dim=64, temporal="keyframe",
                                     teacher_layers=tuple(range(6)), scale=0.75), **overrides})


def test_keyframe_student_is_the_teacher_on_each_clips_key_frame_resized(teacher):
    """Cropped whole and untrained, the keyframe student is the teacher (transformers' own tower) on each clip's
    key frame (the second of four) resized by `scale`, its 6 x 6 patches area-averaged to the 16x block's 4 x 4
    grid."""
    student = LiteFrameEncoder.from_teacher(teacher, _keyframe_config()).double()
    assert student.config.frame_size == 84 and student.config.block == (4, 2, 2)
    teacher.double()
    pixels = torch.randn(2, 8, 3, 112, 112, dtype=torch.float64)
    with torch.no_grad():
        grid = student(pixels)
        key = F.interpolate(pixels[:, 1::4].flatten(0, 1), size=(84, 84), mode="bicubic", antialias=True,
                            align_corners=False)
        ref = teacher(key.unflatten(0, (2, 2)))
    teacher.float()
    assert ref.patches.shape == (2, 2, 6, 6, 64) and grid.shape == (2, 2, 4, 4, 64)
    windows = [slice(0, 2), slice(1, 3), slice(3, 5), slice(4, 6)]  # 6 -> 4 by area: each output cell's inputs
    pooled = torch.stack([torch.stack([ref.patches[:, :, i, j].mean((2, 3)) for j in windows], 2)
                          for i in windows], 2)
    torch.testing.assert_close(grid.patches, pooled)
    torch.testing.assert_close(grid.cls, ref.cls)


def test_keyframe_save_load_round_trip_and_refusals(tmp_path):
    model = _randomise(LiteFrameEncoder(_keyframe_config())).eval()
    assert [d.stride for d in model.downsample] == [(4, 1, 1)]
    model.save_pretrained(tmp_path)
    loaded = LiteFrameEncoder.from_pretrained(tmp_path)
    assert loaded.config == model.config and loaded.config.scale == 0.75
    pixels = torch.randn(1, 4, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(loaded(pixels).patches, model(pixels).patches)
    assert _keyframe_config(downsample_after=(2, 5)).stages == ((0, (4, 1, 1)),)  # always after the embedding
    with pytest.raises(ValueError) as err:
        _keyframe_config(temporal="dwconv", scale=0.5, downsample_after=(0, 9))
    assert str(err.value) == ("downsample_after (0, 9) must lie in 0..depth=6; scale 0.5: only the keyframe "
                              "variants resize their frames")


@settings(max_examples=15, deadline=None)
@given(st_=st.sampled_from([1, 2]), sh=st.sampled_from([1, 2]), sw=st.sampled_from([1, 2]),
       t=st.integers(1, 2), h=st.integers(1, 3), w=st.integers(1, 3), c=st.integers(1, 4), seed=st.integers(0, 99))
def test_downsample_is_blockwise_weighted_sum(st_, sh, sw, t, h, w, c, seed):
    torch.manual_seed(seed)
    down = Downsample(c, (st_, sh, sw)).double()
    with torch.no_grad():
        down.conv.weight.normal_(), down.conv.bias.normal_()
    x = torch.randn(2, t * st_, 1 + h * sh * w * sw, c, dtype=torch.float64)
    y, h2, w2 = down(x, h * sh, w * sw)
    blocks = x[:, :, 1:].reshape(2, t, st_, h, sh, w, sw, c).permute(0, 1, 3, 5, 7, 2, 4, 6)
    ref = (blocks * down.conv.weight[:, 0]).sum((-3, -2, -1)) + down.conv.bias
    assert (h2, w2) == (h, w)
    torch.testing.assert_close(y[:, :, 1:], ref.reshape(2, t, h * w, c).detach())


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 2), t=st.integers(1, 5), p=st.integers(1, 3), seed=st.integers(0, 99))
def test_temporal_attention_mixes_only_along_time(n, t, p, seed):
    """Permuting spatial positions permutes the output the same way (no mixing across positions)."""
    torch.manual_seed(seed)
    mixer = TemporalAttention(8, 2).double()
    with torch.no_grad():
        mixer.attn.proj.weight.normal_()
    x = torch.randn(n, t, p, 8, dtype=torch.float64)
    perm = torch.randperm(p)
    torch.testing.assert_close(mixer(x)[:, :, perm], mixer(x[:, :, perm]))
    conv = TemporalConv(8, groups=8).double()
    with torch.no_grad():
        conv.conv.weight.normal_()
    torch.testing.assert_close(conv(x)[:, :, perm], conv(x[:, :, perm]))


def test_to_llm_tokens_counts(teacher):
    """16x fewer LLM tokens per frame than the dense teacher (16 against 256 at 448 px; 1 against 16 at 112)."""
    from transformers.models.internvl.modeling_internvl import InternVLMultiModalProjector

    cfg = tiny_internvl_config(image_size=112)
    projector = InternVLMultiModalProjector(cfg)
    dense = Teacher.from_config(cfg.vision_config)(torch.randn(1, 8, 3, 112, 112))
    student = LiteFrameEncoder(tiny_student_config(image_size=112))(torch.randn(1, 8, 3, 112, 112))
    assert to_llm_tokens(dense, projector).shape == (1, 8 * 16, 32)
    assert to_llm_tokens(student, projector).shape == (1, 8 * 1, 32)


def test_save_load_round_trip(tmp_path):
    model = _randomise(LiteFrameEncoder(tiny_student_config("tempattn"))).eval()
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded = LiteFrameEncoder.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == model.config
    pixels = torch.randn(1, 4, 3, 56, 56)
    with torch.no_grad():
        assert torch.equal(loaded(pixels).patches, model(pixels).patches)
    half = LiteFrameEncoder.from_pretrained(tmp_path / "ckpt", dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(InputError, match="no config.json"):
        LiteFrameEncoder.from_pretrained(tmp_path)
    LiteFrameEncoder(tiny_student_config()).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "mlp": 48}))
    with pytest.raises(InputError, match=r"blocks.0.mlp.fc1.bias has shape \(64,\) but the config expects \(48,\)"):
        LiteFrameEncoder.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "colour": 1}))
    with pytest.raises(InputError, match="unknown keys"):
        LiteFrameEncoder.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    with pytest.raises(InputError, match="model.safetensors: not a readable safetensors file") as err:
        LiteFrameEncoder.from_pretrained(tmp_path)
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = _randomise(LiteFrameEncoder(tiny_student_config())).double().train()
    pixels = torch.randn(1, 4, 3, 56, 56, dtype=torch.float64)
    grads = []
    for flag in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(flag)
        grid = model(pixels)
        (grid.patches.square().sum() + grid.cls.sum()).backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 40
    for key in grads[0]:
        torch.testing.assert_close(grads[0][key], grads[1][key])


@pytest.mark.parametrize("compression", [4, 16, 64])
@pytest.mark.parametrize("temporal", VARIANTS.names())
def test_gradients_have_their_parameters_strides(temporal, compression):
    """DDP copies a gradient into its bucket view, laid out with the parameter's strides; any difference (even on
    size-1 dims, as the depth-wise convolutions gave) warns "Grad strides do not match bucket view strides" and
    costs a copy every step."""
    model = LiteFrameEncoder(tiny_student_config(temporal, image_size=112, compression=compression))
    grid = model(torch.randn(1, 4, 3, 112, 112))
    (grid.patches.square().sum() + grid.cls.sum()).backward()
    params = dict(model.named_parameters())
    assert all(p.grad is not None for n, p in params.items() if ".mixer." not in n)
    bad = {n: (p.stride(), p.grad.stride()) for n, p in params.items()
           if p.grad is not None and p.grad.stride() != p.stride()}
    assert not bad


def test_compression_is_saved_and_old_configs_load_as_16x(tmp_path):
    model = _randomise(LiteFrameEncoder(tiny_student_config(compression=64))).eval()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["compression"] == [4, 4, 4] and "clip_frames" not in saved
    loaded = LiteFrameEncoder.from_pretrained(tmp_path)
    assert loaded.config == model.config and loaded.config.strides == ((2, 2, 2), (2, 2, 2))
    pixels = torch.randn(1, 4, 3, 56, 56)
    with torch.no_grad():
        assert torch.equal(loaded(pixels).patches, model(pixels).patches)
    LiteFrameEncoder(tiny_student_config()).save_pretrained(tmp_path)
    old = {k: v for k, v in json.loads((tmp_path / "config.json").read_text()).items() if k != "compression"}
    (tmp_path / "config.json").write_text(json.dumps({**old, "clip_frames": 4}))  # as written before compression
    assert LiteFrameEncoder.from_pretrained(tmp_path).config == tiny_student_config()
    (tmp_path / "config.json").write_text(json.dumps({**old, "clip_frames": 2}))
    with pytest.raises(InputError, match="clip_frames 2 does not match compression 16x"):
        LiteFrameEncoder.from_pretrained(tmp_path)


def test_registry_has_every_variant():
    assert VARIANTS.names() == ["none", "dwconv", "conv", "tempattn", "stattn", "spatial16", "keyframe",
                                "keyframe-tome"]


def test_a_save_that_crashes_part_way_leaves_the_previous_folder_loadable(tmp_path, monkeypatch):
    folder = tmp_path / "student"
    torch.manual_seed(0)
    old = LiteFrameEncoder(tiny_student_config())
    old.save_pretrained(folder)
    new = LiteFrameEncoder(tiny_student_config(mlp=48))  # its weights do not fit the old config

    def crash(*_):  # the weights are written, then the process dies before the config: the old bug's window
        raise OSError("disk full")

    monkeypatch.setattr(LiteFrameConfig, "to_dict", crash)
    with pytest.raises(OSError, match="disk full"):
        new.save_pretrained(folder)
    monkeypatch.undo()
    loaded = LiteFrameEncoder.from_pretrained(folder)
    assert loaded.config == old.config
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), old.state_dict().values()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]  # nothing half-written left beside it
    new.save_pretrained(folder)  # a save that completes replaces the pair together
    assert LiteFrameEncoder.from_pretrained(folder).config == new.config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"notes.txt.*folder of its own"):
        new.save_pretrained(folder)  # the save would replace the folder: files it did not write are not dropped
    assert (folder / "notes.txt").read_text() == "mine"


def test_models_modules_import_no_cycle():
    """The config lives in its own module, so crop init and the student no longer import each other."""
    import ast
    from pathlib import Path

    import liteframe.models

    folder = Path(liteframe.models.__file__).parent
    graph = {}
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        graph[path.stem] = {n.module for n in ast.walk(tree)
                            if isinstance(n, ast.ImportFrom) and n.level == 1 and n.module}
    graph.pop("__init__")
    assert graph["crop"] >= {"config"} and "student" not in graph["crop"]
    done: set[str] = set()

    def visit(name, path):
        assert name not in path, f"import cycle {' -> '.join([*path, name])}"
        if name not in done:
            for dep in graph.get(name, ()):
                visit(dep, [*path, name])
            done.add(name)

    for name in graph:
        visit(name, [])
