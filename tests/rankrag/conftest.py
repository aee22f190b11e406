"""Shared fixtures of the RankRAG tests (the tiny Llama, ``tiny_lm_dir``, is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def tiny_eval(data_root: Path) -> str:
    """The sweep/eval config's ``eval`` section: 2 SciFact queries at depth 3, 2 held-out HotpotQA questions."""
    hotpotqa = data_root / "hotpotqa-train100" / "hotpotqa_train.json"
    return (
        f"eval:\n  scifact: {data_root}/scifact\n  scifact_queries: 2\n  depth: 3\n  hotpotqa: {hotpotqa}\n"
        "  hotpotqa_limit: 2\n  max_new_tokens: 2\n"
    )
