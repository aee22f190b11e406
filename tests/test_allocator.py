"""keep_freed_memory: glibc keeps freed tensor memory, so a CPU training step faults far fewer pages."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt settings are glibc's"
)

# Each probe runs in a fresh interpreter: the settings are process-wide and must not leak into this one.
PROBE = """
import json, os, resource, torch
from rankwise.cli.allocator import keep_freed_memory
applied = keep_freed_memory()
torch.manual_seed(0)
torch.set_num_threads(1)
layer = torch.nn.TransformerEncoderLayer(384, 12, 1536, batch_first=True)
faults = []
for length in [128, 80, 120, 64, 128, 100, 72, 128, 90, 110, 128, 70]:  # batches of varying length, as in reranking
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    layer(torch.randn(16, length, 384)).sum().backward()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
faults = sum(faults[3:])  # after warm-up
env = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
print(json.dumps({"applied": applied, "faults": faults, "env": env}))
"""


def _probe(**env: str) -> dict:
    import json

    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "RANKWISE_KEEP_FREED_MEMORY"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_keeping_freed_memory_cuts_page_faults_of_training_steps_and_reaches_child_processes():
    kept = _probe()
    default = _probe(RANKWISE_KEEP_FREED_MEMORY="0")
    assert kept["applied"] is True and default["applied"] is False
    # the environment carries the settings to spawned workers, where glibc reads them at start-up
    assert kept["env"] == {
        "MALLOC_TRIM_THRESHOLD_": str(1 << 31),
        "MALLOC_TOP_PAD_": str(1 << 28),
        "MALLOC_MMAP_THRESHOLD_": str(1 << 25),
    }
    assert default["env"] == {}
    assert kept["faults"] < 0.7 * default["faults"], (kept["faults"], default["faults"])


def test_a_users_own_malloc_setting_is_left_alone():
    mine = _probe(MALLOC_ARENA_MAX="2")
    assert mine["applied"] is False
    assert mine["env"] == {"MALLOC_ARENA_MAX": "2"}
