"""liteframe: long-video understanding with Video LLMs, made cheap by compressing visual tokens."""
from liteframe.grid import TokenGrid, pixel_shuffle
from liteframe.reduce import REDUCERS, Reducer, get_reducer, wap

__version__ = "0.1.0"
__all__ = ["REDUCERS", "Reducer", "TokenGrid", "get_reducer", "pixel_shuffle", "wap"]
