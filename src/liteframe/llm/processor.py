"""A checkpoint's processor files read as transformers' `AutoProcessor` (5.25) reads them, without building the
processor (the Qwen video processors import torchvision): the settings of its video processor and its chat template.

- Video processor (`AutoVideoProcessor` through `BaseVideoProcessor.get_video_processor_dict`): the `video_processor`
  entry of `processor_config.json` (the nested layout transformers 5 saves), else `video_preprocessor_config.json`,
  else `preprocessor_config.json` (the image processor's settings, which a checkpoint released before video
  processors existed gives its video processor: Qwen2.5-VL's). A family turns the settings into its data config as
  its processor class's `__init__` does (`liteframe.llm.qwen.vision.data_config`); a folder with none of these files
  gets the class's defaults.
- Chat template (`ProcessorMixin.get_processor_dict`): `processor_config.json`'s `chat_template`, else
  `chat_template.json`'s (the processor's legacy file), else `chat_template.jinja`; a set of named templates gives
  its `default`, as the processor's `apply_chat_template` picks it. transformers' processor reads no other file;
  liteframe then takes the tokenizer's own (`tokenizer_config.json`'s, or the `chat_template.jinja` AutoTokenizer
  reads), so a folder whose template is only there still works.
"""
from __future__ import annotations

import json
from pathlib import Path

from liteframe.errors import InputError, one_line

PROCESSOR_CONFIG = "processor_config.json"
VIDEO_CONFIG = "video_preprocessor_config.json"
IMAGE_CONFIG = "preprocessor_config.json"
TEMPLATE_JSON = "chat_template.json"
TEMPLATE_JINJA = "chat_template.jinja"


def video_processor_config(folder: str | Path) -> tuple[dict, Path | None]:
    """The settings `AutoVideoProcessor.from_pretrained(folder)` builds the video processor from, and the file they
    come from; `({}, None)` when the folder has none (the processor class's defaults)."""
    folder = Path(folder)
    if (folder / PROCESSOR_CONFIG).is_file():
        nested = _read_json(folder / PROCESSOR_CONFIG).get("video_processor")
        if nested is not None:
            return nested, folder / PROCESSOR_CONFIG
    for name in (VIDEO_CONFIG, IMAGE_CONFIG):
        if (folder / name).is_file():
            return _read_json(folder / name), folder / name
    return {}, None


def video_settings(folder: str | Path | None, layout: tuple[int, int, int], title: str) -> tuple[dict, Path | None]:
    """`video_processor_config(folder)` (none without a folder), refused in one line unless its patch, merge and
    temporal patch sizes (the class's `layout` where absent) are `layout`, which liteframe's patch order for
    `title` assumes; and where they come from."""
    config, path = video_processor_config(folder) if folder is not None else ({}, None)
    ours = tuple(config.get(k, d) for k, d in zip(("patch_size", "merge_size", "temporal_patch_size"), layout))
    if ours != tuple(layout):
        raise InputError(f"{path or folder}: patch, merge and temporal patch sizes {ours}; liteframe reads {title}'s "
                         f"{tuple(layout)}")
    return config, path or folder


def pixel_range(size: dict, where) -> tuple[int, int]:
    """A video processor's `size` -> `(shortest_edge, longest_edge)`, or one line naming `where` they come from."""
    low, high = size.get("shortest_edge"), size.get("longest_edge")
    if not (isinstance(low, int) and isinstance(high, int) and 0 < low <= high):
        raise InputError(f"{where}: the video processor's size needs integers 0 < shortest_edge <= longest_edge "
                         f"(or min_pixels and max_pixels), got {size}")
    return low, high


def chat_template(folder: str | Path, tokenizer) -> str:
    """The chat template the checkpoint's processor applies (see the module docstring), else the tokenizer's; one
    line naming the folder when it has none."""
    folder = Path(folder)
    processor = _read_json(folder / PROCESSOR_CONFIG) if (folder / PROCESSOR_CONFIG).is_file() else {}
    if processor.get("chat_template") is not None:
        template = processor["chat_template"]
    elif (folder / TEMPLATE_JSON).is_file():
        template = _read_json(folder / TEMPLATE_JSON).get("chat_template")
    elif (folder / TEMPLATE_JINJA).is_file():
        template = (folder / TEMPLATE_JINJA).read_text(encoding="utf-8")
    else:
        template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    if not isinstance(template, str) or not template.strip():
        raise InputError(f"model folder {folder}: no chat template (looked in {PROCESSOR_CONFIG}, {TEMPLATE_JSON}, "
                         f"{TEMPLATE_JINJA} and tokenizer_config.json)")
    return template


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read it ({one_line(err)})") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: not a JSON object")
    return value
