"""Compressed Token Distillation (SPEC 5): `distill` trains a LiteFrame student against WAP(teacher) (`config`,
`model`, `data`, `job`), `cache_targets` runs the teacher once and stores its targets (`targets`)."""
from liteframe.train.distill.config import DistillConfig
from liteframe.train.distill.job import DistillTrainer, distill, summary_rows
from liteframe.train.distill.targets import cache_targets

__all__ = ["DistillConfig", "DistillTrainer", "cache_targets", "distill", "summary_rows"]
