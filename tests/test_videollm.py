"""The VideoLLM end to end on a tiny random InternVL3 checkpoint and the real videos: token counts, placement of the
visual tokens in the LLM's input, every encoder path, determinism, student round trip, prompt layout."""

import pytest
import torch
from hypothesis import given, settings, strategies as st
from safetensors.torch import load_file
from transformers import AutoTokenizer

from liteframe.errors import InputError
from liteframe.llm import VideoLLM, build_input_ids, save_tiny_internvl, slot_labels
from liteframe.llm.tiny import IMAGE_TOKENS
from liteframe.models import LiteFrameEncoder, Teacher, tiny_student_config

from videos import REAL_VIDEOS as VIDEOS
BBB, PANCAKE = VIDEOS / "bbb_short.mp4", VIDEOS / "flipping_a_pancake.mkv"
SIZE = 112  # 8 x 8 patches: dense gives 16 LLM tokens per frame, every 16x encoder 1
GEN = dict(max_new_tokens=4, min_new_tokens=4)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_internvl(tmp_path_factory.mktemp("tiny_internvl"), image_size=SIZE, seed=0)


@pytest.fixture(scope="module")
def student_dir(checkpoint, tmp_path_factory):
    """A cropped student with every weight perturbed, so that its answers depend on all of them."""
    torch.manual_seed(1)
    student = LiteFrameEncoder.from_teacher(Teacher.from_pretrained(checkpoint), tiny_student_config(image_size=SIZE))
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    folder = tmp_path_factory.mktemp("student")
    student.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tokenizer(checkpoint):
    return AutoTokenizer.from_pretrained(checkpoint)


@pytest.fixture(scope="module")
def dense(checkpoint):
    return VideoLLM.from_pretrained(checkpoint, "dense", device="cpu")


def _record(llm):
    """Capture the encoder's output and the embeddings of the LLM's first (prefill) forward."""
    seen = {}
    finish = llm.encoder.finish
    llm.encoder.finish = lambda parts: seen.setdefault("visual", finish(parts))

    def first_embeds(module, args, kwargs):
        seen.setdefault("embeds", kwargs["inputs_embeds"])

    hook = llm.model.model.language_model.register_forward_pre_hook(first_embeds, with_kwargs=True)
    return seen, hook


@pytest.mark.parametrize("encoder, per_frame", [("dense", 16), ("wap", 1), ("tome", 1), ("student", 1)])
def test_visual_tokens_reach_the_llm_at_the_image_slots(dense, student_dir, encoder, per_frame):
    llm = dense.with_encoder(f"student:{student_dir}" if encoder == "student" else encoder)
    seen, hook = _record(llm)
    try:
        answer = llm.ask(BBB, "What happens?", frames=8, **GEN)
    finally:
        hook.remove()
    assert answer.visual_tokens == 8 * per_frame == seen["visual"].shape[1]
    labels = slot_labels(answer.timestamps, llm.encoder.frames_per_slot(8))
    ids = build_input_ids(llm.tokenizer, labels, answer.visual_tokens // len(labels), "What happens?")
    assert ids.shape[1] == answer.prompt_tokens == seen["embeds"].shape[1]
    is_image = ids[0] == llm.model.config.image_token_id
    assert int(is_image.sum()) == 8 * per_frame
    torch.testing.assert_close(seen["embeds"][0, is_image], seen["visual"][0])
    text = llm.model.get_input_embeddings()(ids[0, ~is_image])
    torch.testing.assert_close(seen["embeds"][0, ~is_image], text)


@pytest.mark.parametrize("encoder", ["dense", "wap", "student"])
def test_every_path_generates_and_is_deterministic(dense, student_dir, encoder):
    llm = dense.with_encoder(f"student:{student_dir}" if encoder == "student" else encoder)
    first = llm.ask(PANCAKE, "What is the person doing?", frames=4, **GEN)
    again = llm.ask(PANCAKE, "What is the person doing?", frames=4, **GEN)
    assert len(first.tokens) == 4
    assert first.tokens == again.tokens and first.answer == again.answer
    assert first.answer == llm.tokenizer.decode(first.tokens, skip_special_tokens=True).strip()


def test_answers_depend_on_the_video_and_the_encoder(dense):
    wap = dense.with_encoder("wap")
    answers = {(v, llm.encoder.name): llm.ask(v, "What happens?", frames=4, **GEN).tokens
               for v in (BBB, PANCAKE) for llm in (dense, wap)}
    assert len({tuple(t) for t in answers.values()}) > 1


def test_latency_breakdown_adds_up(dense):
    answer = dense.ask(BBB, "What happens?", frames=4, **GEN)
    ms = answer.latency_ms
    assert set(ms) == {"decode", "preprocess", "vit", "llm_prefill", "generation", "total"}
    parts = sum(v for k, v in ms.items() if k != "total")
    assert all(v > 0 for v in ms.values()) and parts <= ms["total"] * 1.001


def test_repeats_report_medians_of_the_timed_runs(dense, monkeypatch):
    totals = iter([100.0, 5.0, 1.0])  # one warm-up run, then two timed ones
    real_run = dense._run

    def run(*args):
        answer = real_run(*args)
        answer.latency_ms = dict.fromkeys(answer.latency_ms, next(totals))
        return answer

    monkeypatch.setattr(dense, "_run", run)
    answer = dense.ask(BBB, "What happens?", frames=4, repeats=2, warmup=1, max_new_tokens=1)
    assert answer.latency_ms == dict.fromkeys(answer.latency_ms, 3.0)


def test_same_seed_same_checkpoint_other_seed_other_weights(checkpoint, tmp_path):
    again = load_file(save_tiny_internvl(tmp_path / "a", image_size=SIZE, seed=0) / "model.safetensors")
    other = load_file(save_tiny_internvl(tmp_path / "b", image_size=SIZE, seed=1) / "model.safetensors")
    ref = load_file(checkpoint / "model.safetensors")
    assert all(torch.equal(ref[k], again[k]) for k in ref)
    assert any(not torch.equal(ref[k], other[k]) for k in ref)


def test_student_saved_and_reloaded_gives_the_same_answer(checkpoint, student_dir, tmp_path):
    first = VideoLLM.from_pretrained(checkpoint, f"student:{student_dir}", device="cpu")
    assert first.model.model.vision_tower is None  # the dense tower is dropped for a student
    LiteFrameEncoder.from_pretrained(student_dir).save_pretrained(tmp_path / "copy")
    second = VideoLLM.from_pretrained(checkpoint, f"student:{tmp_path / 'copy'}", device="cpu")
    a = first.ask(BBB, "What happens?", frames=4, **GEN)
    b = second.ask(BBB, "What happens?", frames=4, **GEN)
    assert a.tokens == b.tokens and a.answer == b.answer


@pytest.mark.parametrize("encoder", ["wap", "tome"])
def test_chunked_encoding_matches_one_pass(dense, encoder):
    visual = dense.with_encoder(encoder).encoder
    pixels = torch.randn(1, 8, 3, SIZE, SIZE)
    torch.testing.assert_close(visual(pixels, chunk_frames=4), visual(pixels, chunk_frames=8))


def test_dense_encoder_matches_transformers_image_features(dense):
    """The dense path is InternVL's own: `get_image_features` (ViT, drop CLS, pixel shuffle, projector) per frame."""
    pixels = torch.randn(1, 4, 3, SIZE, SIZE)
    ours = dense.encoder(pixels)
    theirs = dense.model.get_image_features(pixel_values=pixels[0]).pooler_output
    torch.testing.assert_close(ours, theirs.reshape(1, -1, theirs.shape[-1]))


def test_prompt_layout(tokenizer):
    assert slot_labels([0.0, 0.5], 1) == ["Frame 1 (0.0s)", "Frame 2 (0.5s)"]
    labels = slot_labels([0.0, 0.25, 0.5, 0.75, 4.0, 4.25, 4.5, 4.75], 4)
    assert labels == ["Frames 1-4 (0.0s-0.8s)", "Frames 5-8 (4.0s-4.8s)"]
    ids = build_input_ids(tokenizer, labels, 3, "Why?")[0]
    text = tokenizer.decode(ids)
    start, context, end = (IMAGE_TOKENS[k] for k in ("start_image_token", "context_image_token", "end_image_token"))
    one_slot = start + context * 3 + end
    assert f"Frames 5-8 (4.0s-4.8s): {one_slot}\nWhy?" in text
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    with pytest.raises(InputError, match="IMG_CONTEXT"):
        build_input_ids(tokenizer, labels, 3, "what is <IMG_CONTEXT>?")


@settings(max_examples=25, deadline=None)
@given(times=st.lists(st.floats(0, 3600), min_size=1, max_size=40), per_slot=st.integers(1, 300),
       clip=st.sampled_from([1, 4]))
def test_prompt_has_exactly_the_visual_token_count(tokenizer, times, per_slot, clip):
    times = sorted(times) * clip  # a multiple of the slot size
    labels = slot_labels(times, clip)
    ids = build_input_ids(tokenizer, labels, per_slot, "What happens?")[0]
    context = tokenizer.convert_tokens_to_ids(IMAGE_TOKENS["context_image_token"])
    is_image = ids == context
    assert len(labels) == len(times) // clip and int(is_image.sum()) == len(labels) * per_slot
    # every slot's context tokens are contiguous, between <img> and </img>
    start = tokenizer.convert_tokens_to_ids(IMAGE_TOKENS["start_image_token"])
    end = tokenizer.convert_tokens_to_ids(IMAGE_TOKENS["end_image_token"])
    starts, ends = (ids == start).nonzero()[:, 0], (ids == end).nonzero()[:, 0]
    assert len(starts) == len(ends) == len(labels)
    assert torch.equal(ends - starts - 1, torch.full_like(starts, per_slot))
    assert all(bool(is_image[s + 1:e].all()) for s, e in zip(starts, ends))


def test_bad_inputs_raise_input_errors(checkpoint, student_dir, dense, tmp_path):
    with pytest.raises(InputError, match="multiple of 4"):
        dense.with_encoder(f"student:{student_dir}").ask(BBB, "q", frames=6)
    with pytest.raises(InputError, match="unknown encoder"):
        dense.with_encoder("sharpen")
    with pytest.raises(InputError, match="no config.json"):
        VideoLLM.from_pretrained(tmp_path, device="cpu")
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(InputError, match="not 'internvl'"):
        VideoLLM.from_pretrained(tmp_path, device="cpu")
    with pytest.raises(InputError, match="image_token_id"):
        model = dense.model
        model.config.image_token_id, saved = 0, model.config.image_token_id
        try:
            VideoLLM(model, dense.tokenizer, dense.encoder)
        finally:
            model.config.image_token_id = saved
