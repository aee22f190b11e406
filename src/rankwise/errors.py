"""Errors a user can act on: each names the file, the line (where there is one) and the problem."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class RankwiseError(Exception):
    """Base class for every error rankwise raises on purpose (the CLI prints these without a traceback)."""


class DataError(RankwiseError):
    """Bad input data: names the file, the 1-based line number when known, and what is wrong."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class ConfigError(DataError):
    """A config file or override that cannot be used: names the file, the line and key where known, and the
    problem. The one error type of every config dialect (experiment, training, blend, sweep).

    ``ConfigError(path, problem, line)`` like :class:`DataError`, or ``ConfigError(message)`` for a problem that is
    not in a file (an override on the command line)."""

    def __init__(self, where: str | Path, problem: str | None = None, line: int | None = None) -> None:
        if problem is None:
            RankwiseError.__init__(self, str(where))
            self.path, self.line, self.problem = "", None, str(where)
        else:
            super().__init__(where, problem, line)


class IndexStoreError(RankwiseError):
    """A stored index is missing, corrupted, or does not match what it is used with."""


class MissingExtraError(RankwiseError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"this feature needs the '{package}' package: pip install 'rankwise[{extra}]'")


class EngineError(RankwiseError):
    """A shard that failed on an engine's worker (a Ray actor that raised or died): names the shard and the worker;
    the shards finished before it are kept, so running again resumes."""


class ModelLoadError(RankwiseError):
    """A model that cannot be loaded: a local path that does not exist, or a hub name that is neither cached nor
    reachable (offline). Names the model and the cause, in one line."""

    def __init__(self, model: str, cause: BaseException, kind: str = "model") -> None:
        self.model = model
        path = Path(model).expanduser()
        local = path.is_absolute() or model.startswith((".", "~")) or (len(path.parts) > 1 and path.parent.is_dir())
        lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
        problem = lines[0] if lines else type(cause).__name__
        if local and not path.exists():
            problem = "no such file or directory"
        elif not path.exists():
            problem += " (a hub name needs the network or a cached copy)"
        super().__init__(f"cannot load {kind} '{model}': {problem}")


@contextmanager
def loading_model(model: str, kind: str = "model") -> Iterator[None]:
    """Around a ``from_pretrained``/``SentenceTransformer(...)`` call: what transformers, sentence-transformers and
    huggingface_hub raise for a missing local path or an unreachable hub name (OSError, or huggingface_hub's own
    errors) becomes a :class:`ModelLoadError` naming ``model`` (a ``kind`` such as ``"cross-encoder"``)."""
    try:
        yield
    except Exception as exc:
        from huggingface_hub.errors import EntryNotFoundError, HFValidationError

        if isinstance(exc, OSError | EntryNotFoundError | HFValidationError):
            raise ModelLoadError(model, exc, kind) from exc
        raise
