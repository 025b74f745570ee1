"""Tiny random Qwen3-VL, Qwen3-VL-MoE, Qwen3.5 and Qwen3.5-MoE checkpoints in the hub's layout, built offline.

Each folder loads with its `transformers` class (`Qwen3VLForConditionalGeneration`, ...) and `AutoTokenizer`
like a real `Qwen/Qwen3-VL-*-Instruct` or `Qwen/Qwen3.5-*` folder: config.json, safetensors weights, a byte-level
BPE tokenizer with Qwen's special tokens (and `<think>`/`</think>` as plain added tokens, as the real ones have),
the checkpoint's chat template (`liteframe.testing.qwen3_templates`) and the real `video_preprocessor_config.json`.
The models are small versions of the real shapes: a 3-block ViT (patch 16, 2x2 merger, learned position grid of
8 x 8 interpolated to the frame, DeepStack mergers after blocks 0 and 1 for Qwen3-VL) and a 2-layer LLM (4 layers
for Qwen3.5: three gated-delta-net layers, then a full-attention one, the real 3:1 pattern), with the real mRoPE
layout (interleaved sections, Qwen3.5's partial rotary factor 0.25).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    PreTrainedTokenizerFast, Qwen3_5Config, Qwen3_5ForConditionalGeneration, Qwen3_5MoeConfig,
    Qwen3_5MoeForConditionalGeneration, Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLMoeConfig,
    Qwen3VLMoeForConditionalGeneration,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX as QWEN2_REGEX
from transformers.models.qwen3_5.tokenization_qwen3_5 import PRETOKENIZE_REGEX as QWEN3_5_REGEX

from liteframe.llm.loading import quiet_transformers
from liteframe.testing import qwen3_templates as templates

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
THINK_TOKENS = ["<think>", "</think>"]  # added tokens that are not special: decoding keeps them

# video_preprocessor_config.json of Qwen/Qwen3-VL-*-Instruct and Qwen/Qwen3.5-* (both use Qwen3VLVideoProcessor
# with these values; fps 2, min/max frames 4/768 and bicubic resampling are the class defaults).
VIDEO_PREPROCESSOR = {
    "size": {"longest_edge": 25165824, "shortest_edge": 4096},
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor",
    "video_processor_type": "Qwen3VLVideoProcessor",
}

_CORPUS = [
    "A person flips a pancake in a pan and catches it. The pancake lands back in the pan.",
    "What happens in the video? Describe the main action. When does it happen? Think step by step.",
    "Answer with the option's letter. A. yes B. no C. maybe D. twice <0.5 seconds> <12.3 seconds>",
    "0 1 2 3 4 5 6 7 8 9 seconds. The answer is A. Okay, the user asks about the video.",
]

# The checkpoint's class, its chat template and its tokenizer's pre-tokenisation pattern, per model_type.
MODELS = {
    "qwen3_vl": (Qwen3VLForConditionalGeneration, templates.QWEN3_VL, QWEN2_REGEX),
    "qwen3_vl_moe": (Qwen3VLMoeForConditionalGeneration, templates.QWEN3_VL, QWEN2_REGEX),
    "qwen3_5": (Qwen3_5ForConditionalGeneration, templates.QWEN3_5, QWEN3_5_REGEX),
    "qwen3_5_moe": (Qwen3_5MoeForConditionalGeneration, templates.QWEN3_5, QWEN3_5_REGEX),
}


def build_tokenizer(model_type: str, vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a built-in corpus with the family's pre-tokenisation (Qwen2's regex for
    Qwen3-VL, Qwen3.5's own), NFC normalisation, Qwen's special tokens and chat template; eos `<|im_end|>`."""
    _, template, regex = MODELS[model_type]
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=template, padding_side="left", model_max_length=262144)


def tiny_config(model_type: str, vocab_size: int):
    """The tiny config of `model_type` (see the module docstring); token ids are set from the tokenizer by
    `save_tiny_qwen3`."""
    vision = dict(depth=3, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                  num_position_embeddings=64)
    text = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                vocab_size=vocab_size, max_position_embeddings=32768, initializer_range=0.2,
                rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [4, 2, 2],
                                 "mrope_interleaved": True})
    moe = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)
    if model_type in ("qwen3_vl", "qwen3_vl_moe"):
        vision["deepstack_visual_indexes"] = [0, 1]  # features injected into the first 2 LLM layers
        text["num_hidden_layers"] = 2
        if model_type == "qwen3_vl":
            return Qwen3VLConfig(vision_config=vision, text_config=text)
        return Qwen3VLMoeConfig(vision_config=vision, text_config={**text, **moe, "decoder_sparse_step": 1})
    # Qwen3.5: 3 linear-attention layers then a full-attention one; rotary on a quarter of the head (64 -> 16 dims).
    text.update(num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1, head_dim=64,
                linear_conv_kernel_dim=4, linear_key_head_dim=8, linear_value_head_dim=8, linear_num_key_heads=2,
                linear_num_value_heads=4,
                rope_parameters={"rope_type": "default", "rope_theta": 1e7, "mrope_section": [3, 3, 2],
                                 "mrope_interleaved": True, "partial_rotary_factor": 0.25})
    if model_type == "qwen3_5":
        return Qwen3_5Config(vision_config=vision, text_config=text)
    text.pop("intermediate_size")
    return Qwen3_5MoeConfig(vision_config=vision,
                            text_config={**text, **moe, "shared_expert_intermediate_size": 32})


def save_tiny_qwen3(directory: str | Path, model_type: str = "qwen3_vl", seed: int = 0) -> Path:
    """Write a random tiny checkpoint of `model_type` (`qwen3_vl`, `qwen3_vl_moe`, `qwen3_5`, `qwen3_5_moe`) to
    `directory`: config, safetensors, tokenizer with chat template, video_preprocessor_config.json."""
    if model_type not in MODELS:
        raise ValueError(f"model_type {model_type!r}: choose one of {', '.join(MODELS)}")
    directory = Path(directory)
    tokenizer = build_tokenizer(model_type)
    config = tiny_config(model_type, vocab_size=len(tokenizer))
    for name, token in [("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
                        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]:
        setattr(config, name, tokenizer.convert_tokens_to_ids(token))
    for cfg in (config, config.text_config):
        cfg.bos_token_id, cfg.eos_token_id = None, tokenizer.eos_token_id
        cfg.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = MODELS[model_type][0](config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with quiet_transformers():
        model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "video_preprocessor_config.json").write_text(json.dumps(VIDEO_PREPROCESSOR, indent=2) + "\n")
    return directory
