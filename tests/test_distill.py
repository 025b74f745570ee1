"""CTD training end to end on CPU: a tiny InternVL teacher folder, a tiny cropped student, tiny generated videos and
the shared real ones. Each run is a few optimiser steps; processes for the 2-rank and kill tests are forked from
this one so they need not import torch and transformers again."""
from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import InternVLForConditionalGeneration

from liteframe.errors import InputError
from liteframe.train.job import job_setup
from liteframe.models import LiteFrameEncoder, Teacher, student_config, tiny_internvl_config
from liteframe.compression import get_compression
from liteframe.train import checkpoint as ckpt
from liteframe.train.config import save_config
from liteframe.train.distill import DistillConfig, DistillTrainer, cache_targets, distill
from liteframe.train.distill.data import ClipDataset, manifest_digest, read_manifest
from liteframe.train.distill.targets import CachedTargets, TargetCache, fingerprint, teacher_identity, teacher_targets
from liteframe.testing import drifting_squares

from videos import REAL_VIDEOS as REAL
STUDENT = {"name": "liteframe-tiny"}  # the one tiny student (liteframe.models.STUDENTS)


def _manifest(path: Path, videos: list) -> str:
    path.write_text("".join(json.dumps({"video": str(v)}) + "\n" for v in videos))
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("distill")
    torch.manual_seed(0)
    InternVLForConditionalGeneration(tiny_internvl_config(56)).save_pretrained(root / "teacher")
    for i in range(10):
        drifting_squares(root / f"v{i}.mp4", i, frames=40, size=64, fps=20, step=2)
    (root / "garbage.mp4").write_bytes(b"\x00not a video" * 100)
    return {
        "root": str(root),
        "teacher": str(root / "teacher"),
        "train": _manifest(root / "train.jsonl", [f"v{i}.mp4" for i in range(8)]),
        "eval": _manifest(root / "eval.jsonl", ["v8.mp4", "v9.mp4"]),
        "corrupt": _manifest(root / "corrupt.jsonl", ["v0.mp4", REAL / "corrupted.mp4", "garbage.mp4",
                                                      REAL / "bbb_short.mp4"]),
    }


def _config(data, out: Path, **kw) -> DistillConfig:
    base = dict(teacher=data["teacher"], manifest=data["train"], output=str(out), frames=4, student=STUDENT,
                workers=0, batch_size=2, steps=4, lr=3e-3, warmup_steps=1, log_every=1, eval_every=1000,
                save_every=1000, seed=0)
    return DistillConfig(**{**base, **kw})


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "student" / "model.safetensors"))


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= atol, worst


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _fork(target, *args) -> multiprocessing.Process:
    process = multiprocessing.get_context("fork").Process(target=target, args=args)
    process.start()
    return process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- learning --------------------------------------------------------------------------------------------------------


def test_loss_falls_and_heldout_cosine_beats_the_untrained_student(data, tmp_path):
    out = tmp_path / "run"
    result = distill(_config(data, out, steps=12, batch_size=4, lr=1e-2, warmup_steps=4, eval_manifest=data["eval"],
                             eval_every=12))
    start, *rows = _metrics(out)
    # step 0: the untrained student's scores, which are the untrained reference
    assert start["step"] == 0 and start["eval_cos"] == pytest.approx(start["ref_untrained_cos"], abs=1e-6)
    assert [r["step"] for r in rows] == list(range(1, 13))
    first, last = np.mean([r["loss"] for r in rows[:3]]), np.mean([r["loss"] for r in rows[-3:]])
    assert last < 0.8 * first, (first, last)
    final = rows[-1]
    assert final["eval_cos"] > final["ref_untrained_cos"] + 0.05, final
    assert all(-1 <= final[f"ref_{r}_cos"] <= 1 for r in ("avg", "max", "subsample", "tome")), final
    for key in ("lr", "grad_norm", "skipped", "peak_mem_mib", "cos"):
        assert key in final
    # wall-clock time over the run, and the speed over the run, not one step
    elapsed = [r["elapsed_s"] for r in rows]
    assert all(0 < a < b for a, b in zip(elapsed, elapsed[1:]))
    assert [r["samples"] for r in rows] == [4 * s for s in range(1, 13)]
    assert final["clips_per_s"] == pytest.approx(48 / final["elapsed_s"])
    assert (out / "tensorboard").is_dir()
    # the final student is a from_pretrained folder with the trained weights
    student = LiteFrameEncoder.from_pretrained(result.output)
    _assert_same(student.state_dict(), _weights(out), 0.0)
    assert len(ckpt.list_checkpoints(out / "checkpoints")) == 1  # saved at the last step


def test_rtd_runs_and_learns_its_reconstruction(data, tmp_path):
    out = tmp_path / "rtd"
    distill(_config(data, out, loss="rtd", steps=4, batch_size=2))
    losses = [r["loss"] for r in _metrics(out)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    tensors, _ = ckpt.load_checkpoint(ckpt.list_checkpoints(out / "checkpoints")[-1])
    assert any(k.startswith("model/decoder.") for k in tensors)  # the decoder trains beside the student
    assert not any(k.startswith("decoder") for k in _weights(out))  # but is not part of the student


def test_a_keyframe_student_trains_only_its_frame_merge_when_told(data, tmp_path):
    """`trainable: [downsample]`: the keyframe student's frame merge moves, every other weight stays the crop's; a
    name that matches no parameter is refused in one line before any step."""
    student = {"name": "liteframe-tiny", "temporal": "keyframe", "scale": 0.75}
    out = tmp_path / "keyframe"
    distill(_config(data, out, student=student, trainable=["downsample"], steps=3))
    trained = _weights(out)
    crop = LiteFrameEncoder.from_teacher(data["teacher"], LiteFrameEncoder.from_pretrained(out / "student").config)
    moved = sorted(k for k, v in crop.state_dict().items() if not torch.equal(v, trained[k]))
    assert moved == ["downsample.0.conv.bias", "downsample.0.conv.weight"]
    with pytest.raises(InputError, match=r"trainable \['mixer'\] names no parameter of the student"):
        distill(_config(data, tmp_path / "bad", student=student, trainable=["downsample", "mixer"]))


def test_a_keyframe_tome_student_distils_its_propagation_alone_when_told(data, tmp_path):
    """A `keyframe-tome` student (ToMe merging 4, 2 and 1 tokens in its 3 blocks) distils end to end; with
    `trainable: [propagate]` only its two propagation parameters move."""
    student = {"name": "liteframe-tiny", "temporal": "keyframe-tome", "merge": [4, 2, 1]}
    out = tmp_path / "tome"
    distill(_config(data, out, student=student, trainable=["propagate"], steps=3, lr=0.1))
    loaded = LiteFrameEncoder.from_pretrained(out / "student")
    assert loaded.config.merge == (4, 2, 1)
    crop = LiteFrameEncoder.from_teacher(data["teacher"], loaded.config)
    moved = sorted(k for k, v in crop.state_dict().items() if not torch.equal(v, _weights(out)[k]))
    assert moved == ["propagate.distance", "propagate.log_temperature"]


# -- distributed ------------------------------------------------------------------------------------------------------


def _rank(rank: int, world: int, port: int, cfg: DistillConfig) -> None:
    """One torchrun-like rank; the Python warnings it raises go to `<output>/warnings-<rank>.txt` (the forked
    child inherits pytest's warning capture, whose records would die with it)."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distill(cfg)
    Path(cfg.output, f"warnings-{rank}.txt").write_text("".join(f"{w.message}\n" for w in caught))


def test_two_gloo_ranks_ddp_and_fsdp_with_half_the_batch_match_one_rank_with_all_of_it(data, tmp_path):
    kw = dict(steps=2, batch_size=4, eval_manifest=data["eval"], eval_every=2)
    one = tmp_path / "one"
    distill(_config(data, one, **kw))
    for parallel in ("ddp", "fsdp"):
        two, port = tmp_path / parallel, _free_port()
        ranks = [_fork(_rank, r, 2, port, _config(data, two, parallel=parallel, **kw)) for r in range(2)]
        for p in ranks:
            p.join(timeout=120)
            assert p.exitcode == 0
        _assert_same(_weights(one), _weights(two), 2e-5)
    # grad accumulation over two half batches is the same step again
    accum = tmp_path / "accum"
    distill(_config(data, accum, grad_accum=2, **kw))
    _assert_same(_weights(one), _weights(accum), 2e-5)
    m1, m2 = _metrics(one)[-1], _metrics(tmp_path / "ddp")[-1]
    assert m1["eval_cos"] == pytest.approx(m2["eval_cos"], abs=1e-4)  # held-out clips sharded over ranks
    assert m1["ref_untrained_cos"] == pytest.approx(m2["ref_untrained_cos"], abs=1e-5)


def test_two_ddp_ranks_warn_of_no_gradient_layout_mismatch(data, tmp_path, capfd):
    out, port = tmp_path / "ddp", _free_port()
    ranks = [_fork(_rank, r, 2, port, _config(data, out, steps=1, batch_size=2)) for r in range(2)]
    for p in ranks:
        p.join(timeout=120)
        assert p.exitcode == 0
    # DDP's gradient buckets match the parameters' layout, so it copies no gradient every step
    said = capfd.readouterr().err + "".join((out / f"warnings-{r}.txt").read_text() for r in range(2))
    assert "Grad strides do not match bucket view strides" not in said, said


# -- interruption ----------------------------------------------------------------------------------------------------


def _killed_while_saving(cfg: DistillConfig, step: int) -> None:
    """Train, and die by SIGKILL half-way through writing the checkpoint of `step`."""
    torch.set_num_threads(1)
    real = ckpt.save_file

    def save_file(tensors, path, metadata=None):
        if f"step-{step:08d}" in path:
            Path(path).write_bytes(b"half a checkpoint")
            os.kill(os.getpid(), signal.SIGKILL)
        real(tensors, path, metadata=metadata)

    ckpt.save_file = save_file
    distill(cfg)


def test_a_run_killed_mid_checkpoint_resumes_to_the_same_weights(data, tmp_path):
    torch.set_num_threads(1)
    try:
        kw = dict(steps=4, save_every=1, keep_last=2, workers=1)
        straight = tmp_path / "straight"
        distill(_config(data, straight, **kw))
        resumed = tmp_path / "resumed"
        child = _fork(_killed_while_saving, _config(data, resumed, **kw), 3)
        child.join(timeout=120)
        assert child.exitcode == -signal.SIGKILL
        assert [p.name for p in ckpt.list_checkpoints(resumed / "checkpoints")] == [
            "step-00000001.safetensors", "step-00000002.safetensors"]
        assert list((resumed / "checkpoints").glob(".step-00000003*"))  # the broken write is not a checkpoint
        distill(_config(data, resumed, **kw))
    finally:
        torch.set_num_threads(2)
    _assert_same(_weights(straight), _weights(resumed), 1e-6)
    assert [r["step"] for r in _metrics(resumed)] == [1, 2, 3, 4]  # step 3 logged once, not twice
    assert [p.name for p in ckpt.list_checkpoints(resumed / "checkpoints")] == [
        "step-00000003.safetensors", "step-00000004.safetensors"]
    assert not list((resumed / "checkpoints").glob(".step-*"))


def test_sigterm_saves_a_checkpoint_and_stops(data, tmp_path, monkeypatch):
    job = importlib.import_module("liteframe.train.distill.job")

    def collate_then_sigterm(items):  # SIGTERM arrives while the first batch loads
        os.kill(os.getpid(), signal.SIGTERM)
        return real(items)

    real = job.collate
    monkeypatch.setattr(job, "collate", collate_then_sigterm)
    out = tmp_path / "term"
    result = distill(_config(data, out, steps=50))
    assert result.output is None and result.step == 1  # the step finished, was saved, and the run stopped
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["step-00000001.safetensors"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone with the run


# -- target cache and bad data --------------------------------------------------------------------------------------


def test_target_cache_matches_the_teacher_and_refuses_other_settings(data, tmp_path):
    cache = tmp_path / "cache"
    manifest = _manifest(tmp_path / "m.jsonl", [Path(data["root"]) / f"v{i}.mp4" for i in range(4)]
                         + [Path(data["root"]) / "garbage.mp4"])
    summary = cache_targets(_config(data, tmp_path / "unused", manifest=manifest, target_cache=str(cache),
                                    cache_views=2))
    assert summary == {"folder": str(cache), "clips": 8, "failed": 2, "signal": None}
    # a cached target is WAP(teacher) of exactly the clip the training data loader gives for that view
    teacher = Teacher.from_pretrained(data["teacher"])
    entries = read_manifest(manifest)
    expected = fingerprint(teacher_identity(teacher, data["teacher"]), manifest_digest(entries), 4, (1.0, 4.0), 0, 2,
                           56, get_compression(16))
    store = TargetCache(cache, expected)
    dataset = CachedTargets(ClipDataset(entries, 4, 56, (1.0, 4.0), 0), store)
    dataset.set_view(1)
    item = dataset[2]
    online = teacher_targets(teacher, item["pixels"][None], get_compression(16))[0]
    assert item["target"].dtype == torch.bfloat16 and item["target"].shape == online.shape == (1, 2, 2, 64)
    torch.testing.assert_close(item["target"].float(), online, rtol=1e-2, atol=1e-2)
    # training reads it; the teacher is not needed for the steps
    out = tmp_path / "cached"
    distill(_config(data, out, manifest=manifest, target_cache=str(cache), cache_views=2, steps=2))
    # 5 videos, 2 clips a step: epoch 0 (seed 0) reads [4, 0] then [1, 3], so garbage.mp4 (index 4) is met once
    assert _metrics(out)[-1]["skipped"] == 1
    # built with one setting, refused under another, naming the difference
    for change, word in ((dict(frames=8), "frames"), (dict(seed=1), "seed"), (dict(image_size=28), "size"),
                         (dict(manifest=data["train"]), "manifest"),
                         (dict(compression=64),
                          r"target\.block: cache \[4, 2, 2\], this run \[4, 4, 4\]")):
        with pytest.raises(InputError, match=word):
            distill(_config(data, tmp_path / "refused", **{**dict(manifest=manifest, target_cache=str(cache),
                                                                   cache_views=2), **change}))
    other = tmp_path / "other_teacher"
    torch.manual_seed(1)
    InternVLForConditionalGeneration(tiny_internvl_config(56)).save_pretrained(other)
    with pytest.raises(InputError, match="teacher.tensors"):
        distill(_config(data, tmp_path / "refused", teacher=str(other), manifest=manifest, target_cache=str(cache),
                        cache_views=2))


def test_the_cli_trains_through_corrupt_videos_and_reports_them(data, tmp_path, capsys):
    from liteframe.cli import main

    out = tmp_path / "corrupt"
    save_config(_config(data, out, manifest=data["corrupt"], steps=2, batch_size=4), tmp_path / "run.yaml")
    assert main(["distill", "--config", str(tmp_path / "run.yaml"), "log_every=1"]) == 0
    assert f"student saved to {out / 'student'}" in capsys.readouterr().out
    assert _metrics(out)[-1]["skipped"] == 2  # garbage.mp4 in both epochs; corrupted.mp4 misses no sampled frame
    assert LiteFrameEncoder.from_pretrained(out / "student").config.width == student_config("liteframe-tiny").width
    assert main(["distill", "--config", str(tmp_path / "run.yaml"), "manifest=" + str(tmp_path / "none.jsonl")]) == 2
    assert "none.jsonl: cannot read the manifest" in capsys.readouterr().err


def test_bench_times_the_training_step_with_and_without_the_teacher():
    from liteframe.bench.train import step_rows
    from liteframe.models import tiny_student_config, tiny_vision_config

    rows = step_rows(steps=1, batch_size=1, frames=4, size=56, teacher_config=tiny_vision_config(),
                     student_config=tiny_student_config(), device="cpu", peak_tflops=1.0)
    online, cached = rows
    assert (online["targets"], cached["targets"]) == ("teacher every step", "cached")
    # the cached step does the student's work only: fewer FLOPs by exactly the teacher's forward
    assert online["model_tflops_per_step"] > cached["model_tflops_per_step"] > 0
    assert cached["speedup"] == pytest.approx(cached["clips_per_s"] / online["clips_per_s"])
    assert 0 < cached["mfu"] < 1


# -- compression and evaluation ---------------------------------------------------------------------------------------


def test_distill_and_cache_targets_at_64x_from_the_cli(data, tmp_path, capsys):
    from liteframe.cli import main

    out, cache = tmp_path / "run64", tmp_path / "cache64"
    save_config(_config(data, out, frames=8, steps=2, eval_manifest=data["eval"], eval_every=2,
                        target_cache=str(cache)), tmp_path / "run.yaml")
    assert main(["cache-targets", "--config", str(tmp_path / "run.yaml"), "--compression", "64"]) == 0
    assert json.loads((cache / "cache.json").read_text())["fingerprint"]["target"]["block"] == [4, 4, 4]
    targets = load_file(str(next(cache.glob("targets-*.safetensors"))))
    assert {v.shape for k, v in targets.items() if k.endswith("/target")} == {(2, 1, 1, 64)}  # 8 frames, 4x4 grid
    capsys.readouterr()
    assert main(["distill", "--config", str(tmp_path / "run.yaml"), "--compression", "64"]) == 0
    printed = capsys.readouterr().out
    # the run ends with its held-out and training-sample scores beside the references
    assert "held-out" in printed and "training sample" in printed
    assert all(f"{r}_cos" in printed for r in ("avg", "max", "subsample", "untrained"))
    assert "tome_cos" not in printed  # ToMe keeps a token per frame at least: more than 64x leaves of a 4x4 grid
    student = LiteFrameEncoder.from_pretrained(out / "student")
    assert student(torch.zeros(1, 8, 3, 56, 56)).patches.shape == (1, 2, 1, 1, 64)
    # the same settings at 16x are refused by the 64x cache, naming the block
    assert main(["distill", "--config", str(tmp_path / "run.yaml"), "compression=16", "student.temporal=dwconv",
                 f"output={tmp_path / 'run16'}"]) == 2
    assert "target.block" in capsys.readouterr().err


def test_heldout_views_and_the_training_sample_use_the_training_targets(data, tmp_path):
    cfg = _config(data, tmp_path / "ev", eval_manifest=data["eval"], eval_views=2, loss="rtd")
    with job_setup(cfg) as job:
        job.load_teacher(cfg.teacher)
        trainer = DistillTrainer(cfg, job, read_manifest(cfg.manifest), read_manifest(cfg.eval_manifest))
        teacher = job.teacher
    held, train = trainer.evals["eval"], trainer.evals["train"]
    assert len(held["pixels"]) == 4  # 2 videos x 2 views: other times of the same videos
    assert not torch.equal(held["pixels"][0], held["pixels"][2])
    c16 = get_compression(16)
    for ev in (held, train):  # the very function that makes the training targets
        torch.testing.assert_close(torch.cat(ev["targets"]),
                                   teacher_targets(teacher, ev["pixels"], c16).flatten(1, 3), rtol=0, atol=0)
        dense = teacher_targets(teacher, ev["pixels"], c16, dense=True).flatten(1, 3)
        torch.testing.assert_close(torch.cat(ev["dense"]).float(), dense, rtol=1e-2, atol=1e-2)
    # the training sample: 4 of the 8 training videos, the clips the first epoch trains on
    first = ClipDataset(read_manifest(cfg.manifest), cfg.frames, 56, cfg.fps, cfg.seed)[0]["pixels"]
    assert len(train["pixels"]) == 4 and torch.equal(train["pixels"][0], first)
    scores = trainer.evaluate()
    assert {"eval_cos", "train_cos", "eval_recon_cos", "train_recon_cos", "train_ref_avg_cos"} <= set(scores)
    assert scores["train_ref_untrained_cos"] == pytest.approx(scores["train_cos"])  # nothing trained yet
    assert all(-1 <= v <= 1 for v in scores.values())


def test_undecodable_heldout_videos_are_skipped_and_counted_and_none_left_is_one_line(data, tmp_path, caplog):
    root = Path(data["root"])
    mixed = _manifest(tmp_path / "mixed.jsonl", [root / "v8.mp4", root / "missing.mp4", root / "garbage.mp4"])
    cfg = _config(data, tmp_path / "ev", eval_manifest=mixed)
    with job_setup(cfg) as job, caplog.at_level("WARNING", "liteframe.train"):
        job.load_teacher(cfg.teacher)
        trainer = DistillTrainer(cfg, job, read_manifest(cfg.manifest), read_manifest(cfg.eval_manifest))
    assert len(trainer.evals["eval"]["pixels"]) == 1 and -1 <= trainer.evaluate()["eval_cos"] <= 1
    assert "2 of 3 held-out clips skipped" in caplog.text
    dead = _manifest(tmp_path / "dead.jsonl", [root / "missing.mp4", root / "garbage.mp4"])
    cfg = _config(data, tmp_path / "ev2", eval_manifest=dead)
    with job_setup(cfg) as job, pytest.raises(InputError, match="no held-out clip decodes") as err:
        job.load_teacher(cfg.teacher)
        DistillTrainer(cfg, job, read_manifest(cfg.manifest), read_manifest(cfg.eval_manifest))
    assert "\n" not in str(err.value) and "missing.mp4" in str(err.value)


# -- reliability (issue 19) -----------------------------------------------------------------------------------------

HOLD = "import sys, time\nfrom liteframe.io import output_lock\nwith output_lock(sys.argv[1], sys.argv[2]):\n" \
       "    print('held', flush=True)\n    time.sleep(120)\n"


def _env() -> dict[str, str]:
    import liteframe

    return {**os.environ, "PYTHONPATH": str(Path(liteframe.__file__).parents[1]), "OMP_NUM_THREADS": "1"}


def test_a_second_writer_is_refused_and_every_rank_stops_alike(data, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    holders = [subprocess.Popen([sys.executable, "-c", HOLD, str(path), what], stdout=subprocess.PIPE, text=True,
                                env=_env()) for path, what in ((out, "distill output"), (cache, "target cache"))]
    try:
        assert all(h.stdout.readline().strip() == "held" for h in holders)
        with pytest.raises(InputError, match=rf"distill output .*run is in use by pid {holders[0].pid} on "):
            distill(_config(data, out))
        with pytest.raises(InputError, match=rf"target cache .*cache is in use by pid {holders[1].pid}"):
            cache_targets(_config(data, tmp_path / "unused", target_cache=str(cache)))
        # under torchrun rank 0 takes the lock; refused, every rank stops (none waits in a collective)
        port = _free_port()
        ranks = [_fork(_rank, r, 2, port, _config(data, out)) for r in range(2)]
        for p in ranks:
            p.join(timeout=120)
            assert p.exitcode not in (0, None)
    finally:
        for h in holders:
            h.kill()
            h.wait()
    assert not (out / "checkpoints").exists() and not (out / "run.json").exists()


def test_another_runs_folder_is_refused_before_it_is_touched_and_safe_changes_resume(data, tmp_path, caplog):
    from liteframe.train.adapt import AdaptConfig, adapt

    out = tmp_path / "run"
    distill(_config(data, out, steps=2))
    before = {name: (out / name).read_bytes() for name in ("config.yaml", "run.json", "metrics.jsonl")}
    with pytest.raises(InputError) as err:
        distill(_config(data, out, steps=2, student={**STUDENT, "depth": 2}, lr=1e-3))
    message = str(err.value)
    assert "student.depth: None -> 2" in message and "lr: 0.003 -> 0.001" in message and "\n" not in message
    assert f"start fresh with another output, or delete {out}" in message
    # adapt into a distill folder: refused before its config or metrics change
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps([{"id": 0, "video": "v0.mp4", "conversations": [
        {"from": "human", "value": "<video>\nQ"}, {"from": "gpt", "value": "A"}]}]))
    with pytest.raises(InputError, match=f"{out}: holds a run of distill, which adapt cannot resume"):
        adapt(AdaptConfig(model=data["teacher"], data=str(chat), output=str(out), frames=(4,)))
    assert before == {name: (out / name).read_bytes() for name in before}
    # more steps and another logging cadence: allowed, said, and the run trains on from its checkpoint
    with caplog.at_level("WARNING", "liteframe.train"):
        distill(_config(data, out, steps=3, log_every=2))
    assert "resuming with a changed setting (allowed): steps: 2 -> 3" in caplog.text
    assert [r["step"] for r in _metrics(out)] == [1, 2, 3]


def test_stop_signals_to_the_whole_process_group_save_without_a_worker_traceback(data, tmp_path):
    out = tmp_path / "run"
    save_config(_config(data, out, steps=10**4, workers=2, save_every=10**4), tmp_path / "run.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "liteframe.cli", "distill", "--config", str(tmp_path / "run.yaml")],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline:  # training, with workers decoding
            if (out / "metrics.jsonl").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) >= 2:
                break
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the main process and its workers
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert "by SIGINT; checkpoint saved; run the same command to resume" in stdout
    step = int(stdout.split("stopped at step ")[1].split()[0])
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == [f"step-{step:08d}.safetensors"]


def test_a_full_disk_while_saving_is_one_line_and_the_rerun_resumes(data, tmp_path, monkeypatch, capsys):
    from safetensors import SafetensorError

    from liteframe.cli import main

    out = tmp_path / "run"
    save_config(_config(data, out, steps=3, save_every=1), tmp_path / "run.yaml")
    real = ckpt.save_file

    def full(tensors, path, metadata=None):
        if "step-00000002" in path:
            raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                                  '"No space left on device" })')
        real(tensors, path, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", full)
    assert main(["distill", "--config", str(tmp_path / "run.yaml")]) == 2
    said = capsys.readouterr().err
    err = said.strip().splitlines()[-1]  # after the progress bar
    assert "Traceback" not in said and err.startswith("liteframe distill: error: ")
    assert f"{out / 'checkpoints' / 'step-00000002.safetensors'}: cannot write it" in err
    assert "No space left on device" in err and "step-00000001.safetensors is intact" in err
    monkeypatch.setattr(ckpt, "save_file", real)
    assert main(["distill", "--config", str(tmp_path / "run.yaml")]) == 0
    assert [r["step"] for r in _metrics(out)] == [1, 2, 3]


def test_a_damaged_target_cache_shard_is_named_in_one_line(data, tmp_path, capsys):
    from liteframe.cli import main

    cache = tmp_path / "cache"
    save_config(_config(data, tmp_path / "run", target_cache=str(cache), steps=4), tmp_path / "run.yaml")
    assert main(["cache-targets", "--config", str(tmp_path / "run.yaml")]) == 0
    shard = next(cache.glob("targets-*.safetensors"))
    original = shard.read_bytes()
    data_start = 8 + int.from_bytes(original[:8], "little")  # after the JSON header: the tensors' bytes
    flipped = bytearray(original)
    flipped[data_start + 5] ^= 0xFF
    capsys.readouterr()
    for damaged, workers, word in ((bytes(flipped), 0, "does not match its checksum"),
                                   (original[: len(original) // 2], 1, "truncated")):
        shard.write_bytes(damaged)  # one epoch (4 steps of 2 of the 8 videos) reads every entry
        assert main(["distill", "--config", str(tmp_path / "run.yaml"), f"workers={workers}",
                     f"output={tmp_path / f'run{workers}'}"]) == 2
        said = capsys.readouterr().err
        err = said.strip().splitlines()[-1]  # after the progress bar
        assert err.startswith("liteframe distill: error: ") and "Traceback" not in said, said[-3000:]
        assert str(shard) in err and word in err, err


def test_leftovers_of_an_interrupted_final_save_are_removed_at_the_next_start(data, tmp_path):
    out = tmp_path / "run"
    distill(_config(data, out, steps=1))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    leftovers = [out / f".student.tmp-{dead}", out / f".student.old-{dead}",
                 out / "checkpoints" / f".step-00000002.safetensors.tmp-{dead}"]
    for path in leftovers[:2]:
        path.mkdir()
        (path / "model.safetensors").write_bytes(b"half")
    leftovers[2].write_bytes(b"half")
    distill(_config(data, out, steps=1))  # finished: resumes at its last step and saves the student again
    assert not any(p.exists() for p in leftovers)
    assert LiteFrameEncoder.from_pretrained(out / "student").config.depth == student_config("liteframe-tiny").depth


def test_an_unwritable_output_and_a_bad_lr_are_refused_before_the_teacher_loads(data, tmp_path, monkeypatch, capsys):
    from liteframe.cli import main

    def loaded(*args, **kwargs):
        raise AssertionError("the teacher loaded before the refusal")

    monkeypatch.setattr(Teacher, "from_pretrained", loaded)
    (tmp_path / "a_file").write_text("")
    save_config(_config(data, tmp_path / "a_file" / "run"), tmp_path / "run.yaml")
    assert main(["distill", "--config", str(tmp_path / "run.yaml")]) == 2
    assert "cannot write there" in capsys.readouterr().err
    assert main(["distill", "--config", str(tmp_path / "run.yaml"), "lr=0"]) == 2
    assert "distill config: lr=0.0, min_lr=1e-06: need lr > 0" in capsys.readouterr().err


def test_a_run_that_skips_most_videos_stops_naming_the_reason(data, tmp_path):
    root = Path(data["root"])
    mostly_bad = _manifest(tmp_path / "bad.jsonl", [root / "v0.mp4", root / "garbage.mp4", root / "garbage.mp4",
                                                    root / "missing.mp4"])
    with pytest.raises(InputError, match=r"videos skipped by step \d+, more than max_skipped=0.5 of them; the main "
                                         r"reason: unreadable video") as err:
        distill(_config(data, tmp_path / "run", manifest=mostly_bad, steps=4))
    assert "\n" not in str(err.value)
