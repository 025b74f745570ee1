"""`liteframe bench train`: distillation throughput with the teacher run every step against cached targets.

CPU (default): the whole `liteframe distill` job (decoding in DataLoader workers, teacher, student, optimiser,
checkpoints off) on tiny random models and generated videos, clips per second of both target sources in one run,
plus the one-off cost of building the cache. CUDA: the job's own training step (`DistillTrainer.train_step`) alone,
on synthetic clips already on the GPU, of the full-size LiteFrame-B cropped from a random InternViT-300M, 16 frames
at 448 px in bf16, with model FLOPs utilisation.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from liteframe.timing import median_ms
from liteframe.devices import resolve_device, resolve_dtype

# dense bf16 tensor-core peaks (TFLOP/s) by device name, for MFU
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def run(device: str = "cpu", steps: int = 8, batch_size: int = 4, workers: int = 2) -> list[dict]:
    """`liteframe bench train` -> table rows (the CLI prints them)."""
    if resolve_device(device).type == "cuda":
        return step_rows(steps=steps, batch_size=batch_size, device=device)
    return job_rows(steps, batch_size, workers)


def job_rows(steps: int = 8, batch_size: int = 4, workers: int = 2, frames: int = 8, size: int = 112) -> list[dict]:
    """The CPU job with tiny models, on the fly and cached, in one run -> table rows."""
    from liteframe.train.distill import DistillConfig, cache_targets, distill

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher, manifest = _tiny_setup(root, size, videos=2 * batch_size)
        base = dict(teacher=str(teacher), manifest=str(manifest), frames=frames, student={"name": "liteframe-tiny"},
                    batch_size=batch_size, steps=steps, workers=workers, warmup_steps=1, log_every=1,
                    save_every=10**9, device="cpu")
        rows = []
        online = root / "online"
        distill(DistillConfig(output=str(online), **base))
        rows.append({"targets": "teacher every step", **_job_speed(online)})
        tic = time.perf_counter()
        cache = cache_targets(DistillConfig(output=str(root / "unused"), target_cache=str(root / "cache"), **base))
        build = cache["clips"] / (time.perf_counter() - tic)
        cached = root / "cached"
        distill(DistillConfig(output=str(cached), target_cache=str(root / "cache"), **base))
        rows.append({"targets": "cached", **_job_speed(cached)})
        rows.append({"targets": "building the cache", "clips_per_s": build, "step_ms": "", "speedup": ""})
        rows[0]["speedup"], rows[1]["speedup"] = 1.0, rows[1]["clips_per_s"] / rows[0]["clips_per_s"]
        return rows


def _job_speed(out: Path) -> dict:
    """Median clips/s of the steps after the first (which pays for worker start-up), from the run's wall-clock
    times in `metrics.jsonl`."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [(b["samples"] - a["samples"], b["elapsed_s"] - a["elapsed_s"]) for a, b in zip(rows, rows[1:])]
    return {"clips_per_s": statistics.median(n / s for n, s in steps),
            "step_ms": 1e3 * statistics.median(s for _, s in steps)}


def _tiny_setup(root: Path, size: int, videos: int) -> tuple[Path, Path]:
    """A tiny random InternVL3 folder and a manifest of generated 2 s videos."""
    import av
    import numpy as np
    from transformers import InternVLForConditionalGeneration

    from liteframe.models import tiny_internvl_config

    torch.manual_seed(0)
    InternVLForConditionalGeneration(tiny_internvl_config(size)).save_pretrained(root / "teacher")
    lines = []
    for i in range(videos):
        rng = np.random.default_rng(i)
        base = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8).repeat(10, 0).repeat(10, 1)
        with av.open(str(root / f"v{i}.mp4"), "w") as out:
            stream = out.add_stream("mpeg4", rate=25)
            stream.width = stream.height = 160
            stream.pix_fmt = "yuv420p"
            for t in range(50):
                out.mux(stream.encode(av.VideoFrame.from_ndarray(np.roll(base, 3 * t, axis=1), format="rgb24")))
            out.mux(stream.encode())
        lines.append(json.dumps({"video": f"v{i}.mp4"}))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return root / "teacher", root / "train.jsonl"


def step_rows(steps: int = 10, batch_size: int = 4, frames: int = 16, size: int = 448, teacher_config=None,
              student_config=None, device: str = "cuda", peak_tflops: float | None = None) -> list[dict]:
    """The distillation job's training step (`DistillTrainer.train_step`: student forward + backward + AdamW under
    the job's precision), with the teacher's WAP targets computed in the step or given as the cache gives them ->
    rows with clips/s and MFU. Defaults: InternViT-300M and LiteFrame-B."""
    from transformers import InternVLVisionConfig

    from liteframe.compression import DEFAULT
    from liteframe.models import LiteFrameConfig, LiteFrameEncoder, Teacher
    from liteframe.models.flops import count_flops
    from liteframe.train.dist import Context
    from liteframe.train.distill import DistillConfig, DistillTrainer
    from liteframe.train.distill.data import ManifestEntry
    from liteframe.train.distill.targets import teacher_targets
    from liteframe.train.job import Job, uses_bf16

    dev = torch.device(device)
    teacher = Teacher.from_config(teacher_config or InternVLVisionConfig(attention_bias=True))
    teacher = teacher.to(dev, resolve_dtype("auto", dev))
    config = student_config or LiteFrameConfig(image=teacher.image_size, out_dim=teacher.hidden_size)
    student = {k: v for k, v in dataclasses.asdict(config).items() if k != "compression"}
    cfg = DistillConfig(student=student, frames=frames, batch_size=batch_size, workers=0, device=dev.type,
                        output="unused")  # the step writes nothing
    job = Job(Context(0, 1, dev), uses_bf16(cfg.precision, dev), DEFAULT, teacher, size)
    trainer = DistillTrainer(cfg, job, [ManifestEntry("synthetic")] * batch_size, [])
    pixels = torch.randn(batch_size, frames, 3, size, size, device=dev)
    with job.autocast():
        cached = teacher_targets(teacher, pixels, DEFAULT).to(torch.bfloat16)  # as the cache stores them
    shape = (batch_size, frames, 3, size, size)
    with torch.device("meta"):
        student_flops = 3 * count_flops(LiteFrameEncoder(config), shape).total  # forward + backward (2x)
        teacher_flops = count_flops(Teacher.from_config(teacher.vision.config), shape).total
    peak = peak_tflops or next((v for k, v in PEAK_TFLOPS.items()
                                if dev.type == "cuda" and k in torch.cuda.get_device_name(dev)), None)
    rows = []
    for online in (True, False):
        batch = {"pixels": pixels, "skipped": [], **({} if online else {"target": cached})}
        seconds = median_ms(lambda: trainer.train_step(itertools.repeat(batch)), repeats=steps, warmup=2,
                            device=dev) / 1e3
        flops = student_flops + (teacher_flops if online else 0)
        rows.append({"targets": "teacher every step" if online else "cached", "clips_per_s": batch_size / seconds,
                     "step_ms": 1e3 * seconds, "model_tflops_per_step": flops / 1e12,
                     "mfu": flops / seconds / (peak * 1e12) if peak else ""})
    rows[0]["speedup"], rows[1]["speedup"] = 1.0, rows[1]["clips_per_s"] / rows[0]["clips_per_s"]
    return rows
