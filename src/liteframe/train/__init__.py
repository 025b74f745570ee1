"""Training: Compressed Token Distillation (SPEC 5: `liteframe distill`, `liteframe cache-targets`) and Language Model
Adaptation (SPEC 6: `liteframe adapt`), on the training core every job shares: `job_setup` (devices, process group,
teacher), `Checkpointer` over stateful objects (`TrainState`, `RNGState`, `ConfigState`, `ModelState`,
`OptimizerState`), `MetricLog`, the `warmup_cosine` schedule, `sigterm_flag` and the `RunResult` a job returns."""
from liteframe.train.checkpoint import Checkpointer, ModelState, OptimizerState
from liteframe.train.config import DistillConfig
from liteframe.train.distill import distill
from liteframe.train.job import Job, job_setup, sigterm_flag
from liteframe.train.metrics import MetricLog
from liteframe.train.schedule import scheduler, warmup_cosine
from liteframe.train.state import ConfigState, RNGState, RunResult, TrainState
from liteframe.train.targets import cache_targets

__all__ = ["Checkpointer", "ConfigState", "DistillConfig", "Job", "MetricLog", "ModelState", "OptimizerState",
           "RNGState", "RunResult", "TrainState", "cache_targets", "distill", "job_setup", "scheduler", "sigterm_flag",
           "warmup_cosine"]
