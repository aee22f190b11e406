"""Dotted ``key=value`` overrides of a YAML mapping, and the line a key sits on in the YAML text.

Shared by the experiment config (:mod:`rankwise.config.experiment`, ``-o rerank.top_n=50``) and the training configs
(:mod:`rankwise.config.yaml_config`, ``--set blend.size=100``), so both take the same override syntax and name the
same line for a bad key.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from rankwise.errors import ConfigError


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"rerank.top_n=50"`` -> ``(["rerank", "top_n"], 50)``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"override {text!r}: expected key=value with a dotted key, e.g. rerank.top_n=50")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from None
    return parts, value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key=value`` override set (missing sections are created)."""
    result = copy.deepcopy(dict(data))
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {text!r}: {where} is a {type(child).__name__}, not a section")
            node = child
        node[parts[-1]] = value
    return result


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["epochs=2", "blend.size=100"]`` -> ``{"epochs": 2, "blend": {"size": 100}}`` (values parsed as YAML)."""
    return apply_overrides({}, items)


def merge(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with ``overrides`` laid over it, section by section (a nested mapping is merged, not replaced)."""
    result = copy.deepcopy(dict(data))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def line_of(parts: Sequence[Any], text: str) -> int | None:
    """1-based line of the deepest key of ``parts`` (e.g. ``["retrieve", "bm25", "k"]``) found in the YAML text.

    A list index may appear as an int or a digit string. None when not even the first key is in the text.
    """
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in map(str, parts):
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if str(k.value) == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line
