"""The Ray engine with an instance of its own (no ``ray.init`` by the caller): the actors' priority, and a worker
that cannot start."""

from __future__ import annotations

import os
import sys

import pytest

from rankwise.engine import Shard
from rankwise.engine.ray_engine import RayEngine
from rankwise.errors import EngineError


@pytest.fixture
def no_ray_session():
    import ray
    from ray import cloudpickle

    if ray.is_initialized():  # another module's session: the engine must start its own instance here
        ray.shutdown()
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # actors import rankwise, not this test file
    yield ray
    assert not ray.is_initialized()  # the engine stopped the instance it started


def niceness(payload: object, report: object) -> int:
    return os.nice(0)


def niceness_worker():
    return niceness


def test_actors_run_at_the_drivers_niceness_not_rays_15(no_ray_session) -> None:
    with RayEngine(actors=1) as engine:
        results = [result for _, result in engine.map(niceness_worker, [Shard(0, "shard 0", None, 1)])]
    assert results == [os.nice(0)]


def test_a_worker_that_cannot_start_names_the_cause_at_once(no_ray_session, tmp_path, monkeypatch) -> None:
    # a loader from a module the driver can import and the actors cannot (as when a node lacks rankwise)
    (tmp_path / "ghost_loader.py").write_text("def build():\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import ghost_loader

    with RayEngine(actors=1, retries=2) as engine, pytest.raises(EngineError) as info:
        list(engine.map(ghost_loader.build, [Shard(0, "shard 0 (documents a..b)", None, 1)]))
    message = str(info.value)
    assert message.startswith("shard 0 (documents a..b) failed: its Ray worker (")
    assert "could not start: ModuleNotFoundError: No module named 'ghost_loader'; every node needs" in message
    assert "\n" not in message
    sys.modules.pop("ghost_loader", None)
