"""Training checkpoints, torchtitan's shape: `Checkpointer(folder, keep_last).save(step, objects)` and
`.resume(objects) -> step` over any objects with `state_dict()` / `load_state_dict()`.

One safetensors file per save: every tensor of every object's state dict, keyed `<object>/<path>`, and the rest of
the state as JSON in the file's metadata (tensors replaced by their keys). A save goes through
`liteframe.io.atomic_write`, so a crash or a full disk at any moment leaves either the previous checkpoints or the
new complete one, never a broken file; a write that fails, or a checkpoint that does not fit the run resuming it,
is one InputError naming the file. Nothing is unpickled.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)

from liteframe.errors import InputError, one_line
from liteframe.io import atomic_write
from liteframe.train.dist import Context

_NAME = re.compile(r"^step-(\d+)\.safetensors$")
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)

log = logging.getLogger(__name__)


class Checkpointer:
    """`save(step, {"model": ..., "optim": ...})` writes `folder/step-<step>.safetensors` (rank 0; every rank must
    call it, as state dicts of sharded models are collectives) and keeps the newest `keep_last`;
    `resume(objects)` loads the newest into the objects and returns its step (0 when there is none)."""

    def __init__(self, folder: str | Path, keep_last: int, ctx: Context | None = None):
        self.folder, self.keep_last = Path(folder), keep_last
        self.main = ctx is None or ctx.main

    def save(self, step: int, objects: Mapping[str, Any]) -> Path | None:
        tensors: dict[str, torch.Tensor] = {}
        seen: dict[Any, Any] = {"storages": set()}
        state = {name: _flatten(obj.state_dict(), name, tensors, seen) for name, obj in objects.items()}
        if not self.main:
            return None
        return save_checkpoint(self.folder, step, tensors, state, self.keep_last)

    def resume(self, objects: Mapping[str, Any]) -> int:
        found = list_checkpoints(self.folder)
        if not found:
            return 0
        tensors, state = load_checkpoint(found[-1])
        missing = sorted(set(objects) - set(state))
        if missing:
            raise InputError(f"{found[-1]}: checkpoint holds no {', '.join(missing)}")
        for name, obj in objects.items():
            try:
                obj.load_state_dict(_unflatten(state[name], tensors))
            except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:
                raise InputError(f"{found[-1]}: its {name} state does not fit this run ({one_line(err)})") from None
        log.info("resumed from %s at step %d", found[-1], _step(found[-1]))
        return int(_step(found[-1]))


class ModelState:
    """A model (plain, DDP or FSDP2) as a stateful object: its full, unsharded state dict on CPU; with
    `trainable_only`, only the parameters that require grad (LoRA adapters beside a frozen 8B model)."""

    def __init__(self, model: nn.Module, trainable_only: bool = False):
        self.model, self.trainable_only = model, trainable_only

    def state_dict(self) -> dict[str, torch.Tensor]:
        return get_model_state_dict(self.model, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True, ignore_frozen_params=self.trainable_only))

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        set_model_state_dict(self.model, state, options=StateDictOptions(full_state_dict=True,
                                                                         strict=not self.trainable_only))


class OptimizerState:
    """An optimiser as a stateful object, its state keyed by parameter names (so it survives re-wrapping)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.model, self.optimizer = model, optimizer

    def state_dict(self) -> dict[str, Any]:
        return get_optimizer_state_dict(self.model, self.optimizer, options=_FULL)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # not strict: parameters that never had a gradient (the temporal mixers of blocks that only ever see one
        # frame) have no AdamW state yet, in the checkpoint as in the uninterrupted run
        set_optimizer_state_dict(self.model, self.optimizer, state,
                                 options=StateDictOptions(full_state_dict=True, strict=False))


def _flatten(value: Any, key: str, tensors: dict[str, torch.Tensor], seen: dict[Any, Any]) -> Any:
    """A state dict -> JSON, moving each tensor into `tensors[key/...]`; tuples and non-string keys are marked so
    that `_unflatten` gives back the same types (AdamW's betas, a plain optimiser's integer keys). A tensor met
    twice (tied weights, two views of one optimiser) is stored once; safetensors refuses shared memory."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        storage = t.untyped_storage().data_ptr()
        same = (storage, t.storage_offset(), t.shape, t.dtype)
        if same in seen:
            return {"tensor": seen[same]}
        if storage in seen["storages"] and t.numel():
            t = t.clone()  # another view of stored memory
        seen[same] = key
        seen["storages"].add(storage)
        tensors[key] = t
        return {"tensor": key}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {"dict": {k: _flatten(v, f"{key}/{k}", tensors, seen) for k, v in value.items()}}
        return {"items": [[k, _flatten(v, f"{key}/{k}", tensors, seen)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_flatten(v, f"{key}/{i}", tensors, seen) for i, v in enumerate(value)]
        return {"tuple" if isinstance(value, tuple) else "list": items}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(f"{key}: cannot checkpoint a {type(value).__name__}")


def _unflatten(node: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Any:
    (kind, value), = node.items()
    if kind == "tensor":
        return tensors[value]
    if kind == "dict":
        return {k: _unflatten(v, tensors) for k, v in value.items()}
    if kind == "items":
        return {k: _unflatten(v, tensors) for k, v in value}
    if kind in ("list", "tuple"):
        items = [_unflatten(v, tensors) for v in value]
        return tuple(items) if kind == "tuple" else items
    return value


def checkpoint_path(folder: str | Path, step: int) -> Path:
    return Path(folder) / f"step-{step:08d}.safetensors"


def _step(path: Path) -> int:
    return int(_NAME.match(path.name).group(1))


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
    path = checkpoint_path(folder, step)
    try:
        final = atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"liteframe": json.dumps(state)}))
    except (OSError, SafetensorError) as err:
        previous = list_checkpoints(folder)
        raise write_error(path, err, f"the previous checkpoint {previous[-1].name if previous else '(none)'} is "
                          "intact") from None
    for old in list_checkpoints(folder)[:-keep_last]:
        old.unlink()
    for stale in folder.glob(".step-*.tmp-*"):  # left by saves that were killed part-way
        stale.unlink(missing_ok=True)
    return final


def write_error(path: Path, err: BaseException, kept: str) -> InputError:
    """A failed write of `path` (a full disk, a read-only folder) as one line: what failed, why, what is `kept`."""
    reason = getattr(err, "strerror", None) or one_line(err)
    return InputError(f"{path}: cannot write it ({reason}); {kept}: make room, then run the same command to resume")


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
