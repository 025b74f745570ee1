"""A run's identity: what decides its answers, recorded at the top of its output so that a rerun resumes only the
same run (issue 19): benchmark, the model folder's path and files, the adapter's and the student's, encoder,
frames, compression, subtitle mode, reasoning handling and liteframe's version.

A folder's files are fingerprinted by content, cheaply: a file up to 4 MiB (configs, tokenizers, indexes) is hashed
whole; a larger one (weights) by its size and 17 blocks of 64 KiB spread evenly from its first byte (a safetensors
header) to its last, about 1 MiB read per file whatever its size. Sizes and safetensors headers alone would call
two fine-tunes of one architecture the same run (same shapes, same sizes); modification times change on a plain
copy and can survive a swap of weights (`cp -p`); hashing every byte would read a 16 GB checkpoint at each start.
A training step or a re-save changes every tensor, so sampled blocks see it; an edit confined to unsampled bytes
would not be seen.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from liteframe.llm.encoders import EncoderSpec

WHOLE = 4 << 20
BLOCK = 64 << 10
BLOCKS = 16


def file_digest(path: Path) -> str:
    """A short content hash of one file (whole when small, sampled when large; see the module)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= WHOLE:
            digest.update(f.read())
        else:
            for k in range(BLOCKS + 1):
                f.seek((size - BLOCK) * k // BLOCKS)
                digest.update(f.read(BLOCK))
    return digest.hexdigest()[:16]


def fingerprint(folder: str | Path) -> dict[str, str] | None:
    """`{file name: digest}` for the visible files at the top of `folder` (None when it is not a folder: the
    model load names that error)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    return {p.name: file_digest(p) for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def run_identity(config) -> dict:
    """The identity of an `EvalConfig`'s run (paths resolved, so a rerun from another folder is the same run)."""
    from liteframe import __version__

    student = EncoderSpec.parse(config.encoder).student
    return {
        "benchmark": config.benchmark,
        "model": str(Path(config.model).resolve()),
        "model files": fingerprint(config.model),
        "adapter": str(Path(config.adapter).resolve()) if config.adapter else None,
        "adapter files": fingerprint(config.adapter) if config.adapter else None,
        "encoder": f"student:{student.resolve()}" if student else config.encoder,
        "student files": fingerprint(student) if student else None,
        "frames": config.frames,
        "compression": config.compression,
        "subtitles": config.subtitles,
        "keep reasoning": config.keep_reasoning,
        "liteframe": __version__,
    }


def difference(theirs: dict, ours: dict) -> str:
    """What differs between two identities, in one line ("" when nothing does): a setting with both values, a
    folder's files with the names of the first that changed."""
    parts = []
    for key in dict.fromkeys([*ours, *theirs]):
        old, new = theirs.get(key), ours.get(key)
        if old == new:
            continue
        if isinstance(old, dict) or isinstance(new, dict):
            old, new = old or {}, new or {}
            changed = sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))
            parts.append(f"{key} differ ({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''})")
        else:
            parts.append(f"{key} {old!r} there, {new!r} here")
    return "; ".join(parts)
