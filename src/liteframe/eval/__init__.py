"""Benchmark evaluation: Video-MME, MLVU and LongVideoBench as task objects in lmms-eval's shape (`tasks`), read
in the layouts their releases and lmms-eval use, prompted, parsed and scored as lmms-eval does; a resumable,
shardable, locked runner; the Pareto report; an lmms-eval model plugin."""
from liteframe.eval.parsing import extract_letter, parse_longvideobench, strip_reasoning
from liteframe.eval.runner import EvalConfig, Stopped, evaluate
from liteframe.eval.tasks import TASKS, Frames, Prompt, Question, Task

__all__ = ["TASKS", "EvalConfig", "Frames", "Prompt", "Question", "Stopped", "Task", "evaluate", "extract_letter",
           "parse_longvideobench", "strip_reasoning"]
