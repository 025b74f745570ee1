"""Any transformers ViT as a CTD teacher: DINOv2 (with and without registers), CLIP and SigLIP vision towers, built
tiny with transformers' own classes, crop into a LiteFrame student, and `liteframe distill` trains one from a folder
of each in the hub's layout."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel, Dinov2WithRegistersModel, InternVLVisionConfig

from liteframe.errors import InputError
from liteframe.models import LiteFrameConfig, LiteFrameEncoder, Teacher, student_config, student_for
from liteframe.models import tiny_vision_config
from liteframe.models.crop import crop_state_dict, teacher_structure
from liteframe.models.towers import final_norm, prefix_tokens

from liteframe.testing.videos import make_video

KINDS = ["internvl", "dinov2", "dinov2_registers", "clip", "siglip"]


def _teacher(kind: str, seed: int = 0, **config) -> Teacher:
    torch.manual_seed(seed)
    teacher = Teacher.from_config(tiny_vision_config(kind, **config))
    # random towers start with zero biases and unit norms; random ones make every crop slice matter
    with torch.no_grad():
        for name, p in teacher.vision.named_parameters():
            if p.ndim == 1 or "token" in name or "embedding" in name:
                p.add_(0.1 * torch.randn_like(p))
    return teacher


@pytest.mark.parametrize("kind", KINDS)
def test_a_full_crop_reproduces_each_tower(kind):
    """All blocks at full width, no temporal parts: the student is the teacher, float64, at the native size and
    with resized positions (but for DINOv2 with registers, which resizes with antialiasing, the student without).
    This checks each tower's names, its CLS / registers / norms and its activation."""
    teacher = _teacher(kind).double()
    full = student_for(teacher.vision, depth=6, heads=4, width=64, mlp=128, temporal="none", downsample_after=())
    assert full.final_norm == (kind in ("dinov2", "dinov2_registers", "siglip"))
    student = LiteFrameEncoder.from_teacher(teacher, full).double()
    for size in (56,) if kind == "dinov2_registers" else (56, 112):
        pixels = torch.randn(1, 4, 3, size, size, dtype=torch.float64)
        with torch.no_grad():
            ref, grid = teacher(pixels), student(pixels)
        torch.testing.assert_close(grid.patches, ref.patches)
        if kind == "siglip":
            assert ref.cls is None and grid.cls is None
        else:
            torch.testing.assert_close(grid.cls, ref.cls)


def test_registers_are_dropped_from_the_teacher_grid():
    teacher = _teacher("dinov2_registers")
    pixels = torch.randn(1, 2, 3, 56, 56)
    hidden = teacher.vision(pixel_values=pixels.flatten(0, 1)).last_hidden_state  # CLS, 4 registers, 16 patches
    assert isinstance(teacher.vision, Dinov2WithRegistersModel) and hidden.shape[1] == 1 + 4 + 16
    grid = teacher(pixels)
    torch.testing.assert_close(grid.cls, hidden[:, 0].view(1, 2, -1))
    torch.testing.assert_close(grid.patches, hidden[:, 5:].reshape(1, 2, 4, 4, -1))
    grid = teacher(pixels, attention=True)  # the CLS row over patches, registers left out
    assert grid.scores.shape == (1, 2, 4, 4) and (grid.scores.sum((2, 3)) < 1).all()


@pytest.mark.parametrize("kind", KINDS)
def test_half_crop_takes_every_second_block_and_the_teacher_slices(kind):
    teacher = _teacher(kind)
    config = student_for(teacher.vision, name="liteframe-tiny")
    s = crop_state_dict(teacher.vision, config)
    t = teacher.vision.state_dict()
    for ours, layer in ((0, 1), (1, 3), (2, 5)):
        key = next(k for k in t if k.endswith(f".{layer}.mlp.fc2.weight"))
        torch.testing.assert_close(s[f"blocks.{ours}.mlp.fc2.weight"], t[key][:32, :64], rtol=0, atol=0)


def test_strongest_heads_are_the_ones_whose_output_projection_writes_most():
    teacher = _teacher("dinov2")
    with torch.no_grad():  # heads 1 and 3 of every block write 10x more
        for i in range(6):
            teacher.vision.encoder.layer[i].attention.o_proj.weight[:, 16:32] *= 10
            teacher.vision.encoder.layer[i].attention.o_proj.weight[:, 48:64] *= 10
    t = teacher.vision.state_dict()
    config = student_for(teacher.vision, name="liteframe-tiny", teacher_heads="strongest")
    s = crop_state_dict(teacher.vision, config)
    heads = torch.cat([torch.arange(16, 32), torch.arange(48, 64)])
    q = t["encoder.layer.5.attention.q_proj.weight"]
    torch.testing.assert_close(s["blocks.2.attn.qkv.weight"][:32], q[heads, :32], rtol=0, atol=0)
    out = t["encoder.layer.5.attention.o_proj.weight"]
    torch.testing.assert_close(s["blocks.2.attn.proj.weight"], out[:32][:, heads], rtol=0, atol=0)


def test_the_paper_ratios_give_liteframe_b_from_internvit_300m():
    with torch.device("meta"):
        teacher = Teacher.from_config(InternVLVisionConfig(attention_bias=True, image_size=448))
    assert student_for(teacher.vision) == student_config("liteframe-b")


def test_the_paper_ratios_for_a_vit_s_and_every_misfit_in_one_message():
    with torch.device("meta"):
        teacher = Teacher.from_config(tiny_vision_config("dinov2", 224, width=384, depth=12, heads=6, mlp=1536))
    derived = student_for(teacher.vision)
    assert (derived.depth, derived.width, derived.heads, derived.mlp, derived.downsample_after) == \
        (6, 256, 4, 1024, (2, 4))
    assert derived.final_norm and derived.out_dim == 384 and derived.image == 224
    with pytest.raises(InputError, match=r"downsample_after \(2, 2\) must be increasing"):
        student_for(teacher.vision, downsample_after=(2, 2))
    with pytest.raises(InputError) as err:
        student_for(teacher.vision, name="liteframe-b", depth=6, heads=12, teacher_heads="best")
    assert str(err.value) == (
        "the student does not fit the dinov2 teacher: downsample_after (4, 8) must lie in 0..depth=6; "
        "teacher_heads 'best' must be one of first, strongest; width 768 exceeds the teacher's 384; "
        "mlp 3072 exceeds the teacher's 1536; out_dim 384 is below the width 768")


def test_a_student_as_deep_as_the_teacher_crops_every_block_and_a_deeper_one_names_teacher_layers():
    teacher = _teacher("clip")
    full = student_for(teacher.vision, depth=6)
    assert LiteFrameEncoder.from_teacher(teacher, full) is not None
    with pytest.raises(InputError, match="depth 7 exceeds the teacher's 6 blocks: set teacher_layers"):
        student_for(teacher.vision, depth=7)
    deeper = student_for(teacher.vision, depth=7, teacher_layers=[0, 1, 2, 3, 4, 5, 5])
    assert len(LiteFrameEncoder.from_teacher(teacher, deeper).blocks) == 7
    with pytest.raises(InputError, match=r"teacher_layers \[0, 9\] must name depth=3 blocks of 0..5"):
        student_for(teacher.vision, depth=3, teacher_layers=[0, 9])


def test_structure_follows_the_tower():
    structure = {kind: teacher_structure(_teacher(kind).vision) for kind in KINDS}
    assert structure["clip"]["act"] == "quick_gelu" and structure["clip"]["embed_norm"]
    assert structure["siglip"]["act"] == "gelu_pytorch_tanh" and not structure["siglip"]["cls_token"]
    assert structure["dinov2_registers"]["registers"] == 4
    assert [structure[k]["final_norm"] for k in KINDS] == [False, True, True, False, True]
    assert prefix_tokens(_teacher("dinov2_registers").vision) == 5
    assert final_norm(_teacher("clip").vision) is None  # CLIP's post_layernorm acts on the pooled CLS only


def test_saved_student_round_trips_with_registers_and_no_cls(tmp_path):
    for kind in ("dinov2_registers", "siglip"):
        teacher = _teacher(kind)
        student = LiteFrameEncoder.from_teacher(teacher, student_for(teacher.vision, name="liteframe-tiny"))
        student.save_pretrained(tmp_path / kind)
        loaded = LiteFrameEncoder.from_pretrained(tmp_path / kind)
        pixels = torch.randn(1, 4, 3, 56, 56)
        with torch.no_grad():
            torch.testing.assert_close(loaded(pixels).patches, student(pixels).patches)


@pytest.mark.parametrize("kind", ["dinov2", "dinov2_registers", "clip", "siglip"])
def test_distill_trains_a_student_from_each_plain_tower_folder(kind, tmp_path, capsys):
    """A hub-layout folder (transformers' `save_pretrained`) of each tower is a `liteframe distill` teacher: the
    run crops the student by the paper's ratios and writes its folder."""
    from liteframe.cli import main

    AutoModel.from_config(tiny_vision_config(kind)).save_pretrained(tmp_path / "teacher")
    assert json.loads((tmp_path / "teacher" / "config.json").read_text())["model_type"] in (
        "dinov2", "dinov2_with_registers", "clip_vision_model", "siglip_vision_model")
    videos = [make_video(tmp_path / f"v{i}.mp4", num_frames=12, width=64, height=64) for i in range(3)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"video": str(v)}) + "\n" for v in videos[:2]))
    (tmp_path / "eval.jsonl").write_text(json.dumps({"video": str(videos[2])}) + "\n")
    out = tmp_path / "run"
    assert main(["distill", f"teacher={tmp_path / 'teacher'}", f"manifest={tmp_path / 'train.jsonl'}",
                 f"eval_manifest={tmp_path / 'eval.jsonl'}", f"output={out}", "frames=4", "steps=2",
                 "batch_size=2", "workers=0", "warmup_steps=1", "eval_every=2"]) == 0
    assert f"student saved to {out / 'student'}" in capsys.readouterr().out
    student = LiteFrameEncoder.from_pretrained(out / "student")
    assert (student.config.depth, student.config.width) == (3, 48)  # half of 6 blocks, 3 of 4 heads of 16
    assert student(torch.zeros(1, 4, 3, 56, 56)).patches.shape == (1, 1, 2, 2, 64)
    assert isinstance(student.config, LiteFrameConfig)
