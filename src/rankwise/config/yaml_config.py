"""Reading a training YAML config into a pydantic model, with errors that name the file, line and key.

Shared by the reranker and retriever trainers (``train/*_config.py``); each keeps only its own model and checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from rankwise.config.yaml_keys import line_of, merge, read_yaml
from rankwise.errors import DataError

Model = TypeVar("Model", bound=BaseModel)


def read_mapping(path: str | Path, overrides: dict[str, Any] | None = None) -> tuple[Path, str, dict[str, Any]]:
    """``(path, text, settings)``: the YAML file's top-level mapping with ``overrides`` applied.

    The file is read by :func:`rankwise.config.yaml_keys.read_yaml` (``yaml.safe_load`` semantics, a key given twice is
    refused): an unreadable, non-UTF-8 or invalid file raises its one-line :class:`ConfigError`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "config file not found")
    text, raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise DataError(path, "expected a mapping of settings at the top level", 1)
    return path, text, merge(raw, overrides or {})


def build(model: type[Model], raw: dict[str, Any], path: Path, text: str) -> Model:
    """Validate ``raw`` as ``model``; the first problem becomes a DataError naming the key and its line."""
    try:
        return model(**raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "(config)"
        problem = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        known = f" (known keys: {', '.join(model.model_fields)})" if problem == "unknown key" else ""
        raise DataError(path, f"'{key}': {problem}{known}", line_of(error["loc"], text)) from exc
