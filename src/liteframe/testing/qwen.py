"""Qwen2.5-VL checkpoints built offline: a tiny random folder in native `transformers` format, and Qwen2.5-VL-7B's
shapes with random weights for GPU benchmarks.

The folder loads with `Qwen2_5_VLForConditionalGeneration.from_pretrained` and `AutoTokenizer.from_pretrained`
like a real `Qwen/Qwen2.5-VL-*-Instruct` folder: its tokenizer has Qwen's vision tokens and the checkpoint's chat
template. With `processor_files` it also has the hub's processor files: the released `preprocessor_config.json` and
the template in `chat_template.json` only; without, no processor config (the video processor's defaults apply) and
the template beside the tokenizer (`chat_template.jinja`). liteframe reads those files as `AutoProcessor` does and
preprocesses and lays out the prompt itself (`liteframe.llm.qwen`).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (AutoTokenizer, PreTrainedTokenizerFast, Qwen2_5_VLConfig,
                          Qwen2_5_VLForConditionalGeneration)

from liteframe.models import Teacher

CHAT_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]

# The chat template of Qwen/Qwen2.5-VL-*-Instruct (chat_template.json), verbatim.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)

# preprocessor_config.json of Qwen/Qwen2.5-VL-*-Instruct as the hub serves it (its later revision, which added
# `size` beside min_pixels and max_pixels); the processor reads it for videos too (there is no video config).
PREPROCESSOR_CONFIG = {
    "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
    "size": {"shortest_edge": 3136, "longest_edge": 12845056}, "resample": 3,
    "rescale_factor": 0.00392156862745098, "do_resize": True, "do_rescale": True, "do_normalize": True,
    "do_convert_rgb": True,
}

_CORPUS = [
    "A person flips a pancake in a pan and catches it. The pancake lands back in the pan.",
    "What happens in the video? Describe the main action. When does it happen? You are a helpful assistant.",
    "Answer with one word: yes or no. How many people are there? What colour is the car? 0 1 2 3 4 5 6 7 8 9",
]


def build_qwen_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a built-in corpus, with ChatML's and Qwen2.5-VL's vision tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=CHAT_TOKENS + VISION_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHAT_TEMPLATE, padding_side="left", model_max_length=32768)


def qwen_config(size: str = "tiny", vocab_size: int = 400) -> Qwen2_5_VLConfig:
    """`tiny` (a 2-block ViT and a 2-layer LLM of width 64) or `7b` (Qwen2.5-VL-7B-Instruct's shapes, as in its
    config.json). Token ids are the real checkpoint's for 7b and set from the tokenizer by `save_tiny_qwen`."""
    if size == "7b":
        vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                      fullatt_block_indexes=[7, 15, 23, 31], window_size=112, tokens_per_second=2)
        text = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                    num_key_value_heads=4, vocab_size=152064, max_position_embeddings=128000,
                    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]})
        return Qwen2_5_VLConfig(vision_config=vision, text_config=text)
    if size != "tiny":
        raise ValueError(f"Qwen2.5-VL size {size!r}: choose tiny or 7b")
    # The last ViT block is a full-attention one, as in every real Qwen2.5-VL; window_size 56 gives 2x2 windows
    # of merged tokens so that windowed attention and its reordering are exercised at 112 px.
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                  fullatt_block_indexes=[1], window_size=56, tokens_per_second=2)
    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=vocab_size, max_position_embeddings=32768,
                bos_token_id=None, eos_token_id=None,  # set from the tokenizer by `save_tiny_qwen`
                initializer_range=0.2,  # wide enough that greedy answers depend on the video
                rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]})
    return Qwen2_5_VLConfig(vision_config=vision, text_config=text)


def save_tiny_qwen(directory: str | Path, seed: int = 0, processor_files: bool = False) -> Path:
    """Write a random tiny Qwen2.5-VL checkpoint (config, safetensors, tokenizer, chat template) to `directory`;
    `processor_files`: with the hub's `preprocessor_config.json` and `chat_template.json` (see the module)."""
    directory = Path(directory)
    tokenizer = build_qwen_tokenizer()
    config = qwen_config("tiny", vocab_size=len(tokenizer))
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    for name, value in ids.items():
        setattr(config, name, value)
    for cfg in (config, config.text_config):  # Qwen's: bos <|endoftext|>, eos <|im_end|>
        cfg.bos_token_id, cfg.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    if processor_files:
        (directory / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))
        (directory / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}, indent=2))
        (directory / "chat_template.jinja").unlink()
    return directory


def random_qwen_7b(folder: str | Path, device: torch.device, dtype: torch.dtype):
    """Qwen2.5-VL-7B's shapes with random weights, built on `device`, and the tiny tokenizer (its ids are valid in
    the real vocabulary), saved in `folder` and loaded back as a checkpoint's tokenizer is -> (model, tokenizer)."""
    tokenizer = build_qwen_tokenizer()
    config = qwen_config("7b")
    config.video_token_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    tokenizer.save_pretrained(folder)
    return model.eval(), AutoTokenizer.from_pretrained(folder)


def perturbed_tower(vision_config, seed: int = 0, **overrides) -> Teacher:
    """A `Teacher` of a tiny Qwen vision config (any family's) with `overrides` set on it, its norms and biases
    perturbed at random (`seed`) so that every slice a crop takes matters."""
    vision = copy.deepcopy(vision_config)
    for key, value in overrides.items():
        setattr(vision, key, value)
    torch.manual_seed(seed)
    teacher = Teacher.from_config(vision)
    with torch.no_grad():
        for p in teacher.vision.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    return teacher
