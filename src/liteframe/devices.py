"""Device and dtype names given by the user (CLI flags, configs) -> torch objects, or one `InputError` that says
what is wrong. The one place such names are parsed."""
from __future__ import annotations

import torch

from liteframe.errors import InputError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """`cpu`, `cuda`, `cuda:1`, ... -> that device, checked to exist here; `auto` or None: CUDA when available,
    else CPU."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"device {str(name)!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cpu":
        return device
    backend = getattr(torch, device.type, None)  # torch.cuda, torch.mps, torch.xpu, ...
    if backend is None or not hasattr(backend, "is_available") or not backend.is_available():
        raise InputError(f"device {str(name)!r}: no {device.type.upper()} device on this machine")
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if device.index is not None and device.index >= count:
        raise InputError(f"device {str(name)!r}: this machine has {count} {device.type.upper()} device(s)")
    return device


def resolve_dtype(name: str | None = "auto", device: torch.device | str = "cpu") -> torch.dtype:
    """`float32`, `bfloat16` or `float16` -> the torch dtype; `auto` or None: bfloat16 on CUDA, else float32."""
    if name is None or name == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if name not in DTYPES:
        raise InputError(f"dtype {name!r}: choose from auto, {', '.join(DTYPES)}")
    return DTYPES[name]
