"""keep_freed_memory: glibc keeps freed memory inside the process, and spawned workers inherit the settings.

The tests check the mechanism, which is deterministic: a 24 MiB block freed by a process with the settings stays
resident (it came from the heap, whose top is no longer trimmed), while glibc's defaults serve it with ``mmap``
and give it straight back. Whether that saves time depends on the machine's kernel and load (on the 2-core
development machine it cut page faults of training steps by far more than half; on one CI machine the same
probe faulted more), so the page-fault comparison is a benchmark: ``python benchmarks/allocator.py``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt settings are glibc's"
)

# Each probe runs in a fresh interpreter: the settings are process-wide and must not leak into this one. It does
# not import torch, so no earlier large free has moved glibc's dynamic mmap threshold.
PROBE = """
import ctypes, json, os
from rankwise.cli.allocator import keep_freed_memory
applied = keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
page = os.sysconf("SC_PAGE_SIZE")
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
size = 24 << 20
block = libc.malloc(size)
ctypes.memset(block, 1, size)
before = resident()
libc.free(block)
kept = before - resident() < size // 2
env = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
print(json.dumps({"applied": applied, "kept": kept, "env": env}))
"""


def _probe(code: str = PROBE, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "RANKWISE_KEEP_FREED_MEMORY"}
    done = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_freed_memory_stays_in_the_process_only_with_the_settings():
    kept = _probe()
    default = _probe(RANKWISE_KEEP_FREED_MEMORY="0")
    assert kept["applied"] is True and default["applied"] is False
    assert kept["kept"] is True
    assert default["kept"] is False


def test_the_settings_reach_child_processes_through_the_environment():
    kept = _probe()
    # the environment carries the settings to spawned workers, where glibc reads them at start-up
    assert kept["env"] == {
        "MALLOC_TRIM_THRESHOLD_": str(1 << 31),
        "MALLOC_TOP_PAD_": str(1 << 28),
        "MALLOC_MMAP_THRESHOLD_": str(1 << 25),
    }
    assert _probe(RANKWISE_KEEP_FREED_MEMORY="0")["env"] == {}
    # a child started with that environment (and no call of its own) keeps freed memory too
    child = PROBE.replace("applied = keep_freed_memory()", "applied = None")
    assert _probe(child, **kept["env"])["kept"] is True


def test_a_users_own_malloc_setting_is_left_alone():
    mine = _probe(MALLOC_ARENA_MAX="2")
    assert mine["applied"] is False
    assert mine["env"] == {"MALLOC_ARENA_MAX": "2"}
