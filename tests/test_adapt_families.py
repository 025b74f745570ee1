"""LMA on every model family: its training inputs are exactly what `ask` feeds the LLM (embeddings, positions, the
answer after the prompt), `liteframe adapt` trains on a tiny Qwen2.5-VL checkpoint in the hub's layout and
`ask --adapter` uses what it wrote, and an adapter is refused, before the weights load, on a checkpoint it was not
trained on (issue 19, item 5)."""
from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch
from safetensors import safe_open

from liteframe.cli import main
from liteframe.errors import InputError
from liteframe.eval.identity import run_identity
from liteframe.eval.runner import EvalConfig
from liteframe.identity import checkpoint_identity
from liteframe.llm import VideoLLM, build_input_ids
from liteframe.llm.lora import add_lora, check_adapter, merge, save_adapter
from liteframe.testing import TINY_CHECKPOINTS, save_tiny_internvl
from liteframe.testing.videos import make_video, solid_video
from liteframe.train.adapt import AdaptConfig, adapt
from liteframe.train.adapt.data import IGNORE, ChatDataset
from liteframe.train.adapt.manifest import read_chat_manifest
from liteframe.train.adapt.model import AdaptModel

QUESTION, ANSWER = "What colour is the video?", "red"
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # grid reducers pad partial blocks, and say so


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    return {family: save(root / family) for family, save in TINY_CHECKPOINTS.items()}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A red and a blue video (64 x 48, 16 frames) and a chat manifest naming their colours."""
    root = tmp_path_factory.mktemp("data")
    rows = [{"id": name, "video": solid_video(root / f"{name}.mp4", rgb, frames=16, fps=8).name,
             "conversations": [{"from": "human", "value": f"<video>\n{QUESTION}"}, {"from": "gpt", "value": name}]}
            for name, rgb in (("red", (220, 30, 30)), ("blue", (30, 40, 220)))]
    (root / "train.json").write_text(json.dumps(rows))
    return root / "train.json"


def _prefill(llm: VideoLLM, video, frames: int) -> tuple[dict, list[dict], object]:
    """What `ask` feeds the language model in its prefill: the video prefix (`answer`'s own forward) and the rest of
    the prompt (`generate`'s first step) joined, embeddings and positions (a plain index where none is given); the
    two forwards' keyword arguments; the answer."""
    calls = []
    hook = llm.model.get_decoder().register_forward_pre_hook(
        lambda m, a, kw: calls.append(kw) if len(calls) < 2 else None, with_kwargs=True)
    try:
        answer = llm.ask(video, QUESTION, frames=frames, max_new_tokens=1)
    finally:
        hook.remove()
    lengths = [kw["inputs_embeds"].shape[1] for kw in calls]
    index = torch.arange(sum(lengths)).split(lengths)
    positions = [kw["position_ids"] if kw.get("position_ids") is not None else i[None] for kw, i in zip(calls, index)]
    joined = {"inputs_embeds": torch.cat([kw["inputs_embeds"] for kw in calls], 1),
              "position_ids": torch.cat([p.expand(3, 1, -1) for p in positions], -1)}
    return joined, calls, answer


@pytest.mark.parametrize("family", ["internvl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"])
def test_training_inputs_are_what_ask_feeds_the_llm(family, folders, data):
    llm = VideoLLM.from_pretrained(folders[family], "wap", device="cpu", dtype=torch.float32)
    frames = 16  # two clips: 4 frames each for InternVL, 4 frame pairs for the Qwen families
    video = data.parent / "red.mp4"
    asked, calls, answer = _prefill(llm, video, frames)
    model = AdaptModel(llm, AdaptConfig(frames=(frames,), fps=(1.0, 1.0), activation_checkpointing=False))
    item = ChatDataset(read_chat_manifest(data), model.prompter, (frames,), (1.0, 1.0), seed=0)[0]
    assert item["timestamps"] == answer.timestamps  # the same frames as `ask` samples
    inputs, labels = model.inputs(item)
    prompt = answer.prompt_tokens
    ids, _ = build_input_ids(llm.tokenizer, llm.family, llm.encode(video, frames).slots, QUESTION)
    assert torch.equal(inputs.input_ids[0, :prompt], ids[0]) and ids.shape[1] == prompt
    torch.testing.assert_close(inputs.inputs_embeds[:, :prompt], asked["inputs_embeds"], rtol=0, atol=0)
    length = inputs.input_ids.shape[1]
    positions = inputs.position_ids if inputs.position_ids is not None else torch.arange(length).expand(3, 1, -1)
    ask_positions = asked["position_ids"]
    assert torch.equal(positions[..., :prompt], ask_positions)
    # the labels are the answer right after the prompt, at the positions generation gives the answer's tokens
    assert (labels[:prompt] == IGNORE).all() and (labels[prompt:] != IGNORE).all()
    # Qwen3.5's template renders an answer without reasoning after an empty, closed block (its prompt opened it)
    closed = "\n</think>\n\n" if family.startswith("qwen3_5") else ""
    assert llm.tokenizer.decode(labels[prompt:]).startswith(closed + ANSWER)
    after = int(ask_positions.max()) + 1 + torch.arange(length - prompt)
    assert torch.equal(positions[:, 0, prompt:], after.expand(3, -1))
    if family == "qwen2_5_vl":
        assert int(ask_positions.max()) + 1 != prompt  # mRoPE: a position is not an index, and it is kept
    # Qwen3-VL's DeepStack features: what LMA's forward adds in the first layers is what ask's prefill added
    assert len(inputs.deepstack) == (2 if family.startswith("qwen3_vl") else 0)
    if inputs.deepstack:
        prefix = calls[0]["inputs_embeds"].shape[1]
        assert torch.equal(calls[0]["visual_pos_masks"], inputs.visual_mask[:, :prefix])
        assert not inputs.visual_mask[:, prefix:].any()
        for ours, theirs in zip(inputs.deepstack, calls[0]["deepstack_visual_embeds"], strict=True):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
        assert "visual_pos_masks" in inputs.forward_kwargs()


def _ask_json(video, model, *extra) -> dict:
    assert main(["ask", str(video), QUESTION, "--model", str(model), "--encoder", "wap", "--frames", "8",
                 "--device", "cpu", "--max-new-tokens", "4", "--json", *extra]) == 0


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"])
def test_adapt_trains_and_ask_uses_the_adapter(family, folders, data, tmp_path, capsys):
    qwen = folders[family]
    result = adapt(AdaptConfig(model=str(qwen), encoder="wap", data=str(data), output=str(tmp_path / "run"),
                               frames=(8,), steps=3, batch_size=2, grad_accum=1, lr=5e-2, warmup_steps=1, workers=0,
                               save_every=100, lora={"dropout": 0.0}, activation_checkpointing=True))
    with safe_open(str(result.output / "adapter_model.safetensors"), "pt") as f:
        weights = {k: f.get_tensor(k) for k in f.keys()}
    assert weights and all(".language_model." in k for k in weights)  # nothing of the vision tower
    assert any(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)  # it trained
    base = json.loads((result.output / "base_model.json").read_text())
    assert base["model_type"] == family
    # one identity of the base in the adapter, the training run and an evaluation with it
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    evaluated = run_identity(EvalConfig("mlvu", str(data.parent), str(qwen), "wap", 8, "x.jsonl",
                                        adapter=str(result.output)))
    assert base["checkpoint"] == run["inputs"]["model"] == evaluated["model files"] == checkpoint_identity(qwen)
    video = data.parent / "blue.mp4"
    logits = {}
    merged = merge(qwen, result.output, tmp_path / "merged")
    for name, model, adapter in (("adapter", qwen, result.output), ("merged", merged, None), ("base", qwen, None)):
        llm = VideoLLM.from_pretrained(model, "wap", device="cpu", dtype=torch.float32, adapter=adapter)
        enc = llm.encode(video, 8)
        ids, _ = build_input_ids(llm.tokenizer, llm.family, enc.slots, QUESTION)
        with torch.no_grad():  # the language model with the family's inputs (DeepStack too), then the head
            hidden = llm.model.get_decoder()(**llm.inputs(ids, enc).forward_kwargs()).last_hidden_state
            logits[name] = llm.model.get_output_embeddings()(hidden)
    torch.testing.assert_close(logits["adapter"], logits["merged"], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(logits["adapter"], logits["base"], atol=1e-3)
    capsys.readouterr()
    _ask_json(video, qwen, "--adapter", str(result.output))
    with_adapter = json.loads(capsys.readouterr().out)["tokens"]
    _ask_json(video, merged)
    assert json.loads(capsys.readouterr().out)["tokens"] == with_adapter


@pytest.fixture(scope="module")
def adapters(folders, tmp_path_factory):
    """An adapter (LoRA B perturbed) saved from each tiny checkpoint."""
    root = tmp_path_factory.mktemp("adapters")
    out = {}
    for family, folder in folders.items():
        llm = VideoLLM.from_pretrained(folder, device="cpu", dtype=torch.float32)
        peft = add_lora(llm.model)
        with torch.no_grad():
            for name, p in peft.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.05)
        out[family] = save_adapter(peft, root / family)
    return out


def test_an_adapter_is_refused_on_a_checkpoint_it_was_not_trained_on(folders, adapters, data, tmp_path, capfd,
                                                                     monkeypatch):
    internvl, video = folders["internvl"], data.parent / "red.mp4"
    assert check_adapter(adapters["internvl"], internvl) == adapters["internvl"]
    copy = tmp_path / "copy"  # the same weights in another folder: accepted
    copy.mkdir()
    for file in internvl.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    assert check_adapter(adapters["internvl"], copy)
    before = tmp_path / "before"  # saved before checkpoint identities: base_model.json holds the weights' fingerprint
    shutil.copytree(adapters["internvl"], before)
    record = json.loads((before / "base_model.json").read_text())
    record["fingerprint"] = record.pop("checkpoint")["weights"]
    (before / "base_model.json").write_text(json.dumps(record))
    assert check_adapter(before, copy)
    other = save_tiny_internvl(tmp_path / "other", seed=1)  # the same architecture, other weights
    stripped = tmp_path / "stripped"  # a Qwen adapter without its base record: its modules do not exist here
    stripped.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (stripped / name).write_bytes((adapters["qwen2_5_vl"] / name).read_bytes())
    monkeypatch.setattr("liteframe.llm.videollm.load_weights", lambda *a: pytest.fail("the weights loaded first"))
    cases = [(internvl, adapters["qwen2_5_vl"], "trained on a qwen2_5_vl checkpoint, not on"),
             (other, adapters["internvl"], f"whose weights differ from {other}'s"),
             (other, before, f"whose weights differ from {other}'s"),
             (internvl, stripped, "which lacks 7 of the 14 modules it adapts, e.g. model.language_model.layers.1")]
    for model, adapter, match in cases:
        with pytest.raises(InputError, match=match):
            check_adapter(adapter, model)
        capfd.readouterr()
        assert main(["ask", str(video), QUESTION, "--model", str(model), "--adapter", str(adapter),
                     "--device", "cpu"]) == 2
        err = capfd.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match.split(",")[0] in err
    with pytest.raises(InputError, match="trained on a qwen2_5_vl checkpoint"):
        merge(internvl, adapters["qwen2_5_vl"], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_a_sample_is_laid_out_for_its_own_frame_size(tmp_path, data):
    """With the hub's processor budget the largest frame gives far more tokens than the tiny context holds, so a
    layout for the largest frame would skip every sample as over context; LMA lays a sample out for its video's
    own size (before decoding) and trains on it, with the counts `ask` gives the same video."""
    from liteframe.testing import save_tiny_qwen

    folder = save_tiny_qwen(tmp_path / "qwen", processor_files=True)
    llm = VideoLLM.from_pretrained(folder, "dense", device="cpu", dtype=torch.float32)
    frames = 16
    model = AdaptModel(llm, AdaptConfig(frames=(frames,), fps=(1.0, 1.0), activation_checkpointing=False))
    assert not model.prompter.exact
    assert model.prompter.layouts[frames][1] > llm.family.context_length(llm.model)  # the largest frame: over
    item = ChatDataset(read_chat_manifest(data), model.prompter, (frames,), (1.0, 1.0), seed=0)[0]
    assert "skip" not in item and item["size"] == (48, 64)
    inputs, labels = model.inputs(item)
    asked = llm.ask(data.parent / "red.mp4", QUESTION, frames=frames, max_new_tokens=1)
    visual = inputs.input_ids[0] == llm.model.config.video_token_id
    assert int(visual.sum()) == asked.visual_tokens
    assert (labels != IGNORE).any()


def test_a_warning_of_every_sample_is_shown_once_per_job(folders, tmp_path):
    """WAP pads a Qwen2.5-VL grid that is not whole blocks, and says so; each frame size has its own grid. Training
    used to say it again for every sample and step."""
    llm = VideoLLM.from_pretrained(folders["qwen2_5_vl"], "wap", device="cpu", dtype=torch.float32)
    model = AdaptModel(llm, AdaptConfig(frames=(8,), fps=(1.0, 1.0), activation_checkpointing=False))
    rows = [{"id": str(width), "video": solid_video(tmp_path / f"{width}.mp4", (200, 30, 30), frames=16, fps=8,
                                                    width=width, height=60).name,
             "conversations": [{"from": "human", "value": f"<video>\n{QUESTION}"}, {"from": "gpt", "value": "red"}]}
            for width in (160, 200)]  # grids (4, 7, 19) and (4, 7, 21)
    (tmp_path / "train.json").write_text(json.dumps(rows))
    dataset = ChatDataset(read_chat_manifest(tmp_path / "train.json"), model.prompter, (8,), (1.0, 1.0), seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # two epochs
            for item in dataset:
                model.inputs(item)
    padded = [str(w.message) for w in caught if "is not a multiple of the block" in str(w.message)]
    assert len(padded) == 1 and "wap: grid (T, H, W) = (4, 7, 19)" in padded[0]
