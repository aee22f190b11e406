"""Engines run shards; they never decide what a shard is.

A stage (corpus encoding, reranking) cuts its work into :class:`Shard` objects, keeps the books (which shards are
finished, checksums, writing the results) and hands the unfinished shards to an engine together with a
*worker recipe*: a zero-argument callable that builds a worker (``payload, report -> result``), typically by
loading a model. The engine builds one worker per process it runs and yields ``(shard, result)`` as shards finish
(not necessarily in order); the stage writes each result as it arrives, so a killed run resumes from the shards
already written whichever engine ran them.

- :class:`LocalEngine` builds one worker in this process and runs the shards in order.
- :class:`rankwise.engine.ray_engine.RayEngine` builds one worker per Ray actor (one model copy each) on this
  machine or a cluster (``pip install 'rankwise[ray]'``).

Progress (shards done, items/s, ETA) is drawn on the driver by :class:`Progress`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

# A worker: (payload, report) -> result; ``report(n)`` (None on remote workers) advances the driver's progress bar
# by n items while a shard is under way.
Worker = Callable[[Any, Callable[[int], None] | None], Any]


@dataclass(frozen=True)
class Shard:
    """One unit of work: ``payload`` goes to a worker, ``size`` items count for progress, ``name`` is how errors
    and progress refer to it (e.g. ``shard 3 (documents d300..d399)``); ``key`` is the stage's own bookkeeping
    and stays on the driver."""

    index: int
    name: str
    payload: Any
    size: int
    key: Any = None


class Engine(Protocol):
    def map(
        self,
        recipe: Callable[[], Worker],
        shards: Iterable[Shard],
        progress: Progress | None = None,
        keep: bool = False,
    ) -> Iterator[tuple[Shard, Any]]:
        """Run every shard through a worker built by ``recipe``; yield ``(shard, result)`` as each finishes.
        ``keep``: hold the workers (their models) for the next ``map`` with the same recipe object."""
        ...

    def close(self) -> None: ...


class Progress:
    """A driver-side progress bar in items (rate and ETA from tqdm) with the shard count beside it. Shards found
    finished from an earlier run leave the total instead of counting as work done, so the rate and ETA are this
    run's."""

    def __init__(self, total: int | None, shards: int | None, desc: str, unit: str, enabled: bool = True) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit=unit, desc=desc, disable=not enabled, dynamic_ncols=True)
        self.shards = shards
        self.done = 0
        self.reused = 0
        self._in_shard = 0

    def advance(self, items: int) -> None:
        """Items of the shard under way (a local worker reports them as it goes)."""
        self._in_shard += items
        self.bar.update(items)

    def shard_done(self, shard: Shard) -> None:
        self.bar.update(max(0, shard.size - self._in_shard))
        self._in_shard = 0
        self.done += 1
        self._postfix()

    def shard_reused(self, shard: Shard) -> None:
        self.reused += 1
        if self.bar.total is not None:
            self.bar.total = max(0, self.bar.total - shard.size)
        if self.shards is not None:
            self.shards -= 1
        self._postfix()

    def _postfix(self) -> None:
        shards = f"{self.done}/{self.shards}" if self.shards is not None else str(self.done)
        self.bar.set_postfix_str(f"shards {shards}" + (f", {self.reused} reused" if self.reused else ""))

    def close(self) -> None:
        self.bar.close()


class LocalEngine:
    """Runs the shards one after another through one worker in this process (the default engine)."""

    kind = "local"

    def __init__(self) -> None:
        self._kept: tuple[Callable[[], Worker], Worker] | None = None

    def map(
        self,
        recipe: Callable[[], Worker],
        shards: Iterable[Shard],
        progress: Progress | None = None,
        keep: bool = False,
    ) -> Iterator[tuple[Shard, Any]]:
        # built on first use (a resume that finds every shard done needs no model), or the one kept for this recipe
        worker = self._kept[1] if self._kept is not None and self._kept[0] is recipe else None
        self._kept = None
        report = progress.advance if progress is not None else None
        for shard in shards:
            if worker is None:
                worker = recipe()
            try:
                result = worker(shard.payload, report)
            except BaseException as exc:
                exc.add_note(f"while running {shard.name} (finished shards are kept; run again to resume)")
                raise
            if progress is not None:
                progress.shard_done(shard)
            yield shard, result
        if keep and worker is not None:
            self._kept = (recipe, worker)

    def close(self) -> None:
        self._kept = None

    def __repr__(self) -> str:
        return "LocalEngine()"
