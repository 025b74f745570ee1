"""Compressed Token Distillation (SPEC 5): the `liteframe distill` and `liteframe cache-targets` jobs."""
from liteframe.train.config import DistillConfig
from liteframe.train.distill import Result, distill
from liteframe.train.targets import cache_targets

__all__ = ["DistillConfig", "Result", "cache_targets", "distill"]
