"""LoRA on a Video LLM checkpoint's language model, with PEFT's own API (SPEC 6: rank 4, alpha 8, dropout 0.05).

Adapters wrap the LLM's attention and MLP projections only, chosen by the model family's `lora_targets` (a regular
expression over module names: a bare name list would also wrap the vision tower's projections). Everything else
stays frozen; the modules that carry visual tokens into the LLM (the family's `projector_modules`) can train too
(`train_projector`), and are then saved with the adapter. An adapter folder is what `PeftModel.save_pretrained`
writes (`adapter_config.json`, `adapter_model.safetensors`) and `base_model.json`, the base checkpoint's family,
folder and identity (`liteframe.identity`): an adapter is applied only to that checkpoint's weights, and only if
every module it wraps exists there (`check_adapter`, before the weights load). `merge` folds it into a plain folder
of the base's family that `transformers` loads without PEFT.
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
from safetensors import SafetensorError, safe_open

from liteframe.errors import InputError, model_type, one_line
from liteframe.identity import checkpoint_identity, weights_fingerprint
from liteframe.io import atomic_folder
from liteframe.llm.family import get_family
from liteframe.llm.loading import load_weights, meta_model, quiet_transformers

BASE_FILE = "base_model.json"  # the base checkpoint an adapter belongs to
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "README.md", BASE_FILE)
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


def add_lora(model, settings: LoraSettings = LoraSettings(), train_projector: bool = False) -> PeftModel:
    """Wrap `model` (a checkpoint of a registered family; in place) with fresh LoRA adapters on its LLM projections;
    only they (and the family's projector modules when `train_projector`) require grad. Build visual encoders from
    the returned model's modules, after this call: a trainable projector is replaced by PEFT's trainable copy."""
    family = get_family(model.config.model_type)
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=family.lora_targets,
                        modules_to_save=list(family.projector_modules) if train_projector else None)
    with _peft_quiet():
        return get_peft_model(model, config)


def save_adapter(model: PeftModel, folder: str | Path) -> Path:
    """Write the adapter folder atomically: the LoRA weights (and a trained projector), never the base model, and
    the base checkpoint's family, folder and identity."""
    base = model.get_base_model()
    source = Path(base.name_or_path) if base.name_or_path else None
    identity = {"model_type": base.config.model_type, "path": str(source or ""),
                "checkpoint": checkpoint_identity(source) if source and _has_weights(source) else None}

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        (tmp / BASE_FILE).write_text(json.dumps(identity, indent=2) + "\n")

    return atomic_folder(folder, write, ADAPTER_FILES)


def check_adapter(folder: str | Path, model_dir: str | Path) -> Path:
    """`folder` if it holds an adapter for the checkpoint in `model_dir`, else one line saying why not: no adapter
    config, another family or other base weights than the ones it was trained on, or a wrapped module the
    checkpoint lacks. Reads configs, the adapter's tensor names and a few bytes per base tensor: call it before
    loading the model."""
    folder, model_dir = Path(folder), Path(model_dir)
    _check_config(folder)
    ours = model_type(model_dir, "model folder")
    base = folder / BASE_FILE
    if base.is_file():
        try:
            theirs = json.loads(base.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"adapter folder {folder}: {BASE_FILE} is not valid JSON ({one_line(err)})") from None
        if theirs.get("model_type") != ours:
            raise InputError(f"adapter folder {folder}: trained on a {theirs.get('model_type')} checkpoint, not on "
                             f"{model_dir} ({ours})")
        # the weights only: a copy converted to another dtype (its config.json changes) is the same base;
        # "fingerprint": the weights' fingerprint, as adapters saved before checkpoint identities record it
        weights = (theirs.get("checkpoint") or {}).get("weights") or theirs.get("fingerprint")
        if weights and weights != weights_fingerprint(model_dir):
            raise InputError(f"adapter folder {folder}: trained on {theirs.get('path') or 'another checkpoint'}, "
                             f"whose weights differ from {model_dir}'s; use the base it was trained on")
    with quiet_transformers():
        skeleton = meta_model(get_family(ours, model_dir).checkpoint_class, model_dir)
    _check_modules(folder, skeleton, f"the model in {model_dir}")
    return folder


def load_adapter(model, folder: str | Path, trainable: bool = False) -> PeftModel:
    """`model` with the adapter in `folder` applied (in place); one-line errors for a folder that is not one or does
    not fit the model."""
    folder = Path(folder)
    _check_config(folder)
    _check_modules(folder, model, "the model")
    try:
        with _peft_quiet():
            return PeftModel.from_pretrained(model, folder, is_trainable=trainable)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        raise InputError(f"adapter folder {folder}: cannot apply it to the model ({one_line(err)})") from None


def apply_adapter(model, folder: str | Path):
    """`model` with the adapter in `folder` merged into its weights (no PEFT layers left: inference costs nothing
    extra); what `VideoLLM.from_pretrained(..., adapter=)` and `liteframe ask --adapter` use."""
    return load_adapter(model, folder).merge_and_unload()


def merge(model_dir: str | Path, adapter_dir: str | Path, out: str | Path) -> Path:
    """Fold an adapter into its base checkpoint: `out` becomes a folder of the base's family (merged weights in the
    base's dtype, the base's tokenizer and other files copied) that plain `transformers` loads."""
    model_dir, out = Path(model_dir), Path(out)
    if out.resolve() == model_dir.resolve():  # the merged weights would replace the base's: the adapter's base gone
        raise InputError(f"adapt merge: --out {out} is the base checkpoint's folder; write the merged model to a "
                         "folder of its own")
    check_adapter(adapter_dir, model_dir)  # before the (large) base loads
    family = get_family(model_type(model_dir, "model folder"), model_dir)
    extras = [p for p in model_dir.iterdir() if p.is_file() and p.name != "config.json"
              and not p.name.startswith("model") and p.name != "generation_config.json"]
    with quiet_transformers():
        base = load_weights(family.checkpoint_class, model_dir, torch.float32)
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


def _check_config(folder: Path) -> None:
    if not (folder / "adapter_config.json").is_file():
        raise InputError(f"adapter folder {folder}: no adapter_config.json (expected a `liteframe adapt` output)")


def _check_modules(folder: Path, model, what: str) -> None:
    """One line unless every module the adapter wraps (and every tensor it saves whole) exists in `model`."""
    try:
        with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:
            keys = list(f.keys())
    except (OSError, SafetensorError) as err:
        raise InputError(f"adapter folder {folder}: cannot apply it to {what} ({one_line(err)})") from None
    names = {name for name, _ in model.named_modules()} | {name for name, _ in model.named_parameters()}
    wanted = {key.removeprefix("base_model.model.").split(".lora_")[0] for key in keys}
    missing = sorted(wanted - names)
    if missing:
        raise InputError(f"adapter folder {folder}: cannot apply it to {what}, which lacks {len(missing)} of the "
                         f"{len(wanted)} modules it adapts, e.g. {missing[0]}")


def _has_weights(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _WEIGHTS)


def _saved_dtype(model_dir: Path) -> torch.dtype:
    config = json.loads((model_dir / "config.json").read_text())
    name = config.get("dtype") or config.get("torch_dtype") or "float32"
    return getattr(torch, name)
