"""Keep freed memory inside the process (glibc Linux), so CPU training and reranking stop paying page faults.

PyTorch's CPU allocator hands every tensor to ``malloc`` and back. glibc serves large blocks with fresh ``mmap``
calls and gives the top of its heaps back to the kernel once enough is free, so each forward/backward pass on a
CPU faults in (and the kernel zeroes) the same activation memory again. On the 2-core development machine,
``rankwise rerank`` of SciFact's BM25 top-100 at 128 tokens took 85 M minor page faults and 322 s of its 1240 s
in the kernel. Raising glibc's mmap threshold to its 32 MiB maximum and its trim threshold out of reach — what
starting Python with ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_TOP_PAD_`` does — made the
same work 12-16 % faster there with identical results (reranking 1,000 pairs 56.0 -> 47.2 s wall, 11.7 -> 2.6 s
system; 23 cross-encoder training steps 67 -> 59 s). The price: the process keeps its peak heap until it exits,
which is why only the compute commands (training, reranking) call this, never library code on import.

Written here because nothing in the stack does it: PyTorch has no caching allocator for CPU tensors, and jemalloc
or tcmalloc would have to be preloaded before the interpreter starts. Set ``RANKWISE_KEEP_FREED_MEMORY=0`` to opt
out; a ``MALLOC_*`` variable already in the environment is left to win.
"""

from __future__ import annotations

import ctypes
import os
import platform

# glibc's mallopt() parameters (malloc.h) and the values we set.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
SETTINGS = {
    "MALLOC_TRIM_THRESHOLD_": (_M_TRIM_THRESHOLD, 1 << 31),  # keep up to 2 GiB of free heap top
    "MALLOC_TOP_PAD_": (_M_TOP_PAD, 1 << 28),  # grow heaps 256 MiB at a time
    "MALLOC_MMAP_THRESHOLD_": (_M_MMAP_THRESHOLD, 1 << 25),  # 32 MiB, glibc's maximum on 64-bit
}


def keep_freed_memory() -> bool:
    """Apply the settings to this process and, through the environment, to the processes it starts.

    Returns whether they were applied (False off glibc, when opted out, or when the user set ``MALLOC_*``).
    """
    if os.environ.get("RANKWISE_KEEP_FREED_MEMORY", "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name.startswith("MALLOC_") for name in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    for name, (param, value) in SETTINGS.items():
        if libc.mallopt(param, value) != 1:
            return False
        os.environ[name] = str(value)  # spawned children (the RankRAG sweep's workers) read these at start
    return True
