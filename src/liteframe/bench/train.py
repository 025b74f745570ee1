"""`liteframe bench train`: distillation throughput with the teacher run every step against cached targets.

CPU (default): the whole job (decoding in DataLoader workers, teacher, student, optimiser, checkpoints off) on tiny
random models and generated videos, clips per second of both target sources in one run, plus the one-off cost of
building the cache. CUDA: the training step alone (synthetic clips already on the GPU) of the full-size LiteFrame-B
cropped from a random InternViT-300M, 16 frames at 448 px in bf16, with model FLOPs utilisation.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from liteframe.timing import median_ms
from liteframe.devices import resolve_device

# dense bf16 tensor-core peaks (TFLOP/s) by device name, for MFU
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def run(device: str = "cpu", steps: int = 8, batch_size: int = 4, workers: int = 2) -> list[dict]:
    """`liteframe bench train` -> table rows (the CLI prints them)."""
    if resolve_device(device).type == "cuda":
        return step_rows(steps=steps, batch_size=batch_size, device=device)
    return job_rows(steps, batch_size, workers)


def job_rows(steps: int = 8, batch_size: int = 4, workers: int = 2, frames: int = 8, size: int = 112) -> list[dict]:
    """The CPU job with tiny models, on the fly and cached, in one run -> table rows."""
    from liteframe.train import DistillConfig, cache_targets, distill

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
    """Median clips/s over the steps after the first (which pays for worker start-up)."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][1:]
    speed = statistics.median(r["clips_per_s"] for r in rows)
    return {"clips_per_s": speed, "step_ms": 1e3 * statistics.median(1 / r["clips_per_s"] for r in rows)}


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
    """The training step alone (student forward + backward + AdamW, bf16 autocast), with the teacher's WAP targets
    computed in the step or given -> rows with clips/s and MFU. Defaults: InternViT-300M and LiteFrame-B."""
    from transformers import InternVLVisionConfig

    from liteframe.compression import DEFAULT
    from liteframe.models import LiteFrameConfig, LiteFrameEncoder, Teacher
    from liteframe.models.flops import count_flops
    from liteframe.train.loss import clip_outliers, ctd_loss
    from liteframe.train.targets import teacher_targets

    dev = torch.device(device)
    bf16 = dev.type == "cuda"
    teacher = Teacher.from_config(teacher_config or InternVLVisionConfig(attention_bias=True)).to(
        dev, torch.bfloat16 if bf16 else torch.float32)
    config = student_config or LiteFrameConfig(image=teacher.image_size, out_dim=teacher.hidden_size)
    student = LiteFrameEncoder.from_teacher(teacher, config).to(dev)
    optimizer = torch.optim.AdamW(student.optimizer_groups(0.05), lr=1e-4, fused=bf16)
    pixels = torch.randn(batch_size, frames, 3, size, size, device=dev)
    cached = teacher_targets(teacher, pixels, DEFAULT).float()
    shape = (batch_size, frames, 3, size, size)
    with torch.device("meta"):
        student_flops = 3 * count_flops(LiteFrameEncoder(config), shape).total  # forward + backward (2x)
        teacher_flops = count_flops(Teacher.from_config(teacher.vision.config), shape).total
    peak = peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if bf16 and k in torch.cuda.get_device_name(dev)),
                               None)

    def step(online: bool) -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            target = teacher_targets(teacher, pixels, DEFAULT) if online else cached
            pred = student(pixels).tokens()
        loss, _ = ctd_loss(pred, clip_outliers(target.flatten(1, 3), 3.0))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    rows = []
    for online in (True, False):
        seconds = median_ms(lambda: step(online), repeats=steps, warmup=2, device=dev) / 1e3
        flops = student_flops + (teacher_flops if online else 0)
        rows.append({"targets": "teacher every step" if online else "cached", "clips_per_s": batch_size / seconds,
                     "step_ms": 1e3 * seconds, "model_tflops_per_step": flops / 1e12,
                     "mfu": flops / seconds / (peak * 1e12) if peak else ""})
    rows[0]["speedup"], rows[1]["speedup"] = 1.0, rows[1]["clips_per_s"] / rows[0]["clips_per_s"]
    return rows
