"""Benchmark evaluation: Video-MME, MLVU and LongVideoBench read in their published layouts, prompted, parsed and
scored as lmms-eval does; a resumable, shardable runner; the Pareto report; an lmms-eval model plugin."""
from liteframe.eval.datasets import BENCHMARKS, Question, load_benchmark
from liteframe.eval.metrics import score, summarize
from liteframe.eval.parsing import extract_letter, parse_longvideobench
from liteframe.eval.prompts import Prompt, build_prompt
from liteframe.eval.runner import EvalConfig, evaluate

__all__ = ["BENCHMARKS", "EvalConfig", "Prompt", "Question", "build_prompt", "evaluate", "extract_letter",
           "load_benchmark", "parse_longvideobench", "score", "summarize"]
