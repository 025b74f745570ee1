"""Errors that mean "bad input from the user" (a file, a folder, a config): the CLI prints them as one line
and exits with code 2."""
from __future__ import annotations

import json
from pathlib import Path


class InputError(ValueError):
    """Bad input: the message names the file or value and the reason."""


def one_line(message: object) -> str:
    """Any message (an exception, a warning, text) folded onto one line; an exception keeps its type's name."""
    text = " ".join(str(message).split())
    return f"{type(message).__name__}: {text}" if isinstance(message, BaseException) else text


def model_type(folder: str | Path, what: str = "model folder") -> str | None:
    """The `model_type` in `folder/config.json`, with one-line errors for a missing folder, file or bad JSON."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        raise InputError(f"{what} {folder}: no config.json")
    try:
        return json.loads(config.read_text()).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise InputError(f"{what} {folder}: config.json is not valid JSON ({one_line(err)})") from None
