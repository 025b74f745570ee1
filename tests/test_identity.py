"""`liteframe.identity`, the one way a checkpoint folder, a small folder and exact tensors are identified: what it
sees (settings files, every tensor's first values, every byte of a small folder) and what it forgives (a copy,
another sharding, a float32/bfloat16 conversion of the weights, a README)."""
from __future__ import annotations

import shutil

import pytest
import torch
from transformers import InternVLForConditionalGeneration

from liteframe.errors import InputError
from liteframe.identity import checkpoint_identity, folder_digest, tensors_digest, weights_fingerprint
from liteframe.testing import save_tiny_internvl


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_internvl(tmp_path_factory.mktemp("tiny") / "tiny")


def _copy(tiny, folder):
    shutil.copytree(tiny, folder)
    return folder


def test_a_checkpoint_is_its_settings_files_and_its_weights(tiny, tmp_path):
    ours = checkpoint_identity(tiny)
    assert checkpoint_identity(_copy(tiny, tmp_path / "copy")) == ours  # moved: the same checkpoint
    readme = _copy(tiny, tmp_path / "readme")
    (readme / "README.md").write_text("# notes\n")
    assert checkpoint_identity(readme) == ours
    for name, text in (("chat_template.jinja", "{{ messages }}"), ("preprocessor_config.json", '{"size": 1}')):
        changed = _copy(tiny, tmp_path / name)  # what decides prompts and pixels, beside config.json
        (changed / name).write_text(text)
        theirs = checkpoint_identity(changed)
        assert theirs["config"] != ours["config"] and theirs["weights"] == ours["weights"]
    other = save_tiny_internvl(tmp_path / "other", seed=1)  # another fine-tune of the architecture: same config
    assert checkpoint_identity(other)["config"] == ours["config"]
    assert checkpoint_identity(other)["weights"] != ours["weights"]


def test_the_weights_fingerprint_forgives_sharding_and_dtype_and_sees_a_tensor_change(tiny, tmp_path):
    model = InternVLForConditionalGeneration.from_pretrained(tiny, dtype=torch.float32)
    model.save_pretrained(tmp_path / "shards", max_shard_size="200KB")
    assert (tmp_path / "shards" / "model.safetensors.index.json").is_file()
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    for folder in (tmp_path / "shards", tmp_path / "bf16"):
        assert weights_fingerprint(folder) == weights_fingerprint(tiny)
    assert checkpoint_identity(tmp_path / "bf16")["config"] != checkpoint_identity(tiny)["config"]  # its dtype
    with torch.no_grad():
        model.get_output_embeddings().weight[0, 0] += 1.0
    model.save_pretrained(tmp_path / "tuned")
    assert weights_fingerprint(tmp_path / "tuned") != weights_fingerprint(tiny)


def test_a_small_folder_is_hashed_whole(tmp_path):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "a.json").write_text("{}")
    (folder / "b.bin").write_bytes(bytes(1000))
    digest = folder_digest(folder)
    (folder / ".a.json.lock").write_text("pid 1")  # hidden files are not the folder's content
    assert folder_digest(folder) == digest
    (folder / "b.bin").write_bytes(bytes(999) + b"\x01")  # the last byte
    assert folder_digest(folder) != digest
    (folder / "b.bin").write_bytes(bytes(1000))
    (folder / "b.bin").rename(folder / "c.bin")  # the names too
    assert folder_digest(folder) != digest
    with pytest.raises(InputError, match="nowhere: not a folder"):
        folder_digest(tmp_path / "nowhere")
    with pytest.raises(InputError, match="not a checkpoint folder \\(no config.json\\)"):
        checkpoint_identity(folder)


def test_tensors_are_identified_exactly():
    state = {"a": torch.ones(3), "b": torch.zeros(2, 2, dtype=torch.bfloat16)}
    digest = tensors_digest(state)
    assert tensors_digest(dict(reversed(state.items()))) == digest
    nudged = {**state, "a": torch.nextafter(torch.ones(3), torch.full((3,), 2.0))}  # one ulp
    assert tensors_digest(nudged) != digest
    assert tensors_digest({"c": state["a"], "b": state["b"]}) != digest
