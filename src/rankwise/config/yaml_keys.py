"""Reading a YAML config file, dotted ``key=value`` overrides of a YAML mapping, and the line a key sits on.

Shared by the experiment config (:mod:`rankwise.config.experiment`, ``--set rerank.top_n=50``) and the training configs
(:mod:`rankwise.config.yaml_config`, ``--set blend.size=100``), so both read files the same way (``yaml.safe_load``
semantics, but a key given twice in one mapping is refused instead of the last one silently winning), take the
same override syntax and name the same line for a bad key.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from rankwise.errors import ConfigError


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice; ``problem_mark`` is the repeat, ``first_line`` the first (1-based)."""

    def __init__(self, key: Any, first: yaml.Mark, repeat: yaml.Mark) -> None:
        self.first_line = first.line + 1
        super().__init__(None, None, f"duplicate key {key!r} (first on line {self.first_line})", repeat)


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping key given twice (PyYAML keeps the last one silently).

    Keys are compared as constructed (``1`` and ``0x1`` are the same key, as they would be in the dict); merge
    keys (``<<``) keep their usual meaning, so a key merged in may still be overridden explicitly.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # SafeLoader reports the unhashable key itself
            if key in seen:
                raise DuplicateKeyError(key, seen[key], key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, except that a duplicate mapping key raises :class:`DuplicateKeyError`."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: safe


def read_yaml(path: str | Path) -> tuple[str, Any]:
    """``(text, data)`` of a YAML config file; every problem is a one-line :class:`ConfigError` naming the file
    (and the line, where there is one): unreadable, not UTF-8, not YAML, or a key given twice."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        bad = raw[exc.start : exc.end].hex(" ")
        raise ConfigError(f"{path}, line {line}: not valid UTF-8 (byte {bad}); save the config as UTF-8") from None
    try:
        return text, load_yaml(text)
    except DuplicateKeyError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError(f"{path}, line {line}: {exc.problem}; give each key once") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({problem})") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"rerank.top_n=50"`` -> ``(["rerank", "top_n"], 50)``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"override {text!r}: expected key=value with a dotted key, e.g. rerank.top_n=50")
    try:
        value = load_yaml(raw) if raw.strip() else ""
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


def expand_path(value: str) -> str:
    """``$VAR``/``${VAR}`` in a path setting, from the environment (the one path expander of every config); an
    unset variable is a ValueError (a pydantic validator turns it into a field error)."""
    expanded = os.path.expandvars(value)
    if "$" in expanded:
        raise ValueError(f"environment variable in {value!r} is not set")
    return expanded


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
