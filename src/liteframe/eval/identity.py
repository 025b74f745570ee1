"""A run's identity: what decides its answers, recorded at the top of its output so that a rerun resumes only the
same run (issue 19): benchmark, the model folder's path and identity (settings files and weights fingerprint), the
adapter's and the student's folders (hashed whole), encoder, frames, compression (its block, as the encoder resolves
it: a student's own, else `--compression`'s or 16x), the frame sizing (`--pixels`), subtitle mode, reasoning
handling, liteframe's version and the way these are identified (`liteframe.identity`).
"""
from __future__ import annotations

from pathlib import Path

from liteframe.compression import get_compression
from liteframe.identity import FORMAT, checkpoint_identity, folder_digest
from liteframe.llm.encoders import EncoderSpec
from liteframe.models import LiteFrameEncoder


def run_identity(config) -> dict:
    """The identity of an `EvalConfig`'s run (paths resolved, so a rerun from another folder is the same run)."""
    from liteframe import __version__

    student = EncoderSpec.parse(config.encoder).student
    # the block the encoder compresses with, so that `--compression 16` and the default are one run
    compression = LiteFrameEncoder.from_pretrained(student).config.compression if student else \
        get_compression(config.compression)
    return {
        "benchmark": config.benchmark,
        "model": str(Path(config.model).resolve()),
        "model files": checkpoint_identity(config.model),
        "adapter": str(Path(config.adapter).resolve()) if config.adapter else None,
        "adapter files": folder_digest(config.adapter) if config.adapter else None,
        "encoder": f"student:{student.resolve()}" if student else config.encoder,
        "student files": folder_digest(student) if student else None,
        "frames": config.frames,
        "compression": list(compression.block),
        "pixels": config.pixels,
        "subtitles": config.subtitles,
        "keep reasoning": config.keep_reasoning,
        "liteframe": __version__,
        "identity": FORMAT,
    }


def difference(theirs: dict, ours: dict) -> str:
    """What differs between two identities, in one line ("" when nothing does): a setting with both values, a
    folder's files (their identity) with the parts that changed."""
    parts = []
    for key in dict.fromkeys([*ours, *theirs]):
        old, new = theirs.get(key), ours.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            parts.append(f"{key} differ ({', '.join(k for k in new if old.get(k) != new.get(k))})")
        elif key.endswith(" files"):
            parts.append(f"{key} differ")
        else:
            parts.append(f"{key} {old!r} there, {new!r} here")
    return "; ".join(parts)
