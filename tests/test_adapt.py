"""LMA: LoRA with PEFT on tiny InternVL3 checkpoints, chat manifests, training samples, the adapt job."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import InternVLForConditionalGeneration

from liteframe.errors import InputError
from liteframe.llm import save_tiny_internvl
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


# -- chat manifests ----------------------------------------------------------------------------------------------

from liteframe.train.manifest import Skips, read_chat_manifest  # noqa: E402


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


def test_unusable_rows_carry_their_skip_reason(tmp_path, caplog):
    rows = [_row(0, turns=("What colour?", "red")), _row(1, turns=("<video>\nQ", " ")),
            _row(2, turns=("<video>\nQ", "A", "Q2"))]
    (tmp_path / "m.json").write_text(json.dumps(rows))
    problems = [s.problem for s in read_chat_manifest(tmp_path / "m.json")]
    assert problems == ["no <video> in the first question", "empty answer", "empty answer"]
    skips = Skips()
    for _ in range(3):
        skips.add("s0", "decode failure", "broken")
    skips.add("s1", "decode failure")
    assert skips.counts["decode failure"] == 4 and skips.total == 4
    assert sum("skipped" in r.message for r in caplog.records) == 2
