"""Tiny models built from a config (no download, milliseconds per forward pass) for the reranker tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from rankwise.types import Document, Query


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled SmolLM2 tokenizer (with its chat template), read once from the GGUF and saved plainly."""
    from rankwise.config.models import load_tokenizer

    out = tmp_path_factory.mktemp("smollm2-tokenizer")
    load_tokenizer("smollm2").save_pretrained(out)
    return out


@pytest.fixture()
def toy_corpus() -> dict[str, Document]:
    return {
        "d1": Document("d1", "Cats", "Cats purr and sleep all day."),
        "d2": Document("d2", "Dogs", "Dogs bark at the postman."),
        "d3": Document("d3", "", "Fish swim in water."),
        "d4": Document("d4", "Birds", "Birds sing in the morning and fly south."),
    }


@pytest.fixture()
def toy_queries() -> dict[str, Query]:
    return {"q1": Query("q1", "why do cats purr"), "q2": Query("q2", "which animals fly")}
