"""LMA: LoRA with PEFT on tiny InternVL3 checkpoints, chat manifests, training samples, the adapt job."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import InternVLForConditionalGeneration

from liteframe.errors import InputError
from liteframe.testing import save_tiny_internvl
from liteframe.llm.lora import LoraSettings, add_lora, load_adapter, merge, save_adapter


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_internvl(tmp_path_factory.mktemp("tiny") / "internvl")


def _load(folder) -> InternVLForConditionalGeneration:
    return InternVLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()


def _logits(model, seed: int = 0, grad: bool = False) -> torch.Tensor:
    """Text plus image logits: pixel values reach the vision tower, ids the LLM."""
    g = torch.Generator().manual_seed(seed)
    config = model.config
    size = config.vision_config.image_size[0]
    ids = torch.randint(0, 300, (1, 12), generator=g)
    ids = torch.cat([ids[:, :3], torch.full((1, config.image_seq_length), config.image_token_id), ids[:, 3:]], 1)
    pixels = torch.randn(1, 3, size, size, generator=g)
    with torch.set_grad_enabled(grad):
        return model(input_ids=ids, pixel_values=pixels).logits


def _perturb(peft_model) -> None:
    """Fresh LoRA B matrices are zero (the adapter starts as the identity): give them values to test against."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_lora_wraps_only_llm_projections_and_only_they_get_grads(tiny):
    model = add_lora(_load(tiny), LoraSettings())
    wrapped = {n.rsplit(".lora_A", 1)[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    assert wrapped and all(".language_model.layers." in n for n in wrapped)
    layers = model.get_base_model().config.text_config.num_hidden_layers
    assert len(wrapped) == 7 * layers  # q k v o gate up down in every layer
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _perturb(model)
    out = _logits(model.train(), grad=True)
    out.float().pow(2).mean().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {n for n, p in model.named_parameters() if "lora_" in n}
    assert all(model.get_parameter(n).grad.abs().sum() > 0 for n in with_grad if "lora_A" in n)
    frozen = [n for n in before if "lora_" not in n]
    assert all(torch.equal(before[n], model.get_parameter(n)) for n in frozen)


def test_projector_trains_only_when_asked(tiny):
    model = add_lora(_load(tiny), train_projector=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("multi_modal_projector" in n for n in trainable)
    assert not any("vision_tower" in n for n in trainable)


def test_adapter_round_trip_and_merge_reproduce_logits(tiny, tmp_path):
    model = add_lora(_load(tiny), LoraSettings(r=4, alpha=8, dropout=0.05))
    _perturb(model)
    model.eval()
    expected = _logits(model)
    assert not torch.allclose(expected, _logits(_load(tiny)))  # the adapter changes the model
    save_adapter(model, tmp_path / "adapter")
    files = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert "adapter_config.json" in files and "adapter_model.safetensors" in files
    from safetensors import safe_open

    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("language_model" in k and "lora_" in k for k in keys)  # only LLM adapter weights
    loaded = load_adapter(_load(tiny), tmp_path / "adapter").eval()
    torch.testing.assert_close(_logits(loaded), expected, rtol=0, atol=0)
    out = merge(tiny, tmp_path / "adapter", tmp_path / "merged")
    plain = _load(out)  # plain transformers, no PEFT
    assert not any("lora" in n for n, _ in plain.named_parameters())
    torch.testing.assert_close(_logits(plain), expected, rtol=1e-5, atol=1e-5)
    assert (out / "tokenizer.json").is_file() and (out / "chat_template.jinja").is_file()


def test_bad_adapter_folder_is_one_line_error(tiny, tmp_path):
    with pytest.raises(InputError, match="no adapter_config.json"):
        load_adapter(_load(tiny), tmp_path)
    (tmp_path / "adapter_config.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot apply"):
        load_adapter(_load(tiny), tmp_path)


def test_merge_cli_prints_one_line_and_no_progress_bar(tiny, tmp_path, capfd):
    """`adapt merge` loads the base quietly, as `ask` does: stdout names the folder and stderr stays empty."""
    from liteframe.cli import main

    model = add_lora(_load(tiny))
    save_adapter(model, tmp_path / "adapter")
    capfd.readouterr()
    assert main(["adapt", "merge", "--model", str(tiny), "--adapter", str(tmp_path / "adapter"),
                 "--out", str(tmp_path / "merged")]) == 0
    out, err = capfd.readouterr()
    assert out.strip() == f"merged model written to {tmp_path / 'merged'}" and err == ""


def test_merge_into_the_base_folder_is_refused_and_leaves_it_whole(tiny, tmp_path, capfd):
    from liteframe.cli import main

    base = Path(shutil.copytree(tiny, tmp_path / "base"))
    save_adapter(add_lora(_load(base)), tmp_path / "adapter")
    weights = (base / "model.safetensors").read_bytes()
    capfd.readouterr()
    assert main(["adapt", "merge", "--model", str(base), "--adapter", str(tmp_path / "adapter"),
                 "--out", str(tmp_path / "." / "base")]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "is the base checkpoint's folder" in err
    assert (base / "model.safetensors").read_bytes() == weights


# -- chat manifests ----------------------------------------------------------------------------------------------

from liteframe.train.adapt.manifest import read_chat_manifest  # noqa: E402


def _row(i=0, video="v.mp4", turns=("<video>\nWhat colour?", "red")):
    roles = ("human", "gpt")
    return {"id": f"s{i}", "video": video, "conversations": [{"from": roles[k % 2], "value": v}
                                                             for k, v in enumerate(turns)]}


def test_manifest_json_and_jsonl_multi_turn_and_video_root(tmp_path):
    rows = [_row(0), _row(1, "/abs/v.mp4", ("<video>\nQ1", "A1", "Q2", "A2"))]
    (tmp_path / "m.json").write_text(json.dumps(rows))
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    a = read_chat_manifest(tmp_path / "m.json", video_root="/data")
    b = read_chat_manifest(tmp_path / "m.jsonl", video_root="/data")
    assert a == b
    assert a[0].video == "/data/v.mp4" and a[1].video == "/abs/v.mp4"
    assert a[0].turns == (("What colour?", "red"),)
    assert a[1].turns == (("Q1", "A1"), ("Q2", "A2")) and a[1].problem is None
    assert read_chat_manifest(tmp_path / "m.json")[0].video == str(tmp_path / "v.mp4")


@pytest.mark.parametrize("content, match", [
    ('{\n  "samples": []\n}', "JSON list or JSON lines"),
    ('42', "JSON list or JSON lines of samples, not a int"),
    ('[{"id": 1, "video": "v.mp4"}]', "row 1: lacks conversations"),
    (json.dumps(_row()) + "\n" + json.dumps({"video": "v"}), "line 2: lacks id, conversations"),
    ('[{"id": 1, "video": "v", "conversations": [{"from": "gpt", "value": "x"}]}]', "turn 1 is not"),
    ('[1, 2]', "row 1: a int, not a sample"),
    ('[]', "lists no samples"),
    ('[{"id": 1,', "not valid JSON"),
])
def test_bad_manifest_is_one_line_error(tmp_path, content, match):
    (tmp_path / "m.json").write_text(content)
    with pytest.raises(InputError, match=match) as err:
        read_chat_manifest(tmp_path / "m.json")
    assert "\n" not in str(err.value)


def test_unusable_rows_carry_their_skip_reason(tmp_path):
    rows = [_row(0, turns=("What colour?", "red")), _row(1, turns=("<video>\nQ", " ")),
            _row(2, turns=("<video>\nQ", "A", "Q2"))]
    (tmp_path / "m.json").write_text(json.dumps(rows))
    problems = [s.problem for s in read_chat_manifest(tmp_path / "m.json")]
    assert problems == ["no <video> or <image>", "empty answer", "empty answer"]


# -- samples and the job -----------------------------------------------------------------------------------------

import numpy as np  # noqa: E402

from liteframe.llm import VideoLLM  # noqa: E402
from liteframe.llm.prompt import build_input_ids, make_slots  # noqa: E402
from liteframe.train.adapt import AdaptConfig, AdaptTrainer, adapt  # noqa: E402
from liteframe.train.adapt.data import IGNORE, ChatDataset, Prompter, chat_ids  # noqa: E402
from liteframe.train.adapt.manifest import read_chat_manifest as _read  # noqa: E402
from liteframe.train.adapt.model import AdaptModel  # noqa: E402
from liteframe.train.job import job_setup  # noqa: E402
from liteframe.testing.videos import make_video, solid_video  # noqa: E402
from liteframe.video import VideoDecodeWarning  # noqa: E402
from tests.videos import REAL_VIDEOS  # noqa: E402

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
QUESTION = "What colour is the video?"


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    folder = tmp_path_factory.mktemp("colours")
    rows = [_row(i, solid_video(folder / f"{name}.mp4", rgb).name, (f"<video>\n{QUESTION}", name))
            for i, (name, rgb) in enumerate(COLOURS.items())]
    (folder / "train.json").write_text(json.dumps(rows))
    return folder / "train.json"


@pytest.fixture(scope="module")
def llm(tiny):
    return VideoLLM.from_pretrained(tiny, "wap", device="cpu", dtype=torch.float32)


def test_chat_ids_first_turn_is_the_ask_prompt_and_only_answers_are_labelled(llm):
    tok, family = llm.tokenizer, llm.family
    slots = make_slots([0.1, 0.3, 0.5, 0.7, 1.1, 1.3, 1.5, 1.7], [3, 3], 4)
    ids, y = chat_ids(tok, family, slots, (("What colour?", "red"), ("And the car?", "blue too")))
    prompt = build_input_ids(tok, family, slots, "What colour?")[0][0]
    assert torch.equal(ids[:len(prompt)], prompt) and (y[:len(prompt)] == IGNORE).all()
    assert "Frame1-4: <img>" in tok.decode(prompt) and "Frame5-8: <img>" in tok.decode(prompt)
    assert int((ids == tok.convert_tokens_to_ids("<IMG_CONTEXT>")).sum()) == 2 * 3
    answered = tok.decode(ids[y != IGNORE])
    assert answered == "red<|im_end|>\nblue too<|im_end|>\n"
    assert "And the car?" in tok.decode(ids[len(prompt):]) and "And the car?" not in answered
    assert torch.equal(ids[y != IGNORE], y[y != IGNORE])


def test_dataset_draws_are_seeded_and_uniform_and_skips_have_reasons(llm, colours, tmp_path):
    prompter = Prompter.of(llm, (4, 8, 16))
    (tmp_path / "garbage.mp4").write_bytes(b"not a video" * 100)
    rows = [_row(0, str(tmp_path / "garbage.mp4")), _row(1, turns=("Q", "A")), _row(2, turns=("<video>\nQ", "")),
            _row(3, str(colours.parent / "red.mp4"), ("<video>\n" + "colour " * 300, "red"))]
    (tmp_path / "bad.json").write_text(json.dumps(rows))
    small = Prompter(**{**vars(prompter), "context": 250})
    data = ChatDataset(_read(tmp_path / "bad.json"), small, (4, 8), (1.0, 4.0), seed=0)
    assert [data[i].get("skip") for i in range(4)] == ["decode failure", "no <video> or <image>", "empty answer",
                                                       "over context"]
    draws = [data.draw(i) for i in range(4)]
    assert draws == [data.draw(i) for i in range(4)]  # seeded
    data.epoch = 1
    assert draws != [data.draw(i) for i in range(4)]  # redrawn each epoch
    many = [ChatDataset([], prompter, (4, 8, 16), (1.0, 4.0), seed).draw(0) for seed in range(300)]
    budgets = np.array([b for b, _ in many])
    assert {4, 8, 16} == set(budgets) and all(60 < (budgets == b).sum() < 140 for b in (4, 8, 16))
    rates = np.array([r for _, r in many])
    assert 1.0 <= rates.min() < 1.2 and 3.8 < rates.max() <= 4.0
    ok = ChatDataset(_read(colours), prompter, (8,), (1.0, 4.0), 0)[0]
    # two 4-frame clips; 16 dense tokens per frame x 8 frames / 16x = 8 tokens, 4 per clip
    assert len(ok["timestamps"]) == 8 and ok["counts"] == [4, 4]
    assert int((ok["ids"] == llm.tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")).sum()) == 8


def test_dataset_samples_dense_clips_at_the_drawn_rate(llm):
    """At rate r the frames of a clip are 1/r s apart (the `clips` sampler), whatever the budget."""
    prompter = Prompter.of(llm, (8,))
    video = REAL_VIDEOS / "bbb_short.mp4"
    data = ChatDataset(_read_rows([_row(0, str(video))]), prompter, (8,), (1.0, 2.0), seed=3)
    budget, rate = data.draw(0)
    with_times = np.array(data[0]["timestamps"]).reshape(-1, 4)
    with open_video(video) as reader:
        expected = sample_frames(reader.info, budget, "clips", rate=rate, clip_frames=4).timestamps
        grid = 1.0 / reader.info.fps  # times snap to the frame grid
    np.testing.assert_allclose(with_times.reshape(-1), expected)
    assert np.abs(np.diff(with_times, axis=1) - 1.0 / rate).max() <= grid + 1e-6


def _read_rows(rows):
    import tempfile

    folder = Path(tempfile.mkdtemp())
    (folder / "m.json").write_text(json.dumps(rows))
    return _read(folder / "m.json")


from liteframe.video import open_video, sample_frames  # noqa: E402


@pytest.fixture
def one_thread():
    """Tiny models run several times faster on one thread than on two cores shared with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(tiny, data, out, **kw):
    base = dict(model=str(tiny), encoder="wap", data=str(data), output=str(out), frames=[4], steps=12,
                batch_size=4, grad_accum=1, lr=5e-3, warmup_steps=1, workers=0, log_every=1, eval_every=100,
                save_every=100, activation_checkpointing=True)
    return AdaptConfig(**{**base, **kw})


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _answers(llm, colours) -> list[str]:
    return [llm.ask(colours.parent / f"{name}.mp4", QUESTION, frames=4, max_new_tokens=8).answer for name in COLOURS]


def test_loss_falls_the_adapted_model_answers_and_only_lora_changes(tiny, colours, tmp_path, one_thread):
    cfg = _config(tiny, colours, tmp_path / "run", eval_data=str(colours), steps=60, lr=3e-2, lora={"dropout": 0},
                  log_every=20, eval_every=20)
    with job_setup(cfg) as job:
        trainer = AdaptTrainer(cfg, job, _read(colours), _read(colours))
        before = {n: p.detach().clone() for n, p in trainer.model.peft.named_parameters()}
        result = trainer.run()
    lines = _metrics(tmp_path / "run")
    assert [m["step"] for m in lines] == [0, 20, 40, 60]
    assert lines[-1]["eval_loss"] < 0.1 * lines[0]["eval_loss"]
    assert lines[-1]["frames_per_sample"] == 4 and lines[-1]["skipped"] == 0 and lines[-1]["tokens_per_s"] > 0
    after = dict(trainer.model.peft.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all("lora_" in n for n in changed)
    assert all(torch.equal(before[n], after[n]) for n in before if "vision_tower" in n or "projector" in n)
    assert (result.output / "adapter_model.safetensors").is_file()
    assert list((tmp_path / "run" / "tensorboard").iterdir())
    # greedy answers of `ask` before and after: the adapted model names the colours
    plain = VideoLLM.from_pretrained(tiny, "wap", device="cpu", dtype=torch.float32)
    adapted = VideoLLM.from_pretrained(tiny, "wap", device="cpu", dtype=torch.float32, adapter=result.output)
    truth = list(COLOURS)
    right = [sum(a == t for a, t in zip(_answers(m, colours), truth)) for m in (plain, adapted)]
    assert right[1] == len(COLOURS) and right[0] < right[1]


class _Killed(BaseException):
    pass


def test_resume_reaches_the_same_adapter(tiny, colours, tmp_path, monkeypatch, one_thread):
    from safetensors.torch import load_file

    adapt(_config(tiny, colours, tmp_path / "once", steps=4, save_every=2))
    save = AdaptTrainer.save

    def save_then_die(self):  # a kill right after the step-2 checkpoint is complete
        save(self)
        raise _Killed

    monkeypatch.setattr(AdaptTrainer, "save", save_then_die)
    with pytest.raises(_Killed):
        adapt(_config(tiny, colours, tmp_path / "twice", steps=4, save_every=2))
    monkeypatch.setattr(AdaptTrainer, "save", save)
    steps, train_step = [], AdaptTrainer.train_step
    monkeypatch.setattr(AdaptTrainer, "train_step",
                        lambda self, b: steps.append(self.state.step) or train_step(self, b))
    adapt(_config(tiny, colours, tmp_path / "twice", steps=4, save_every=2))
    assert steps == [2, 3]  # it resumed after step 2 rather than starting again
    a = load_file(tmp_path / "once" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "twice" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [m["loss"] for m in _metrics(tmp_path / "once")] == [m["loss"] for m in _metrics(tmp_path / "twice")]


def test_bad_samples_are_skipped_and_counted_in_a_run(tiny, colours, tmp_path, caplog):
    rows = json.loads(colours.read_text())
    (colours.parent / "garbage.mp4").write_bytes(b"not a video" * 100)
    whole = make_video(tmp_path / "whole.mp4", num_frames=48, options={"movflags": "faststart"})
    (tmp_path / "cut.mp4").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # its second half is gone
    rows += [_row(9, "garbage.mp4"), _row(10, "red.mp4", ("no placeholder", "red")),
             _row(11, str(tmp_path / "cut.mp4")),
             _row(12, str(REAL_VIDEOS / "corrupted.mp4"))]  # a packet at 3 s fails: no sampled frame is missed
    (colours.parent / "mixed.json").write_text(json.dumps(rows))
    with pytest.warns(VideoDecodeWarning, match=r"corrupted\.mp4: decoding failed at 3\.00s .* 0 of 4 requested"):
        adapt(_config(tiny, colours.parent / "mixed.json", tmp_path / "run", steps=1, batch_size=8, grad_accum=1))
    last = _metrics(tmp_path / "run")[-1]
    assert last["skipped"] == 3 and last["samples"] == 5 and last["loss"] > 0  # the 4 colours and corrupted.mp4
    warned = [r.message for r in caplog.records if "skipped" in r.message]
    assert sum("decode failure" in m for m in warned) == 2 and any("no <video> or <image>" in m for m in warned)
    assert any("cut.mp4" in m and "requested frames lie" in m for m in warned)
    assert not any("corrupted.mp4" in m for m in warned)


def test_adapt_cli_errors_are_one_line(tiny, tmp_path, capsys):
    from liteframe.cli import main

    (tmp_path / "m.json").write_text('{"id": 1}\n')
    assert main(["adapt", f"model={tiny}", f"data={tmp_path / 'm.json'}", f"output={tmp_path}"]) == 2
    assert main(["adapt", "merge", "--model", str(tiny)]) == 2
    assert main(["adapt", "lora.rank=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "lacks video, conversations" in err[0] and "--adapter" in err[1] and "lora" in err[2]


def test_bench_adapt_rows():
    from liteframe.bench.adapt import run

    rows = run("cpu", budgets=(8, 4), steps=1)
    assert [r["frames"] for r in rows] == [4, 8]
    assert rows[1]["tokens"] > rows[0]["tokens"] > 0 and all(r["tokens/s"] > 0 and r["peak MiB"] > 0 for r in rows)


def test_two_gloo_ranks_with_half_the_batch_match_one_rank(tiny, colours, tmp_path):
    """The same `liteframe adapt` command under torchrun: 2 CPU ranks of 2 samples each = 1 rank of 4 (no dropout,
    whose random masks differ between ranks)."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    import liteframe

    settings = [f"model={tiny}", "encoder=wap", f"data={colours}", "frames=[4]", "steps=2", "batch_size=4",
                "grad_accum=1", "lr=5e-3", "warmup_steps=1", "workers=0", "lora.dropout=0", "save_every=100"]
    adapt(AdaptConfig.load(None, settings + [f"output={tmp_path / 'one'}"]))
    env = {**os.environ, "PYTHONPATH": str(Path(liteframe.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "liteframe.cli", "adapt", *settings, f"output={tmp_path / 'two'}"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    one = load_file(tmp_path / "one" / "adapter" / "adapter_model.safetensors")
    two = load_file(tmp_path / "two" / "adapter" / "adapter_model.safetensors")
    assert one.keys() == two.keys()
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in one.items() if "lora_B" in k)  # it trained
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-6)
    assert [m["loss"] for m in _metrics(tmp_path / "one")] == pytest.approx(
        [m["loss"] for m in _metrics(tmp_path / "two")], rel=1e-5)


def test_sigterm_saves_a_checkpoint_and_stops(tiny, colours, tmp_path, monkeypatch):
    import os
    import signal

    from liteframe.train import checkpoint as ckpt

    train_step = AdaptTrainer.train_step

    def terminated(self, batches):  # SIGTERM arrives during step 2
        if self.state.step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return train_step(self, batches)

    monkeypatch.setattr(AdaptTrainer, "train_step", terminated)
    handler = signal.getsignal(signal.SIGTERM)
    result = adapt(_config(tiny, colours, tmp_path / "run", steps=5))
    assert result.output is None and result.step == 2 and result.signal == signal.SIGTERM
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step-00000002.safetensors"]
    assert signal.getsignal(signal.SIGTERM) == handler and not (tmp_path / "run" / "adapter").exists()


def _prompt_logits(llm, video) -> torch.Tensor:
    """Logits `(1, L, V)` of `ask`'s prompt over `video` at 4 frames."""
    enc = llm.encode(video, 4)
    ids, _ = build_input_ids(llm.tokenizer, llm.family, enc.slots, QUESTION)
    with torch.no_grad():
        return llm.model(**llm.inputs(ids, enc).forward_kwargs()).logits


def test_ask_and_eval_with_an_adapter_equal_the_merged_model(tiny, colours, tmp_path, capsys):
    from liteframe.cli import main
    from liteframe.eval.backend import load_llm

    peft = add_lora(_load(tiny))
    _perturb(peft)
    save_adapter(peft, tmp_path / "adapter")
    merged = merge(tiny, tmp_path / "adapter", tmp_path / "merged")
    video = colours.parent / "red.mp4"
    answers = []
    for model, extra in ((tiny, ["--adapter", str(tmp_path / "adapter")]), (merged, []), (tiny, [])):
        assert main(["ask", str(video), QUESTION, "--model", str(model), "--encoder", "wap", "--frames", "4",
                     "--device", "cpu", "--max-new-tokens", "6", "--json", *extra]) == 0
        answers.append(json.loads(capsys.readouterr().out)["tokens"])
    assert answers[0] == answers[1] != answers[2]  # the adapter is applied, as merging applies it
    expected = _prompt_logits(VideoLLM.from_pretrained(merged, "wap", device="cpu", dtype=torch.float32), video)
    for llm in (VideoLLM.from_pretrained(tiny, "wap", device="cpu", dtype=torch.float32, adapter=tmp_path / "adapter"),
                load_llm(tiny, "wap", adapter=str(tmp_path / "adapter"), device="cpu")):  # `liteframe eval --adapter`
        torch.testing.assert_close(_prompt_logits(llm, video), expected, rtol=1e-5, atol=1e-5)
    assert main(["ask", str(video), QUESTION, "--model", str(tiny), "--adapter", str(tmp_path)]) == 2
    assert "no adapter_config.json" in capsys.readouterr().err


def test_config_paths_are_relative_to_the_yaml_file_and_overrides_to_the_working_directory(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "run.yaml").write_text("model: ../m\nencoder: student:../runs/s\ndata: d.json\nframes: [8]\n")
    cfg = AdaptConfig.load(tmp_path / "conf" / "run.yaml")
    assert (cfg.model, cfg.data) == (str(tmp_path / "m"), str(tmp_path / "conf" / "d.json"))
    assert cfg.encoder == f"student:{tmp_path / 'runs' / 's'}" and cfg.frames == (8,)
    assert AdaptConfig.load(tmp_path / "conf" / "run.yaml", ["encoder=student:x"]).encoder == "student:x"
    assert AdaptConfig.load(tmp_path / "conf" / "run.yaml", ["encoder=wap", "compression=4"]).compression == 4


@pytest.mark.parametrize("resize", ["exact", "torch"])
def test_training_frames_are_the_pixels_ask_encodes(tiny, resize):
    """`adapt` reads frames through `ask`'s front end (VideoLLM.stream), whatever resize the VideoLLM uses."""
    llm = VideoLLM.from_pretrained(tiny, "wap", device="cpu", dtype=torch.float32, chunk_frames=4)
    llm.resize = resize
    seen = []
    encode_chunk = llm.encoder.encode_chunk
    llm.encoder.encode_chunk = lambda pixels: seen.append(pixels[0]) or encode_chunk(pixels)
    video = REAL_VIDEOS / "bbb_short.mp4"
    timestamps = llm.encode(video, frames=8).timestamps
    asked, seen[:] = list(seen), []
    model = AdaptModel(llm, AdaptConfig(frames=(8,), activation_checkpointing=False))
    ids, labels = model.prompter.ids(timestamps, [4, 4], ((QUESTION, "red"),))
    model.inputs({"video": str(video), "timestamps": timestamps, "ids": ids, "labels": labels, "counts": [4, 4],
                  "turns": ((QUESTION, "red"),), "frames": 8})
    trained, seen = seen, asked
    assert len(trained) == len(seen) == 2
    for a, b in zip(trained, seen):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("override, match", [("frames=8", "frames=8: expected a list"),
                                             ("frames=[8.5]", "frames=8.5: expected an integer"),
                                             ("fps=[1, x]", "fps='x'")])
def test_adapt_config_values_of_the_wrong_type_are_one_line_errors(override, match):
    """The same coercion as `distill`'s config (train/config.py): a scalar or fractional frame budget is refused,
    not iterated over or truncated."""
    with pytest.raises(InputError, match=match) as err:
        AdaptConfig.load(None, [override])
    assert "\n" not in str(err.value)


def test_a_saved_adapt_config_loads_back_equal(tmp_path):
    """What a run writes to `<output>/config.yaml` (train/config.py `save_config`, shared with distill)."""
    from liteframe.train.config import save_config

    cfg = AdaptConfig(model=str(tmp_path / "m"), encoder=f"student:{tmp_path / 's'}", data=str(tmp_path / "d.json"),
                      output=str(tmp_path / "run"), frames=(8, 16), fps=(1.0, 2.0),
                      lora={"r": 8, "alpha": 16, "dropout": 0.0})
    save_config(cfg, tmp_path / "config.yaml")
    assert AdaptConfig.load(tmp_path / "config.yaml") == cfg
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temporary file left behind


# -- reliability (issue 19) -----------------------------------------------------------------------------------------

from liteframe.train.adapt.manifest import CAPTION_PROMPT  # noqa: E402


def _llava_video_row(i, video, question, answer):
    """A row as LLaVA-Video-178K's files write it, for LLaVA-NeXT's trainer: `<image>` stands for the video."""
    return {"id": f"academic/clip-{i}", "conversations": [{"from": "human", "value": f"<image>\n{question}"},
                                                          {"from": "gpt", "value": answer}],
            "data_source": "0_30_s_academic_v0_1", "video": video}


def _caption_row(video, caption):
    """A row as ShareGPT4Video's sharegpt4video_40k.jsonl writes it: per-clip captions and the whole video's (-1)."""
    return {"video_id": f"{video}-id", "video_path": video, "timestamp": [0, 1], "keyframe": [0, 4],
            "captions": [{"idx": "0", "content": "The first second."}, {"idx": "-1", "content": caption}],
            "zip_folder": "pexels_videos_1.zip"}


def test_llava_video_178k_and_sharegpt4video_rows_train(tiny, colours, tmp_path):
    rows = [_llava_video_row(i, f"{name}.mp4", QUESTION, name) for i, name in enumerate(COLOURS)]
    rows += [_caption_row("red.mp4", "A red screen, all the time.")]
    (colours.parent / "published.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    samples = _read(colours.parent / "published.jsonl")
    assert [s.problem for s in samples] == [None] * 5
    assert samples[0].turns == ((QUESTION, "red"),) and samples[0].video == str(colours.parent / "red.mp4")
    assert samples[4].turns == ((CAPTION_PROMPT, "A red screen, all the time."),) and samples[4].id == "red.mp4-id"
    result = adapt(_config(tiny, colours.parent / "published.jsonl", tmp_path / "run", steps=2, batch_size=5))
    last = _metrics(tmp_path / "run")[-1]
    assert last["skipped"] == 0 and last["samples"] == 10 and last["tokens"] > 0 and last["loss"] > 0
    assert (result.output / "adapter_model.safetensors").is_file()
    (tmp_path / "m.json").write_text(json.dumps([{**_caption_row("red.mp4", "x"), "captions": [{"idx": "0",
                                                                                               "content": "x"}]}]))
    assert _read(tmp_path / "m.json")[0].problem == "no whole-video caption (idx -1)"


def test_a_run_that_skips_most_samples_or_trains_on_nothing_is_an_error(tiny, colours, tmp_path, capsys):
    from liteframe.cli import main

    videos = {name: str(colours.parent / f"{name}.mp4") for name in COLOURS}
    rows = [_row(i, videos[name], (QUESTION, name)) for i, name in enumerate(COLOURS)]  # no placeholder
    rows[0] = _row(0, videos["red"], (f"<video>\n{QUESTION}", "red"))
    (tmp_path / "m.json").write_text(json.dumps(rows))
    settings = [f"model={tiny}", "encoder=wap", f"data={tmp_path / 'm.json'}", "frames=[4]", "steps=5",
                "batch_size=4", "grad_accum=1", "workers=0"]
    assert main(["adapt", *settings, f"output={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("liteframe adapt: error: adapt: 3 of 4 samples skipped by step 1, more than "
                          "max_skipped=0.5 of them; the main reason: no <video> or <image> (3;"), err
    assert not (tmp_path / "run" / "adapter").exists()
    rows[0] = _row(0, videos["red"], (QUESTION, "red"))
    (tmp_path / "m.json").write_text(json.dumps(rows))
    assert main(["adapt", *settings, "max_skipped=1", f"output={tmp_path / 'run2'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "adapt: the run trained on no tokens (20 samples skipped, 0 used); nothing to save" in err
    assert not (tmp_path / "run2" / "adapter").exists()


def test_resuming_with_another_lora_or_encoder_is_refused_in_one_line(tiny, colours, tmp_path):
    out = tmp_path / "run"
    adapt(_config(tiny, colours, out, steps=1))
    for change, said in ((dict(lora={"r": 8, "alpha": 8, "dropout": 0.05}), "lora.r: 4 -> 8"),
                         (dict(encoder="avg"), "encoder: 'wap' -> 'avg'")):
        with pytest.raises(InputError, match=f"{out}: holds an earlier adapt run with other settings") as err:
            adapt(_config(tiny, colours, out, steps=2, **change))
        assert said in str(err.value) and "\n" not in str(err.value)


def test_resuming_on_other_weights_under_the_same_path_and_config_is_refused(tiny, colours, tmp_path):
    """Another fine-tune of one architecture put where the base was: the same path and config.json, other weights.
    Resuming would train the first base's LoRA on the second and label the adapter with the second."""
    base, out = tmp_path / "base", tmp_path / "run"
    shutil.copytree(tiny, base)
    adapt(_config(base, colours, out, steps=1))
    shutil.rmtree(base)
    save_tiny_internvl(base, seed=1)
    assert (base / "config.json").read_bytes() == (tiny / "config.json").read_bytes()
    with pytest.raises(InputError, match=f"{out}: holds an earlier adapt run with other settings \\(model.weights: "):
        adapt(_config(base, colours, out, steps=2))


def test_sigterm_to_the_whole_process_group_saves_with_forkserver_workers(tiny, colours, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    import liteframe
    from liteframe.train import checkpoint as ckpt

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(liteframe.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "liteframe.cli", "adapt", f"model={tiny}", "encoder=wap",
                             f"data={colours}", "frames=[4]", "steps=10000", "batch_size=4", "grad_accum=1",
                             "workers=1", "log_every=1", "save_every=10000", f"output={out}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:  # training, a worker laying out samples
            if (out / "metrics.jsonl").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) >= 2:
                break
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGTERM)  # as Slurm and terminals send it: to every process of the job
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "by SIGTERM; checkpoint saved; run the same command to resume" in stdout
    step = int(stdout.split("stopped at step ")[1].split()[0])
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == [f"step-{step:08d}.safetensors"]
