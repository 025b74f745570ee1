"""LoRA on an InternVL3 checkpoint's language model, with PEFT's own API (SPEC 6: rank 4, alpha 8, dropout 0.05).

Adapters wrap the LLM's attention and MLP projections only. They are chosen by a regular expression over module
names: a bare name list (`["q_proj", "v_proj", ...]`) would also wrap the vision tower's `q_proj`/`k_proj`/`v_proj`.
Everything else stays frozen; the projector can train too (`train_projector`), and is then saved with the adapter.
An adapter folder is what `PeftModel.save_pretrained` writes (`adapter_config.json`, `adapter_model.safetensors`);
`merge` folds it into a plain `-hf` folder that `transformers` loads without PEFT.
"""
from __future__ import annotations

import json
import shutil
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import SafetensorError
from transformers import InternVLForConditionalGeneration

from liteframe.errors import InputError, model_type, one_line
from liteframe.io import atomic_folder
from liteframe.llm.loading import load_weights, quiet_transformers

# PEFT matches a string `target_modules` against the whole module name (re.fullmatch).
LLM_PROJECTIONS = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
PROJECTOR = "multi_modal_projector"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "README.md")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


@dataclass
class LoraSettings:
    r: int = 4
    alpha: float = 8.0
    dropout: float = 0.05

    def __post_init__(self):
        if self.r < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise InputError(f"lora r={self.r}, alpha={self.alpha}, dropout={self.dropout}: need r >= 1, "
                             "alpha > 0 and 0 <= dropout < 1")


def add_lora(model: InternVLForConditionalGeneration, settings: LoraSettings = LoraSettings(),
             train_projector: bool = False) -> PeftModel:
    """Wrap `model` (in place) with fresh LoRA adapters on its LLM projections; only they (and the projector when
    `train_projector`) require grad. Build visual encoders from the returned model's modules, after this call:
    a trainable projector is replaced by PEFT's trainable copy."""
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=LLM_PROJECTIONS, modules_to_save=[PROJECTOR] if train_projector else None)
    with _peft_quiet():
        return get_peft_model(model, config)


def save_adapter(model: PeftModel, folder: str | Path) -> Path:
    """Write the adapter folder atomically: the LoRA weights (and a trained projector), never the base model."""
    return atomic_folder(folder, lambda tmp: model.save_pretrained(tmp), ADAPTER_FILES)


def load_adapter(model: InternVLForConditionalGeneration, folder: str | Path, trainable: bool = False) -> PeftModel:
    """`model` with the adapter in `folder` applied (in place); one-line errors for a folder that is not one."""
    folder = check_adapter(folder)
    try:
        with _peft_quiet():
            return PeftModel.from_pretrained(model, folder, is_trainable=trainable)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        raise InputError(f"adapter folder {folder}: cannot apply it to the model ({one_line(err)})") from None


def apply_adapter(model: InternVLForConditionalGeneration, folder: str | Path) -> InternVLForConditionalGeneration:
    """`model` with the adapter in `folder` merged into its weights (no PEFT layers left: inference costs nothing
    extra); what `VideoLLM.from_pretrained(..., adapter=)` and `liteframe ask --adapter` use."""
    return load_adapter(model, folder).merge_and_unload()


def merge(model_dir: str | Path, adapter_dir: str | Path, out: str | Path) -> Path:
    """Fold an adapter into its base checkpoint: `out` becomes an InternVL3 `-hf` folder (merged weights in the
    base's dtype, the base's tokenizer and other files copied) that plain `transformers` loads."""
    model_dir, out = Path(model_dir), Path(out)
    check_adapter(adapter_dir)  # before the (large) base loads
    if model_type(model_dir, "model folder") != "internvl":
        raise InputError(f"model folder {model_dir}: not an InternVL3 -hf checkpoint")
    extras = [p for p in model_dir.iterdir() if p.is_file() and p.name != "config.json"
              and not p.name.startswith("model") and p.name != "generation_config.json"]
    with quiet_transformers():
        base = load_weights(InternVLForConditionalGeneration, model_dir, torch.float32)
    dtype = _saved_dtype(model_dir)
    merged = load_adapter(base, adapter_dir).merge_and_unload().to(dtype)  # merged in float32, stored as the base

    def write(tmp: Path) -> None:
        with quiet_transformers():
            merged.save_pretrained(tmp)
        for extra in extras:
            shutil.copy2(extra, tmp / extra.name)

    names = {*_WEIGHTS, "config.json", "generation_config.json", *(p.name for p in extras)}
    names |= {p.name for p in out.glob("model-*.safetensors")}  # shards of an earlier merge into `out`
    return atomic_folder(out, write, names)


@contextmanager
def _peft_quiet():
    """PEFT 0.21 reads `is_gradient_checkpointing`, which transformers 5 deprecates: a warning no user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        yield


def check_adapter(folder: str | Path) -> Path:
    """`folder` if it holds an adapter config, else a one-line error (cheap: call it before loading a model)."""
    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise InputError(f"adapter folder {folder}: no adapter_config.json (expected a `liteframe adapt` output)")
    return folder


def _saved_dtype(model_dir: Path) -> torch.dtype:
    config = json.loads((model_dir / "config.json").read_text())
    name = config.get("dtype") or config.get("torch_dtype") or "float32"
    return getattr(torch, name)
