import json
import warnings

import pytest
import torch
from transformers import InternVLVisionConfig

from liteframe.bench import arch
from liteframe.cli import main
from liteframe.errors import InputError
from liteframe.models import (LiteFrameConfig, LiteFrameEncoder, Teacher, create_student, tiny_student_config,
                              tiny_vision_config)
from liteframe.models.flops import count_flops


def test_teacher_flops_by_hand():
    """InternViT-300M at one 448 px frame: 24 layers x 1025 tokens x 12 C^2 MACs + the patch embedding;
    attention adds 2 x 1025^2 x C MACs per layer."""
    with torch.device("meta"):
        teacher = Teacher.from_config(InternVLVisionConfig(attention_bias=True))
    flops = count_flops(teacher, (1, 1, 3, 448, 448))
    c = 1024
    paper = 2 * (1024 * 588 * c + 24 * 1025 * 12 * c * c)
    assert flops.paper == paper == 620_312_395_776
    assert flops.total == paper + 2 * 24 * 2 * 1025**2 * c


def test_student_flops_by_hand():
    """LiteFrame-B dwconv on one 4-frame clip at 448 px, stage by stage (SPEC 4)."""
    with torch.device("meta"):
        model = LiteFrameEncoder(LiteFrameConfig())
    flops = count_flops(model, (1, 4, 3, 448, 448))
    c = 768
    block = 12 * c * c  # qkv, proj, fc1, fc2 per token
    macs = 4 * 1024 * 588 * c  # patch embedding
    macs += 4 * (4 * 1025 * block + 4 * 1024 * c * 3)  # blocks 1-4: 4 frames, depth-wise temporal conv
    macs += 2 * 256 * c * 8  # Conv3d (2, 2, 2)
    macs += 4 * (2 * 257 * block + 2 * 256 * c * 3)  # blocks 5-8: 2 frames of 16 x 16
    macs += 1 * 256 * c * 2  # Conv3d (2, 1, 1)
    macs += 4 * 257 * block  # blocks 9-12: one frame, no temporal conv
    macs += 257 * c * 1024  # Linear(768, 1024) on patches and CLS
    attention = 4 * (4 * 1025**2 + 2 * 257**2 + 257**2) * 2 * c
    assert flops.paper == 2 * macs
    assert flops.total == 2 * (macs + attention)


def test_none_row_is_the_papers_plain_vit_b():
    """The paper's "ViT-B-12L, no compression" has no Linear(768, 1024) to the teacher's width: by hand, per 448 px
    frame, and the projection that LiteFrame's `none` variant adds on top of it (+0.79 M, +0.41 TFLOPs)."""
    c, tokens = 768, 1025
    block_params = (c * 3 * c + 3 * c) + (c * c + c) + 4 * c + 2 * c + (c * 4 * c + 4 * c) + (4 * c * c + c)
    vit_b = (3 * 14 * 14 * c + c) + c + tokens * c + 12 * block_params
    with torch.device("meta"):
        paper, variant = arch.build("none"), create_student("liteframe-b", temporal="none")
    assert sum(p.numel() for p in paper.parameters()) == vit_b
    flops = count_flops(paper, (1, 4, 3, 448, 448))
    assert flops.paper == 4 * 2 * (1024 * 588 * c + 12 * tokens * 12 * c * c)
    head = count_flops(variant, (1, 256, 3, 448, 448)).paper - count_flops(paper, (1, 256, 3, 448, 448)).paper
    assert sum(p.numel() for p in variant.parameters()) - vit_b == c * 1024 + 1024
    assert head == 2 * 256 * tokens * c * 1024 == pytest.approx(0.41e12, rel=0.01)


def test_latency_rows_and_plot(monkeypatch, tmp_path):
    """The timing path end to end, with tiny models standing in for the full-size ones."""
    def tiny(name, size, tower=None):
        assert size == 112
        if name == "teacher":
            return Teacher.from_config(tiny_vision_config("internvl", image_size=112))
        if name in arch.COMPRESSED:
            return LiteFrameEncoder(tiny_student_config(image_size=112, compression=arch.COMPRESSED[name])).eval()
        return LiteFrameEncoder(tiny_student_config(name, image_size=112)).eval()

    monkeypatch.setattr(arch, "build", tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # each model is made for the size it is timed at: nothing is resized
        rows = arch.run(frames=4, size=112, repeats=1, warmup=0)
    assert rows[0]["speedup"] == 1.0 and rows[0]["flop_ratio"] == 1.0
    assert all(r["latency_ms"] > 0 and r["flop_ratio"] > 0 for r in rows)
    assert rows[0]["latency_shape"] == "1x4x3x112x112 float32 cpu (1 thread)"
    arch.plot(rows, tmp_path / "arch.png")
    assert (tmp_path / "arch.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_json_at_full_size_and_errors(capsys):
    assert main(["bench", "arch", "--no-latency", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["arch"] for r in rows] == ["teacher", "none", "dwconv", "conv", "tempattn", "stattn", "spatial16",
                                         "keyframe", "keyframe-tome", "dwconv-4x", "dwconv-64x"]
    for row in rows:
        assert isinstance(row["params"], int) and isinstance(row["flops"], int)
        assert row["flops_total"] >= row["flops"] > 0 and row["flops_shape"] == "1x256x3x448x448"
    by = {r["arch"]: r for r in rows}
    assert by["teacher"]["params"] == pytest.approx(304e6, rel=0.01)
    assert by["dwconv"]["params"] == pytest.approx(by["none"]["params"], rel=0.02)
    assert by["teacher"]["flops"] / by["dwconv"]["flops"] > 8  # the compute the encoder saves
    assert by["stattn"]["flops_total"] > by["dwconv"]["flops_total"]  # joint attention over 4 frames
    assert 3.5 < by["none"]["flops"] / by["keyframe"]["flops"] < 4  # one frame of four through every block
    assert by["none"]["paper"] == "ViT-B-12L, no compression" and by["teacher"]["paper_A100_ms"] == 1043.33
    assert by["dwconv-64x"]["flops"] < by["dwconv"]["flops"] < by["dwconv-4x"]["flops"] < by["none"]["flops"]
    assert main(["bench", "arch", "--frames", "6", "--no-latency"]) == 2
    err = capsys.readouterr().err
    assert "--frames 6 must be a positive multiple of 4" in err and len(err.strip().splitlines()) == 1
    if not torch.cuda.is_available():
        assert main(["bench", "arch", "--device", "cuda:0", "--latency-size", "112"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_models_are_made_for_the_size_they_are_timed_at():
    """Latency at 112 px times models whose positions are made for 112 px: no resize, no resize warning."""
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("error")
        for name in arch.ARCHS:
            assert count_flops(arch.build(name, 112), (1, 4, 3, 112, 112)).paper > 0


def test_chosen_archs_teacher_first_and_compiled(monkeypatch):
    """`archs` picks rows (the teacher always first: ratios are against it); `compile` times every model through
    torch.compile (recorded here: compiling on a CPU takes minutes), after the warm-up that compiles."""
    monkeypatch.setattr(arch, "build", lambda name, size, tower=None: LiteFrameEncoder(
        tiny_student_config("dwconv", image_size=112)).eval())
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model: compiled.append(model) or model)
    rows = arch.run(frames=4, size=112, repeats=1, warmup=1, archs=["dwconv", "teacher"], compile=True)
    assert [r["arch"] for r in rows] == ["teacher", "dwconv"] and len(compiled) == 2
    assert rows[0]["latency_shape"].endswith("(1 thread), torch.compile") and rows[0]["speedup"] == 1.0
    with pytest.raises(InputError, match="unknown arch vit-h"):
        arch.run(archs=["vit-h"])
    with pytest.raises(InputError, match="at least one warm-up"):
        arch.run(warmup=0, compile=True)


def test_a_teacher_folder_and_student_folders(tmp_path, capsys):
    """`--teacher DIR`: its tower is the teacher row and the variants are its own students by the paper's ratios;
    `--student DIR` adds the saved student's row, counted as that architecture."""
    from transformers import Dinov2Model

    from liteframe.cli import main
    from liteframe.models import Teacher, student_for, tiny_vision_config

    Dinov2Model(tiny_vision_config("dinov2", 112, depth=6)).save_pretrained(tmp_path / "teacher")
    teacher = Teacher.from_pretrained(tmp_path / "teacher")
    LiteFrameEncoder.from_teacher(teacher, student_for(teacher.vision)).save_pretrained(tmp_path / "student")
    assert main(["bench", "arch", "--teacher", str(tmp_path / "teacher"), "--student", str(tmp_path / "student"),
                 "--frames", "4", "--size", "112", "--latency-size", "112", "--repeats", "1", "--archs",
                 "dwconv,none", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["arch"] for r in rows] == ["teacher", "dwconv", "none", f"student:{tmp_path / 'student'}"]
    with torch.device("meta"):
        tower = Teacher.from_config(tiny_vision_config("dinov2", 112, depth=6))
        derived = LiteFrameEncoder(student_for(tower.vision, image=112))
    assert rows[0]["params"] == sum(p.numel() for p in tower.parameters())
    # the saved student is the derived dwconv student: the same row
    assert rows[1]["params"] == rows[3]["params"] == sum(p.numel() for p in derived.parameters())
    assert rows[1]["flops"] == rows[3]["flops"] == count_flops(derived, (1, 4, 3, 112, 112)).paper
    assert rows[1]["flop_ratio"] > 1 and rows[0]["paper"] == ""
    assert main(["bench", "arch", "--student", str(tmp_path / "nothing"), "--no-latency"]) == 2
