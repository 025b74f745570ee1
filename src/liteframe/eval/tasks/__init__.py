"""The benchmarks, registered by name (`--benchmark`): each a `Task` in lmms-eval's shape (see `base`)."""
from liteframe.eval.tasks.base import LETTERS, SUBTITLES, Frames, Prompt, Question, Task
from liteframe.eval.tasks.longvideobench import LONGVIDEOBENCH
from liteframe.eval.tasks.mlvu import MLVU_DEV
from liteframe.eval.tasks.videomme import VIDEOMME, VIDEOMME_SUB
from liteframe.registry import Registry

TASKS: Registry[Task] = Registry("benchmark")
for _task in (VIDEOMME, VIDEOMME_SUB, MLVU_DEV, LONGVIDEOBENCH):
    TASKS.register(_task.name)(_task)


__all__ = ["LETTERS", "SUBTITLES", "TASKS", "Frames", "Prompt", "Question", "Task"]
