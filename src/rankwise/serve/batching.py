"""Micro-batching: requests that arrive together share one call of the model.

A :class:`MicroBatcher` runs its model calls on one worker thread (never on the event loop; its own, or one it
shares with other batchers, see :meth:`start`) and owns a bounded queue. ``await submit(item, cost)`` queues one
item and returns its result. The worker takes the oldest item, waits up to ``max_wait_s`` for more to arrive, and
runs ``run_batch(items)`` on at most ``max_items`` of them whose costs (approximate tokens) fit ``budget`` (the
first item always runs, however costly). One result comes back per item, in order; an exception raised by
``run_batch`` fails every item of that batch.

The queue never grows without bound: when ``max_queue`` items already wait, ``submit`` raises
:class:`Overloaded` at once (the HTTP layer answers 503 with ``Retry-After``). A caller that goes away (a client
that disconnects cancels its request) leaves a cancelled future behind, which the worker skips. :meth:`stop`
lets the worker finish what is queued, then ends it, so a graceful shutdown loses no accepted request.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from rankwise.errors import RankwiseError

T = TypeVar("T")
R = TypeVar("R")


class Overloaded(RankwiseError):
    """The queue is full; ``retry_after`` (whole seconds) is when trying again is likely to succeed."""

    def __init__(self, name: str, queued: int, retry_after: int) -> None:
        super().__init__(f"the {name} queue is full ({queued} requests waiting); retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class _Pending(Generic[T]):
    item: T
    cost: int
    future: asyncio.Future[Any]
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """What the batcher has done so far (read by ``/metrics`` and ``/healthz``)."""

    batches: int = 0
    items: int = 0
    rejected: int = 0
    busy_s: float = 0.0
    last_batch_s: float = 0.0
    last_batch_items: int = 0
    sizes: list[int] = field(default_factory=list)  # items per batch, the most recent 1,000 batches

    def record(self, items: int, seconds: float) -> None:
        self.batches += 1
        self.items += items
        self.busy_s += seconds
        self.last_batch_s, self.last_batch_items = seconds, items
        self.sizes.append(items)
        del self.sizes[:-1000]


class MicroBatcher(Generic[T, R]):
    """Collects concurrent items into batches for ``run_batch``; see the module docstring."""

    def __init__(
        self,
        name: str,
        run_batch: Callable[[list[T]], Sequence[R]],
        *,
        max_wait_s: float = 0.005,
        budget: int = 32768,
        max_items: int = 64,
        max_queue: int = 64,
        on_batch: Callable[[str, int, float], None] | None = None,
    ) -> None:
        if max_wait_s < 0 or budget < 1 or max_items < 1 or max_queue < 1:
            raise RankwiseError(
                f"batcher {name}: max_wait_s must be >= 0 and budget, max_items and max_queue positive "
                f"(got {max_wait_s}, {budget}, {max_items}, {max_queue})"
            )
        self.name = name
        self.run_batch = run_batch
        self.max_wait_s, self.budget, self.max_items, self.max_queue = max_wait_s, budget, max_items, max_queue
        self.on_batch = on_batch
        self.stats = BatchStats()
        self._queue: deque[_Pending[T]] = deque()
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._owns_executor = True
        self._stopping = False
        self.running = False  # a batch is being computed now

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def executor(self) -> ThreadPoolExecutor | None:
        """Where the model calls run (None until :meth:`start`)."""
        return self._executor

    def start(self, executor: ThreadPoolExecutor | None = None) -> None:
        """Start the worker on the running event loop (called once, from the app's lifespan). Model calls run on
        ``executor`` when given (shared with other batchers, and shut down by its owner), else on a thread of its
        own."""
        if self._worker is not None:
            return
        self._arrived = asyncio.Event()
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rankwise-{self.name}")
        self._stopping = False
        self._worker = asyncio.get_running_loop().create_task(self._work(), name=f"rankwise-{self.name}")

    async def stop(self) -> None:
        """Finish every queued item, then stop the worker and its thread."""
        if self._worker is None:
            return
        self._stopping = True
        assert self._arrived is not None
        self._arrived.set()
        await self._worker
        self._worker = None
        if self._executor is not None and self._owns_executor:
            self._executor.shutdown(wait=True)
        self._executor = None

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained: the last batch's time per item times the queue length."""
        per_item = self.stats.last_batch_s / max(self.stats.last_batch_items, 1)
        return max(1, min(60, math.ceil(per_item * (len(self._queue) + 1))))

    async def submit(self, item: T, cost: int = 1) -> R:
        """Queue ``item`` and wait for its result; raise :class:`Overloaded` when the queue is full."""
        if self._worker is None or self._arrived is None or self._stopping:
            raise RankwiseError(f"the {self.name} batcher is not running")
        if len(self._queue) >= self.max_queue:
            self.stats.rejected += 1
            raise Overloaded(self.name, len(self._queue), self.retry_after())
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(item, max(1, cost), future))
        self._arrived.set()
        return await future

    def _take(self) -> list[_Pending[T]]:
        """The next batch: queued items in arrival order while they fit the budget (the first always does)."""
        batch: list[_Pending[T]] = []
        spent = 0
        while self._queue and len(batch) < self.max_items:
            pending = self._queue[0]
            if pending.future.done():  # its caller went away: nothing to compute
                self._queue.popleft()
                continue
            if batch and spent + pending.cost > self.budget:
                break
            batch.append(self._queue.popleft())
            spent += pending.cost
        return batch

    def _full(self) -> bool:
        live = [p for p in self._queue if not p.future.done()]
        return len(live) >= self.max_items or sum(p.cost for p in live) >= self.budget

    async def _work(self) -> None:
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            # Wait (briefly) for company, unless the batch is already full or the server is stopping.
            deadline = self._queue[0].queued_at + self.max_wait_s
            while not self._stopping and not self._full() and (left := deadline - time.perf_counter()) > 0:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), timeout=left)
                except TimeoutError:
                    break
            batch = self._take()
            if not batch:
                continue
            started = time.perf_counter()
            self.running = True
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, [p.item for p in batch])
                if len(results) != len(batch):
                    raise RankwiseError(f"{self.name}: {len(results)} results for a batch of {len(batch)} items")
            except Exception as exc:  # handed to every caller of the batch, which turns it into a response
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
            else:
                for pending, result in zip(batch, results, strict=True):
                    if not pending.future.done():
                        pending.future.set_result(result)
            finally:
                self.running = False
            seconds = time.perf_counter() - started
            self.stats.record(len(batch), seconds)
            if self.on_batch is not None:
                self.on_batch(self.name, len(batch), seconds)


def approx_tokens(*texts: str) -> int:
    """A cheap token estimate for batch budgets: 4 tokens per 3 whitespace-separated words, plus one."""
    return 1 + sum(len(text.split()) for text in texts) * 4 // 3
