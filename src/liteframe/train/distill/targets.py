"""CTD targets: WAP(teacher(x)) with the run's compression block (SPEC 5; (4, 2, 2) at 16x), computed on the fly or
read from a target cache.

A cache is a folder of safetensors shards (bf16 targets and the frame indices they were computed on, keyed
`"<view>/<video index>"`) and a `cache.json` written last, so a folder without it is an unfinished cache. The
json holds a fingerprint of everything that decides a target: the teacher's weights and config, the manifest,
the clip sampling (frames, fps range, seed, views), the preprocessing and the WAP block. A run whose fingerprint
differs is refused, and every clip read is checked against the frame indices stored with its target. The json
also records each shard's size and each entry's sha256 (target and indices): a shard is checked when it is opened
and an entry when it is read, so a truncated or altered shard is refused by name instead of training on garbage.

How cached targets line up with clips: the clip of (view v, video i) is fixed, a pure function of (seed, v, i)
(`liteframe.train.distill.data`). Training epoch e reads view e on the fly and view e % cache_views from a cache, so
with cache_views >= epochs a cached run sees exactly the clips of an on-the-fly run; with fewer views the same clips
come back every cache_views epochs (less variety, for a teacher pass over cache_views x the manifest, once).
"""
from __future__ import annotations

import hashlib
import json
import logging
import signal
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from liteframe.compression import Compression, get_compression
from liteframe.errors import InputError, one_line
from liteframe.grid import TokenGrid
from liteframe.identity import config_digest, tensors_digest
from liteframe.io import atomic_write
from liteframe.llm.data import DataConfig, Square
from liteframe.models import Teacher
from liteframe.reduce.wap import wap_stacked
from liteframe.train.dist import all_sum, barrier
from liteframe.train.distill.config import DistillConfig
from liteframe.train.distill.data import ClipDataset, ManifestEntry, check_clip, clip_frames, first_decodable, \
    frames_config, manifest_digest, read_manifest
from liteframe.train.job import Job, job_setup
from liteframe.train.loader import batches, next_batch, worker_init
from liteframe.train.output import claim
from liteframe.train.signals import stop_signals
from liteframe.video import VideoDecodeError

log = logging.getLogger("liteframe.train")
INDEX = "cache.json"
FORMAT = 3  # 2: shard sizes and entry checksums in cache.json; 3: the teacher by `liteframe.identity`
_SHARD_BYTES = 512 * 2**20
REBUILD = "rebuild it with `liteframe cache-targets` into an empty folder"


@torch.no_grad()
def teacher_targets(teacher: Teacher, pixels: torch.Tensor, compression: Compression,
                    dense: bool = False) -> torch.Tensor:
    """`(B, T, 3, S, S) -> (B, T/t, S/hp, S/wp, C)` WAP(teacher) patch tokens with block (t, h, w), or with `dense`
    the teacher's own `(B, T, S/p, S/p, C)` (the RTD target). Training, the target cache and the held-out
    references all take their targets from here, under the same autocast."""
    grid = teacher(pixels)
    return grid.patches if dense else wap_targets(grid, compression)


def wap_targets(grid: TokenGrid, compression: Compression) -> torch.Tensor:
    """Teacher grid `(B, T, H, W, C)` -> CTD targets `(B, T/t, H/h, W/w, C)`: WAP with the compression's block; a
    grid with L levels (Qwen3-VL's DeepStack) gives `(B, (1+L)*T/t, H/h, W/w, C)`, each level reduced with the
    tokens' WAP weights after them (`reduce.wap.wap_stacked`), as the training-free `wap` encoder feeds the LLM.
    Unchecked: the finite check would sync the host once per batch on a GPU; a non-finite target shows in the loss."""
    return wap_stacked(grid, compression.block)


def teacher_identity(teacher: Teacher, folder: str) -> dict[str, str]:
    """The teacher's settings files and the exact tensors of its vision tower + projector as loaded (a moved folder
    still matches; any change to a weight does not)."""
    return {"config": config_digest(folder), "tensors": tensors_digest(teacher.state_dict())}


def cache_fingerprint(job: Job, cfg: DistillConfig, entries: list[ManifestEntry], data: DataConfig) -> dict[str, Any]:
    """The fingerprint a target cache for this job, reading frames by `data`, must carry."""
    return fingerprint(teacher_identity(job.teacher, cfg.teacher), manifest_digest(entries), cfg.frames, cfg.fps,
                       cfg.seed, cfg.cache_views, job.size, job.compression, data)


def fingerprint(teacher_id: dict[str, str], manifest_sha256: str, frames: int, fps: tuple[float, float], seed: int,
                views: int, image_size: int, compression: Compression, data: DataConfig | None = None
                ) -> dict[str, Any]:
    """Everything that decides which target a (view, video) key holds; `data`: how the frames are sized and
    normalised (None: InternVL's square of `image_size`)."""
    data = data or DataConfig(Square(image_size))
    return {
        "format": FORMAT,
        "teacher": teacher_id,
        "manifest_sha256": manifest_sha256,
        "sampling": {"sampler": "TrainSampler clips", "frames": frames, "fps": list(fps), "seed": seed,
                     "views": views},
        "preprocess": {"size": image_size, "resize": "exact" if data.decode_size else "torchvision_bicubic",
                       "mean": list(data.mean), "std": list(data.std)},
        "target": {"reducer": "wap", "block": list(compression.block), "dtype": "bfloat16"},
    }


def _differences(built: Any, wanted: Any, prefix: str = "") -> list[str]:
    if isinstance(built, dict) and isinstance(wanted, dict):
        return [d for k in sorted(set(built) | set(wanted))
                for d in _differences(built.get(k), wanted.get(k), f"{prefix}{k}.")]
    return [] if built == wanted else [f"{prefix[:-1]}: cache {built!r}, this run {wanted!r}"]


class TargetCache:
    """Read side: `cache.get(view, index) -> (bf16 target (T/4, H', W', C), int64 frame indices (T,))`, each shard
    checked against its recorded size when opened and each entry against its checksum when read."""

    def __init__(self, folder: str | Path, expected: dict[str, Any]):
        self.folder = Path(folder)
        index = self.folder / INDEX
        if not index.is_file():
            raise InputError(f"{self.folder}: not a complete target cache (no {INDEX}); run `liteframe cache-targets`")
        try:
            meta = json.loads(index.read_text())
        except json.JSONDecodeError as err:
            raise InputError(f"{index}: not valid JSON ({err})") from None
        diff = _differences(meta.get("fingerprint"), expected)
        if diff:
            raise InputError(f"{self.folder}: target cache was built with other settings ({'; '.join(diff)}); "
                             f"rebuild it with `liteframe cache-targets` or match its settings")
        self.entries: dict[str, str] = meta["entries"]
        self.digests: dict[str, str] = meta["digests"]
        self.sizes: dict[str, int] = meta["shards"]
        self.failed: dict[str, str] = meta["failed"]
        self.views = expected["sampling"]["views"]
        self._open: dict[str, Any] = {}  # shard name -> safe_open handle, per process (DataLoader workers)

    def get(self, view: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = f"{view % self.views}/{index}"
        if key not in self.entries:
            raise KeyError(self.failed.get(key, f"no cached target for view {view % self.views}, video {index}"))
        shard = self.entries[key]
        if shard not in self._open:
            self._open[shard] = self._check_open(shard)
        f, path = self._open[shard], self.folder / shard
        try:
            target, indices = f.get_tensor(f"{key}/target"), f.get_tensor(f"{key}/indices")
        except SafetensorError as err:
            raise InputError(f"{path}: cannot read the target of {key} ({one_line(err)}); {REBUILD}") from None
        if entry_digest(target, indices) != self.digests[key]:
            raise InputError(f"{path}: the target of {key} does not match its checksum (the shard changed after it "
                             f"was written); {REBUILD}")
        return target, indices

    def _check_open(self, shard: str):
        path = self.folder / shard
        try:
            size = path.stat().st_size
            if size != self.sizes[shard]:
                raise InputError(f"{path}: {size} bytes, where {INDEX} records {self.sizes[shard]} (the shard is "
                                 f"truncated or changed); {REBUILD}")
            return safe_open(str(path), "pt")
        except (OSError, SafetensorError) as err:
            raise InputError(f"{path}: cannot read the shard ({one_line(err)}); {REBUILD}") from None

    def __getstate__(self):  # file handles do not cross into worker processes; each opens its own
        return {**self.__dict__, "_open": {}}


class CachedTargets(Dataset):
    """A `ClipDataset` whose items also carry their cached target: `item["target"]` bf16 `(T/t, H', W', C)`.

    A video without a cached target (it failed when the cache was built) is skipped like one that fails to decode;
    a target computed on other frames than the clip this run samples is refused."""

    def __init__(self, data: ClipDataset, cache: TargetCache):
        self.data, self.cache = data, cache

    def set_view(self, view: int) -> None:
        self.data.set_view(view)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return first_decodable(self.item, i, len(self.data))

    def item(self, i: int) -> dict[str, Any]:
        view, video = self.data.view, self.data.entries[i].video
        try:
            target, cached = self.cache.get(view, i)
        except KeyError as err:
            raise VideoDecodeError(f"{video}: no cached target ({err.args[0]})") from None
        item = self.data.item(i)
        if not torch.equal(cached, item["indices"]):
            raise InputError(f"{self.cache.folder}: cached target of {video} (view {view}) was computed on frames "
                             f"{cached.tolist()}, this run samples {item['indices'].tolist()}; rebuild the cache "
                             f"with `liteframe cache-targets`")
        return {**item, "target": target}


class CacheWriter:
    """Write side, one per rank: `add(key, target, indices)`, `fail(key, reason)`; `close()` flushes and writes
    this rank's part list `part-<rank>.json` (merged into `cache.json` by `finish`)."""

    def __init__(self, folder: str | Path, rank: int):
        self.folder, self.rank = Path(folder), rank
        self.folder.mkdir(parents=True, exist_ok=True)
        self.entries: dict[str, str] = {}
        self.digests: dict[str, str] = {}
        self.sizes: dict[str, int] = {}
        self.failed: dict[str, str] = {}
        self._pending: dict[str, torch.Tensor] = {}
        self._bytes, self._shards = 0, 0

    def add(self, key: str, target: torch.Tensor, indices: torch.Tensor) -> None:
        target, indices = target.to(torch.bfloat16).cpu().contiguous(), indices.to(torch.int64).cpu().contiguous()
        self._pending[f"{key}/target"], self._pending[f"{key}/indices"] = target, indices
        self.digests[key] = entry_digest(target, indices)
        self._bytes += target.numel() * 2
        self.entries[key] = ""  # shard name filled in when the shard is written
        if self._bytes >= _SHARD_BYTES:
            self._flush()

    def fail(self, key: str, reason: str) -> None:
        self.failed[key] = reason

    def _flush(self) -> None:
        if not self._pending:
            return
        name = f"targets-{self.rank:03d}-{self._shards:05d}.safetensors"
        path = atomic_write(self.folder / name, lambda tmp: save_file(self._pending, str(tmp)))
        self.sizes[name] = path.stat().st_size
        for key in self.entries:
            self.entries[key] = self.entries[key] or name
        self._pending, self._bytes, self._shards = {}, 0, self._shards + 1

    def close(self) -> None:
        self._flush()
        text = json.dumps({"entries": self.entries, "digests": self.digests, "shards": self.sizes,
                           "failed": self.failed})
        atomic_write(self.folder / f"part-{self.rank:03d}.json", lambda tmp: tmp.write_text(text))


def finish(folder: str | Path, fingerprint: dict[str, Any], world: int) -> dict[str, Any]:
    """Merge the ranks' part lists into `cache.json` (written last: its presence marks a complete cache)."""
    folder = Path(folder)
    meta: dict[str, Any] = {"fingerprint": fingerprint, "entries": {}, "digests": {}, "shards": {}, "failed": {}}
    parts = [folder / f"part-{rank:03d}.json" for rank in range(world)]
    for part in parts:
        for key, values in json.loads(part.read_text()).items():
            meta[key].update(values)
    for part in parts:
        part.unlink()
    atomic_write(folder / INDEX, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))
    return meta


def entry_digest(target: torch.Tensor, indices: torch.Tensor) -> str:
    """sha256 of a cached target's bytes and its frame indices' bytes."""
    digest = hashlib.sha256(target.contiguous().view(torch.uint8).numpy())
    digest.update(indices.contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()


def cache_targets(cfg: DistillConfig) -> dict[str, Any]:
    """Run the teacher once over `cfg.manifest` (`cfg.cache_views` clips per video) and write the target cache to
    `cfg.target_cache`; under torchrun each rank takes a share. -> `{"folder", "clips", "failed", "signal"}`
    (`signal`: the stop signal that ended it before the cache was complete, else None)."""
    if not (cfg.teacher and cfg.manifest and cfg.target_cache):
        raise InputError("cache-targets: the config needs `teacher`, `manifest` and `target_cache` (the folder "
                         "to write)")
    entries = read_manifest(cfg.manifest)
    check_clip(cfg.teacher, cfg.frames, get_compression(cfg.compression))
    with job_setup(cfg) as job, claim(cfg.target_cache, "target cache", job.ctx) as folder:
        job.load_teacher(cfg.teacher, cfg.image_size)
        ctx = job.ctx
        data = frames_config(job.teacher, cfg.teacher, job.size)
        expected = cache_fingerprint(job, cfg, entries, data)
        if (folder / INDEX).is_file():
            cache = TargetCache(folder, expected)  # refuses a cache built with other settings
            return {"folder": str(folder), "clips": len(cache.entries), "failed": len(cache.failed), "signal": None}
        keys = [(view, i) for view in range(cfg.cache_views) for i in range(len(entries))][ctx.rank::ctx.world]
        data = _Keyed(ClipDataset(entries, cfg.frames, job.size, cfg.fps, cfg.seed, data,
                                  clip_frames(data.frames_per_step, job.compression)), keys)
        loader = DataLoader(data, batch_size=max(1, cfg.batch_size // ctx.world), num_workers=cfg.workers,
                            collate_fn=list, worker_init_fn=worker_init)
        writer = CacheWriter(folder, ctx.rank)
        with batches(loader) as items, stop_signals() as stop, \
                tqdm(total=len(loader), desc="cache-targets", disable=not ctx.main, dynamic_ncols=True) as bar:
            for _ in range(len(loader)):
                if all_sum([float(stop.signal is not None)], ctx)[0]:
                    return {"folder": str(folder), "clips": 0, "failed": 0, "signal": stop.signal or signal.SIGTERM}
                _write_batch(next_batch(items), writer, job)
                bar.update(1)
        writer.close()
        barrier(ctx)
        if ctx.main:
            finish(folder, expected, ctx.world)
        barrier(ctx)
        meta = json.loads((folder / INDEX).read_text())
        return {"folder": str(folder), "clips": len(meta["entries"]), "failed": len(meta["failed"]), "signal": None}


def _write_batch(items: list[dict[str, Any]], writer: CacheWriter, job: Job) -> None:
    """The teacher's targets of a batch of `_Keyed` items, into the cache (failures recorded as such)."""
    good = [it for it in items if "pixels" in it]
    for it in items:
        if "failed" in it:
            log.warning("video skipped: %s", it["failed"])
            writer.fail(it["key"], it["failed"])
    if good:
        pixels = torch.stack([it["pixels"] for it in good]).to(job.device)
        with job.autocast():
            targets = teacher_targets(job.teacher, pixels, job.compression)
        for it, target in zip(good, targets):
            writer.add(it["key"], target, it["indices"])


class _Keyed(Dataset):
    """(view, video) keys -> `{"key", "pixels", "indices"}`, or `{"key", "failed": reason}` for a video that does
    not decode (recorded in the cache, never substituted: a key must hold its own video's target)."""

    def __init__(self, data, keys: list[tuple[int, int]]):
        self.data, self.keys = data, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, k: int) -> dict[str, Any]:
        view, i = self.keys[k]
        key = f"{view}/{i}"
        try:
            pixels, sample = self.data.load(i, view)
        except VideoDecodeError as err:
            return {"key": key, "failed": str(err)}
        return {"key": key, "pixels": pixels, "indices": torch.from_numpy(sample.indices)}
