"""Command-line flags -> the same typed config sections a YAML experiment gives (then :mod:`rankwise.build` builds
them); used by ``cli/`` and by ``rankwise serve``'s flags."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from rankwise.errors import RankwiseError


def section(make: Callable[..., Any], flags: Mapping[str, str] | None = None, *args: Any, **values: Any) -> Any:
    """``make(*args, **values)`` (a section class, or a function returning one) from the flag values given (None =
    not given: the section's default applies); a bad value is a one-line error naming the flag (``flags`` maps a
    field to its flag; default ``--field-name``)."""
    try:
        return make(*args, **{name: value for name, value in values.items() if value is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        flag = (flags or {}).get(field, "--" + field.replace("_", "-"))
        problem = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
        raise RankwiseError(f"{flag}: {problem} (got {error.get('input')!r})") from None


def engine_section(kind: str | None, address: str | None, actors: int | None) -> Any:
    """The ``engine`` section that ``--engine``, ``--ray-address`` and ``--actors`` describe."""
    from rankwise.config.sections import EngineConfig

    if kind != "ray" and (address is not None or actors is not None):
        raise RankwiseError("--ray-address and --actors apply to --engine ray only")
    flags = {"kind": "--engine", "address": "--ray-address"}
    return section(EngineConfig, flags, kind=kind, address=address, actors=actors)
