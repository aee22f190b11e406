"""Reading a training YAML config into a pydantic model, with errors that name the file, line and key.

Shared by the reranker and retriever trainers (``train/*_config.py``); each keeps only its own model and checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from rankwise.config.yaml_keys import expand_path, line_of, merge, read_yaml
from rankwise.errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)


def read_mapping(path: str | Path, overrides: dict[str, Any] | None = None) -> tuple[Path, str, dict[str, Any]]:
    """``(path, text, settings)``: the YAML file's top-level mapping with ``overrides`` applied.

    The file is read by :func:`rankwise.config.yaml_keys.read_yaml` (``yaml.safe_load`` semantics, a key given twice is
    refused): an unreadable, non-UTF-8 or invalid file raises its one-line :class:`ConfigError`.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "config file not found")
    text, raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(path, "expected a mapping of settings at the top level", 1)
    return path, text, merge(raw, overrides or {})


def build(model: type[Model], raw: dict[str, Any], path: Path, text: str) -> Model:
    """Validate ``raw`` as ``model``; the first problem becomes a ConfigError naming the key and its line."""
    try:
        return model(**raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "(config)"
        problem = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        known = f" (known keys: {', '.join(model.model_fields)})" if problem == "unknown key" else ""
        raise ConfigError(path, f"'{key}': {problem}{known}", line_of(error["loc"], text)) from exc


def expand_setting(path: Path, text: str, key: str, value: str) -> str:
    """:func:`~rankwise.config.yaml_keys.expand_path` for the top-level setting ``key`` of the file ``path``: an
    unset variable is a :class:`ConfigError` naming the file, the line and the key."""
    try:
        return expand_path(value)
    except ValueError as exc:
        raise ConfigError(path, f"'{key}': {exc}", line_of([key], text)) from None
