"""Training: the core every job shares, and the jobs on it: `liteframe.train.distill` (Compressed Token
Distillation, SPEC 5: `liteframe distill`, `liteframe cache-targets`) and `liteframe.train.adapt` (Language Model
Adaptation, SPEC 6: `liteframe adapt`).

The core: `Trainer` (the loop: resume, metrics, stop signals, cadence, skip accounting) and the `StepMetrics` a
job's step returns, `TrainConfig` (settings every job has, grouped in YAML), `job_setup` (devices, process group,
precision), the output folder's claim and identity (`output`), `Checkpointer` over stateful objects (`TrainState`,
`RNGState`, `ModelState`, `OptimizerState`), `MetricLog` and the `warmup_cosine` schedule."""
from liteframe.train.checkpoint import Checkpointer, ModelState, OptimizerState
from liteframe.train.config import TrainConfig
from liteframe.train.job import Job, job_setup
from liteframe.train.metrics import MetricLog
from liteframe.train.schedule import scheduler, warmup_cosine
from liteframe.train.state import RNGState, RunResult, TrainState
from liteframe.train.trainer import StepMetrics, Trainer

__all__ = ["Checkpointer", "Job", "MetricLog", "ModelState", "OptimizerState", "RNGState", "RunResult", "StepMetrics",
           "TrainConfig", "TrainState", "Trainer", "job_setup", "scheduler", "warmup_cosine"]
