"""Which numeric precision a neural stage runs in: ``auto``, ``fp32``, ``bf16`` or ``int8``.

- ``fp32``: the weights as trained; the reference every other precision is measured against.
- ``bf16``: the torch model cast to bfloat16. Fast only where the hardware runs bf16 matmuls natively (CUDA with
  bf16 support; CPUs with AVX512-BF16 or AMX): elsewhere they are emulated, ~40x slower (see
  :func:`rankwise.config.models.fast_bfloat16`).
- ``int8``: an ONNX export of the model, dynamically quantized to int8 by onnxruntime (:mod:`rankwise.config.onnx_int8`;
  the ``onnx`` extra), CPU only.

``auto`` picks, per stage and machine, the fastest precision that keeps fp32's quality: bf16 where it is native,
else fp32. It never picks int8: on the bundled MiniLM, int8 (per-channel weights, the best recipe tried) kept a
cosine of only ~0.994 with the fp32 document vectors and a Spearman of ~0.95 with the fp32 cross-encoder scores
(untrained head), against 0.998+ and 0.9997 for bf16; ``benchmarks/speed.py`` measures both on SciFact. The choice
and its reason are logged (logger ``rankwise.config.precision``) and recorded (:meth:`PrecisionChoice.record`) in
index manifests and experiment metrics.
"""

from __future__ import annotations

import importlib.util
import logging
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from rankwise.errors import MissingExtraError, RankwiseError

logger = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "int8")
# CPU flags (as /proc/cpuinfo spells them) that decide what runs natively; recorded with every choice.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> tuple[str, ...]:
    """The :data:`SPEED_FLAGS` this CPU has (read from ``/proc/cpuinfo``; empty where that file does not exist)."""
    path = Path("/proc/cpuinfo")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            present = set(line.partition(":")[2].split())
            return tuple(flag for flag in SPEED_FLAGS if flag in present)
    return ()


def _on_cuda(device: str | None) -> bool:
    import torch

    if device is None:
        return bool(torch.cuda.is_available())
    return str(device).startswith("cuda")


def native_bf16(device: str | None = None) -> tuple[bool, str]:
    """``(whether device runs bf16 matmuls natively, why)``; ``device`` None = CUDA if present, else the CPU.

    Uses :func:`~rankwise.config.models.fast_bfloat16` (torch's own check) and, on an x86 CPU whose flags are
    readable, also asks for AVX512-BF16 or AMX: torch's check passes on any AVX-512 CPU, where oneDNN still
    emulates bf16 without those instructions.
    """
    from rankwise.config.models import fast_bfloat16

    cuda = _on_cuda(device)
    where = "this CUDA device" if cuda else "this CPU"
    if not fast_bfloat16(device):
        return False, f"{where} has no native bf16 (bf16 matmuls would be emulated, ~40x slower than fp32)"
    if cuda:
        return True, "this CUDA device runs bf16 natively"
    flags = cpu_flags()
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    if x86 and flags and not any(flag in flags for flag in BF16_FLAGS):
        return False, "this CPU has no avx512_bf16/amx_bf16 (bf16 matmuls would be emulated, slower than fp32)"
    have = [flag for flag in BF16_FLAGS if flag in flags]
    return True, f"this CPU runs bf16 natively ({', '.join(have) or 'oneDNN bf16 support'})"


def check_int8_available(device: str | None = None) -> None:
    """Raise unless int8 can run here: onnxruntime and onnx installed (the ``onnx`` extra), a CPU device."""
    if device is not None and not str(device).startswith("cpu"):
        raise RankwiseError(f"precision int8 runs on the CPU only (onnxruntime), not on device '{device}'")
    for module, package in (("onnxruntime", "onnxruntime"), ("onnx", "onnx")):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(package, "onnx")


@dataclass(frozen=True)
class PrecisionChoice:
    """What a stage runs in: ``precision`` (fp32 | bf16 | int8), what was asked and why this was picked."""

    stage: str
    requested: str
    precision: str
    reason: str

    def describe(self) -> str:
        """One line for logs and the CLI, e.g. ``dense: precision bf16 (auto: this CPU runs bf16 natively ...)``."""
        return f"{self.stage}: precision {self.precision} ({self.requested}: {self.reason})"

    def record(self) -> dict[str, Any]:
        """The JSON written to index manifests and metrics.json (with the CPU flags that decided it)."""
        return {
            "requested": self.requested,
            "precision": self.precision,
            "reason": self.reason,
            "cpu_flags": list(cpu_flags()),
        }


def choose_precision(requested: str, stage: str, device: str | None = None) -> PrecisionChoice:
    """Resolve ``requested`` (auto | fp32 | bf16 | int8) for ``stage`` (e.g. ``"cross-encoder"``) on ``device``.

    An explicit precision is kept as asked (bf16 where it is emulated is kept too, with a warning); int8 needs
    onnxruntime and a CPU. ``auto`` is bf16 where :func:`native_bf16` holds, else fp32 (see the module docstring
    for why never int8). The choice is logged.
    """
    if requested not in PRECISIONS:
        raise RankwiseError(f"precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    if requested == "int8":
        check_int8_available(device)
    if requested != "auto":
        reason = "asked for"
        if requested == "bf16":
            native, why = native_bf16(device)
            if not native:
                logger.warning("%s: precision bf16 as asked, but %s", stage, why)
                reason = f"asked for; {why}"
        choice = PrecisionChoice(stage, requested, requested, reason)
    else:
        native, why = native_bf16(device)
        if native:
            choice = PrecisionChoice(stage, "auto", "bf16", why)
        else:
            choice = PrecisionChoice(stage, "auto", "fp32", f"{why}; int8 is never picked by auto (lower quality)")
    logger.info("%s", choice.describe())
    return choice


def llm_dtype(config: Any, stage: str) -> str:
    """The torch dtype an LLM section (reranker or generator) loads in: its ``precision`` when set (``auto``
    resolved for the section's ``device`` and logged by :func:`choose_precision`), else its ``dtype``."""
    if config.precision is None:
        return config.dtype
    choice = choose_precision(config.precision, stage, getattr(config, "device", None))
    return {"fp32": "float32", "bf16": "bfloat16"}[choice.precision]
