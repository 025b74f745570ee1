"""The distillation job's parts on their own: config, loss, RTD decoder, checkpoints, sampler, manifest, schedule."""
from __future__ import annotations

import dataclasses
import importlib
import json
import re
import shutil

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from liteframe.errors import InputError
from liteframe.train import checkpoint as ckpt
from liteframe.io import atomic_write
from liteframe.train.config import save_config
from liteframe.train.distill import DistillConfig
from liteframe.train.distill.data import read_manifest
from liteframe.train.loader import ResumableSampler
from liteframe.train.metrics import truncate_metrics
from liteframe.train.schedule import warmup_cosine
from liteframe.train.state import RNGState, TrainState
from liteframe.train.loss import RTDDecoder, clip_outliers, ctd_loss


# -- config -----------------------------------------------------------------------------------------------------------


def test_config_yaml_round_trip_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    save_config(DistillConfig(teacher="t", manifest="m.jsonl", student={"depth": 6}, fps=(1.0, 2.0)), path)
    cfg = DistillConfig.load(path, ["lr=1e-3", "steps=7", "student.width=384", "betas=[0.9, 0.99]", "compile=true"])
    assert cfg.lr == 1e-3 and isinstance(cfg.lr, float)  # YAML reads 1e-3 as a string; it is converted
    assert cfg.steps == 7 and cfg.student == {"depth": 6, "width": 384} and cfg.betas == (0.9, 0.99) and cfg.compile
    assert cfg.fps == (1.0, 2.0)
    assert cfg.teacher == str(tmp_path / "t")  # paths in a file are relative to the file
    assert DistillConfig.from_dict(cfg.to_dict()) == cfg
    assert DistillConfig.from_dict(cfg.flat()) == cfg  # flat keys, as configs were written before groups


@pytest.mark.parametrize("override, word", [
    ("stepz=3", "unknown"), ("steps=many", "steps"), ("frames=6", "multiple of 4"), ("fps=[0.5, 2]", "fps"),
    ("loss=mse", "loss"), ("compile=3", "true or false"), ("steps", "key=value"),
    ("target_cache=c", "rtd"),
])
def test_bad_settings_are_one_clear_input_error(override, word):
    extra = ["loss=rtd"] if override.startswith("target_cache") else []
    with pytest.raises(InputError, match=word):
        DistillConfig.load(None, [override, *extra])


def test_a_yaml_syntax_error_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("steps: 3\nstudent: {depth: 4\nlr: 1e-3\n")
    with pytest.raises(InputError, match="broken.yaml: cannot read the distill config") as err:
        DistillConfig.load(path)
    assert "\n" not in str(err.value) and "line 3" in str(err.value)
    with pytest.raises(InputError, match="override 'steps=\\[1': not a YAML value") as err:
        DistillConfig.load(None, ["steps=[1"])
    assert "\n" not in str(err.value)


# -- loss -------------------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(2, 40), st.integers(1, 5)),
                  elements=st.floats(-1e3, 1e3)), st.floats(0.5, 4.0))
def test_clipping_keeps_values_within_sigma_of_their_clip_and_channel(x, sigma):
    x = torch.from_numpy(x)
    y = clip_outliers(x, sigma).double()
    mean, std = x.mean(1, keepdim=True), x.std(1, keepdim=True, correction=0)
    tol = 1e-4 * (1 + x.abs().max())
    assert (y >= mean - sigma * std - tol).all() and (y <= mean + sigma * std + tol).all()
    inside = (x - mean).abs() <= sigma * std
    torch.testing.assert_close(y[inside], x[inside], rtol=1e-6, atol=tol.item())
    # per clip: a clip's targets do not depend on the other clips in the batch (up to float32 rounding, which
    # vectorised reductions order differently for different batch sizes)
    torch.testing.assert_close(clip_outliers(x[:1], sigma).double(), y[:1], rtol=1e-6, atol=1e-6 * tol.item())


def test_clipping_cuts_one_outlier_and_is_off_at_zero():
    x = torch.zeros(1, 100, 1)
    x[0, 0, 0] = 1000.0  # mean 10, std ~99.5: 3-sigma bound ~308
    y = clip_outliers(x, 3.0)
    assert 300 < y[0, 0, 0] < 320 and (y[0, 1:] == 0).all()
    assert clip_outliers(x, 0.0) is x


def test_ctd_loss_against_a_float64_reference():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 7, 5), torch.randn(2, 7, 5) * 2
    loss, cos = ctd_loss(pred, target, beta=0.5, cosine_weight=0.3)
    p, t = pred.double(), target.double()
    d = (p - t).abs()
    smooth = torch.where(d < 0.5, 0.5 * d**2 / 0.5, d - 0.25).mean()
    cosine = (p * t).sum(-1) / (p.norm(dim=-1) * t.norm(dim=-1))
    torch.testing.assert_close(loss.double(), smooth + 0.3 * (1 - cosine).mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cos.double(), cosine.mean(), rtol=1e-5, atol=1e-6)
    assert ctd_loss(target, target)[0].item() == pytest.approx(0.0, abs=1e-6)


def test_rtd_decoder_puts_each_tokens_prediction_in_its_own_block():
    torch.manual_seed(0)
    dec = RTDDecoder(8, (4, 2, 2))
    x = torch.randn(2, 2, 3, 2, 8)
    y = dec(x)
    assert y.shape == (2, 8, 6, 4, 8)
    # block (t, i, j) of the output depends only on compressed token (t, i, j): perturb one token
    x2 = x.clone()
    x2[1, 1, 2, 0] += 1.0
    changed = (dec(x2) - y).abs().sum(-1) > 0
    expected = torch.zeros_like(changed)
    expected[1, 4:8, 4:6, 0:2] = True
    assert torch.equal(changed, expected)


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    f = warmup_cosine(lr=1e-3, min_lr=1e-5, warmup=10, steps=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.01 + 0.99 * 0.5)
    assert f(110) == pytest.approx(0.01) and f(500) == pytest.approx(0.01)
    assert all(f(s) >= f(s + 1) for s in range(10, 110))


# -- checkpoints ------------------------------------------------------------------------------------------------------


def test_checkpoints_are_written_whole_and_only_the_last_k_kept(tmp_path):
    for step in (1, 2, 3, 4):
        ckpt.save_checkpoint(tmp_path, step, {"w": torch.full((3,), float(step))}, {"step": step}, keep_last=2)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names == ["step-00000003.safetensors", "step-00000004.safetensors"]
    tensors, state = ckpt.load_checkpoint(tmp_path / names[-1])
    assert state == {"step": 4} and torch.equal(tensors["w"], torch.full((3,), 4.0))
    (tmp_path / ".step-00000005.safetensors.tmp-123").write_bytes(b"half")  # a save killed part-way
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == names
    (tmp_path / "step-00000009.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="not a readable liteframe checkpoint"):
        ckpt.load_checkpoint(tmp_path / "step-00000009.safetensors")


def test_an_atomic_write_that_fails_part_way_keeps_the_previous_file(tmp_path):
    path = atomic_write(tmp_path / "state.json", lambda tmp: tmp.write_text("old"))

    def half_then_crash(tmp):
        tmp.write_text("ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_crash)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["state.json"]
    atomic_write(path, lambda tmp: tmp.write_text("new"))
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_metrics_after_the_checkpoint_and_a_torn_last_line_are_dropped_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (1, 2, 3)]
    path.write_text("\n".join(rows) + "\n" + rows[2][:9] + "\n\n" + '{"step": 1}'[:6])  # killed mid-write
    truncate_metrics(path, step=2)
    assert path.read_text() == rows[0] + "\n" + rows[1] + "\n"
    truncate_metrics(path, step=2)  # idempotent: a second resume from the same checkpoint
    assert path.read_text() == rows[0] + "\n" + rows[1] + "\n"


def _trained(seed: int):
    """A small model and AdamW (tuple betas, integer state keys) after one step, with a scheduler."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(model.parameters(), betas=(0.8, 0.9))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(1e-3, 1e-5, 2, 10))
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    sched.step()
    return model, opt, sched


def test_the_checkpointer_round_trips_any_stateful_objects_and_keeps_the_last_k(tmp_path):
    from liteframe.train.checkpoint import Checkpointer, ModelState, OptimizerState
    from liteframe.train.dist import Context

    ctx = Context(0, 1, torch.device("cpu"))
    model, opt, sched = _trained(0)
    state = TrainState(step=7, epoch=1, position=3, samples=56, tokens=900, skipped=2, elapsed=12.5)
    torch.manual_seed(123)
    saved = {"model": ModelState(model), "optim": OptimizerState(model, opt), "plain_optim": opt,
             "scheduler": sched, "train": state, "rng": RNGState(ctx)}
    keeper = Checkpointer(tmp_path, keep_last=2, ctx=ctx)
    assert keeper.resume(saved) == 0  # nothing to resume from
    for step in (5, 6, 7):
        keeper.save(step, saved)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000006.safetensors",
                                                                 "step-00000007.safetensors"]
    expected_draw = torch.rand(4)
    model2, opt2, sched2 = _trained(1)  # other weights, other optimiser state
    state2 = TrainState()
    loaded = {"model": ModelState(model2), "optim": OptimizerState(model2, opt2), "plain_optim": opt2,
              "scheduler": sched2, "train": state2, "rng": RNGState(ctx)}
    assert Checkpointer(tmp_path, keep_last=2, ctx=ctx).resume(loaded) == 7
    assert state2 == state
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert opt2.state_dict()["param_groups"][0]["betas"] == (0.8, 0.9)  # a tuple again, as AdamW made it
    for k, per in opt.state_dict()["state"].items():  # integer keys come back as integers
        assert opt2.state_dict()["state"][k].keys() == per.keys()
        for key, value in per.items():
            assert torch.equal(opt2.state_dict()["state"][k][key], value)
    assert sched2.state_dict() == sched.state_dict()
    assert torch.equal(torch.rand(4), expected_draw)  # the random stream continues where the save left it
    with pytest.raises(InputError, match="holds no extra"):
        Checkpointer(tmp_path, keep_last=2, ctx=ctx).resume({**loaded, "extra": TrainState()})


def test_optimizer_groups_decay_matrices_only():
    from liteframe.models import tiny_student_config, LiteFrameEncoder

    student = LiteFrameEncoder(tiny_student_config())
    decay, no_decay = student.optimizer_groups(0.05)
    names = {id(p): n for n, p in student.named_parameters()}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(student.parameters()))
    assert all(p.ndim >= 2 for p in decay["params"])
    assert {"pos_embed", "cls_token"} <= {names[id(p)] for p in no_decay["params"]}
    decoder = RTDDecoder(8, (4, 4, 4))
    assert [len(g["params"]) for g in decoder.optimizer_groups(0.1)] == [2, 4]


def test_compression_sets_the_frame_check():
    assert DistillConfig(compression=64, frames=8).compression == 64
    assert DistillConfig(compression=4, frames=3).frames == 3  # 4x merges no frames
    with pytest.raises(InputError, match="multiple of 4 .the clip of 64x"):
        DistillConfig(compression=64, frames=6)
    with pytest.raises(InputError, match="compression=8 must be one of 4, 16, 64"):
        DistillConfig(compression=8)


# -- data -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("world", [1, 2, 3])
def test_a_sampler_resumed_part_way_continues_the_same_order(world):
    data = list(range(11))
    for rank in range(world):
        full = ResumableSampler(data, world, rank, seed=5)
        full.set_epoch(3)
        order = list(full)
        resumed = ResumableSampler(data, world, rank, seed=5)
        resumed.set_epoch(3, start=2)
        assert list(resumed) == order[2:] and len(resumed) == len(order) - 2
    shares = []
    for rank in range(world):
        s = ResumableSampler(data, world, rank, seed=5)
        s.set_epoch(3)
        shares.append(list(s))
    one = ResumableSampler(data, 1, 0, seed=5)
    one.set_epoch(3)
    # rank r's k-th index is the (k * world + r)-th of the one-rank order: together they cover the same batches
    interleaved = [shares[k % world][k // world] for k in range(world * len(shares[0]))]
    assert interleaved[:len(data)] == list(one)


def test_manifest_lines_and_their_errors(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text('{"video": "a.mp4"}\n\n{"video": "/abs/b.mp4", "start": 1, "end": 2.5}\n')
    a, b = read_manifest(m)
    assert a.video == str(tmp_path / "a.mp4") and a.start is None
    assert (b.video, b.start, b.end) == ("/abs/b.mp4", 1.0, 2.5)
    for text, word in (('{"vid": 1}', "m.jsonl:1"), ('{"video": "a", "start": 3, "end": 2}', "start < end"),
                       ("not json", "m.jsonl:1"), ("", "no videos")):
        m.write_text(text)
        with pytest.raises(InputError, match=word):
            read_manifest(m)
    with pytest.raises(InputError, match="cannot read"):
        read_manifest(tmp_path / "missing.jsonl")



def test_the_data_module_does_not_import_the_targets_module():
    import ast
    import liteframe.train.distill.data as data

    tree = ast.parse(open(data.__file__).read())  # every import, TYPE_CHECKING ones included
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.startswith("liteframe.train.")}


def test_training_clips_are_the_pixels_ask_encodes():
    # CTD trains the student on the frames `ask` later feeds it: same timestamps, same resize ("exact"), same
    # normalisation, bit for bit (before: a float torch resize in training, PIL's in ask)
    from liteframe.train.distill.data import ClipDataset, ManifestEntry
    from liteframe.video import open_video, stream_video
    from videos import REAL_VIDEOS

    video = str(REAL_VIDEOS / "bbb_short.mp4")
    data = ClipDataset([ManifestEntry(video)], frames=8, size=56, fps=(1.0, 4.0), seed=0)
    pixels, sample = data.load(0, view=0)
    with open_video(video) as reader:
        chunks = list(stream_video(reader, list(sample.timestamps), chunk_frames=8, size=56))
    assert torch.equal(pixels, torch.cat([c.pixels for c in chunks]))


def test_a_clip_is_skipped_only_when_some_of_its_frames_did_not_decode(tmp_path):
    # the same rule as LMA's samples (video.SampleReads): a packet that fails between the clip's frames is no reason
    from liteframe.testing.videos import make_video
    from liteframe.train.distill.data import ClipDataset, ManifestEntry
    from liteframe.video import VideoDecodeWarning
    from videos import REAL_VIDEOS

    whole = make_video(tmp_path / "whole.mp4", num_frames=48, options={"movflags": "faststart"})
    (tmp_path / "cut.mp4").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    entries = [ManifestEntry(str(REAL_VIDEOS / "corrupted.mp4"), 2.5, 3.5),  # 3.0 s fails to decode
               ManifestEntry(str(tmp_path / "cut.mp4"), 4.0, 5.5)]  # after the cut
    data = ClipDataset(entries, frames=4, size=56, fps=(4.0, 4.0), seed=0)
    with pytest.warns(VideoDecodeWarning, match=r"corrupted\.mp4: decoding failed at 3\.00s .*; 0 of 4 requested"):
        item = data[0]
    assert item["index"] == 0 and item["skipped"] == [] and 2.5 <= item["indices"].min() / 10 < 3.0 < \
        item["indices"].max() / 10
    item = data[1]  # skipped: the next video stands in
    assert item["index"] == 0 and len(item["skipped"]) == 1
    assert "cut.mp4" in item["skipped"][0] and "4 of 4 requested frames" in item["skipped"][0]


# -- reliability (issue 19) -----------------------------------------------------------------------------------------


def test_grouped_and_flat_yaml_and_every_kind_of_override(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: {teacher: t, student: {depth: 6}}\noptim:\n  lr: 1.0e-3\nsteps: 7\n")
    cfg = DistillConfig.load(path, ["optim.batch_size=4", "model.student.width=384", "grad_accum=2"])
    assert (cfg.lr, cfg.steps, cfg.batch_size, cfg.grad_accum) == (1e-3, 7, 4, 2)
    assert cfg.student == {"depth": 6, "width": 384} and cfg.teacher == str(tmp_path / "t")
    # every setting sits in exactly one group, and the groups are what the file is written as
    fields = [f.name for f in dataclasses.fields(DistillConfig)]
    grouped = [k for keys in DistillConfig.GROUPS.values() for k in keys]
    assert sorted(grouped) == sorted(fields) and len(grouped) == len(set(grouped))
    save_config(cfg, tmp_path / "saved.yaml")
    assert set(yaml.safe_load((tmp_path / "saved.yaml").read_text())) == set(DistillConfig.GROUPS)
    for text, message in (("data: {lr: 0.1}\n", "data.lr: lr belongs to optim"),
                          ("lr: 0.1\noptim: {lr: 0.2}\n", "lr is given twice"),
                          ("optim: {speed: 3}\n", "optim.speed: not a distill setting")):
        path.write_text(text)
        with pytest.raises(InputError, match=message):
            DistillConfig.load(path)


@pytest.mark.parametrize("configs", ["distill", "adapt"])
def test_the_configs_in_the_repository_load(configs):
    from pathlib import Path

    from liteframe.train.adapt import AdaptConfig

    cls = DistillConfig if configs == "distill" else AdaptConfig
    files = sorted((Path(__file__).parents[1] / "configs").glob(f"{configs}_*.yaml"))
    assert files and all(cls.load(f).output for f in files)
    for module, name in re.findall(r"from ([\w.]+) import (\w+)", "".join(f.read_text() for f in files)):
        assert hasattr(importlib.import_module(module), name), f"{module}.{name}, named in a config's comments"


def test_a_bad_override_is_blamed_on_the_override_not_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    save_config(DistillConfig(teacher="t", manifest="m.jsonl"), path)
    with pytest.raises(InputError) as err:
        DistillConfig.load(path, ["steps=ten"])
    assert str(err.value).startswith("override 'steps=ten': steps='ten'") and str(path) not in str(err.value)
    path.write_text("steps: ten\n")
    with pytest.raises(InputError, match=f"^{path}: steps='ten'"):
        DistillConfig.load(path)
    # an empty override means "none" for a path, not the string "None"
    assert DistillConfig.load(None, ["eval_manifest=", "manifest=m"]).eval_manifest == ""
    with pytest.raises(InputError, match="override 'steps=': steps=None: needs a value"):
        DistillConfig.load(None, ["steps="])


@pytest.mark.parametrize("override, word", [("lr=0", "lr=0.0"), ("min_lr=1", "min_lr <= lr"),
                                            ("max_skipped=2", "max_skipped"), ("grad_clip=0", "grad_clip > 0")])
def test_learning_rates_and_shares_are_checked_with_the_config(override, word):
    from liteframe.train.adapt import AdaptConfig

    for cls in (DistillConfig, AdaptConfig):
        with pytest.raises(InputError, match=word):
            cls.load(None, [override])


def test_a_checkpoint_that_does_not_fit_is_one_line(tmp_path):
    from liteframe.train.checkpoint import Checkpointer, ModelState
    from liteframe.train.dist import Context

    ctx = Context(0, 1, torch.device("cpu"))
    Checkpointer(tmp_path, 2, ctx).save(1, {"model": ModelState(torch.nn.Linear(3, 4))})
    with pytest.raises(InputError, match=r"step-00000001.safetensors: its model state does not fit this run") as err:
        Checkpointer(tmp_path, 2, ctx).resume({"model": ModelState(torch.nn.Linear(3, 5))})
    assert "\n" not in str(err.value)


def test_a_full_disk_during_a_checkpoint_write_names_the_file_and_keeps_the_previous(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    ckpt.save_checkpoint(tmp_path, 1, {"w": torch.ones(3)}, {"step": 1}, keep_last=2)

    def full(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a checkpoint")
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
                              'space left on device" })')

    monkeypatch.setattr(ckpt, "save_file", full)
    with pytest.raises(InputError) as err:
        ckpt.save_checkpoint(tmp_path, 2, {"w": torch.zeros(3)}, {"step": 2}, keep_last=2)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'step-00000002.safetensors'}: cannot write it (")
    assert "No space left on device" in message and "step-00000001.safetensors is intact" in message
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000001.safetensors"]  # no half file either
    assert ckpt.load_checkpoint(tmp_path / "step-00000001.safetensors")[1] == {"step": 1}


def test_an_error_raised_in_a_dataloader_worker_comes_back_as_its_one_line(tmp_path):
    from torch.utils.data import DataLoader, Dataset

    from liteframe.train.loader import batches, next_batch, worker_init

    class Broken(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            raise InputError(f"{tmp_path}/shard-{i}: the target does not match its checksum")

    for workers in (0, 1):
        with batches(DataLoader(Broken(), num_workers=workers, worker_init_fn=worker_init)) as loader, \
                pytest.raises(InputError) as err:
            next_batch(loader)
        assert str(err.value) == f"{tmp_path}/shard-0: the target does not match its checksum"


def test_leftovers_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    import subprocess
    import sys

    from liteframe.io import atomic_folder, remove_leftovers

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    for name in (f".student.tmp-{dead}", f".adapter.old-{dead}", ".student.tmp-1", f".other.tmp-{dead}"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"x")
    (tmp_path / f".config.yaml.tmp-{dead}").write_text("half")
    assert sorted(remove_leftovers(tmp_path, {"student", "adapter"})) == sorted(
        [tmp_path / f".student.tmp-{dead}", tmp_path / f".adapter.old-{dead}"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".config.yaml.tmp-{dead}", f".other.tmp-{dead}",
                                                         ".student.tmp-1"]  # pid 1 lives
    (tmp_path / f".merged.old-{dead}").mkdir()
    atomic_folder(tmp_path / "merged", lambda tmp: (tmp / "a.txt").write_text("a"), ["a.txt"])  # `adapt merge`
    assert not (tmp_path / f".merged.old-{dead}").exists() and (tmp_path / "merged" / "a.txt").is_file()
    remove_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".student.tmp-1", "merged"]


def test_resume_checks_name_each_difference_and_allow_the_safe_ones(tmp_path):
    from liteframe.train.output import check_resume, identity, record

    cfg = DistillConfig(teacher="t", manifest="m.jsonl", output=str(tmp_path), student={"depth": 3})
    assert check_resume(tmp_path, identity(cfg, {"teacher": "abc"}), cfg.RESUMABLE) == []  # a new folder
    record(tmp_path, cfg, identity(cfg, {"teacher": "abc"}))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step-00000001.safetensors").write_bytes(b"")  # the run kept something
    more = dataclasses.replace(cfg, steps=5000, log_every=1)
    assert check_resume(tmp_path, identity(more, {"teacher": "abc"}), cfg.RESUMABLE) == [
        "log_every: 10 -> 1", "steps: 1000 -> 5000"]
    other = dataclasses.replace(cfg, student={"depth": 4}, lr=1e-3)
    with pytest.raises(InputError) as err:
        check_resume(tmp_path, identity(other, {"teacher": "def"}), cfg.RESUMABLE)
    message = str(err.value)
    assert "lr: 0.0001 -> 0.001" in message and "student.depth: 3 -> 4" in message and "teacher: 'abc' -> 'def'" \
        in message and "another output" in message and "\n" not in message
    run = json.loads((tmp_path / "run.json").read_text())  # recorded before `liteframe.identity`: not comparable
    (tmp_path / "run.json").write_text(json.dumps({k: v for k, v in run.items() if k != "identity"}))
    with pytest.raises(InputError, match=f"run.json: written by another liteframe version, whose run identity this "
                                         f"one cannot compare: start fresh with another output, or delete {tmp_path}"):
        check_resume(tmp_path, identity(cfg, {"teacher": "abc"}), cfg.RESUMABLE)
    shutil.rmtree(tmp_path / "checkpoints")  # that run kept nothing: this one starts over
    assert check_resume(tmp_path, identity(cfg, {"teacher": "abc"}), cfg.RESUMABLE) == []
