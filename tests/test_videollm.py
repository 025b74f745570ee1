"""The VideoLLM end to end on a tiny random InternVL3 checkpoint and the real videos: token counts, placement of the
visual tokens in the LLM's input, every encoder path and compression, per-frame slots of set reducers, the same
frames for every encoder, the cached video prefix, failing before work, determinism, student round trip."""

import pytest
import torch
from safetensors.torch import load_file
from transformers import LogitsProcessor

from liteframe.compression import get_compression
from liteframe.errors import InputError
from liteframe.grid import TokenSet
from liteframe.llm import VisualEncoder
from liteframe.llm import VideoLLM, build_input_ids, make_slots
from liteframe.testing import save_tiny_internvl
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
def dense(checkpoint):
    return VideoLLM.from_pretrained(checkpoint, "dense", device="cpu")


def _record(llm):
    """Capture the encoder's output and the embeddings of the LLM's prefill: its first two forwards, the video prefix
    (`VideoLLM.answer`'s own) and the rest of the prompt (`generate`'s first step)."""
    seen = {"calls": 0}
    finish = llm.encoder.finish
    llm.encoder.finish = lambda parts: seen.setdefault("visual", finish(parts))

    def first_embeds(module, args, kwargs):
        seen["calls"] += 1
        if seen["calls"] <= 2:
            x = kwargs["inputs_embeds"]
            seen["embeds"] = x if seen["calls"] == 1 else torch.cat([seen["embeds"], x], 1)

    hook = llm.model.model.language_model.register_forward_pre_hook(first_embeds, with_kwargs=True)
    return seen, hook


# 8 frames at 112 px: dense 16 tokens per frame; WAP and the student 4 per 4-frame clip; ToMe 1 per frame.
@pytest.mark.parametrize("encoder, slots", [("dense", [16] * 8), ("wap", [4, 4]), ("tome", [1] * 8),
                                            ("student", [4, 4])])
def test_visual_tokens_reach_the_llm_at_the_image_slots(dense, student_dir, encoder, slots):
    llm = dense.with_encoder(f"student:{student_dir}" if encoder == "student" else encoder)
    llm.incremental = False  # the one-shot prefill's two forwards (the incremental one: tests/test_incremental.py)
    seen, hook = _record(llm)
    try:
        answer = llm.ask(BBB, "What happens?", frames=8, **GEN)
    finally:
        hook.remove()
    assert answer.slot_tokens == slots and answer.visual_tokens == sum(slots) == seen["visual"].tokens.shape[1]
    step = 8 // len(slots)
    ids, _ = build_input_ids(llm.tokenizer, llm.family, make_slots(answer.timestamps, slots, step), "What happens?")
    assert ids.shape[1] == answer.prompt_tokens == answer.prefill_tokens == seen["embeds"].shape[1]
    is_image = ids[0] == llm.model.config.image_token_id
    torch.testing.assert_close(seen["embeds"][0, is_image], seen["visual"].tokens[0])
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


def test_latency_breakdown_adds_up_without_overlap(dense):
    """Decoded in the caller's thread, the stages are disjoint parts of the total; overlapped, only the stages on
    the caller's thread are (decode runs meanwhile in the background)."""
    sequential = dense.with_encoder("dense")
    sequential.overlap = False
    for llm in (sequential, dense):
        ms = llm.ask(BBB, "What happens?", frames=8, **GEN).latency_ms
        assert set(ms) == {"decode", "preprocess", "vit", "llm_prefill", "generation", "total"}
        assert all(v > 0 for v in ms.values())
        on_caller = ("preprocess", "vit", "llm_prefill", "generation") + (("decode",) if llm is sequential else ())
        assert sum(ms[k] for k in on_caller) <= ms["total"] * 1.001 and ms["decode"] <= ms["total"]


def test_repeats_report_medians_of_the_timed_runs(dense, monkeypatch):
    totals = iter([100.0, 5.0, 1.0])  # one warm-up run, then two timed ones
    real_answer = dense.answer

    def answer(*args, **kwargs):
        out = real_answer(*args, **kwargs)
        out.latency_ms = dict.fromkeys(out.latency_ms, next(totals))
        return out

    monkeypatch.setattr(dense, "answer", answer)
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
    chunked, whole = visual(pixels, chunk_frames=4), visual(pixels, chunk_frames=8)
    torch.testing.assert_close(chunked.tokens, whole.tokens)
    assert chunked.counts == whole.counts


def test_dense_encoder_matches_transformers_image_features(dense):
    """The dense path is InternVL's own: `get_image_features` (ViT, drop CLS, pixel shuffle, projector) per frame."""
    pixels = torch.randn(1, 4, 3, SIZE, SIZE)
    ours = dense.encoder(pixels).tokens
    theirs = dense.model.get_image_features(pixel_values=pixels[0]).pooler_output
    torch.testing.assert_close(ours, theirs.reshape(1, -1, theirs.shape[-1]))


def test_bad_inputs_raise_input_errors(checkpoint, student_dir, dense, tmp_path):
    with pytest.raises(InputError, match="^6 frames: .* multiple of 4 frames"):
        dense.with_encoder(f"student:{student_dir}").ask(BBB, "q", frames=6)
    with pytest.raises(InputError, match="^1 frame: "):
        dense.with_encoder("wap").ask(BBB, "q", frames=1)
    with pytest.raises(InputError, match="unknown encoder"):
        dense.with_encoder("sharpen")
    with pytest.raises(InputError, match="no config.json"):
        VideoLLM.from_pretrained(tmp_path, device="cpu")
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(InputError, match="model_type 'llama' is not supported"):
        VideoLLM.from_pretrained(tmp_path, device="cpu")
    with pytest.raises(InputError, match="image_token_id"):
        model = dense.model
        model.config.image_token_id, saved = 0, model.config.image_token_id
        try:
            VideoLLM(model, dense.tokenizer, dense.encoder)
        finally:
            model.config.image_token_id = saved


@pytest.mark.parametrize("compression, wap, tome", [(4, [4] * 8, [4] * 8), (16, [4, 4], [1] * 8), (64, [1, 1], None)])
def test_compression_sets_the_tokens_and_slots(dense, compression, wap, tome):
    """8 frames of 8 x 8 patches: the grid stage pools blocks (1,2,2), (4,2,2), (4,4,4), then the pixel shuffle 2 x 2;
    ToMe keeps the same total, one slot per frame (ToMe keeps at least one token per frame, so not at 64x)."""
    for name, slots in (("wap", wap), ("tome", tome)) if tome else (("wap", wap),):
        llm = dense.with_encoder(name, compression)
        assert llm.encoder.compression == get_compression(compression)
        enc = llm.encode(BBB, 8)
        assert [s.tokens for s in enc.slots] == slots and enc.visual_tokens == 128 // compression
        assert llm.encoder.layout(8)[1] == enc.visual_tokens  # the count known before decoding
        assert len(llm.answer(enc, "What happens?", **GEN).tokens) == 4


def test_a_block_whose_clip_does_not_divide_the_default_chunk_gets_chunks_of_whole_clips(dense, checkpoint):
    """--compression 3,2,2: chunks of 33 frames (whole 3-frame clips), not a refusal of the default 32; a chunk size
    given by hand is still checked."""
    llm = dense.with_encoder("wap", "3,2,2")
    assert llm.chunk_frames == 33
    enc = llm.encode(BBB, 36)  # two chunks: 33 + 3 frames
    assert [s.tokens for s in enc.slots] == [4] * 12 and len(llm.answer(enc, "What happens?", **GEN).tokens) == 4
    with pytest.raises(InputError, match="chunk_frames 32: must be a positive multiple of the wap encoder's 3-frame"):
        VideoLLM.from_pretrained(checkpoint, "wap", "3,2,2", device="cpu", chunk_frames=32)


def test_every_encoder_sees_the_same_frames(dense, student_dir):
    timestamps = {name: dense.with_encoder(name).encode(BBB, 8).timestamps
                  for name in ("dense", "wap", "fastvid", f"student:{student_dir}")}  # every kind of pipeline
    assert len({tuple(t) for t in timestamps.values()}) == 1
    first = timestamps["dense"]
    assert first[1] - first[0] < first[4] - first[3]  # two clips of 4 neighbouring frames


class _UnevenSet:
    """A set stage that keeps frame 0 whole, nothing of frame 1, and the first i tokens of frame i >= 2."""

    stage, needs_attention = "set", False

    def num_tokens(self, t, h, w, compression):  # what the check before decoding assumes
        return compression.budget(t, h, w)

    def __call__(self, grid, compression):
        b, t, h, w, c = grid.shape
        keep = [h * w, 0] + list(range(2, t))
        frame = torch.cat([torch.full((n,), i) for i, n in enumerate(keep)])
        pos = torch.cat([torch.arange(n) for n in keep])
        return TokenSet(grid.patches.reshape(b, t, h * w, c)[:, frame, pos], frame[None], pos[None], t)


def test_set_stage_gives_one_slot_per_frame_with_its_own_count(dense):
    visual = VisualEncoder("uneven", dense.family.vision(dense.model), get_compression(16), _UnevenSet())
    llm = VideoLLM(dense.model, dense.tokenizer, visual)
    seen, hook = _record(llm)
    try:
        answer = llm.ask(BBB, "What happens?", frames=4, **GEN)
    finally:
        hook.remove()
    assert answer.slot_tokens == [16, 2, 3]
    enc = llm.encode(BBB, 4)
    assert [(s.first, s.last) for s in enc.slots] == [(1, 1), (3, 3), (4, 4)]
    assert enc.visual.grid == (4, 4, 4)  # steps, and the 4 x 4 grid after the pixel shuffle
    assert enc.visual.step.tolist() == [0] * 16 + [2] * 2 + [3] * 3
    assert enc.visual.pos.tolist() == list(range(16)) + [0, 1, 0, 1, 2]
    # each slot holds its own frame's dense tokens, in order, at its place in the prompt
    full = dense.encode(BBB, 4).tokens[0].view(4, 16, -1)
    torch.testing.assert_close(enc.tokens[0], torch.cat([full[0], full[2, :2], full[3, :3]]))
    ids, _ = build_input_ids(llm.tokenizer, llm.family, enc.slots, "What happens?")
    is_image = ids[0] == llm.model.config.image_token_id
    torch.testing.assert_close(seen["embeds"][0, is_image], enc.tokens[0])


class _FirstScores(LogitsProcessor):
    def __init__(self):
        self.scores = None

    def __call__(self, input_ids, scores):
        if self.scores is None:
            self.scores = scores.clone()
        return scores


def test_questions_on_one_encoding_reuse_the_video_prefix(dense):
    """The second question prefills only its own tokens, and its first-token logits equal a fresh prefill's."""
    llm = dense.with_encoder("wap")
    enc = llm.encode(BBB, 8)
    first = llm.answer(enc, "What happens?", **GEN)
    assert first.prefill_tokens == first.prompt_tokens
    cached, fresh = _FirstScores(), _FirstScores()
    again = llm.answer(enc, "Who is in the video?", logits_processor=[cached], **GEN)
    alone = llm.answer(llm.encode(BBB, 8), "Who is in the video?", logits_processor=[fresh], **GEN)
    prefix = build_input_ids(llm.tokenizer, llm.family, enc.slots, "x")[1]
    assert again.prefill_tokens == again.prompt_tokens - prefix == alone.prefill_tokens - prefix
    assert prefix > 0 and again.tokens == alone.tokens
    torch.testing.assert_close(cached.scores, fresh.scores, rtol=1e-4, atol=1e-4)
    # a different layout (subtitles before the slots) cannot share the prefix: a fresh prefill, still correct
    lines = llm.answer(enc, "Who is in the video?", slot_text=["a cat", "a dog"], **GEN)
    assert lines.prefill_tokens == lines.prompt_tokens


@torch.no_grad()
def test_answers_are_the_checkpoints_generate_from_the_whole_prompt(dense):
    """The video prefix prefilled apart and generation continued in a copy of its cache give what the checkpoint's
    own `generate` gives from the whole prompt's embeddings, first question or reused prefix alike."""
    llm = dense.with_encoder("tome")
    enc = llm.encode(BBB, 8)
    for question in ("What happens?", "Who is in the video?"):
        answer = llm.answer(enc, question, **GEN)
        ids, _ = build_input_ids(llm.tokenizer, llm.family, enc.slots, question)
        inputs = llm.inputs(ids, enc)
        out = llm.model.generate(input_ids=ids, inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                                 do_sample=False, pad_token_id=llm.tokenizer.pad_token_id, **GEN)
        assert answer.tokens == out[0, ids.shape[1]:].tolist()


def test_too_long_prompts_fail_before_decoding(dense, monkeypatch):
    assert dense.check(4, "What happens?") == dense.ask(BBB, "What happens?", frames=4, **GEN).prompt_tokens
    # reading the header for the frame size (Qwen's token count) is allowed; decoding is not
    monkeypatch.setattr("liteframe.llm.videollm.VideoLLM.encode", lambda *a: pytest.fail("decoded before the check"))
    context = dense.model.config.text_config.max_position_embeddings
    with pytest.raises(InputError, match=f"100000 frames give 1600000 visual tokens .* context of {context}"):
        dense.ask(BBB, "What happens?", frames=100_000)
    with pytest.raises(InputError, match=f"more than the LLM's context of {context}"):
        dense.ask(BBB, "why " * context, frames=4)
    with pytest.raises(InputError, match="question is needed"):
        dense.ask(BBB, None, frames=4)


def test_student_that_does_not_fit_the_checkpoint_is_refused(dense, student_dir, tmp_path):
    LiteFrameEncoder(tiny_student_config(image_size=56)).save_pretrained(tmp_path / "small")
    with pytest.raises(InputError, match="image size 56 does not match the checkpoint's 112"):
        dense.with_encoder(f"student:{tmp_path / 'small'}")
    LiteFrameEncoder(tiny_student_config(image_size=SIZE, teacher_width=48)).save_pretrained(tmp_path / "narrow")
    with pytest.raises(InputError, match="output width 48 does not match the checkpoint's vision width 64"):
        dense.with_encoder(f"student:{tmp_path / 'narrow'}")
    with pytest.raises(InputError, match="compresses 16x .* not 64x"):
        dense.with_encoder(f"student:{student_dir}", 64)


def test_loading_prints_nothing(checkpoint, capfd):
    capfd.readouterr()
    VideoLLM.from_pretrained(checkpoint, "wap", device="cpu")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# --- the front end: decoding overlapped with encoding, the old path kept selectable -------------------------------

def _front_end(llm, resize, overlap):
    other = llm.with_encoder(llm.encoder.name)
    other.resize, other.overlap = resize, overlap
    return other


def test_overlapped_decoding_runs_in_the_background_and_changes_nothing(dense, monkeypatch):
    """Chunks of 4 frames: with overlap a background thread reads every chunk, without it the caller's thread does;
    the visual tokens are the same either way."""
    import threading

    from liteframe.video.decode import VideoReader

    readers, read = [], VideoReader.read
    monkeypatch.setattr(VideoReader, "read", lambda self, *a, **k: readers.append(threading.current_thread().name)
                        or read(self, *a, **k))
    new = VideoLLM(dense.model, dense.tokenizer, dense.encoder, chunk_frames=4)
    old = _front_end(new, new.resize, False)
    a, b = new.encode(PANCAKE, frames=12), old.encode(PANCAKE, frames=12)
    assert readers == ["liteframe-decode"] * 3 + [threading.current_thread().name] * 3
    torch.testing.assert_close(a.tokens, b.tokens, rtol=0, atol=0)
    assert a.timestamps == b.timestamps


def test_old_torch_resize_path_sees_nearly_the_same_pixels(dense):
    new, old = dense.encode(BBB, frames=8), _front_end(dense, "torch", False).encode(BBB, frames=8)
    assert new.timestamps == old.timestamps
    assert (new.tokens - old.tokens).abs().mean() < 0.05 * old.tokens.abs().mean()
