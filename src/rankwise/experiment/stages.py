"""The stages an experiment runs, built from their config sections through plain name -> factory tables.

Components come from :mod:`rankwise.build` (the one builder, which the CLI commands use too), so an experiment
reproduces ``rankwise index/search/rerank`` runs exactly; this module adds caching of indexes, chunked resumable
reranking and the timings an experiment records.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from rankwise.build import build_reranker, build_retriever, build_rewriter, interpolation_weight, open_retriever
from rankwise.config.experiment import (
    BM25Config,
    CrossEncoderConfig,
    DenseConfig,
    FuseConfig,
    RewriteConfig,
    SparseConfig,
)
from rankwise.config.train_reranker import RerankerTrainConfig
from rankwise.data._io import iter_jsonl
from rankwise.data.files import atomic_writer
from rankwise.data.mtrag import load_human_rewrites
from rankwise.errors import IndexStoreError, RankwiseError
from rankwise.experiment.cache import Chunks, content_hash, model_stamp
from rankwise.experiment.datasets import DatasetSource, resolve_dataset
from rankwise.experiment.pipeline import restrict_run
from rankwise.rerank.base import interpolate
from rankwise.retrieve.fusion import fuse as fuse_runs
from rankwise.retrieve.rewrite import CachedRewriter, GivenRewrites, rewrite_queries
from rankwise.types import Document, Query, Run, top_k

logger = logging.getLogger(__name__)

Log = Callable[[str], None]
RESTRICTED_BATCH = 256  # queries searched at once when each ranks its own candidates (a whole-corpus depth)

# -------------------------------------------------------------------------------------------------- rewrite


def rewrite(
    config: RewriteConfig, queries: Mapping[str, Query], progress: bool, source: DatasetSource | None = None
) -> tuple[dict[str, Query], dict[str, Any]]:
    """The search queries: each question rewritten by the configured strategy (history kept). ``human`` reads
    the rewrites the data set ships (MT-RAG's original tasks: ``-d mtrag-human:<domain>``)."""
    started = time.perf_counter()
    rewriter: Any = build_rewriter(config, progress)
    if config.cache is not None and rewriter is not None:
        rewriter = CachedRewriter(rewriter, config.cache)
    if config.strategy == "human":
        if source is None or source.source != "mtrag-human":
            given = "no data set" if source is None else f"-d {source.name}"
            raise RankwiseError(
                f"rewrite strategy 'human' needs a data set that ships human rewrites (mtrag-human:<domain>), "
                f"not {given}"
            )

        table = load_human_rewrites(source.path, source.domain or "")
        rewriter = GivenRewrites(table, source=f"MT-RAG human rewrites of {source.domain}")
    rewritten = rewrite_queries(queries, config.strategy, rewriter)
    changed = sum(1 for qid, q in rewritten.items() if q.text != queries[qid].text)
    return rewritten, {"rewrite_s": _since(started), "changed": changed}


def write_queries(queries: Mapping[str, Query], path: Path) -> None:
    import json

    with atomic_writer(path) as handle:
        for query in queries.values():
            record = {"_id": query.id, "text": query.text, "history": list(query.history)}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_queries(path: Path) -> dict[str, Query]:
    return {r["_id"]: Query(r["_id"], r["text"], tuple(r.get("history", ()))) for _, r in iter_jsonl(path)}


# ------------------------------------------------------------------------------------------------- retrieve


def index_key(config: BM25Config | DenseConfig | SparseConfig, fingerprint: str) -> str:
    params = config.index_params()
    if "model" in params:
        params["model"] = model_stamp(params["model"])
    return content_hash("index", params, fingerprint)


def open_index(
    config: BM25Config | DenseConfig | SparseConfig,
    corpus: Mapping[str, Document],
    fingerprint: str,
    index_root: Path,
    progress: bool,
) -> tuple[Any, dict[str, Any]]:
    """The retriever over ``corpus``: a cached index under ``index_root`` when one matches, else built and saved."""
    directory = index_root / f"{config.kind}-{index_key(config, fingerprint)[:16]}"
    started = time.perf_counter()
    if directory.is_dir():
        try:
            retriever = open_retriever(directory, config, progress)
        except IndexStoreError:
            retriever = None
        if retriever is not None and retriever.fingerprint == fingerprint:
            return retriever, {"index": "loaded", "index_dir": str(directory), "index_s": _since(started)}
    retriever = build_retriever(config, progress)
    if config.kind == "bm25":
        retriever.index(corpus)
        retriever.save(directory)
    else:  # encoded shards stay beside the index until it is saved: a killed run resumes from the finished ones
        shards = index_root / f"{directory.name}.shards"
        retriever.index(corpus, work_dir=shards)
        retriever.save(directory)
        shutil.rmtree(shards, ignore_errors=True)
    return retriever, {"index": "built", "index_dir": str(directory), "index_s": _since(started)}


def retrieve(
    config: BM25Config | DenseConfig | SparseConfig,
    corpus: Mapping[str, Document],
    fingerprint: str,
    queries: Mapping[str, Query],
    index_root: Path,
    progress: bool,
    allowed: Mapping[str, Collection[str]] | None = None,
) -> tuple[Run, dict[str, Any]]:
    """The top ``k`` of each query; with ``allowed`` (query id -> its candidates) each query's whole candidate
    set instead, in the order of a search over the whole corpus (candidates it does not reach follow, by id)."""
    retriever, timing = open_index(config, corpus, fingerprint, index_root, progress)
    started = time.perf_counter()
    if allowed is None:
        run = retriever.search(queries, k=config.k)
    else:
        ids, run = list(queries), {}
        for start in range(0, len(ids), RESTRICTED_BATCH):  # a whole-corpus ranking per query: bound the memory
            batch = {qid: queries[qid] for qid in ids[start : start + RESTRICTED_BATCH]}
            run.update(restrict_run(retriever.search(batch, k=len(corpus)), allowed))
    timing["search_s"] = _since(started)
    if getattr(retriever, "precision_record", None) is not None:
        timing["precision"] = retriever.precision_record  # how the index's documents and these queries ran
    return run, timing


# ----------------------------------------------------------------------------------------------------- fuse


def fuse(config: FuseConfig, runs: Mapping[str, Run]) -> Run:
    """Fuse the named runs in their order (the first breaks ties), as ``rankwise search --fuse`` does."""
    weights = None if config.weights is None else [config.weights.get(name, 1.0) for name in runs]
    options: dict[str, Any] = {"weights": weights, "depth": config.depth}
    if config.method == "rrf":
        options["k"] = config.k
    return fuse_runs(list(runs.values()), method=config.method, **options)


# --------------------------------------------------------------------------------------------------- rerank

RerankConfig = Any  # a rerank section of any registered kind (rankwise.config.sections.RERANKER_CONFIGS)


def rerank_model(config: RerankConfig, models_root: Path, log: Log) -> tuple[str | None, dict[str, Any]]:
    """The model the reranker uses: as configured, or trained first (cached by its settings) when asked."""
    if not isinstance(config, CrossEncoderConfig) or config.train is None:
        return getattr(config, "model", None), {}

    settings = dict(config.train)
    if "data" in settings:
        source = resolve_dataset(str(settings["data"]))
        settings["data"] = source.path
    directory = models_root / f"reranker-{content_hash('train', config.model, settings)[:16]}"
    model_dir = directory / "model"
    if model_dir.is_dir() and (directory / "metrics.json").is_file():
        return str(model_dir), {"trained_model": str(model_dir), "train": "reused"}
    from rankwise.train.reranker import train_reranker

    log(f"training the cross-encoder into {directory} (resumes from its last checkpoint if interrupted)")
    started = time.perf_counter()
    metrics = train_reranker(RerankerTrainConfig(**settings, model=config.model, output_dir=str(directory)))
    info = {"trained_model": str(model_dir), "train": "trained", "train_s": _since(started)}
    info["train_best_dev_ndcg@10"] = metrics.get("best_dev_ndcg@10")
    return str(model_dir), info


def rerank(
    config: RerankConfig,
    model: str | None,
    queries: Mapping[str, Query],
    run: Run,
    corpus: Mapping[str, Document],
    chunks: Chunks | None,
    progress: bool,
) -> tuple[Run, dict[str, Any]]:
    """Rerank the top ``top_n`` of ``run`` (as ``rankwise rerank`` does), optionally in saved chunks of queries."""
    started = time.perf_counter()
    first = top_k(run, config.top_n)
    built: list[Any] = []

    def reranker() -> Any:
        if not built:
            section = config if model == getattr(config, "model", None) else config.model_copy(update={"model": model})
            built.append(build_reranker(section, progress))
        return built[0]

    if chunks is None or config.checkpoint_every is None:
        reranked = reranker().rerank(queries, first, corpus, k=config.top_n)
        resumed = 0
    else:
        ids = list(first)
        size = config.checkpoint_every
        reranked, resumed = {}, 0
        for index, start in enumerate(range(0, len(ids), size)):
            part = chunks.load(index)
            if part is None:
                sub = {qid: first[qid] for qid in ids[start : start + size]}
                part = reranker().rerank(queries, sub, corpus, k=config.top_n)
                chunks.save(index, part)
            else:
                resumed += 1
            reranked.update(part)
    section = config if model == getattr(config, "model", None) else config.model_copy(update={"model": model})
    weight, picked_windows = interpolation_weight(section, logger.warning)
    if weight:
        reranked = interpolate(first, reranked, weight)
    info: dict[str, Any] = {"rerank_s": _since(started), "pairs": sum(len(d) for d in first.values())}
    if config.interpolate == "auto":
        info["interpolate"] = weight
        info["interpolate_picked_with_windows"] = picked_windows
    if resumed:
        info["chunks_resumed"] = resumed
    if built and getattr(built[0], "precision_choice", None) is not None:
        info["precision"] = built[0].precision_choice.record()
    return reranked, info


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)
