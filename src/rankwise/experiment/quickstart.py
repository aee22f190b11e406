"""The quickstart: BM25, dense and their RRF hybrid on SciFact test, scored in one go.

Writes ``OUT/metrics.json`` (``{"bm25": {...}, "dense": {...}, "hybrid": {...}}``), one TREC run per system and
the two indexes under ``OUT/indexes/`` — reused on the next run when they were built from the same corpus and
settings, so a second quickstart skips the encoding.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rankwise.errors import IndexStoreError, RankwiseError
from rankwise.types import Dataset, Document

METRICS = ("nDCG@10", "RR@10", "R@100")
DEPTH = 100


def resolve_scifact(data: Path | None) -> Path:
    """``data`` if given; else ``$RANKWISE_DATA/scifact``; else the BEIR download (cached)."""
    if data is not None:
        return data
    env = os.environ.get("RANKWISE_DATA")
    if env and (Path(env) / "scifact").is_dir():
        return Path(env) / "scifact"
    if env:
        raise RankwiseError(f"RANKWISE_DATA={env} has no 'scifact' folder; pass --data DIR or unset RANKWISE_DATA")
    from rankwise.data.download import ensure_beir

    return ensure_beir("scifact")


def _open_or_build(
    directory: Path, corpus: Mapping[str, Document], make: Callable[[], Any], load: Callable[[Path], Any]
) -> tuple[Any, bool]:
    """Reuse the index in ``directory`` if it was built from ``corpus`` with the same settings, else build it."""
    from rankwise.retrieve.store import corpus_fingerprint

    fresh = make()
    if directory.is_dir():
        try:
            stored = load(directory)
        except IndexStoreError:
            stored = None
        if stored is not None and stored.fingerprint == corpus_fingerprint(corpus) and _same_settings(stored, fresh):
            return stored, True
    fresh.index(corpus)
    fresh.save(directory)
    return fresh, False


def _same_settings(stored: Any, fresh: Any) -> bool:
    return bool(getattr(stored, "params", None) == getattr(fresh, "params", None)) and getattr(
        stored, "model_name", None
    ) == getattr(fresh, "model_name", None)


def run_quickstart(
    dataset: Dataset,
    out: Path,
    dense_model: str,
    k: int = DEPTH,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the three systems, write runs + metrics.json under ``out``, return the metrics (with timings)."""
    from rankwise.data import write_run
    from rankwise.evaluate.retrieval import evaluate
    from rankwise.retrieve.bm25 import BM25Retriever
    from rankwise.retrieve.dense import DenseRetriever
    from rankwise.retrieve.fusion import rrf

    queries = dataset.judged_queries()
    if not queries:
        raise RankwiseError(f"{dataset.name}: no judged queries in this split; nothing to evaluate")
    out.mkdir(parents=True, exist_ok=True)
    systems: dict[str, tuple[Callable[[], Any], Callable[[Path], Any]]] = {
        "bm25": (lambda: BM25Retriever(show_progress=False), lambda d: BM25Retriever.load(d, show_progress=False)),
        "dense": (
            lambda: DenseRetriever(model=dense_model, show_progress=show_progress),
            lambda d: DenseRetriever.load(d, show_progress=show_progress),
        ),
    }
    runs = {}
    metrics: dict[str, Any] = {}
    for name, (make, load) in systems.items():
        started = time.perf_counter()
        retriever, reused = _open_or_build(out / "indexes" / name, dataset.corpus, make, load)
        indexed = time.perf_counter()
        runs[name] = retriever.search(queries, k=k)
        searched = time.perf_counter()
        timing = {"index_s": round(indexed - started, 3), "search_s": round(searched - indexed, 3)}
        log(
            f"{name}: index {'reused' if reused else 'built'} in {timing['index_s']:.1f}s, "
            f"searched {len(queries)} queries in {timing['search_s']:.1f}s"
        )
        metrics[name] = {**evaluate(runs[name], dataset.qrels, METRICS), **timing, "index_reused": reused}
    started = time.perf_counter()
    runs["hybrid"] = rrf([runs["bm25"], runs["dense"]], k=60, depth=k)
    metrics["hybrid"] = {
        **evaluate(runs["hybrid"], dataset.qrels, METRICS),
        "fuse_s": round(time.perf_counter() - started, 3),
    }
    for name, run in runs.items():
        write_run(run, out / f"{name}.trec", tag=f"rankwise-{name}")
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / "metrics.json")
    return metrics
