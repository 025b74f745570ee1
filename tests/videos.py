"""Where the real test videos are (`../shared/videos/`); synthetic ones are made by `liteframe.testing.videos`."""
from pathlib import Path

REAL_VIDEOS = Path(__file__).parents[2] / "shared" / "videos"
