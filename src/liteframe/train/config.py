"""Job settings: one flat dataclass per job, written to YAML grouped by concern and read back grouped or flat.

`TrainConfig` holds what every training job has (the optimiser, the output and its cadence, the system) and checks
it; `DistillConfig` and `AdaptConfig` add theirs and say which group each setting belongs to (`GROUPS`). A YAML file
may group its keys (`optim: {lr: 1e-4}`) or not (`lr: 1e-4`); overrides are `key=value` (`lr=1e-4`,
`optim.lr=1e-4`, `student.depth=6` for one key of a mapping). A value of the wrong type is one `InputError` naming
where it came from: the file, or the override.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from liteframe.errors import InputError, one_line
from liteframe.io import atomic_write

# The groups of the settings every job has; a job adds its own settings to these and may add groups.
COMMON_GROUPS: dict[str, tuple[str, ...]] = {
    "data": ("workers", "max_skipped"),
    "optim": ("steps", "batch_size", "grad_accum", "lr", "min_lr", "warmup_steps", "weight_decay", "grad_clip"),
    "system": ("device", "precision", "seed"),
    "checkpoint": ("output", "log_every", "eval_every", "save_every", "keep_last"),
}


@dataclass
class TrainConfig:
    """What every training job has. Paths in a YAML file are relative to that file; in overrides to the working
    directory."""

    KIND: ClassVar[str] = "train"  # the command, in messages
    GROUPS: ClassVar[dict[str, tuple[str, ...]]] = COMMON_GROUPS  # group -> its settings, in the order written
    PATHS: ClassVar[tuple[str, ...]] = ("output",)  # settings that are paths
    # settings a resumed run may change: they do not change what is trained
    RESUMABLE: ClassVar[tuple[str, ...]] = ("output", "steps", "workers", "max_skipped", "log_every", "eval_every",
                                            "save_every", "keep_last")

    output: str = "runs/train"
    # optimisation
    steps: int = 1000  # optimiser steps
    batch_size: int = 8  # samples per optimiser step, over all ranks and accumulation micro-steps
    grad_accum: int = 1
    lr: float = 1e-4
    min_lr: float = 0.0  # the cosine schedule's floor
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    # data
    workers: int = 2  # DataLoader worker processes per rank
    max_skipped: float = 0.5  # share of samples that may be skipped (unreadable, unusable) before the run stops
    # system
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda"
    precision: str = "auto"  # "auto" (bf16 autocast on cuda, fp32 on cpu), "bf16", "fp32"
    seed: int = 0
    # bookkeeping
    log_every: int = 10
    eval_every: int = 100
    save_every: int = 100
    keep_last: int = 3  # checkpoints kept; older ones are deleted after a newer one is complete

    def __post_init__(self):
        for f in dataclasses.fields(self):  # lists, as code and JSON give them, become the tuples the fields are
            if isinstance(getattr(self, f.name), list):
                setattr(self, f.name, tuple(getattr(self, f.name)))
        problems = [message for ok, message in self.checks() if not ok]
        if problems:
            raise InputError(f"{self.KIND} config: {'; '.join(problems)}")

    def checks(self) -> list[tuple[bool, str]]:
        """(holds, what is wrong otherwise) for every rule; a job adds its own rules to these."""
        return [
            (min(self.steps, self.batch_size, self.grad_accum) > 0, "steps, batch_size and grad_accum must be > 0"),
            (self.lr > 0 and 0 <= self.min_lr <= self.lr,
             f"lr={self.lr}, min_lr={self.min_lr}: need lr > 0 and 0 <= min_lr <= lr"),
            (self.warmup_steps >= 0 and self.weight_decay >= 0 and self.grad_clip > 0,
             "warmup_steps and weight_decay must be >= 0 and grad_clip > 0"),
            (self.workers >= 0 and 0 <= self.max_skipped <= 1, "workers must be >= 0 and max_skipped in [0, 1]"),
            (self.device in ("auto", "cpu", "cuda"), f"device={self.device!r} must be auto, cpu or cuda"),
            (self.precision in ("auto", "bf16", "fp32"), f"precision={self.precision!r} must be auto, bf16 or fp32"),
            (min(self.log_every, self.eval_every, self.save_every, self.keep_last) > 0,
             "log_every, eval_every, save_every and keep_last must be > 0"),
        ]

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] = ()) -> Any:
        """YAML file (optional, grouped or flat) + `key=value` overrides (values parsed as YAML) -> config."""
        values, sources = read_yaml(cls, path)
        values, sources = apply_overrides(cls, values, sources, overrides)
        return build(cls, values, sources)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> Any:
        """A grouped or flat mapping (what `to_dict` gives) -> config."""
        values = flatten_groups(cls, values, source)
        return build(cls, values, {key: source for key in values})

    @classmethod
    def resolve_paths(cls, values: dict[str, Any], folder: Path) -> None:
        """Make the path settings in `values`, read from a file in `folder`, absolute."""
        for key in cls.PATHS:
            if values.get(key):
                values[key] = str((folder / values[key]).resolve())

    def flat(self) -> dict[str, Any]:
        """Every setting by name, tuples as lists (YAML and JSON write those)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def identity_settings(self) -> dict[str, Any]:
        """`flat()` with the paths absolute: what a resumed run is compared on (`liteframe.train.output`)."""
        flat = self.flat()
        for key in self.PATHS:
            if flat[key]:
                flat[key] = str(Path(flat[key]).resolve())
        return flat

    def to_dict(self) -> dict[str, Any]:
        """The settings grouped by concern, as the YAML file is written."""
        flat = self.flat()
        return {group: {key: flat[key] for key in keys} for group, keys in self.GROUPS.items()}


def job_groups(own: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """A job's groups: in each, the settings it names (common ones too, to place them), then the other common
    ones of that group."""
    groups = {group: keys + tuple(k for k in COMMON_GROUPS.get(group, ()) if k not in keys)
              for group, keys in own.items()}
    return {**groups, **{g: keys for g, keys in COMMON_GROUPS.items() if g not in groups}}


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """`cfg.to_dict()` as YAML at `path`, written atomically; `load` reads it back to an equal config."""
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def read_yaml(cls: type[TrainConfig], path: str | Path | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings in a config file, flattened, with paths resolved against its folder, and where each came from
    ({} without a file)."""
    if not path:
        return {}, {}
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise InputError(f"{path}: cannot read the {cls.KIND} config: {one_line(err)}") from None
    if not isinstance(values, dict):
        raise InputError(f"{path}: a {cls.KIND} config is a mapping of keys to values")
    values = flatten_groups(cls, values, str(path))
    cls.resolve_paths(values, path.parent)
    return values, {key: str(path) for key in values}


def flatten_groups(cls: type[TrainConfig], values: dict[str, Any], source: str) -> dict[str, Any]:
    """`{group: {key: v}}` and `{key: v}` alike -> `{key: v}`; a key in the wrong group or given twice is refused."""
    flat: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        if name in flat:
            raise InputError(f"{source}: {name} is given twice")
        flat[name] = value

    for key, value in values.items():
        if not (key in cls.GROUPS and isinstance(value, dict)):
            put(key, value)
            continue
        for name, v in value.items():
            if name not in cls.GROUPS[key]:
                home = next((g for g, keys in cls.GROUPS.items() if name in keys), None)
                raise InputError(f"{source}: {key}.{name}: " + (f"{name} belongs to {home}" if home else
                                 f"not a {cls.KIND} setting; {key} holds {', '.join(cls.GROUPS[key])}"))
            put(name, v)
    return flat


def apply_overrides(cls: type[TrainConfig], values: dict[str, Any], sources: dict[str, str],
                    overrides: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """`values` with `key=value` overrides applied (values parsed as YAML; `group.key=v` names a setting by its
    group, `key.sub=v` sets one key of a mapping); `sources` then names the override for each key it set."""
    names = {f.name for f in dataclasses.fields(cls)}
    values, sources = dict(values), dict(sources)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise InputError(f"override {item!r}: expected key=value")
        parts = key.strip().split(".")
        if len(parts) > 1 and parts[0] in cls.GROUPS and parts[1] in cls.GROUPS[parts[0]]:
            parts = parts[1:]  # `optim.lr`: the group only says where the setting lives
        if len(parts) > 2 or parts[0] not in names:
            raise InputError(f"override {item!r}: unknown {cls.KIND} setting {key.strip()!r}; known: "
                             f"{', '.join(sorted(names))}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise InputError(f"override {item!r}: not a YAML value ({one_line(err)})") from None
        name = parts[0]
        if len(parts) == 2:
            current = values[name] if name in values else default(cls, name)
            if not isinstance(current, dict):
                raise InputError(f"override {item!r}: {name} is not a mapping")
            value = {**current, parts[1]: value}
        values[name], sources[name] = value, f"override {item!r}"
    return values, sources


def default(cls: type, name: str) -> Any:
    """The default value of setting `name` of `cls`."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return field.default if field.default_factory is dataclasses.MISSING else field.default_factory()


def build(cls: type[TrainConfig], values: dict[str, Any], sources: dict[str, str]) -> Any:
    """`cls(**values)` with every value coerced to its setting's type; unknown keys are an InputError naming where
    they came from."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        where = sorted({sources.get(k, "config") for k in unknown})
        raise InputError(f"{', '.join(where)}: unknown {cls.KIND} setting(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(names))}")
    hints = typing.get_type_hints(cls)
    return cls(**{key: coerce(key, value, hints[key], sources.get(key, "config")) for key, value in values.items()})


def coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    """YAML reads `1e-4` as a string, `3` where a float is meant and `key=` as None: convert to the setting's type,
    or say why not, naming `source`."""
    kind = typing.get_origin(hint) or hint
    try:
        if kind in (typing.Union, types.UnionType):  # `int | None`
            options = [a for a in typing.get_args(hint) if a is not type(None)]
            return None if value is None else coerce(key, value, options[0], source)
        if value is None:
            if kind is str:
                return ""  # `eval_manifest=`: none
            raise ValueError("needs a value")
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if kind in (int, float, str):
            if kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError("expected an integer")
            if kind in (int, float) and isinstance(value, bool):
                raise ValueError("expected a number")
            return kind(value)
        if kind is tuple:  # tuple[float, float] or tuple[int, ...]
            if isinstance(value, (str, dict)) or not hasattr(value, "__iter__"):
                raise ValueError("expected a list")
            return tuple(coerce(key, v, typing.get_args(hint)[0], source) for v in value)
        if kind is dict:
            if not isinstance(value, dict):
                raise ValueError("expected a mapping")
            return dict(value)
    except (TypeError, ValueError) as err:
        raise InputError(f"{source}: {key}={value!r}: {err}") from err
    return value
