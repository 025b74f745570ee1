"""The model-family protocol: a family registered from a test runs `ask` with no change to generic code, and `ask`
reads a video through one open reader with one check; bench and the CLI speak the registry's keys."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from transformers import InternVLConfig, InternVLForConditionalGeneration

import liteframe.llm.videollm as videollm
import liteframe.video.stream as stream
from liteframe.grid import TokenGrid
from liteframe.llm import FAMILIES, DataConfig, Square, VideoLLM, Vision, ask, build_input_ids, get_family
from liteframe.llm.internvl import InternVL
from liteframe.testing import save_tiny_internvl
from liteframe.testing.videos import make_video

SIZE = 56  # 4 x 4 patches, 4 LLM tokens per dense step after the pixel shuffle
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


class FakeConfig(InternVLConfig):
    model_type = "fake_vlm"


class FakeModel(InternVLForConditionalGeneration):
    config_class = FakeConfig


class PairViT(nn.Module):
    """InternViT reading frame pairs: each step is the mean of two frames."""

    def __init__(self, teacher):
        super().__init__()
        self.teacher, self.seen = teacher, []

    def forward(self, pixels: torch.Tensor, attention: bool = False) -> TokenGrid:
        self.seen.append(pixels)
        b, t = pixels.shape[:2]
        return self.teacher(pixels.view(b, t // 2, 2, *pixels.shape[2:]).mean(2), attention)


class Fake(InternVL):
    """A family unknown to the library: InternVL3's weights behind another data config (its own mean and std, frame
    pairs) and another prompt layout (`[Frame1-2]` before each slot's context token, no image tags)."""

    checkpoint_class = FakeModel

    def vision(self, model, folder=None, pixels="processor") -> Vision:
        teacher = self._teacher(model)
        return Vision(PairViT(teacher), teacher.projector, DataConfig(Square(SIZE), MEAN, STD, 2), (2, 14, 14))

    def video_text(self, tokenizer, slots, slot_text=None, timestamps=False) -> str:
        return "".join(f"[{slot.label()}]{tokenizer.context_image_token}" for slot in slots)

    def end_id(self, tokenizer) -> int:
        return tokenizer.convert_tokens_to_ids(tokenizer.context_image_token)


@pytest.fixture(scope="module")
def fake_folder(tmp_path_factory):
    folder = save_tiny_internvl(tmp_path_factory.mktemp("fake") / "fake", image_size=SIZE)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "fake_vlm"}))
    return folder


@pytest.fixture
def fake(monkeypatch):
    family = Fake()
    monkeypatch.setitem(FAMILIES._items, "fake_vlm", family)  # registered for this test only
    return family


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("v") / "v.mp4", num_frames=24, fps=8, width=64, height=48)


def test_a_family_registered_in_a_test_answers_through_ask(fake, fake_folder, video, monkeypatch):
    seen = {}
    load = VideoLLM.from_pretrained

    def keep(*args, **kwargs):
        seen["llm"] = llm = load(*args, **kwargs)
        llm.model.get_decoder().register_forward_pre_hook(
            lambda m, a, kw: None if "embeds" in seen else seen.update(embeds=kw["inputs_embeds"]), with_kwargs=True)
        return llm

    monkeypatch.setattr(VideoLLM, "from_pretrained", keep)
    with pytest.warns(UserWarning, match="reads 2 frames per step: 7 frames padded to 8 by repeating the last"):
        answer = ask(video, "What happens?", fake_folder, "dense", frames=7, device="cpu", max_new_tokens=2)
    llm = seen["llm"]
    assert get_family("fake_vlm") is fake and llm.family is fake
    assert (answer.frames, answer.slot_tokens, answer.visual_tokens) == (7, [4] * 4, 16)  # 7 frames padded to 8
    # the fake data config was applied: the backbone read 8 frames of 56 px normalised by its own mean and std
    pixels = torch.cat(llm.encoder.backbone.seen, 1)
    assert pixels.shape == (1, 8, 3, SIZE, SIZE) and torch.equal(pixels[0, 7], pixels[0, 6])
    assert -2.0 - 1e-6 <= float(pixels.min()) and float(pixels.max()) <= 2.0 + 1e-6  # (0 or 1 - 0.5) / 0.25
    # the fake layout, and the visual tokens at its context tokens
    with pytest.warns(UserWarning, match="padded"):
        enc = llm.encode(video, 7)
    ids, _ = build_input_ids(llm.tokenizer, fake, enc.slots, "What happens?")
    text = llm.tokenizer.decode(ids[0])
    assert "[Frame1-2]<IMG_CONTEXT>" in text and "[Frame7-8]" in text and "<img>" not in text
    is_image = ids[0, :seen["embeds"].shape[1]] == llm.model.config.image_token_id  # the prefilled video prefix
    assert int(is_image.sum()) == enc.visual_tokens
    torch.testing.assert_close(seen["embeds"][0, is_image], enc.tokens[0])


def test_ask_opens_the_video_once_and_checks_once(video, tmp_path, monkeypatch):
    folder = save_tiny_internvl(tmp_path / "tiny", image_size=SIZE)
    opened, checks = [], []
    for module in (videollm, stream):
        real = module.open_video
        monkeypatch.setattr(module, "open_video", lambda path, *a, real=real: opened.append(path) or real(path, *a))
    check = VideoLLM.check
    monkeypatch.setattr(VideoLLM, "check", lambda self, *a, **k: checks.append(a) or check(self, *a, **k))
    answer = ask(video, "What happens?", folder, "wap", frames=8, device="cpu", repeats=2, warmup=1,
                 max_new_tokens=1)
    assert answer.visual_tokens == 2 and opened == [video] and len(checks) == 1


def test_bench_and_cli_use_the_registry_keys(capsys):
    from liteframe.bench.e2e import FAMILY_DEFAULTS
    from liteframe.cli import ENCODERS, main
    from liteframe.reduce import REDUCERS

    assert list(FAMILY_DEFAULTS) == FAMILIES.names()
    assert all(name in ENCODERS for name in REDUCERS.names())  # tome-clip too
    assert main(["bench", "e2e", "--model-family", "qwen2.5-vl"]) == 2
    assert "model family 'qwen2.5-vl': choose from internvl, qwen2_5_vl, qwen3_vl, qwen3_vl_moe, qwen3_5" in (
        capsys.readouterr().err)
