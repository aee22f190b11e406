"""The quickstart: the shipped experiment ``presets/quickstart.yaml`` (BM25, dense and their RRF hybrid on
SciFact test) run by the experiment runner, the one run path.

``rankwise quickstart`` writes what ``rankwise run -e configs/quickstart.yaml`` writes:
``<out>/quickstart/<dataset>/metrics.json`` with the runs, and indexes cached under ``<out>/.indexes`` (keyed by
corpus and settings), so a second quickstart skips the encoding. ``rankwise check`` compares it with
``configs/quickstart.expected.yaml``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rankwise.config.experiment import load_config
from rankwise.data.download import ensure_beir
from rankwise.errors import RankwiseError
from rankwise.experiment.runner import run_experiment

PRESET = Path(__file__).with_name("presets") / "quickstart.yaml"
METRICS = ("nDCG@10", "RR@10", "R@100")
# the preset's stage names, as the quickstart table shows them
SYSTEMS = {"bm25": "bm25", "dense": "dense", "fuse": "hybrid"}


def resolve_scifact(data: Path | None) -> Path:
    """``data`` if given; else ``$RANKWISE_DATA/scifact``; else the BEIR download (cached)."""
    if data is not None:
        return data
    env = os.environ.get("RANKWISE_DATA")
    if env and (Path(env) / "scifact").is_dir():
        return Path(env) / "scifact"
    if env:
        raise RankwiseError(f"RANKWISE_DATA={env} has no 'scifact' folder; pass --data DIR or unset RANKWISE_DATA")

    return ensure_beir("scifact")


def run_quickstart(
    data: Path,
    out_root: Path,
    dense_model: str | None = None,
    show_progress: bool = True,
    log: Callable = print,
    precision: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Run the preset on ``data`` (``precision``: the dense encoder's, default the preset's fp32); return its
    output folder and ``{system: {metric: value, index_s, search_s}}``."""
    overrides = [] if dense_model is None else [f"retrieve.dense.model={json.dumps(dense_model)}"]
    if precision is not None:
        overrides.append(f"retrieve.dense.precision={json.dumps(precision)}")
    config = load_config(PRESET, overrides)
    [out_dir] = run_experiment(config, [str(data)], out_root, show_progress=show_progress, log=log)
    return out_dir, summary(json.loads((out_dir / "metrics.json").read_text(encoding="utf-8")))


def summary(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The quickstart table's rows from an experiment's metrics.json."""
    rows = {}
    for stage, system in SYSTEMS.items():
        entry = metrics["stages"][stage]
        timing = entry.get("timing", {})
        rows[system] = {
            **{name: entry["metrics"][name] for name in METRICS},
            "index_s": timing.get("index_s", 0.0),
            "search_s": timing.get("search_s", timing.get("total_s", 0.0)),
            "index": timing.get("index", "-"),
        }
    return rows
