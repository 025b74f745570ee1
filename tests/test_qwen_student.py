"""The whole method on Qwen2.5-VL (issue 21): a LiteFrame student cropped from Qwen's ViT (RMSNorm, SwiGLU, 2-D
rotary positions, patches over frame pairs) in front of the checkpoint's own merger; CTD from a tiny Qwen2.5-VL folder
in the hub's layout (targets: WAP on the merged grid, the frames `ask` feeds the student); LMA and `ask` with the
student, at 4x, 16x and 64x; and a student refused on another family."""
from __future__ import annotations

import json
import os
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLVisionRotaryEmbedding

from liteframe.cli import main
from liteframe.compression import get_compression
from liteframe.errors import InputError
from liteframe.llm import VideoLLM
from liteframe.models import LiteFrameEncoder, Teacher, student_config, student_for
from liteframe.models.crop import crop_state_dict
from liteframe.models.flops import count_flops
from liteframe.models.layers import rope_2d
from liteframe.models.qwen import ThroughMerger
from liteframe.testing import drifting_squares, save_tiny_internvl, save_tiny_qwen
from liteframe.testing.qwen import perturbed_tower, qwen_config
from liteframe.testing.runs import answer_with_inputs
from liteframe.train.distill import DistillConfig, cache_targets, distill
from liteframe.train.distill.data import ClipDataset, frames_config, read_manifest
from liteframe.train.adapt import AdaptConfig, adapt
from liteframe.train.distill.targets import teacher_targets
from liteframe.video import open_video

SIZE = 112  # the tiny student's square: 8 x 8 patches, the 64x strides' 4 x 4 and the merger's 2 x 2
TINY = {"name": "liteframe-qwen2.5-tiny"}


def _tower(seed: int = 0, **config) -> Teacher:
    """A tiny Qwen2.5-VL ViT and merger with random norms and biases, so that every crop slice matters."""
    return perturbed_tower(qwen_config("tiny").vision_config, seed, **config)


# -- the student ----------------------------------------------------------------------------------------------------


def test_a_full_crop_through_the_merger_is_qwens_vit():
    """Every block at full width, no temporal parts: the student in front of the tower's merger is the tower (whose
    blocks all attend to the whole frame pair here: the student has no windows), float64, at square and oblong
    frames, two videos at once. This checks the patch embedding over pairs, RMSNorm, SwiGLU, the fused qkv's thirds
    and the rotary positions (to float32 rounding: Qwen's RMSNorm and rotation compute in float32)."""
    teacher = _tower(fullatt_block_indexes=[0, 1]).double()
    full = student_for(teacher.vision, depth=2, heads=2, width=32, mlp=64, temporal="none", downsample_after=(),
                       compression=4)
    assert (full.norm, full.gated_mlp, full.rope_theta, full.temporal_patch, full.cls_token) == \
        ("rmsnorm", True, 10000.0, 2, False)
    student = ThroughMerger(LiteFrameEncoder.from_teacher(teacher, full).double(), teacher.vision)
    for height, width in ((56, 56), (56, 84), (112, 112)):
        pixels = torch.randn(2, 4, 3, height, width, dtype=torch.float64)
        with torch.no_grad():
            ref, got = teacher(pixels).patches, student(pixels).patches
        assert ref.shape == (2, 2, height // 28, width // 28, 64)
        torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)


def test_rotary_positions_are_qwens():
    rotary = Qwen2_5_VLVisionRotaryEmbedding(qwen_config("7b").vision_config)
    rows, cols = torch.meshgrid(torch.arange(3), torch.arange(5), indexing="ij")
    cos, sin = rotary(torch.zeros(1), torch.stack([rows.flatten(), cols.flatten()], -1))
    ours = rope_2d(3, 5, 80, 10000.0)
    torch.testing.assert_close(ours[0], cos, rtol=0, atol=0)
    torch.testing.assert_close(ours[1], sin, rtol=0, atol=0)


def test_half_crop_takes_qkv_thirds_and_the_gated_mlp():
    teacher = _tower(depth=4, fullatt_block_indexes=[3])
    config = student_for(teacher.vision, name="liteframe-qwen2.5-tiny")
    assert config.teacher == "qwen2_5_vl_vision" and config.image == 112
    s, t = crop_state_dict(teacher.vision, config), teacher.vision.state_dict()
    qkv = t["blocks.3.attn.qkv.weight"]  # (3 x 32, 32): q, k, v of two heads of 16; the student keeps head 0
    torch.testing.assert_close(s["blocks.1.attn.qkv.weight"], torch.cat([qkv[:16, :16], qkv[32:48, :16],
                                                                         qkv[64:80, :16]]), rtol=0, atol=0)
    gate, up = t["blocks.3.mlp.gate_proj.weight"], t["blocks.3.mlp.up_proj.weight"]
    torch.testing.assert_close(s["blocks.1.mlp.fc1.weight"], torch.cat([gate[:32, :16], up[:32, :16]]), rtol=0, atol=0)
    torch.testing.assert_close(s["blocks.1.mlp.fc2.weight"], t["blocks.3.mlp.down_proj.weight"][:16, :32])
    assert "pos_embed" not in s and "blocks.0.norm1.bias" not in s  # rotary positions; RMSNorm has no bias
    assert s["patch_embed.weight"].shape == (16, 3, 2, 14, 14)  # a frame pair per patch


def test_the_paper_ratios_give_liteframe_qwen25_and_its_flops():
    """From Qwen2.5-VL-7B's ViT (32 blocks of 1280, 16 heads, SwiGLU 3420): 16 blocks, 12 heads, SwiGLU 2565,
    downsampling after blocks 5 and 11. Its FLOPs on one 8-frame clip at 112 px, stage by stage."""
    with torch.device("meta"):
        teacher = Teacher.from_config(qwen_config("7b").vision_config)
        assert student_for(teacher.vision) == student_config("liteframe-qwen2.5")
        model = LiteFrameEncoder(student_config("liteframe-qwen2.5", image=112))
    flops = count_flops(model, (1, 8, 3, 112, 112))
    c, m = 960, 2565
    block = 4 * c * c + 3 * c * m  # qkv, proj, SwiGLU per token
    macs = 4 * 64 * 1176 * c  # patch embedding: 4 pairs of 8 x 8 patches of 3 x 2 x 14 x 14
    macs += 5 * (4 * 64 * block + 4 * 64 * c * 3)  # blocks 1-5: 4 pairs, depth-wise temporal conv
    macs += 2 * 16 * c * 8  # Conv3d (2, 2, 2)
    macs += 6 * (2 * 16 * block + 2 * 16 * c * 3)  # blocks 6-11: 2 steps of 4 x 4
    macs += 1 * 16 * c * 2  # Conv3d (2, 1, 1)
    macs += 5 * 16 * block  # blocks 12-16: one step
    macs += 16 * c * 1280  # Linear(960, 1280) to the merger's width
    assert flops.paper == 2 * macs


def test_bench_arch_qwen_rows(capsys):
    from liteframe.bench import arch

    rows = arch.run(frames=8, size=112, latency=False, archs=("teacher", "dwconv", "dwconv-64x"),
                    model_family="qwen2_5_vl")
    teacher, dwconv, x64 = rows
    assert teacher["params"] == pytest.approx(676.6e6, rel=1e-3)  # Qwen2.5-VL-7B's ViT and merger
    merger = 5120 * 5120 + 5120 + 5120 * 3584 + 3584 + 1280
    assert dwconv["params"] == sum(p.numel() for p in LiteFrameEncoder(student_config("liteframe-qwen2.5"))
                                   .parameters()) + merger  # the student and the merger its tokens go through
    assert teacher["flops"] > 8 * dwconv["flops"] > 8 * x64["flops"]
    assert main(["bench", "arch", "--model-family", "qwen2_5_vl", "--frames", "12", "--no-latency"]) == 2
    assert "--frames 12 must be a positive multiple of 8" in capsys.readouterr().err


def test_a_saved_student_round_trips_and_compresses_inside(tmp_path):
    teacher = _tower()
    for ratio, grid in ((4, (4, 2, 2)), (16, (1, 2, 2)), (64, (1, 1, 1))):
        student = LiteFrameEncoder.from_teacher(teacher, student_for(teacher.vision, name="liteframe-qwen2.5-tiny",
                                                                     compression=ratio))
        student.save_pretrained(tmp_path / str(ratio))
        loaded = LiteFrameEncoder.from_pretrained(tmp_path / str(ratio))
        pixels = torch.randn(1, 8, 3, SIZE, SIZE)
        with torch.no_grad():
            merged = ThroughMerger(loaded, teacher.vision)(pixels).patches
            torch.testing.assert_close(loaded(pixels).patches, student(pixels).patches)
        assert merged.shape == (1, *grid, 64)  # 4 frame pairs of 4 x 4 merged tokens, compressed by the ratio


# -- CTD, LMA and ask on a tiny Qwen2.5-VL folder -------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("qwen_ctd")
    save_tiny_qwen(root / "teacher", processor_files=True)  # the hub's layout and processor files
    videos = [drifting_squares(root / f"v{i}.mp4", i, size=SIZE) for i in range(8)]
    (root / "train.jsonl").write_text("".join(json.dumps({"video": v}) + "\n" for v in videos[:6]))
    (root / "eval.jsonl").write_text("".join(json.dumps({"video": v}) + "\n" for v in videos[6:]))
    rows = [{"id": f"v{i}", "video": videos[i], "conversations": [
        {"from": "human", "value": "<video>\nWhat moves?"}, {"from": "gpt", "value": "the pattern"}]} for i in (0, 1)]
    (root / "chat.json").write_text(json.dumps(rows))
    return {"root": str(root), "teacher": str(root / "teacher"), "train": str(root / "train.jsonl"),
            "eval": str(root / "eval.jsonl"), "chat": str(root / "chat.json"), "video": videos[7]}


def _config(data, out: Path, **kw) -> DistillConfig:
    base = dict(teacher=data["teacher"], manifest=data["train"], output=str(out), frames=8, student=TINY,
                image_size=SIZE, fps=(4.0, 8.0), workers=0, batch_size=4, steps=6, lr=1e-2, warmup_steps=2,
                eval_every=1000, save_every=1000, seed=0)
    return DistillConfig(**{**base, **kw})


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def students(data, tmp_path_factory) -> dict[int, Path]:
    """A student distilled at each compression, its held-out cosine scored at step 0 and at the end."""
    root = tmp_path_factory.mktemp("qwen_students")
    out = {}
    for ratio in (16, 4, 64):
        result = distill(_config(data, root / str(ratio), compression=ratio, eval_manifest=data["eval"],
                                 eval_every=6))
        out[ratio] = result.output
    return out


@pytest.mark.parametrize("ratio", [16, 4, 64])
def test_distill_trains_a_student_whose_heldout_cosine_beats_the_untrained_one(ratio, students):
    start, *_, final = _metrics(students[ratio].parent)
    assert start["eval_cos"] == pytest.approx(start["ref_untrained_cos"], abs=1e-6)
    assert final["eval_cos"] > final["ref_untrained_cos"] + 0.05, final
    student = LiteFrameEncoder.from_pretrained(students[ratio])
    assert student.config.teacher == "qwen2_5_vl_vision" and student.config.compression == get_compression(ratio)


def test_ctd_reads_the_frames_ask_feeds_the_student_and_distils_wap_on_the_merged_grid(data, students):
    """A training clip's pixels are the student encoder's own `prepare` of the same decoded frames (Qwen's processor
    pixels at the student's square), and its target is the training-free `wap` encoder's tokens on them."""
    teacher = Teacher.from_pretrained(data["teacher"])
    config = frames_config(teacher, data["teacher"], SIZE)
    clips = ClipDataset(read_manifest(data["train"]), 16, SIZE, (4.0, 8.0), 0, config, 8)
    pixels, sample = clips.load(2, 0)
    assert (pixels.shape, clips.sampler.clip_frames) == ((16, 3, SIZE, SIZE), 8)
    assert np.all(np.diff(sample.indices.reshape(2, 8), axis=1) > 0)  # two dense clips of 8 frames
    llm = VideoLLM.from_pretrained(data["teacher"], f"student:{students[16]}", device="cpu", dtype=torch.float32)
    with open_video(clips.entries[2].video) as reader:
        frames = reader.read(sample.timestamps).data
    assert torch.equal(llm.encoder.prepare(frames, torch.device("cpu"), torch.float32)[0], pixels)
    wap = VideoLLM.from_pretrained(data["teacher"], "wap", device="cpu", dtype=torch.float32)
    target = teacher_targets(teacher, pixels[None], get_compression(16))
    assert target.dtype == torch.float32 and target.shape == (1, 2, 2, 2, 64)
    torch.testing.assert_close(target.flatten(1, 3), wap.encoder(pixels[None]).tokens, rtol=1e-5, atol=1e-5)


def test_ask_with_the_student_reads_no_more_tokens_than_wap_with_its_prompt_and_positions(data, students, capsys):
    """At each compression the student answers; on a video of the student's own square, its tokens, slots and mRoPE
    positions are exactly those of `wap` (a grid reducer) at the same compression."""
    for ratio, folder in students.items():
        (student, ours), (wap, theirs) = (answer_with_inputs(data["teacher"], encoder, ratio, data["video"], 16,
                                                             "What moves?") for encoder in (f"student:{folder}", "wap"))
        assert 0 < student.visual_tokens <= wap.visual_tokens and student.answer is not None
        assert (student.slot_tokens, student.timestamps) == (wap.slot_tokens, wap.timestamps)
        assert torch.equal(ours.input_ids, theirs.input_ids) and torch.equal(ours.position_ids, theirs.position_ids)
    assert main(["ask", data["video"], "What moves?", "--model", data["teacher"], "--encoder",
                 f"student:{students[64]}", "--compression", "64", "--frames", "16", "--max-new-tokens", "2",
                 "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["visual_tokens"] == 2  # one merged token per clip of 8 frames


def test_adapt_trains_with_the_student_and_its_merger_then_ask_uses_the_adapter(data, students, tmp_path, capsys):
    """LMA on a Qwen checkpoint with `encoder: student:DIR`: the LoRA weights train, and with `train_projector` the
    checkpoint's merger, which the student's tokens go through (the ViT itself is freed); `ask` reads the adapter."""
    result = adapt(AdaptConfig(model=data["teacher"], encoder=f"student:{students[16]}", data=data["chat"],
                               output=str(tmp_path / "run"), frames=(16,), steps=2, batch_size=2, grad_accum=1,
                               lr=5e-2, warmup_steps=1, workers=0, save_every=100, train_projector=True,
                               lora={"dropout": 0.0}))
    with safe_open(str(result.output / "adapter_model.safetensors"), "pt") as f:
        weights = {k: f.get_tensor(k) for k in f.keys()}
    base = load_file(str(Path(data["teacher"]) / "model.safetensors"))
    merger = {k: v for k, v in weights.items() if ".visual.merger." in k}
    assert merger and not any(".visual.blocks." in k for k in weights)
    trained = next(v for k, v in merger.items() if k.endswith("merger.mlp.2.weight"))
    assert not torch.allclose(trained, base["visual.merger.mlp.2.weight"])  # the student's tokens reached it
    assert any(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)
    assert main(["ask", data["video"], "What moves?", "--model", data["teacher"], "--encoder",
                 f"student:{students[16]}", "--adapter", str(result.output), "--frames", "16", "--max-new-tokens",
                 "2", "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["visual_tokens"] == 2 * 4


def test_eval_and_bench_arch_take_the_student(data, students, tmp_path, capsys):
    import evaldata
    from liteframe.bench import arch
    from liteframe.eval.records import read_records

    out = tmp_path / "mlvu.jsonl"
    assert main(["eval", "--benchmark", "mlvu", "--data", str(evaldata.make_mlvu(tmp_path / "mlvu")), "--model",
                 data["teacher"], "--encoder", f"student:{students[16]}", "--frames", "16", "--out", str(out),
                 "--device", "cpu"]) == 0
    records = read_records(out)
    assert len(records) == 3 and all("error" not in r and r["visual_tokens"] == 2 * 4 for r in records), records
    rows = arch.run(frames=8, size=SIZE, latency=False, archs=("teacher",), teacher=data["teacher"],
                    students=[str(students[64])])
    assert rows[-1]["arch"] == f"student:{students[64]}" and rows[-1]["flops"] < rows[0]["flops"]
    with pytest.raises(InputError, match="does not feed this teacher's merger"):
        arch.run(frames=8, size=SIZE, latency=False, archs=("teacher",), model_family="qwen2_5_vl",
                 students=[str(students[64])])
    with pytest.raises(InputError, match="cropped from a qwen2_5_vl_vision tower, not the teacher row's internvl"):
        arch.run(frames=8, size=SIZE, latency=False, archs=("teacher",), students=[str(students[64])])


def test_a_student_of_one_family_is_refused_on_another_in_one_line(data, students, tmp_path, capfd):
    internvl = save_tiny_internvl(tmp_path / "internvl", image_size=56)
    intern_student = tmp_path / "intern_student"
    teacher = Teacher.from_pretrained(internvl)
    LiteFrameEncoder.from_teacher(teacher, student_for(teacher.vision, name="liteframe-tiny")).save_pretrained(
        intern_student)
    for model, student, words in ((internvl, students[16], "distilled from a qwen2_5_vl_vision tower, not this "
                                                           "checkpoint's internvl_vision"),
                                  (data["teacher"], intern_student, "distilled from a internvl_vision tower, not "
                                                                    "this checkpoint's qwen2_5_vl_vision")):
        capfd.readouterr()
        assert main(["ask", data["video"], "q", "--model", str(model), "--encoder", f"student:{student}",
                     "--frames", "16", "--device", "cpu"]) == 2
        err = capfd.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err


# -- the training job with a Qwen teacher ----------------------------------------------------------------------------


def test_a_frame_count_of_no_whole_pair_clips_is_refused_before_the_teacher_loads(data, tmp_path):
    with pytest.raises(InputError, match=r"frames=4 must be a multiple of 8: the 16x clip of 4 grid steps of 2 "):
        distill(_config(data, tmp_path / "x", frames=4))
    assert not (tmp_path / "x").exists()


def test_target_cache_and_rtd_with_a_qwen_teacher(data, tmp_path):
    cache = tmp_path / "cache"
    cfg = _config(data, tmp_path / "cached", target_cache=str(cache), steps=2, compression=64)
    assert cache_targets(cfg) == {"folder": str(cache), "clips": 6, "failed": 0, "signal": None}
    meta = json.loads((cache / "cache.json").read_text())["fingerprint"]
    assert meta["preprocess"] == {"size": SIZE, "resize": "torchvision_bicubic",
                                  "mean": [0.48145466, 0.4578275, 0.40821073],
                                  "std": [0.26862954, 0.26130258, 0.27577711]}
    targets = load_file(str(next(cache.glob("targets-*.safetensors"))))
    assert {v.shape for k, v in targets.items() if k.endswith("/target")} == {(1, 1, 1, 64)}  # 4 pairs, 2 x 2 merged
    distill(cfg)
    assert _metrics(tmp_path / "cached")[-1]["step"] == 2
    rtd = tmp_path / "rtd"
    distill(_config(data, rtd, loss="rtd", steps=3, batch_size=2))
    losses = [r["loss"] for r in _metrics(rtd)]
    assert all(np.isfinite(losses)), losses


def test_a_resumed_run_ends_where_a_straight_one_does(data, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    distill(_config(data, straight, steps=3, batch_size=2, save_every=1))
    distill(_config(data, resumed, steps=1, batch_size=2, save_every=1))
    distill(_config(data, resumed, steps=3, batch_size=2, save_every=1))
    a, b = (load_file(str(out / "student" / "model.safetensors")) for out in (straight, resumed))
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def _rank(rank: int, world: int, port: int, cfg: DistillConfig) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        distill(cfg)


def test_two_ddp_ranks_with_half_the_batch_match_one_rank(data, tmp_path):
    import multiprocessing

    kw = dict(steps=2, batch_size=4, eval_manifest=data["eval"], eval_every=2)
    distill(_config(data, tmp_path / "one", **kw))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ranks = [multiprocessing.get_context("fork").Process(target=_rank, args=(r, 2, port, _config(
        data, tmp_path / "two", **kw))) for r in range(2)]
    for p in ranks:
        p.start()
    for p in ranks:
        p.join(timeout=120)
        assert p.exitcode == 0
    a, b = (load_file(str(tmp_path / out / "student" / "model.safetensors")) for out in ("one", "two"))
    # Adam's steps here are ~5e-3 (lr 1e-2, warm-up 2): ranks that did not average their gradients differ by that
    # much; float32 sums over other batch splits, amplified by Adam's normalisation, by < 2e-4
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 2e-4
    assert _metrics(tmp_path / "one")[-1]["eval_cos"] == pytest.approx(_metrics(tmp_path / "two")[-1]["eval_cos"],
                                                                       abs=1e-4)
