"""Reading a checkpoint folder quietly, with one-line errors: its weights (`load_weights`) and its model without them
(`meta_model`). Shared by `VideoLLM` and `lora`; a checkpoint's identity is `liteframe.identity`'s."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers.utils import logging as hf_logging

from liteframe.errors import InputError, one_line


@contextmanager
def quiet_transformers():
    """No progress bar and no warning lines from transformers while a checkpoint loads: what goes wrong is
    liteframe's one-line error."""
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_weights(checkpoint_class, directory: Path, dtype: torch.dtype):
    """The checkpoint's model, or one line naming the folder and what is wrong: an unreadable (e.g. truncated)
    safetensors file, tensors whose shapes disagree with config.json, or missing tensors."""
    try:
        model, info = checkpoint_class.from_pretrained(
            directory, dtype=dtype, output_loading_info=True, ignore_mismatched_sizes=True)
    except (OSError, RuntimeError, ValueError, SafetensorError) as err:
        raise InputError(f"model folder {directory}: cannot load the weights ({one_line(err)})") from None
    if info["mismatched_keys"]:
        key, found, wanted = sorted(info["mismatched_keys"])[0]
        raise InputError(f"model folder {directory}: cannot load the weights ({len(info['mismatched_keys'])} tensors "
                         f"disagree with config.json, e.g. {key} has shape {tuple(found)}, config.json implies "
                         f"{tuple(wanted)})")
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise InputError(f"model folder {directory}: cannot load the weights (the checkpoint lacks {len(missing)} "
                         f"tensors, e.g. {missing[0]})")
    return model.eval()


def meta_model(checkpoint_class, directory: Path):
    """The checkpoint's model built from its config.json on the meta device: no weights read, no memory taken."""
    try:
        config = checkpoint_class.config_class.from_pretrained(directory)
    except (OSError, ValueError) as err:
        raise InputError(f"model folder {directory}: cannot read config.json ({one_line(err)})") from None
    with torch.device("meta"):
        return checkpoint_class._from_config(config)
