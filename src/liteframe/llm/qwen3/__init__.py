"""Qwen3-VL (dense, MoE) and Qwen3.5 (dense, MoE), phase A of issue 22: the family's pieces as self-contained
functions, tested against transformers, before they are wired into `VideoLLM` (the phase-A design note, qwen3_design.md, says how).

`frames` (the video processor's budget, resize and timestamps), `vision` (the tower as backbone, with DeepStack
levels), `deepstack` (reducers deciding once for tokens and levels), `prompt` (timestamped runs), `positions`
(mRoPE), `llm` (inputs, prefill, generation from a forked prefix cache), `lora` (LMA targets), `tiny` and
`templates` (tiny checkpoints in the hub's layout).
"""
