"""The Ray engine: one worker (one model copy) per Ray actor, on this machine or across a cluster.

- ``address=None`` starts a local Ray instance with this machine's cores for as long as the engine is open (Ray
  also stops it when the process exits); ``"auto"`` joins the cluster a ``ray start`` on this machine belongs to;
  ``"ray://host:10001"`` (or ``host:6379``) joins a remote one. Every node needs the same Python environment with
  rankwise installed, and the model reachable under the same name or path.
- Actors are started as shards need them, up to ``actors`` (default: the cluster's CPUs / ``cpus_per_actor``, or
  its GPUs / ``gpus_per_actor``); each holds at most two shards (one running, one queued), so the driver's memory
  is bounded by the number of actors, not the corpus.
- A worker process that dies (killed, out of memory, its node lost) is restarted up to ``retries`` times and the
  shard it was on is run again; past that, or when the worker raises, the error names the shard and the worker.
  Shards finished before the failure are already written by the stage, so running again resumes.

Ray Core actors rather than Ray Data's ``map_batches``: the stage's shards already are the unit of work, of
retry and of resume (checksummed files), which is exactly an actor pool's task; Ray Data would add pyarrow and its
own block format for the same schedule.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from rankwise.engine import Progress, Shard, Worker
from rankwise.errors import EngineError, MissingExtraError, RankwiseError

IN_FLIGHT_PER_ACTOR = 2


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
            ray.init(num_cpus=cores, **options)
        else:
            options.pop("include_dashboard")  # a setting of the cluster's head, not of a driver joining it
            try:
                ray.init(address=self.address, **options)
            except ConnectionError as exc:
                raise EngineError(f"cannot join the Ray cluster at {self.address!r}: {exc}") from None
        self._owns_ray = True

    def close(self) -> None:
        """Stop the local Ray instance this engine started (or leave the cluster it joined)."""
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
        self, recipe: Callable[[], Worker], shards: Iterable[Shard], progress: Progress | None = None
    ) -> Iterator[tuple[Shard, Any]]:
        """Run ``shards`` on the actor pool; yield ``(shard, result)`` in the order they finish."""
        ray = self.ray
        self._connect()
        limit = self._pool_size()
        remote = ray.remote(_ShardActor).options(
            num_cpus=self.cpus_per_actor,
            num_gpus=self.gpus_per_actor,
            max_restarts=self.retries,
            max_task_retries=self.retries,
        )
        recipe_ref: Any = None
        actors: list[Any] = []
        load: list[int] = []
        where: list[str] = []
        pending: dict[Any, tuple[Shard, int]] = {}
        source = iter(shards)
        exhausted = False
        try:
            while True:
                while not exhausted:
                    idle = [i for i, n in enumerate(load) if n == 0]
                    if not idle and len(actors) < limit:  # a new actor only when every one is busy
                        if recipe_ref is None:
                            recipe_ref = ray.put(recipe)  # shipped once, not once per actor
                        actors.append(remote.remote(recipe_ref))
                        load.append(0)
                        where.append(f"actor {len(actors) - 1}")
                        idle = [len(actors) - 1]
                    target = idle[0] if idle else min(range(len(actors)), key=load.__getitem__)
                    if load[target] >= IN_FLIGHT_PER_ACTOR:
                        break
                    shard = next(source, None)
                    if shard is None:
                        exhausted = True
                        break
                    pending[actors[target].run.remote(shard.payload)] = (shard, target)
                    load[target] += 1
                if not pending:
                    break
                [done], _ = ray.wait(list(pending), num_returns=1)
                shard, actor = pending.pop(done)
                load[actor] -= 1
                try:
                    result, where[actor] = ray.get(done)
                except ray.exceptions.RayError as exc:
                    raise self._failure(shard, where[actor], exc) from None
                if progress is not None:
                    progress.shard_done(shard)
                yield shard, result
        finally:
            for handle in actors:  # free the models; the Ray instance stays up for the engine's next map
                ray.kill(handle)

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
        if isinstance(exc, ray.exceptions.RayActorError):
            return EngineError(
                f"{shard.name} failed: its Ray worker ({where}) died and {self.retries} restart(s) did not finish "
                "it; finished shards are kept, run again to resume"
            )
        return EngineError(f"{shard.name} failed on Ray worker ({where}): {type(exc).__name__}: {exc}")


def _where(exc: Exception) -> str | None:
    """``ip A, pid B`` from a Ray error's text (a task error's header, a dead actor's context lines)."""
    import re

    text = str(exc)
    found = re.search(r"pid=(\d+), ip=([\w.:-]+)", text)
    if found:
        return f"{found.group(2)}, pid {found.group(1)}"
    pid, ip = re.search(r"^\s*pid: (\d+)", text, re.M), re.search(r"^\s*ip: (\S+)", text, re.M)
    if pid and ip:
        return f"{ip.group(1)}, pid {pid.group(1)}"
    return None
