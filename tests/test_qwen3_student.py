"""A LiteFrame student for Qwen3.5's and Qwen3-VL's vision tower (issue 22): cropped from the tower (LayerNorm, GELU
MLP, 16 px patches over frame pairs, its learned position grid resized to each input plus 2-D rotary positions) in
front of the checkpoint's own merger, with Qwen3-VL's DeepStack levels from the student's last blocks through the
checkpoint's DeepStack mergers; CTD from tiny checkpoints in the hub's layout (targets: WAP on the merged grid, each
level with the same weights), LMA with the student, `ask` with it at 4x, 16x and 64x, and `bench arch`."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import Qwen3VLVisionConfig
from transformers.models.qwen3_5.configuration_qwen3_5 import Qwen3_5VisionConfig

from liteframe.cli import main
from liteframe.compression import get_compression
from liteframe.errors import InputError
from liteframe.llm import VideoLLM
from liteframe.llm.qwen3 import Qwen3Vision
from liteframe.models import LiteFrameEncoder, Teacher, student_config, student_for
from liteframe.models.qwen import ThroughMerger
from liteframe.testing import drifting_squares, save_tiny_qwen
from liteframe.testing.qwen import perturbed_tower
from liteframe.testing.runs import answer_with_inputs
from liteframe.testing.qwen3 import save_tiny_qwen3, tiny_config
from liteframe.train.adapt import AdaptConfig, adapt
from liteframe.train.distill import DistillConfig, cache_targets, distill
from liteframe.train.distill.data import ClipDataset, frames_config, read_manifest
from liteframe.train.distill.targets import teacher_targets
from liteframe.video import open_video

SIZE = 128  # the tiny students' square: 8 x 8 patches of 16 px, the 64x strides' 2 x 2 and the merger's 1 x 1
TINY = {"qwen3_5": "liteframe-qwen3.5-tiny", "qwen3_vl": "liteframe-qwen3-vl-tiny"}


def _tower(model_type: str, **config) -> Teacher:
    """The tiny checkpoint's tower (and mergers) with random norms and biases, so that every crop slice matters."""
    return perturbed_tower(tiny_config(model_type, 400).vision_config, **config)


# -- the student ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", ["qwen3_5", "qwen3_vl"])
def test_a_full_crop_through_the_mergers_is_the_tower(model_type):
    """Every block at full width, no temporal parts: the student in front of the tower's mergers is the tower, float64,
    at square and oblong frames (the position grid resized to each), two videos at once; for Qwen3-VL (DeepStack
    after blocks 1 and 2 here, the student's last two) every level too."""
    deepstack = {"deepstack_visual_indexes": [1, 2]} if model_type == "qwen3_vl" else {}
    teacher = _tower(model_type, **deepstack).double()
    full = student_for(teacher.vision, depth=3, heads=2, width=32, mlp=64, temporal="none", downsample_after=(),
                       compression=4)
    assert (full.norm, full.gated_mlp, full.act, full.pos_grid, full.temporal_patch, full.patch) == \
        ("layernorm", False, "gelu_pytorch_tanh", 8, 2, 16)
    assert full.levels == (2 if model_type == "qwen3_vl" else 0)
    student = ThroughMerger(LiteFrameEncoder.from_teacher(teacher, full).double(), teacher.vision)
    for height, width in ((64, 64), (64, 96), (128, 128)):
        pixels = torch.randn(2, 4, 3, height, width, dtype=torch.float64)
        with torch.no_grad():
            ref, got = teacher(pixels), student(pixels)
        assert ref.patches.shape == (2, 2, height // 32, width // 32, 64)
        assert len(got.levels) == len(ref.levels) == full.levels
        for ours, theirs in zip((got.patches, *got.levels), (ref.patches, *ref.levels)):
            torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("model_type", ["qwen3_5", "qwen3_vl"])
def test_the_teacher_grid_is_the_pipelines_tower_output(model_type, tmp_path):
    """`Teacher` on a checkpoint folder (its vision parts only) gives what the `dense` pipeline's backbone gives
    (`Qwen3Vision`, tested equal to `get_video_features`), levels included, for two videos at once."""
    folder = save_tiny_qwen3(tmp_path / model_type, model_type)
    teacher = Teacher.from_pretrained(folder)
    llm = VideoLLM.from_pretrained(folder, "dense", device="cpu", dtype=torch.float32)
    pixels = torch.randn(2, 4, 3, 64, 96)
    with torch.no_grad():
        grid = teacher(pixels)
        for b in range(2):
            ref = Qwen3Vision(llm.model.model.visual)(pixels[b:b + 1])
            torch.testing.assert_close(grid.patches[b:b + 1], ref.patches)
            assert len(grid.levels) == len(ref.levels) == (2 if model_type == "qwen3_vl" else 0)
            for ours, theirs in zip(grid.levels, ref.levels):
                torch.testing.assert_close(ours[b:b + 1], theirs)


def test_the_paper_ratios_give_the_named_configs():
    """From the released 27-block tower (width 1152, 16 heads of 72, GELU 4304, a 48 x 48 position grid): 13 blocks,
    12 heads, MLP 3228, downsampling after blocks 4 and 9; Qwen3-VL's 3 DeepStack mergers take the last 3 blocks.
    At 64x, 448 px (28 patches) does not split into the 4 x 4 stride and the merger's 2 x 2: refused by the ratios,
    512 px in the named config."""
    with torch.device("meta"):
        qwen3_5 = Teacher.from_config(Qwen3_5VisionConfig(out_hidden_size=4096)).vision
        qwen3_vl = Teacher.from_config(Qwen3VLVisionConfig(out_hidden_size=4096)).vision
    assert student_for(qwen3_5) == student_config("liteframe-qwen3.5")
    assert student_for(qwen3_vl) == student_config("liteframe-qwen3-vl")
    config = student_config("liteframe-qwen3-vl")
    assert (config.width, config.depth, config.mlp, config.downsample_after, config.levels) == \
        (864, 13, 3228, (4, 9), 3)
    assert student_for(qwen3_vl, name="liteframe-qwen3-vl-64x").image == 512
    with pytest.raises(InputError, match="image 448: its 28-patch grid does not split into the student's 4x spatial"):
        student_for(qwen3_vl, compression=64)
    with pytest.raises(InputError, match="levels: student 0, teacher 2; .*teacher: student 'qwen3_5_vision', "
                                         "teacher 'qwen3_vl_vision'"):
        LiteFrameEncoder.from_teacher(_tower("qwen3_vl"), student_config("liteframe-qwen3.5-tiny"))


def test_bench_arch_qwen3_rows(capsys):
    """Qwen3-VL-8B's tower and mergers (DeepStack ones included) against `liteframe-qwen3-vl` in front of the same
    mergers, at 448 px: more than 8x fewer FLOPs; the 64x row needs sides of 128 px, refused at 448 before any work."""
    from transformers import Qwen3VLVisionModel

    from liteframe.bench import arch

    teacher, dwconv = arch.run(frames=8, size=448, latency=False, archs=("teacher", "dwconv"), model_family="qwen3_vl")
    with torch.device("meta"):
        tower = Qwen3VLVisionModel(Qwen3VLVisionConfig(out_hidden_size=4096))
        student = LiteFrameEncoder(student_config("liteframe-qwen3-vl"))
    mergers = sum(p.numel() for name, p in tower.named_parameters() if "merger" in name)
    assert teacher["params"] == sum(p.numel() for p in tower.parameters())
    assert dwconv["params"] == sum(p.numel() for p in student.parameters()) + mergers
    assert teacher["flops"] > 8 * dwconv["flops"]
    assert main(["bench", "arch", "--model-family", "qwen3_5", "--no-latency"]) == 2
    assert "--size 448: spatial16 and dwconv-64x of Qwen3's tower read sides of whole 128 px" in \
        capsys.readouterr().err


def test_levels_must_follow_the_last_downsampling():
    with pytest.raises(ValueError, match="levels 3: only 2 blocks follow the last downsampling"):
        student_config("liteframe-qwen3-vl-tiny", levels=3)


# -- CTD and ask on tiny Qwen3.5 and Qwen3-VL folders ------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("qwen3_ctd")
    videos = [drifting_squares(root / f"v{i}.mp4", i, size=SIZE, cell=32) for i in range(8)]
    (root / "train.jsonl").write_text("".join(json.dumps({"video": v}) + "\n" for v in videos[:6]))
    (root / "eval.jsonl").write_text("".join(json.dumps({"video": v}) + "\n" for v in videos[6:]))
    rows = [{"id": f"v{i}", "video": videos[i], "conversations": [
        {"from": "human", "value": "<video>\nWhat moves?"}, {"from": "gpt", "value": "the pattern"}]} for i in (0, 1)]
    (root / "chat.json").write_text(json.dumps(rows))
    return {"root": str(root), "qwen3_5": str(save_tiny_qwen3(root / "qwen3_5", "qwen3_5")),
            "qwen3_vl": str(save_tiny_qwen3(root / "qwen3_vl", "qwen3_vl")), "train": str(root / "train.jsonl"),
            "eval": str(root / "eval.jsonl"), "chat": str(root / "chat.json"), "video": videos[7]}


# (family, compression) of the students distilled once for the module: Qwen3.5 at every compression, Qwen3-VL at 16x
# and 64x (the levels at the fewest and the most tokens)
RUNS = [("qwen3_5", 16), ("qwen3_5", 4), ("qwen3_5", 64), ("qwen3_vl", 16), ("qwen3_vl", 64)]


@pytest.fixture(scope="module")
def students(data, tmp_path_factory) -> dict[tuple[str, int], Path]:
    """A student distilled per run, its held-out cosine scored at step 0 and at the end."""
    root = tmp_path_factory.mktemp("qwen3_students")
    out = {}
    for family, ratio in RUNS:
        cfg = DistillConfig(teacher=data[family], manifest=data["train"], output=str(root / f"{family}-{ratio}"),
                            frames=8, student={"name": TINY[family]}, image_size=SIZE, fps=(4.0, 8.0), workers=0,
                            batch_size=4, steps=10, lr=1e-2, warmup_steps=2, eval_every=10, save_every=1000, seed=0,
                            compression=ratio, eval_manifest=data["eval"])
        out[family, ratio] = distill(cfg).output
    return out


@pytest.mark.parametrize("run", RUNS, ids=[f"{f}-{r}x" for f, r in RUNS])
def test_distill_trains_a_student_whose_heldout_cosine_beats_the_untrained_one(run, students):
    family, ratio = run
    metrics = [json.loads(line) for line in (students[run].parent / "metrics.jsonl").read_text().splitlines()]
    start, *_, final = metrics
    assert start["eval_cos"] == pytest.approx(start["ref_untrained_cos"], abs=1e-6)
    assert final["eval_cos"] > final["ref_untrained_cos"] + 0.05, final
    student = LiteFrameEncoder.from_pretrained(students[run])
    assert student.config.teacher == f"{family}_vision" and student.config.compression == get_compression(ratio)
    assert student.config.levels == (2 if family == "qwen3_vl" else 0)


def test_ctd_targets_are_the_wap_encoders_tokens_then_its_levels(data, students):
    """A training clip's pixels are what `ask` feeds the student (the processor's pixels at its square), and its
    target is the training-free `wap` encoder's tokens on them, then each DeepStack level reduced with the same
    weights, as `wap` feeds them to the LLM."""
    folder = data["qwen3_vl"]
    teacher = Teacher.from_pretrained(folder)
    config = frames_config(teacher, folder, SIZE)
    assert (config.mean, config.std) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    clips = ClipDataset(read_manifest(data["train"]), 8, SIZE, (4.0, 8.0), 0, config, 8)
    pixels, sample = clips.load(2, 0)
    llm = VideoLLM.from_pretrained(folder, f"student:{students['qwen3_vl', 16]}", device="cpu", dtype=torch.float32)
    with open_video(clips.entries[2].video) as reader:
        frames = reader.read(sample.timestamps).data
    assert torch.equal(llm.encoder.prepare(frames, torch.device("cpu"), torch.float32)[0], pixels)
    wap = VideoLLM.from_pretrained(folder, "wap", device="cpu", dtype=torch.float32)
    target = teacher_targets(teacher, pixels[None], get_compression(16))
    assert target.dtype == torch.float32 and target.shape == (1, 3, 2, 2, 64)  # tokens, then 2 levels
    reduced = wap.encoder(pixels[None])
    assert len(reduced.levels) == 2
    for k, tokens in enumerate((reduced.tokens, *reduced.levels)):
        torch.testing.assert_close(target[:, k].flatten(1, 2), tokens, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["qwen3_5", "qwen3_vl"])
def test_ask_with_the_student_reads_no_more_tokens_than_wap_with_its_prompt_positions_and_levels(
        family, data, students, capsys):
    """At each compression the student answers; on a video of the student's own square its tokens, slots,
    timestamped prompt and mRoPE positions are exactly `wap`'s at the same compression, and for Qwen3-VL the LLM
    gets a DeepStack level per merger, shaped like wap's."""
    for (name, ratio), folder in students.items():
        if name != family:
            continue
        (student, ours), (wap, theirs) = (answer_with_inputs(data[family], encoder, ratio, data["video"], 16,
                                                             "What moves?") for encoder in (f"student:{folder}", "wap"))
        assert 0 < student.visual_tokens <= wap.visual_tokens and student.answer is not None
        assert (student.slot_tokens, student.timestamps) == (wap.slot_tokens, wap.timestamps)
        assert torch.equal(ours.input_ids, theirs.input_ids) and torch.equal(ours.position_ids, theirs.position_ids)
        assert len(ours.deepstack) == len(theirs.deepstack) == (2 if family == "qwen3_vl" else 0)
        assert [x.shape for x in ours.deepstack] == [x.shape for x in theirs.deepstack]
        assert all(x.shape == (student.visual_tokens, 64) for x in ours.deepstack)
        assert all(not torch.equal(x, y) for x, y in zip(ours.deepstack, ours.deepstack[1:]))  # each its own level
    assert main(["ask", data["video"], "What moves?", "--model", data[family], "--encoder",
                 f"student:{students[family, 64]}", "--compression", "64", "--frames", "16", "--max-new-tokens", "2",
                 "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["visual_tokens"] == 2  # one merged token per clip of 8 frames


def test_target_cache_holds_the_levels_and_rtd_runs_with_a_qwen3_vl_teacher(data, tmp_path):
    """The target cache stores a clip's tokens and its levels (64x: one token per 4 pairs, then one per level), a
    run reads them back; RTD reconstructs the teacher's merged grid from the student's tokens."""
    base = dict(teacher=data["qwen3_vl"], manifest=data["train"], frames=8, student={"name": TINY["qwen3_vl"]},
                image_size=SIZE, fps=(4.0, 8.0), workers=0, batch_size=2, lr=1e-2, warmup_steps=1, eval_every=1000,
                save_every=1000, seed=0)
    cache = tmp_path / "cache"
    cfg = DistillConfig(**base, output=str(tmp_path / "cached"), target_cache=str(cache), steps=2, compression=64)
    assert cache_targets(cfg) == {"folder": str(cache), "clips": 6, "failed": 0, "signal": None}
    targets = load_file(str(next(cache.glob("targets-*.safetensors"))))
    assert {v.shape for k, v in targets.items() if k.endswith("/target")} == {(3, 1, 1, 64)}
    distill(cfg)
    rtd = DistillConfig(**base, output=str(tmp_path / "rtd"), loss="rtd", steps=3)
    distill(rtd)
    rows = [json.loads(line) for line in (tmp_path / "rtd" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 3 and all(math.isfinite(r["loss"]) for r in rows), rows


def test_adapt_trains_with_the_student_and_its_mergers_then_ask_uses_the_adapter(data, students, tmp_path, capsys):
    """LMA on a Qwen3-VL checkpoint with `encoder: student:DIR`: the LoRA weights train, and with `train_projector`
    the checkpoint's merger and DeepStack mergers, which the student's tokens and levels go through (the tower's
    blocks are freed); `ask` reads the adapter."""
    folder, student = data["qwen3_vl"], students["qwen3_vl", 16]
    result = adapt(AdaptConfig(model=folder, encoder=f"student:{student}", data=data["chat"],
                               output=str(tmp_path / "run"), frames=(16,), steps=2, batch_size=2, grad_accum=1,
                               lr=5e-2, warmup_steps=1, workers=0, save_every=100, train_projector=True,
                               lora={"dropout": 0.0}))
    with safe_open(str(result.output / "adapter_model.safetensors"), "pt") as f:
        weights = {k: f.get_tensor(k) for k in f.keys()}
    base = load_file(str(Path(folder) / "model.safetensors"))
    assert not any(".visual.blocks." in k for k in weights)
    saved = {merger: next(v for k, v in weights.items() if f".visual.{merger}.linear_fc2.weight" in k)
             for merger in ("merger", "deepstack_merger_list.0", "deepstack_merger_list.1")}
    # the tiny LLM has 2 layers: level 1 is added after the last one, where the visual positions reach no loss
    for merger in ("merger", "deepstack_merger_list.0"):
        assert not torch.allclose(saved[merger], base[f"model.visual.{merger}.linear_fc2.weight"]), merger
    assert any(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)
    assert main(["ask", data["video"], "What moves?", "--model", folder, "--encoder", f"student:{student}",
                 "--adapter", str(result.output), "--frames", "16", "--max-new-tokens", "2", "--device", "cpu",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["visual_tokens"] == 2 * 4


def test_eval_takes_the_student(data, students, tmp_path):
    import evaldata
    from liteframe.eval.records import read_records

    out = tmp_path / "mlvu.jsonl"
    assert main(["eval", "--benchmark", "mlvu", "--data", str(evaldata.make_mlvu(tmp_path / "mlvu")), "--model",
                 data["qwen3_vl"], "--encoder", f"student:{students['qwen3_vl', 16]}", "--frames", "16", "--out",
                 str(out), "--device", "cpu"]) == 0
    records = read_records(out)
    assert len(records) == 3 and all("error" not in r and r["visual_tokens"] == 2 * 4 for r in records), records


def test_a_student_of_one_family_is_refused_on_another_in_one_line(data, students, tmp_path, capfd):
    qwen25 = save_tiny_qwen(tmp_path / "qwen25")
    cases = ((data["qwen3_vl"], students["qwen3_5", 16], "distilled from a qwen3_5_vision tower, not this "
                                                         "checkpoint's qwen3_vl_vision"),
             (data["qwen3_5"], students["qwen3_vl", 16], "distilled from a qwen3_vl_vision tower, not this "
                                                         "checkpoint's qwen3_5_vision"),
             (qwen25, students["qwen3_5", 16], "not this checkpoint's qwen2_5_vl_vision"))
    for model, student, words in cases:
        capfd.readouterr()
        assert main(["ask", data["video"], "q", "--model", str(model), "--encoder", f"student:{student}",
                     "--frames", "16", "--device", "cpu"]) == 2
        err = capfd.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
