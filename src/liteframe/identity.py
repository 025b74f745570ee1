"""Whether two runs read the same things: the one way each kind of input is identified.

- A checkpoint folder (a Video LLM, a teacher): `checkpoint_identity` = the sha256 of its settings files (config,
  generation config, tokenizer, processor configs, chat template: what decides prompts and pixels besides the
  weights) and `weights_fingerprint`, a digest of each tensor's first values. The fingerprint reads a few bytes per
  tensor whatever its size (under 0.1 s for an 8B checkpoint's ~700 tensors), tells apart two fine-tunes of one
  architecture (same shapes, same sizes), and survives a copy of the folder, another sharding of its keys and a
  float32/bfloat16 conversion.
  Eval's run identity, train's `run.json` and an adapter's `base_model.json` record it.
- A small folder (an adapter, a LiteFrame student): `folder_digest`, the sha256 of every file in it.
- Tensors in memory that must match exactly (the teacher behind a target cache): `tensors_digest`.

`FORMAT` numbers this way of identifying: a record written another way cannot be compared, and is refused.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Collection, Mapping

import torch
from safetensors import SafetensorError, safe_open

from liteframe.errors import InputError, one_line

FORMAT = 2  # 2: checkpoints by settings files and weights fingerprint, small folders whole
SETTINGS = (".json", ".jinja", ".txt", ".model")  # a checkpoint's settings files, by suffix
INDEX = "model.safetensors.index.json"  # the weights' layout: part of the weights, not of the settings


def checkpoint_identity(folder: str | Path) -> dict[str, str]:
    """`{"config": config_digest, "weights": weights_fingerprint}` of a checkpoint folder."""
    return {"config": config_digest(folder), "weights": weights_fingerprint(folder)}


def config_digest(folder: str | Path) -> str:
    """sha256 of a checkpoint folder's settings files (`SETTINGS`, config.json among them)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: not a checkpoint folder (no config.json)")
    return folder_digest(folder, [p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                                  and p.name.endswith(SETTINGS) and p.name != INDEX])


def folder_digest(folder: str | Path, files: Collection[str] | None = None) -> str:
    """sha256 over the names and bytes of `files` in `folder` (default: every visible file at its top)."""
    folder = Path(folder)
    if files is None:
        if not folder.is_dir():
            raise InputError(f"{folder}: not a folder")
        files = [p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    digest = hashlib.sha256()
    for name in sorted(files):
        path = folder / name
        digest.update(name.encode())
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        except OSError as err:
            raise InputError(f"{path}: cannot read it ({err.strerror or one_line(err)})") from None
    return digest.hexdigest()


def weights_fingerprint(folder: str | Path) -> str:
    """sha256 over the sorted digests of every tensor's first 64 values in bfloat16 (see the module)."""
    folder = Path(folder)
    index = folder / INDEX
    try:
        files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else \
            ["model.safetensors"]
        digests = []
        for name in files:
            with safe_open(str(folder / name), "pt") as f:
                for key in f.keys():
                    part = f.get_slice(key)
                    head = part[:1] if part.get_shape() else f.get_tensor(key)
                    values = head.flatten()[:64].float().to(torch.bfloat16).view(torch.int16)
                    digests.append(hashlib.sha256(values.numpy().tobytes()).hexdigest())
    except (OSError, KeyError, ValueError, SafetensorError) as err:
        raise InputError(f"model folder {folder}: cannot read the weights ({one_line(err)})") from None
    return hashlib.sha256("".join(sorted(digests)).encode()).hexdigest()[:16]


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the names and exact bytes of `tensors` (a state dict), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
