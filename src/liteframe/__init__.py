"""liteframe: long-video understanding with Video LLMs, made cheap by compressing visual tokens."""
from liteframe.grid import TokenGrid, pixel_shuffle

__version__ = "0.1.0"
__all__ = ["TokenGrid", "pixel_shuffle"]
