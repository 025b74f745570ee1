"""A job's output folder: one writer at a time, never another run's folder resumed by mistake, no leftovers.

`claim` takes the output's lock (`liteframe.io.output_lock`) on rank 0 for the whole job and checks that it can be
written, before any model loads; every rank learns the outcome, so a refusal stops all of them alike (a training
job's folder, and `eval`'s output file).
`check_resume` compares the run identity recorded in `run.json` (the job, its settings with paths made absolute,
the identities of its input folders) with this run's before anything in the folder is touched: settings that do not
change what is trained (steps, cadence, workers, evaluation data) may change and are stated; anything else is
refused in one line naming the differences (unless that run kept nothing: no checkpoint, no result). `record` writes
`run.json` and `config.yaml` once the job has loaded and checked everything it needs, as it starts training.
"""
from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Collection, Iterator

from liteframe import __version__
from liteframe.errors import InputError, one_line
from liteframe.identity import FORMAT
from liteframe.io import atomic_write, output_lock, remove_leftovers
from liteframe.train.config import TrainConfig, save_config
from liteframe.train.dist import Context, all_sum

RUN_FILE = "run.json"
RUN_FILES = ("config.yaml", "metrics.jsonl", "checkpoints", "tensorboard", "student", "adapter")  # a run's traces
log = logging.getLogger("liteframe.train")


@contextlib.contextmanager
def claim(path: str | Path, what: str, ctx: Context, folder: bool = True) -> Iterator[Path]:
    """Hold the output `path` for this job while the block runs: rank 0 takes its lock, checks that it can write
    there (a `folder`, created here; else a file in an existing folder) and removes dead writes' leftovers; a
    refusal is an InputError on every rank."""
    path = Path(path)
    refusal = ""
    with contextlib.ExitStack() as stack:
        if ctx.main:
            try:
                stack.enter_context(output_lock(path, what))
                if folder:
                    path.mkdir(parents=True, exist_ok=True)
                    with tempfile.TemporaryFile(dir=path):
                        pass
                elif path.exists():  # a file kept from an earlier run is appended to
                    with open(path, "a"):
                        pass
            except InputError as err:
                refusal = str(err)
            except OSError as err:
                refusal = f"{what} {path}: cannot write there ({err.strerror or one_line(err)})"
        if all_sum([float(bool(refusal))], ctx)[0]:
            raise InputError(refusal or f"{what} {path}: refused on rank 0 (its message says why)")
        if ctx.main:
            places = [(path, None), (path / "checkpoints", None)] if folder else [(path.parent, {path.name})]
            for place, names in places:
                for left in remove_leftovers(place, names):
                    log.info("removed %s, left by an interrupted save", left)
        yield path


def identity(cfg: TrainConfig, inputs: dict[str, Any]) -> dict[str, Any]:
    """What makes a run this run: the job, its settings (paths absolute) and its `inputs` (the identities of its
    input folders, `liteframe.identity`'s, whose `FORMAT` is recorded with them)."""
    return {"job": cfg.KIND, "settings": cfg.identity_settings(), "inputs": inputs, "identity": FORMAT}


def check_resume(folder: str | Path, current: dict[str, Any], safe: Collection[str]) -> list[str]:
    """Refuse (InputError) unless `folder` is new or holds a run of `current`'s identity up to `safe` settings;
    -> the safe differences, as "key: run value -> now value"."""
    folder = Path(folder)
    record = folder / RUN_FILE
    fresh = f"start fresh with another output, or delete {folder}"
    if not record.is_file():
        traces = [name for name in RUN_FILES if (folder / name).exists()]
        if traces:
            raise InputError(f"{folder}: holds {', '.join(traces)} but no {RUN_FILE} (not a liteframe {current['job']} "
                             f"run this version can resume): {fresh}")
        return []
    try:
        previous = json.loads(record.read_text())
        job, settings, inputs = previous["job"], previous["settings"], previous["inputs"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{record}: not a readable run record ({one_line(err)}): {fresh}") from None
    if job != current["job"]:
        raise InputError(f"{folder}: holds a run of {job}, which {current['job']} cannot resume: {fresh}")
    other = previous.get("identity") != current["identity"]  # identified another way: nothing to compare
    changes = [] if other else differences(settings, current["settings"]) + differences(inputs, current["inputs"])
    unsafe = [text for key, text in changes if key not in safe]
    if (unsafe or other) and not kept(folder):
        log.warning("%s: the %s run recorded there kept nothing (no checkpoint, no result): starting over", folder,
                    job)
        return []
    if other:
        raise InputError(f"{record}: written by another liteframe version, whose run identity this one cannot "
                         f"compare: {fresh}")
    if unsafe:
        raise InputError(f"{folder}: holds an earlier {job} run with other settings ({'; '.join(unsafe)}); resume it "
                         f"with its settings, or {fresh}")
    return [text for _, text in changes]


def kept(folder: Path) -> bool:
    """Whether a run in `folder` kept anything: a checkpoint or a result."""
    return any((folder / "checkpoints").glob("step-*.safetensors")) or any(
        (folder / name).exists() for name in ("student", "adapter"))


def record(folder: str | Path, cfg: TrainConfig, current: dict[str, Any]) -> None:
    """Write the run's identity (`run.json`) and settings (`config.yaml`) into its folder."""
    folder = Path(folder)
    text = json.dumps({**current, "liteframe": __version__}, indent=1)
    atomic_write(folder / RUN_FILE, lambda tmp: tmp.write_text(text))
    save_config(cfg, folder / "config.yaml")


def differences(before: Any, now: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(top-level key, "key: before -> now") for every leaf of two nested mappings that differs."""
    if isinstance(before, dict) and isinstance(now, dict):
        return [d for k in sorted(set(before) | set(now), key=str)
                for d in differences(before.get(k), now.get(k), f"{prefix}{k}.")]
    if before == now:
        return []
    key = prefix[:-1]
    return [(key.split(".", 1)[0], f"{key}: {_short(before)} -> {_short(now)}")]


def _short(value: Any) -> str:
    text = repr(value)
    return text[:12] + "..." if len(text) > 40 else text
