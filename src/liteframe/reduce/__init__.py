"""Visual-token reducers for Video LLMs: WAP and the post-hoc baselines it is compared against, by name."""
from liteframe.reduce.base import REDUCERS, Merge, Reducer, get_reducer
from liteframe.reduce.wap import wap, wap_weights  # noqa: I001 (registration order: wap first)
from liteframe.reduce.pool import avg_pool, max_pool, subsample
from liteframe.reduce.tome import tome
from liteframe.reduce.prumerge import prumerge
from liteframe.reduce.fastvid import fastvid

__all__ = ["REDUCERS", "Merge", "Reducer", "avg_pool", "fastvid", "get_reducer", "max_pool", "prumerge", "subsample",
           "tome", "wap", "wap_weights"]
