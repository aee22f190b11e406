"""The Ray engine: one worker (one model copy) per Ray actor, on this machine or across a cluster.

- ``address=None`` starts a local Ray instance with this machine's cores for as long as the engine is open (Ray
  also stops it when the process exits; its actors run at the driver's niceness, not Ray's 15); ``"auto"`` joins
  the cluster a ``ray start`` on this machine belongs to; ``"ray://host:10001"`` (or ``host:6379``) joins a remote
  one. Every node needs the same Python environment with rankwise installed, and the model reachable under the
  same name or path.
- Actors are started as shards need them, up to ``actors`` (default: the cluster's CPUs / ``cpus_per_actor``, or
  its GPUs / ``gpus_per_actor``); each holds one shard at a time, so the driver's memory
  is bounded by the number of actors, not the corpus.
- A worker process that dies (killed, out of memory, its node lost) leaves the pool; the shard it was running
  runs on the other actors, or on a replacement where the cluster has room for one (not
  Ray's own actor restarts: a restart waits for resources that a lost node took with it). The running shard gets
  ``retries`` such attempts; past that, or when the worker raises, the error names the shard and the worker. An
  actor that cannot start at all (the recipe does not unpickle on its node) fails the command at once, with the
  cause, since another try would fail the same way.
  Shards finished before the failure are already written by the stage, so running again resumes.

Ray Core actors rather than Ray Data's ``map_batches``: the stage's shards already are the unit of work, of
retry and of resume (checksummed files), which is exactly an actor pool's task; Ray Data would add pyarrow and its
own block format for the same schedule.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from rankwise.engine import Progress, Shard, Worker
from rankwise.errors import EngineError, MissingExtraError, RankwiseError

# One shard per actor at a time: a dead actor then held exactly one unfinished shard, the one to name and retry
# (with a second one queued, a process killed just after finishing a shard can lose that shard's reply, and which
# shard it died on is unknowable). Shards take seconds to minutes; the round trip between them, milliseconds.
IN_FLIGHT_PER_ACTOR = 1
logger = logging.getLogger(__name__)


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingExtraError("ray", "ray") from exc
    return ray


class WorkerFailure(Exception):
    """What a worker raised, as plain text (any exception pickles this way, even one whose constructor takes
    other arguments than its message): its type, its first line and whether it is a rankwise error."""

    def __init__(self, kind: str, text: str, ours: bool) -> None:
        super().__init__(kind, text, ours)
        self.kind, self.text, self.ours = kind, text, ours

    @classmethod
    def of(cls, exc: BaseException) -> WorkerFailure:
        lines = str(exc).strip().splitlines()
        return cls(type(exc).__name__, lines[0] if lines else "", isinstance(exc, RankwiseError))

    def __str__(self) -> str:
        return self.text if self.ours else f"{self.kind}: {self.text}"


class _ShardActor:
    """Holds one worker (one model). A failure to build it is kept and raised by every ``run``, so the driver
    gets the original error (e.g. a model that cannot be loaded on that node) with the shard it was meant for."""

    def __init__(self, recipe: Callable[[], Worker]) -> None:
        from ray.util import get_node_ip_address

        self.where = f"{get_node_ip_address()}, pid {os.getpid()}"
        self.error: WorkerFailure | None = None
        try:
            self.worker: Worker | None = recipe()
        except Exception as exc:
            self.worker, self.error = None, WorkerFailure.of(exc)

    def run(self, payload: Any) -> tuple[Any, str]:
        if self.error is not None:
            raise self.error
        assert self.worker is not None
        try:
            return self.worker(payload, None), self.where
        except Exception as exc:
            raise WorkerFailure.of(exc) from None


class _Pool:
    """The actors of one recipe: handles, shards in flight on each, where each last ran."""

    def __init__(self, recipe: Callable[[], Worker]) -> None:
        self.recipe = recipe
        self.actors: list[Any] = []
        self.load: list[int] = []
        self.alive: list[bool] = []
        self.where: list[str] = []


class RayEngine:
    """Runs shards on Ray actors, one worker (model) per actor; see the module docstring."""

    kind = "ray"

    def __init__(
        self,
        address: str | None = None,
        actors: int | None = None,
        cpus_per_actor: float = 1.0,
        gpus_per_actor: float = 0.0,
        retries: int = 2,
    ) -> None:
        if actors is not None and actors < 1:
            raise RankwiseError(f"actors must be at least 1, not {actors}")
        if cpus_per_actor <= 0 or gpus_per_actor < 0 or retries < 0:
            raise RankwiseError("cpus_per_actor must be > 0, gpus_per_actor and retries >= 0")
        self.ray = import_ray()  # fail now, before any work, when the extra is missing
        self.address = address
        self.actors = actors
        self.cpus_per_actor = cpus_per_actor
        self.gpus_per_actor = gpus_per_actor
        self.retries = retries
        self._owns_ray = False
        self._pool: _Pool | None = None

    def __repr__(self) -> str:
        return f"RayEngine(address={self.address!r}, actors={self.actors})"

    # ------------------------------------------------------------------------------------------ connection

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():  # the caller's own Ray session (a notebook, a test): use it, leave it running
            return
        options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
        if self.address is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            # Ray starts its workers at niceness 15 (its `worker_niceness`), below everything else on the machine:
            # beside another busy process an actor then crawls (importing torch took 135 s in an actor against
            # 7 s in the driver, next to a training job). The actors of an instance we start run at the driver's
            # own priority, as the local engine's work does.
            ray.init(num_cpus=cores, _system_config={"worker_niceness": os.nice(0)}, **options)
        else:
            options.pop("include_dashboard")  # a setting of the cluster's head, not of a driver joining it
            try:
                ray.init(address=self.address, **options)
            except ConnectionError as exc:
                raise EngineError(f"cannot join the Ray cluster at {self.address!r}: {exc}") from None
        self._owns_ray = True

    def close(self) -> None:
        """Free the actors kept for a next map; stop the local Ray instance this engine started (or leave the
        cluster it joined)."""
        if self._pool is not None and self.ray.is_initialized():
            self._release()
        self._pool = None
        if self._owns_ray and self.ray.is_initialized():
            self.ray.shutdown()
        self._owns_ray = False

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pool_size(self) -> int:
        if self.actors is not None:
            return self.actors
        resources = self.ray.cluster_resources()
        if self.gpus_per_actor > 0:
            count = int(resources.get("GPU", 0) // self.gpus_per_actor)
            if count < 1:
                raise EngineError(f"gpus_per_actor={self.gpus_per_actor} but the Ray cluster has no GPU")
            return count
        return max(1, int(resources.get("CPU", 1) // self.cpus_per_actor))

    # ---------------------------------------------------------------------------------------------- running

    def map(
        self,
        recipe: Callable[[], Worker],
        shards: Iterable[Shard],
        progress: Progress | None = None,
        keep: bool = False,
    ) -> Iterator[tuple[Shard, Any]]:
        """Run ``shards`` on the actor pool; yield ``(shard, result)`` in the order they finish. With ``keep`` the
        actors (and their models) stay up for the next ``map`` with the same ``recipe`` object."""
        ray = self.ray
        source = iter(shards)
        first = next(source, None)  # a resume that finds every shard finished starts no Ray at all
        if first is None:
            return
        source = itertools.chain([first], source)
        self._connect()
        pool = self._pool if self._pool is not None and self._pool.recipe is recipe else None
        if pool is None:
            self._release()
            pool = _Pool(recipe)
        self._pool = None
        limit = self._pool_size()
        pending: dict[Any, tuple[Shard, int]] = {}
        again: deque[Shard] = deque()  # shards of a dead actor, run again before new ones
        attempts: dict[int, int] = {}
        exhausted = failed = False
        try:
            while True:
                while True:
                    live = [i for i, alive in enumerate(pool.alive) if alive]
                    idle = [i for i in live if pool.load[i] == 0]
                    wanted = bool(again) or not exhausted
                    if wanted and not idle and len(live) < limit and (not live or self._room()):
                        idle = [self._start_actor(pool)]  # a new actor only when every one is busy
                        live.append(idle[0])
                    if not live:
                        break
                    target = idle[0] if idle else min(live, key=pool.load.__getitem__)
                    if pool.load[target] >= IN_FLIGHT_PER_ACTOR:
                        break
                    if again:
                        shard = again.popleft()
                    elif exhausted or (shard := next(source, None)) is None:
                        exhausted = True
                        break
                    pending[pool.actors[target].run.remote(shard.payload)] = (shard, target)
                    pool.load[target] += 1
                if not pending:
                    break
                [done], _ = ray.wait(list(pending), num_returns=1)
                shard, actor = pending.pop(done)
                pool.load[actor] -= 1
                try:
                    result, pool.where[actor] = ray.get(done)
                except ray.exceptions.RayActorError as exc:
                    if getattr(exc, "actor_init_failed", False):  # it never started; another try fails the same way
                        raise self._failure(shard, pool.where[actor], exc) from None
                    again.extendleft(reversed(self._lost(pool, actor, shard, pending, attempts, exc)))
                    continue
                except ray.exceptions.RayError as exc:
                    raise self._failure(shard, pool.where[actor], exc) from None
                if progress is not None:
                    progress.shard_done(shard)
                yield shard, result
        except BaseException:
            failed = True
            raise
        finally:
            if keep and not failed and not pending:
                self._pool = pool
            else:  # free the models; the Ray instance stays up for the engine's next map
                for handle in pool.actors:
                    ray.kill(handle)

    def _lost(
        self,
        pool: _Pool,
        actor: int,
        shard: Shard,
        pending: dict[Any, tuple[Shard, int]],
        attempts: dict[int, int],
        exc: Exception,
    ) -> list[Shard]:
        """An actor died (its process killed, its node lost): its shards, to run again on the others (or on a
        replacement), the one it was running first. That shard counts an attempt; past ``retries``, an error."""
        pool.alive[actor] = False
        lost = [shard]
        for ref, (other, owner) in list(pending.items()):
            if owner == actor and not self._finished(ref):  # a shard it finished before dying stays done
                lost.append(other)
                del pending[ref]
        lost.sort(key=lambda item: item.index)  # an actor runs its shards in order: it died on the first unfinished
        running = lost[0]
        attempts[running.index] = attempts.get(running.index, 0) + 1
        where = _where(exc) or pool.where[actor]
        if attempts[running.index] > self.retries:
            raise self._failure(running, where, exc) from None
        logger.warning("%s: its Ray worker (%s) died; running it again elsewhere", running.name, where)
        return lost

    def _finished(self, ref: Any) -> bool:
        """Whether the task behind ``ref`` has returned its result (which outlives the actor)."""
        ray = self.ray
        if not ray.wait([ref], timeout=0)[0]:
            return False
        try:
            ray.get(ref, timeout=0)
        except ray.exceptions.RayError:
            return False
        return True

    def _room(self) -> bool:
        """Whether the cluster has the CPUs/GPUs for one more actor now (after a lost node it may not)."""
        free = self.ray.available_resources()
        return free.get("CPU", 0) >= self.cpus_per_actor and free.get("GPU", 0) >= self.gpus_per_actor

    def _start_actor(self, pool: _Pool) -> int:
        remote = self.ray.remote(_ShardActor).options(num_cpus=self.cpus_per_actor, num_gpus=self.gpus_per_actor)
        pool.actors.append(remote.remote(pool.recipe))
        pool.load.append(0)
        pool.alive.append(True)
        pool.where.append(f"actor {len(pool.actors) - 1}")
        return len(pool.actors) - 1

    def _release(self) -> None:
        if self._pool is not None:
            for handle in self._pool.actors:
                self.ray.kill(handle)
            self._pool = None

    def _failure(self, shard: Shard, where: str, exc: Exception) -> EngineError:
        ray = self.ray
        where = _where(exc) or where
        if isinstance(exc, ray.exceptions.RayTaskError):  # the worker raised: its error, one line, with the shard
            cause = exc.cause
            if not isinstance(cause, WorkerFailure):
                cause = WorkerFailure.of(cause)
            error = EngineError(f"{shard.name} failed on Ray worker ({where}): {cause}")
            error.__cause__ = exc
            return error
        if isinstance(exc, ray.exceptions.RayActorError) and getattr(exc, "actor_init_failed", False):
            # _ShardActor keeps what its recipe raises, so a failed start is Ray's own: the recipe did not unpickle
            # there (rankwise or the loader's module missing on that node, another version of it)
            return EngineError(
                f"{shard.name} failed: its Ray worker ({where}) could not start: {_cause(exc)}; every node needs "
                "the same Python environment, with rankwise installed"
            )
        if isinstance(exc, ray.exceptions.RayActorError):
            return EngineError(
                f"{shard.name} failed: its Ray worker ({where}) died, {self.retries} retries elsewhere did not "
                "finish it; finished shards are kept, run again to resume"
            )
        return EngineError(f"{shard.name} failed on Ray worker ({where}): {type(exc).__name__}: {exc}")


def _where(exc: Exception) -> str | None:
    """``ip A, pid B`` from a Ray error's text (a task error's header, a dead actor's context lines)."""
    text = str(exc)
    found = re.search(r"pid=(\d+), ip=([\w.:-]+)", text)
    if found:
        return f"{found.group(2)}, pid {found.group(1)}"
    pid, ip = re.search(r"^\s*pid: (\d+)", text, re.M), re.search(r"^\s*ip: (\S+)", text, re.M)
    if pid and ip:
        return f"{ip.group(1)}, pid {pid.group(1)}"
    return None


def _cause(exc: Exception) -> str:
    """The innermost ``SomeError: message`` line of a Ray error's text (its first line when there is none)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    found = [line for line in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception): ", line)]
    return found[-1] if found else (lines[0] if lines else type(exc).__name__)
