"""The video prompt: with the dense encoder it is token for token what transformers' `InternVLProcessor` builds for a
video; compressed encoders use the same style with one slot per frame or clip, each with its own token count."""
import types

import pytest
import torch
from hypothesis import given, settings, strategies as st
from transformers.models.internvl.processing_internvl import InternVLProcessor

from liteframe.errors import InputError
from liteframe.llm import Slot, build_input_ids, get_family, make_slots
from liteframe.testing.internvl import IMAGE_TOKENS, build_tokenizer

INTERNVL = get_family("internvl")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def processor_ids(tokenizer, frames: int, per_frame: int, question: str) -> torch.Tensor:
    """What `InternVLProcessor` gives for one video of `frames` frames: the chat template's `<video>` replaced by
    its `replace_video_token` (called unbound: the processor itself needs torchvision), then tokenised."""
    stand_in = types.SimpleNamespace(start_image_token=tokenizer.start_image_token,
                                     end_image_token=tokenizer.end_image_token,
                                     image_token=tokenizer.context_image_token, image_seq_length=per_frame)
    video = InternVLProcessor.replace_video_token(stand_in, {"pixel_values_videos": [torch.zeros(frames, 3, 2, 2)]}, 0)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.count(tokenizer.video_token) == 1
    return torch.tensor(tokenizer(text.replace(tokenizer.video_token, video), add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("frames, per_frame", [(1, 16), (3, 4), (8, 256)])
@pytest.mark.parametrize("question", ["What happens?", " Why, after the flip?\nAnswer briefly.", ""])
def test_dense_prompt_is_the_processors(tokenizer, frames, per_frame, question):
    slots = make_slots([0.5 * i for i in range(frames)], [per_frame] * frames, 1)
    ids, video_end = build_input_ids(tokenizer, INTERNVL, slots, question)
    assert torch.equal(ids[0], processor_ids(tokenizer, frames, per_frame, question))
    end = tokenizer.convert_tokens_to_ids(IMAGE_TOKENS["end_image_token"])
    assert ids[0, video_end - 1] == end and not (ids[0, video_end:] == end).any()


def test_timestamps_and_clips_in_the_same_style(tokenizer):
    slots = make_slots([0.0, 0.25, 0.5, 0.75, 4.0, 4.25, 4.5, 4.75], [2, 3], 4)
    assert slots == [Slot(1, 4, 0.0, 0.75, 2), Slot(5, 8, 4.0, 4.75, 3)]
    text = tokenizer.decode(build_input_ids(tokenizer, INTERNVL, slots, "Why?")[0][0])
    img = lambda n: f"<img>{'<IMG_CONTEXT>' * n}</img>"  # noqa: E731
    assert f"user\nFrame1-4: {img(2)}\nFrame5-8: {img(3)}\nWhy?<|im_end|>" in text
    text = tokenizer.decode(build_input_ids(tokenizer, INTERNVL, slots, "Why?", timestamps=True)[0][0])
    assert f"Frame1-4 (0.0s-0.8s): {img(2)}\nFrame5-8 (4.0s-4.8s): {img(3)}\nWhy?" in text
    one = make_slots([12.44], [1], 1)
    assert one[0].label(True) == "Frame1 (12.4s)" and one[0].label() == "Frame1"


def test_slot_text_goes_before_its_slot(tokenizer):
    slots = make_slots([0.0, 1.0, 2.0], [1, 1, 1], 1)
    ids, video_end = build_input_ids(tokenizer, INTERNVL, slots, "Q", slot_text=["hello there", None, "bye"])
    text = tokenizer.decode(ids[0])
    assert "user\nhello there\nFrame1: <img><IMG_CONTEXT></img>\nFrame2: <img><IMG_CONTEXT></img>\nbye\nFrame3: " in text
    with pytest.raises(InputError, match="3 slots"):
        build_input_ids(tokenizer, INTERNVL, slots, "Q", slot_text=["a"])


def test_empty_steps_get_no_slot_and_placeholders_in_the_question_are_refused(tokenizer):
    slots = make_slots([0.0, 1.0, 2.0, 3.0], [2, 0, 5, 1], 1)  # a set reducer that kept nothing of frame 2
    assert [(s.first, s.tokens) for s in slots] == [(1, 2), (3, 5), (4, 1)]
    for bad in ("what is <IMG_CONTEXT>?", "a <video> b"):
        with pytest.raises(InputError, match="must not contain"):
            build_input_ids(tokenizer, INTERNVL, slots, bad)
    with pytest.raises(InputError, match="question is needed"):
        build_input_ids(tokenizer, INTERNVL, slots, None)


@settings(max_examples=25, deadline=None)
@given(counts=st.lists(st.integers(0, 300), min_size=1, max_size=40), step=st.sampled_from([1, 4]))
def test_each_slot_holds_exactly_its_tokens(tokenizer, counts, step):
    slots = make_slots([float(i) for i in range(len(counts) * step)], counts, step)
    ids = build_input_ids(tokenizer, INTERNVL, slots, "What happens?")[0][0]
    start, end, context = (tokenizer.convert_tokens_to_ids(IMAGE_TOKENS[k])
                           for k in ("start_image_token", "end_image_token", "context_image_token"))
    starts, ends = (ids == start).nonzero()[:, 0], (ids == end).nonzero()[:, 0]
    assert (ends - starts - 1).tolist() == [n for n in counts if n]
    assert int((ids == context).sum()) == sum(counts)
    assert all(bool((ids[s + 1:e] == context).all()) for s, e in zip(starts, ends))
