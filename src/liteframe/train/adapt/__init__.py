"""Language Model Adaptation (SPEC 6): `adapt` trains LoRA adapters on a Video LLM's LLM from chat data
(`config`, `manifest`, `data`, `model`, `job`)."""
from liteframe.train.adapt.config import AdaptConfig
from liteframe.train.adapt.job import AdaptTrainer, adapt

__all__ = ["AdaptConfig", "AdaptTrainer", "adapt"]
