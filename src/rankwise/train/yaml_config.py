"""Reading a training YAML config into a pydantic model, with errors that name the file, line and key.

Shared by the reranker and retriever trainers (``train/*_config.py``); each keeps only its own model and checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from rankwise.errors import DataError

Model = TypeVar("Model", bound=BaseModel)


def read_mapping(path: str | Path, overrides: dict[str, Any] | None = None) -> tuple[Path, str, dict[str, Any]]:
    """``(path, text, settings)``: the YAML file's top-level mapping (``yaml.safe_load``) with ``overrides`` applied."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DataError(path, f"not valid YAML: {exc}", mark.line + 1 if mark else None) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise DataError(path, "expected a mapping of settings at the top level", 1)
    raw.update(overrides or {})
    return path, text, raw


def build(model: type[Model], raw: dict[str, Any], path: Path, text: str) -> Model:
    """Validate ``raw`` as ``model``; the first problem becomes a DataError naming the key and its line."""
    try:
        return model(**raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "(config)"
        top = str(error["loc"][0]) if error["loc"] else ""
        problem = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        known = f" (known keys: {', '.join(model.model_fields)})" if problem == "unknown key" else ""
        raise DataError(
            path, f"'{key}': {problem}{known}", nested_key_line(text, error["loc"]) or key_line(text, top)
        ) from exc


def key_line(text: str, key: str) -> int | None:
    """1-based line of a top-level ``key:`` in the YAML text (None when it is not there, e.g. a missing key)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if key and line.startswith(f"{key}:"):
            return number
    return None


def nested_key_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest key of ``loc`` (e.g. ``("scifact", "split")``) found in block-style YAML."""
    lines = text.splitlines()
    found: int | None = None
    start, indent = 0, -1
    for part in loc:
        if not isinstance(part, str):
            break
        for number in range(start, len(lines)):
            line = lines[number]
            stripped = line.lstrip(" ")
            depth = len(line) - len(stripped)
            if stripped and not stripped.startswith("#") and depth <= indent:
                return found  # left the parent's block
            if depth > indent and stripped.startswith(f"{part}:"):
                found, start, indent = number + 1, number + 1, depth
                break
        else:
            return found
    return found
