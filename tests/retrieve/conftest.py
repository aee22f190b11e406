"""Fixtures shared by the precision tests: one torch thread, and a pretend CPU for the bf16 decision."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from rankwise.config import precision as precision_module


@pytest.fixture()
def one_thread() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: one thread is faster and steadier
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def pretend_cpu(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool, tuple[str, ...]], None]:
    """``pretend_cpu(torch_says, flags)``: a CPU whose oneDNN check says ``torch_says`` and whose /proc/cpuinfo has
    ``flags`` (no CUDA)."""
    import torch

    def pretend(torch_says: bool, flags: tuple[str, ...]) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: torch_says)
        monkeypatch.setattr(precision_module, "cpu_flags", lambda: flags)
        monkeypatch.setattr(precision_module.platform, "machine", lambda: "x86_64")

    return pretend


@pytest.fixture(scope="module")
def tiny_encoder(minilm_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A sentence-transformers encoder with MiniLM's tokenizer and a random 32-wide body (built from a config)."""
    from rankwise.retrieve.encode import build_random_encoder

    return str(build_random_encoder(tmp_path_factory.mktemp("tiny") / "encoder", minilm_path, hidden_size=32))


@pytest.fixture(scope="module")
def minilm_ce():
    """The bundled MiniLM body under a seeded, untrained one-logit head: a random tiny model's scores barely
    spread, so their rank order is rounding noise; MiniLM's trained body spreads them."""
    import torch

    from rankwise.rerank.cross_encoder import load_cross_encoder

    torch.manual_seed(0)
    return load_cross_encoder("minilm", max_length=128, num_labels=1)
