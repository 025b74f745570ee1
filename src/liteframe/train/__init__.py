"""Compressed Token Distillation (SPEC 5): the `liteframe distill` and `liteframe cache-targets` jobs, on the
training core every job shares: `job_setup` (devices, process group, teacher), `Checkpointer` over stateful
objects (`TrainState`, `RNGState`, `ConfigState`, `ModelState`, `OptimizerState`), `MetricLog` and the
`warmup_cosine` schedule, `sigterm_flag`."""
from liteframe.train.checkpoint import Checkpointer, ModelState, OptimizerState
from liteframe.train.config import DistillConfig
from liteframe.train.distill import Result, distill
from liteframe.train.job import Job, job_setup, sigterm_flag
from liteframe.train.metrics import MetricLog
from liteframe.train.schedule import scheduler, warmup_cosine
from liteframe.train.state import ConfigState, RNGState, TrainState
from liteframe.train.targets import cache_targets

__all__ = ["Checkpointer", "ConfigState", "DistillConfig", "Job", "MetricLog", "ModelState", "OptimizerState",
           "RNGState", "Result", "TrainState", "cache_targets", "distill", "job_setup", "scheduler", "sigterm_flag",
           "warmup_cosine"]
