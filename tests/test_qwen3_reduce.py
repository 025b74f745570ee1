"""Every reducer at 4x, 16x and 64x on each Qwen3 family through `VideoLLM`: the token budget (what the check before
decoding predicts), DeepStack levels reduced alongside the tokens, one timestamp run per slot at its span's mean
time, positions against a slow reference of the published rule, and generation. (That each reducer takes one
decision for the tokens and every level is tested on its own in tests/test_reducers.py.) The MoE checkpoints, whose
vision, prompt and positions are their dense families' and whose LLMs differ in the MLP only, generate at 16x."""
from __future__ import annotations

import pytest
import torch

from liteframe.compression import get_compression
from liteframe.errors import InputError
from liteframe.llm import VideoLLM, build_input_ids, make_slots
from liteframe.llm.videollm import ENCODE_KEYS, EncodedVideo
from liteframe.reduce import REDUCERS
from liteframe.testing.videos import make_video
from liteframe.video import open_video
from test_qwen3 import published_positions

TYPES = ["qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"]
# 16 frames of 128 x 128: 8 pairs of a 4 x 4 merged grid; ToMe keeps at least a token per pair, which 64x leaves
# only at 256 x 256 (an 8 x 8 grid per pair): its 64x runs on 8 frames of that size.
SMALL, LARGE = (16, 128), (8, 256)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("v")
    return {side: make_video(root / f"{side}.mp4", num_frames=16, fps=8, width=side, height=side)
            for side in (SMALL[1], LARGE[1])}


def reduced(llm: VideoLLM, name: str, compression, grid, video, timestamps, enc_fps) -> EncodedVideo:
    """`llm.with_encoder(name, compression).encode(video)` from the backbone's `grid` of its frames (computed once for
    every reducer): the encoder's grid stage, then its `finish` (set stage, projector), then the slots."""
    runner = llm.with_encoder(name, compression)
    stage = runner.encoder.grid_stage
    visual = runner.encoder.finish([stage(grid, compression) if stage is not None else grid])
    padded = timestamps + timestamps[-1:] * (len(visual.counts) * visual.frames_per_step - len(timestamps))
    return runner, EncodedVideo(str(video), name, len(timestamps), timestamps, enc_fps,
                                make_slots(padded, visual.counts, visual.frames_per_step), visual,
                                dict.fromkeys([*ENCODE_KEYS, "total"], 0.0))


@pytest.mark.parametrize("model_type", TYPES)
@torch.no_grad()
def test_every_reducer_meets_its_budget_and_generates(qwen3_folders, videos, model_type):
    llm = VideoLLM.from_pretrained(qwen3_folders[model_type], device="cpu", dtype=torch.float32)
    levels = 2 if model_type.startswith("qwen3_vl") else 0
    video_id = llm.model.config.video_token_id
    grids = {}
    for frames, side in (SMALL, LARGE):  # the dense encoding, with the scores PruMerge and FastVID read
        enc = llm.encode(videos[side], frames)
        with open_video(videos[side]) as reader:
            pixels = llm.encoder.prepare(reader.read(enc.timestamps).data, llm.device, llm.dtype, frames)
        grids[side] = enc.timestamps, llm.encoder.backbone(pixels, attention=True), enc.fps
        assert torch.equal(grids[side][1].patches.flatten(1, 3), enc.tokens)
    for ratio in (4, 16, 64):
        compression = get_compression(ratio)
        for name in REDUCERS.names():
            frames, side = LARGE if (name, ratio) == ("tome", 64) else SMALL
            timestamps, grid, fps = grids[side]
            runner, enc = reduced(llm, name, compression, grid, videos[side], timestamps, fps)
            if side == LARGE[1]:  # refused before decoding where a pair would keep no token
                with pytest.raises(InputError, match="tome keeps at least one token per grid step: 8 steps of 4 x 4"):
                    runner.encode(videos[SMALL[1]], SMALL[0])
            reducer = REDUCERS.get(name)
            shape = (frames // 2, side // 32, side // 32)
            assert enc.visual_tokens == reducer.num_tokens(*shape, compression) == runner.encoder.layout(
                frames, (side, side))[1], (name, ratio)
            assert len(enc.visual.levels) == levels and all(lv.shape == enc.tokens.shape for lv in enc.visual.levels)
            ids, _ = build_input_ids(llm.tokenizer, llm.family, enc.slots, "What happens?")
            text = llm.tokenizer.decode(ids[0])
            # one run per slot, at the mean time of its span's first and last frame
            assert text.count("<|vision_start|>") == len(enc.slots) == sum(n > 0 for n in enc.visual.counts)
            for slot in enc.slots:
                assert f"<{(slot.start + slot.end) / 2:.1f} seconds><|vision_start|>" in text
            span = compression.clip_frames(2) if reducer.stage == "grid" else 2
            assert all(slot.last - slot.first + 1 == span for slot in enc.slots)
            inputs = runner.inputs(ids, enc)
            width = enc.visual.grid[2]
            places = list(zip((enc.visual.pos // width).tolist(), (enc.visual.pos % width).tolist()))
            expected = published_positions(ids[0].tolist(), video_id, places)
            assert inputs.position_ids[:, 0].T.tolist() == [list(p) for p in expected], (name, ratio)
            if not model_type.endswith("_moe") or ratio == 16:  # the MoE LLMs read what the dense ones read
                assert len(runner.answer(enc, "What happens?", max_new_tokens=1, min_new_tokens=1).tokens) == 1
