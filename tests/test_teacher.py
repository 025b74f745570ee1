import json

import pytest
import torch
from safetensors import safe_open
from transformers import (AutoModel, CLIPVisionModel, InternVLForConditionalGeneration, SiglipVisionModel)

from liteframe.errors import InputError
from liteframe.models import Teacher, tiny_internvl_config, tiny_vision_config, to_llm_tokens
from test_grid import to_hf


@pytest.fixture(scope="module")
def internvl_folder(tmp_path_factory):
    """A tiny random InternVL3 `-hf` checkpoint written by transformers itself."""
    torch.manual_seed(0)
    model = InternVLForConditionalGeneration(tiny_internvl_config()).eval()
    folder = tmp_path_factory.mktemp("internvl")
    model.save_pretrained(folder)
    return folder, model


def test_internvl_grid_matches_eager_per_frame_float64():
    teacher = Teacher.from_config(tiny_vision_config("internvl")).double()
    eager = AutoModel.from_config(teacher.vision.config, attn_implementation="eager").double().eval()
    eager.load_state_dict(teacher.vision.state_dict())
    pixels = torch.randn(2, 3, 3, 56, 56, dtype=torch.float64)
    grid = teacher(pixels)
    assert grid.shape == (2, 3, 4, 4, 64) and grid.cls.shape == (2, 3, 64)
    with torch.no_grad():
        for b in range(2):
            for t in range(3):
                ref = eager(pixel_values=pixels[b, t : t + 1]).last_hidden_state[0]
                torch.testing.assert_close(grid.cls[b, t], ref[0])
                torch.testing.assert_close(grid.patches[b, t], ref[1:].view(4, 4, 64))


def test_from_pretrained_loads_tower_and_projector_only(internvl_folder):
    folder, model = internvl_folder
    teacher = Teacher.from_pretrained(folder)
    names = {k for k, _ in teacher.named_parameters()}
    assert not any("language_model" in k or "lm_head" in k for k in names)
    for key, value in model.model.vision_tower.state_dict().items():
        assert torch.equal(teacher.vision.state_dict()[key], value), key
    for key, value in model.model.multi_modal_projector.state_dict().items():
        assert torch.equal(teacher.projector.state_dict()[key], value), key
    assert (teacher.image_size, teacher.patch_size, teacher.hidden_size) == (56, 14, 64)
    assert not any(p.requires_grad for p in teacher.parameters())


def test_llm_tokens_equal_transformers_image_features(internvl_folder):
    """Grid -> pixel shuffle -> projector gives exactly what InternVL feeds its LLM: 256 tokens per frame at 448,
    here (56 px) 4 per frame."""
    folder, model = internvl_folder
    teacher = Teacher.from_pretrained(folder)
    pixels = torch.randn(2, 3, 3, 56, 56)
    with torch.no_grad():
        ref = model.model.get_image_features(pixel_values=pixels.flatten(0, 1),
                                             vision_feature_layer=-1,
                                             vision_feature_select_strategy="default").pooler_output
        tokens = to_llm_tokens(teacher(pixels), teacher.projector)
    assert tokens.shape == (2, 3 * 4, 32)
    torch.testing.assert_close(tokens, ref.reshape(2, 12, 32), rtol=1e-5, atol=1e-5)


def test_sharded_checkpoint_dtype_and_device(tmp_path):
    model = InternVLForConditionalGeneration(tiny_internvl_config())
    model.save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    teacher = Teacher.from_pretrained(tmp_path, dtype=torch.bfloat16, device="cpu")
    assert {p.dtype for p in teacher.parameters()} == {torch.bfloat16}
    weight = model.model.vision_tower.encoder.layer[5].mlp.fc2.weight
    assert torch.equal(teacher.vision.encoder.layer[5].mlp.fc2.weight, weight.to(torch.bfloat16))
    assert teacher(torch.randn(1, 4, 3, 56, 56)).patches.dtype == torch.bfloat16


@pytest.mark.parametrize("kind, cls, has_cls", [("clip", CLIPVisionModel, True), ("siglip", SiglipVisionModel, False)])
def test_clip_and_siglip_folders(tmp_path, kind, cls, has_cls):
    model = cls(tiny_vision_config(kind)).eval()
    model.save_pretrained(tmp_path)
    teacher = Teacher.from_pretrained(tmp_path)
    assert teacher.projector is None and teacher.vision.config._attn_implementation == "sdpa"
    pixels = torch.randn(1, 4, 3, 56, 56)
    grid = teacher(pixels)
    with torch.no_grad():
        ref = model(pixel_values=pixels[0]).last_hidden_state
    torch.testing.assert_close(to_hf(grid), ref, rtol=1e-5, atol=1e-5)
    assert (grid.cls is not None) == has_cls
    if not has_cls:  # SPEC 3: no CLS -> the frame's mean patch token is the query
        torch.testing.assert_close(grid.queries, ref.view(1, 4, 16, 64).mean(2))
    assert teacher(torch.randn(1, 4, 3, 112, 112)).shape == (1, 4, 8, 8, 64)


def test_bad_folders_raise_input_error(tmp_path, internvl_folder):
    with pytest.raises(InputError, match="no config.json"):
        Teacher.from_pretrained(tmp_path / "absent")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    with pytest.raises(InputError, match="'qwen2' is not a supported teacher"):
        Teacher.from_pretrained(tmp_path)
    folder, _ = internvl_folder
    bad = tmp_path / "bad"
    bad.mkdir()
    config = json.loads((folder / "config.json").read_text())
    config["vision_config"]["intermediate_size"] = 96
    (bad / "config.json").write_text(json.dumps(config))
    (bad / "model.safetensors").symlink_to(folder / "model.safetensors")
    with pytest.raises(InputError, match=r"mlp.fc1.bias has shape \(128,\), config.json implies \(96,\)"):
        Teacher.from_pretrained(bad)
    (bad / "model.safetensors").unlink()
    with pytest.raises(InputError, match="no model.safetensors"):
        Teacher.from_pretrained(bad)


def _truncated_copy(source, target):
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])


def test_truncated_safetensors_is_one_line_naming_the_file(tmp_path, internvl_folder):
    folder, _ = internvl_folder
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    _truncated_copy(folder / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(InputError, match="model.safetensors: not a readable safetensors file") as err:
        Teacher.from_pretrained(tmp_path)
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)
    # sharded: the index is read, then each shard is opened
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        index = {"weight_map": {key: "part-1.safetensors" for key in f.keys()}}
    (tmp_path / "model.safetensors").rename(tmp_path / "part-1.safetensors")
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match="part-1.safetensors: not a readable safetensors file"):
        Teacher.from_pretrained(tmp_path)


def test_truncated_vision_folder_is_one_line(tmp_path):
    CLIPVisionModel(tiny_vision_config("clip")).save_pretrained(tmp_path)
    _truncated_copy(tmp_path / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(InputError, match="cannot read the weights") as err:
        Teacher.from_pretrained(tmp_path)
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


def test_vision_folder_with_missing_or_reshaped_tensors(tmp_path):
    CLIPVisionModel(tiny_vision_config("clip")).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 7}))
    with pytest.raises(InputError, match="lacks 16 vision tensors, e.g. encoder.layers.6"):
        Teacher.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "intermediate_size": 96}))
    with pytest.raises(InputError, match="tensor shapes do not match config.json"):
        Teacher.from_pretrained(tmp_path)


def test_frames_below_the_checkpoint_size_warn_that_positions_are_resized():
    """Below its own size the ViT resizes its position embeddings (again, for a checkpoint converted from another
    size): the features change, silently until this warning."""
    import warnings

    teacher = Teacher.from_config(tiny_vision_config("internvl"))  # 56 px, a 4 x 4 grid
    with pytest.warns(UserWarning, match=r"teacher: 28x28 px frames are below the checkpoint's own 56 px, so its "
                                         r"4x4 position embeddings are resized to 2x2"):
        teacher(torch.randn(1, 2, 3, 28, 28))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for size in (56, 112):  # the checkpoint's own size and above stay quiet
            teacher(torch.randn(1, 1, 3, size, size))
