"""Training checkpoints: one safetensors file per save (tensors) with the rest as JSON in its metadata.

A save goes through `liteframe.io.atomic_write`, so a crash at any moment leaves either the previous checkpoints or
the new complete one, never a broken file. Nothing is unpickled.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from liteframe.errors import InputError
from liteframe.io import atomic_write

_NAME = re.compile(r"^step-(\d+)\.safetensors$")


def checkpoint_path(folder: str | Path, step: int) -> Path:
    return Path(folder) / f"step-{step:08d}.safetensors"


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoints in `folder`, oldest first (temporary files of interrupted saves are not listed)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(folder: str | Path, step: int, tensors: dict[str, torch.Tensor], state: dict[str, Any],
                    keep_last: int) -> Path:
    """Write `tensors` and JSON `state` atomically as `folder/step-<step>.safetensors`; keep the newest `keep_last`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    final = atomic_write(checkpoint_path(folder, step),
                         lambda tmp: save_file(tensors, str(tmp), metadata={"liteframe": json.dumps(state)}))
    for old in list_checkpoints(folder)[:-keep_last]:
        old.unlink()
    for stale in folder.glob(".step-*.tmp-*"):  # left by saves that were killed part-way
        stale.unlink(missing_ok=True)
    return final


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """`path` -> (tensors, state); a clear InputError for a file that is not a liteframe checkpoint."""
    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
        return tensors, json.loads(meta["liteframe"])
    except (OSError, SafetensorError, KeyError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not a readable liteframe checkpoint ({err})") from err


def pack_optimizer(optim_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """A state dict keyed by parameter names (`torch.distributed.checkpoint.state_dict`) -> (tensors, JSON groups)."""
    tensors = {f"optim/{name}/{key}": value for name, per in optim_state["state"].items() for key, value in per.items()}
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in optim_state["param_groups"]]
    return tensors, groups


def unpack_optimizer(tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Inverse of `pack_optimizer`."""
    state: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            name, _, field = key[len("optim/"):].rpartition("/")
            state.setdefault(name, {})[field] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in groups]
    return {"state": state, "param_groups": groups}
