"""InternVL3 `-hf` checkpoints built offline: a tiny random folder for tests, CPU benchmarks and smoke runs, and
InternVL3-8B's shapes with random weights for GPU benchmarks.

The tiny folder has the layout of a real `OpenGVLab/InternVL3-*-hf` checkpoint (config, safetensors weights, a fast
tokenizer with InternVL's special tokens and a Qwen-style chat template), so every code path that reads a real
checkpoint reads this one too. Weights are random; answers are noise, but token counts, shapes and latency are real.
There is no processor config: transformers' `InternVLProcessor` needs its video processor, which needs torchvision;
liteframe lays out the prompt itself with the tokenizer and its chat template.
"""
from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (AutoTokenizer, InternVLConfig, InternVLForConditionalGeneration, InternVLVisionConfig,
                          PreTrainedTokenizerFast, Qwen2Config)

from liteframe.llm.loading import quiet_transformers
from liteframe.models import tiny_internvl_config

# InternVL3's special tokens, named as InternVL's processor reads them from the tokenizer.
IMAGE_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}
CHAT_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Qwen2's ChatML layout with a default system message; content may be a string or a list of
# {"type": "text" | "image" | "video"} parts, as in the real `-hf` checkpoints.
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant that answers questions about videos.<|im_end|>\\n' }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif part['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# A few sentences to learn byte-level merges from; byte-level BPE still encodes any text.
_CORPUS = [
    "A person flips a pancake in a pan and catches it. The pancake lands back in the pan.",
    "A big rabbit walks out of his burrow in the forest, stretches and smiles at a butterfly.",
    "What happens in the video? Describe the main action. When does it happen? Frame, clip, seconds.",
    "The camera pans left, then zooms in on the kitchen table where a cook is preparing breakfast.",
    "Answer with one word: yes or no. How many people are there? What colour is the car?",
    "Frame 1 (0.0s) Frame 2 (0.5s) Clip 1 (0.0s-1.2s) Clip 2 (2.4s-3.6s) 0 1 2 3 4 5 6 7 8 9",
]


def build_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained offline on a built-in corpus, with InternVL's and ChatML's special tokens."""
    specials = CHAT_TOKENS + list(IMAGE_TOKENS.values())
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=IMAGE_TOKENS,
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        model_max_length=32768,
    )


def save_tiny_internvl(directory: str | Path, image_size: int = 112, seed: int = 0) -> Path:
    """Write a random tiny InternVL3 `-hf` checkpoint (config, safetensors, tokenizer, chat template) to `directory`."""
    directory = Path(directory)
    tokenizer = build_tokenizer()
    config = tiny_internvl_config(image_size, llm_width=64, vocab_size=len(tokenizer))
    config.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKENS["context_image_token"])
    config.image_seq_length = (image_size // 28) ** 2
    # Wider than the default 0.02 init so that greedy answers depend on the video rather than repeat one token.
    config.text_config.initializer_range = 0.2
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with quiet_transformers():  # no progress bar from a helper
        model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# InternVL3-8B: InternViT-300M-448px (SPEC 2, `InternVLVisionConfig`'s defaults) and Qwen2.5-7B.
LLM_8B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
              num_key_value_heads=4, vocab_size=151674, rope_theta=1e6, max_position_embeddings=32768)


def random_internvl_8b(folder: str | Path, device: torch.device, dtype: torch.dtype):
    """InternVL3-8B's shapes with random weights, built on `device` (random init of billions of weights is slow on a
    CPU), and the tiny tokenizer (its ids are valid in the real vocabulary), saved in `folder` and loaded back as a
    checkpoint's tokenizer is -> (model, tokenizer)."""
    tokenizer = build_tokenizer()
    config = InternVLConfig(
        vision_config=InternVLVisionConfig(attention_bias=True),
        text_config=Qwen2Config(**LLM_8B, tie_word_embeddings=False),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKENS["context_image_token"]),
        tie_word_embeddings=False,
    )
    with torch.device(device):
        model = InternVLForConditionalGeneration._from_config(config, dtype=dtype)
    tokenizer.save_pretrained(folder)
    return model.eval(), AutoTokenizer.from_pretrained(folder)
