"""The stages an experiment runs, built from their config sections through plain name -> factory tables.

``RETRIEVERS`` and ``RERANKERS`` map a config ``kind`` to a function that builds the component; a new kind
plugs in with one entry here and one config class in :mod:`rankwise.config`. Stages call the same library
functions the individual CLI commands call (``rankwise index/search/rerank``), with the same defaults, so an
experiment reproduces their runs exactly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rankwise.config import (
    BM25Config,
    CrossEncoderConfig,
    DenseConfig,
    FuseConfig,
    HTTPRerankConfig,
    LLMRerankConfig,
    RankRAGRerankConfig,
    RewriteConfig,
    SparseConfig,
)
from rankwise.errors import IndexStoreError, RankwiseError
from rankwise.experiment.cache import Chunks, content_hash, model_stamp
from rankwise.experiment.datasets import DatasetSource
from rankwise.types import Document, Query, Run, top_k

logger = logging.getLogger(__name__)

Log = Callable[[str], None]

# -------------------------------------------------------------------------------------------------- rewrite


def rewrite(
    config: RewriteConfig, queries: Mapping[str, Query], progress: bool, source: DatasetSource | None = None
) -> tuple[dict[str, Query], dict[str, Any]]:
    """The search queries: each question rewritten by the configured strategy (history kept). ``human`` reads
    the rewrites the data set ships (MT-RAG's original tasks: ``-d mtrag-human:<domain>``)."""
    from rankwise.retrieve.rewrite import GivenRewrites, LLMRewriter, rewrite_queries

    started = time.perf_counter()
    rewriter: Any = None
    if config.strategy == "llm":
        from rankwise.generate.local import LocalGenerator

        chat = LocalGenerator(config.model, threads=config.threads, show_progress=progress)
        rewriter = LLMRewriter(chat, max_new_tokens=config.max_new_tokens)
    elif config.strategy == "human":
        if source is None or source.source != "mtrag-human":
            given = "no data set" if source is None else f"-d {source.name}"
            raise RankwiseError(
                f"rewrite strategy 'human' needs a data set that ships human rewrites (mtrag-human:<domain>), "
                f"not {given}"
            )
        from rankwise.data.mtrag import load_human_rewrites

        table = load_human_rewrites(source.path, source.domain or "")
        rewriter = GivenRewrites(table, source=f"MT-RAG human rewrites of {source.domain}")
    rewritten = rewrite_queries(queries, config.strategy, rewriter)
    changed = sum(1 for qid, q in rewritten.items() if q.text != queries[qid].text)
    return rewritten, {"rewrite_s": _since(started), "changed": changed}


def write_queries(queries: Mapping[str, Query], path: Path) -> None:
    import json

    from rankwise.data._io import atomic_writer

    with atomic_writer(path) as handle:
        for query in queries.values():
            record = {"_id": query.id, "text": query.text, "history": list(query.history)}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_queries(path: Path) -> dict[str, Query]:
    from rankwise.data._io import iter_jsonl

    return {r["_id"]: Query(r["_id"], r["text"], tuple(r.get("history", ()))) for _, r in iter_jsonl(path)}


# ------------------------------------------------------------------------------------------------- retrieve


def _bm25(config: BM25Config, progress: bool) -> Any:
    from rankwise.retrieve.bm25 import BM25Retriever

    params = config.model_dump(exclude={"kind", "k"})
    return BM25Retriever(**params, show_progress=progress)


def _bm25_load(directory: Path, config: BM25Config, progress: bool) -> Any:
    from rankwise.retrieve.bm25 import BM25Retriever

    return BM25Retriever.load(directory, show_progress=progress)


def _dense(config: DenseConfig, progress: bool) -> Any:
    from rankwise.retrieve.dense import DenseRetriever

    return DenseRetriever(**config.model_dump(exclude={"kind", "k"}), show_progress=progress)


def _dense_load(directory: Path, config: DenseConfig, progress: bool) -> Any:
    from rankwise.retrieve.dense import DenseRetriever

    retriever = DenseRetriever.load(
        directory,
        batch_size=config.batch_size,
        trust_remote_code=config.trust_remote_code,
        show_progress=progress,
        ef_search=config.ef_search,
        nprobe=config.nprobe,
    )
    retriever.query_prompt = config.query_prompt
    return retriever


def _sparse(config: SparseConfig, progress: bool) -> Any:
    from rankwise.retrieve.sparse import SparseRetriever

    return SparseRetriever(**config.model_dump(exclude={"kind", "k"}), show_progress=progress)


def _sparse_load(directory: Path, config: SparseConfig, progress: bool) -> Any:
    from rankwise.retrieve.sparse import SparseRetriever

    return SparseRetriever.load(
        directory, batch_size=config.batch_size, trust_remote_code=config.trust_remote_code, show_progress=progress
    )


# kind -> (build a fresh retriever, open a saved index); plain dict literal.
RETRIEVERS: dict[str, tuple[Callable[[Any, bool], Any], Callable[[Path, Any, bool], Any]]] = {
    "bm25": (_bm25, _bm25_load),
    "dense": (_dense, _dense_load),
    "sparse": (_sparse, _sparse_load),
}


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
    make, load = RETRIEVERS[config.kind]
    directory = index_root / f"{config.kind}-{index_key(config, fingerprint)[:16]}"
    started = time.perf_counter()
    if directory.is_dir():
        try:
            retriever = load(directory, config, progress)
        except IndexStoreError:
            retriever = None
        if retriever is not None and retriever.fingerprint == fingerprint:
            return retriever, {"index": "loaded", "index_dir": str(directory), "index_s": _since(started)}
    retriever = make(config, progress)
    retriever.index(corpus)
    retriever.save(directory)
    return retriever, {"index": "built", "index_dir": str(directory), "index_s": _since(started)}


def retrieve(
    config: BM25Config | DenseConfig | SparseConfig,
    corpus: Mapping[str, Document],
    fingerprint: str,
    queries: Mapping[str, Query],
    index_root: Path,
    progress: bool,
) -> tuple[Run, dict[str, Any]]:
    retriever, timing = open_index(config, corpus, fingerprint, index_root, progress)
    started = time.perf_counter()
    run = retriever.search(queries, k=config.k)
    timing["search_s"] = _since(started)
    return run, timing


# ----------------------------------------------------------------------------------------------------- fuse


def fuse(config: FuseConfig, runs: Mapping[str, Run]) -> Run:
    """Fuse the named runs in their order (the first breaks ties), as ``rankwise search --fuse`` does."""
    from rankwise.retrieve.fusion import fuse as fuse_runs

    weights = None if config.weights is None else [config.weights.get(name, 1.0) for name in runs]
    options: dict[str, Any] = {"weights": weights, "depth": config.depth}
    if config.method == "rrf":
        options["k"] = config.k
    return fuse_runs(list(runs.values()), method=config.method, **options)


# --------------------------------------------------------------------------------------------------- rerank

RerankConfig = CrossEncoderConfig | LLMRerankConfig | HTTPRerankConfig | RankRAGRerankConfig


def _cross_encoder(config: CrossEncoderConfig, model: str, progress: bool) -> Any:
    from rankwise.rerank.cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(
        model=model,
        max_length=config.max_length,
        batch_size=config.batch_size,
        max_tokens=config.max_tokens,
        trust_remote_code=config.trust_remote_code,
        show_progress=progress,
        windows=config.windows,
        window_words=config.window_words,
        window_stride=config.window_stride,
    )


def _llm(config: LLMRerankConfig, model: str, progress: bool) -> Any:
    from rankwise.rerank.llm import DEFAULT_TEMPLATE, LLMReranker

    return LLMReranker(
        model=model,
        gguf_file=config.gguf_file,
        template=config.template or DEFAULT_TEMPLATE,
        system_prompt=config.system_prompt,
        max_passage_tokens=config.max_passage_tokens,
        batch_size=config.batch_size,
        max_tokens=config.max_tokens,
        dtype=config.dtype,
        trust_remote_code=config.trust_remote_code,
        show_progress=progress,
    )


def _http(config: HTTPRerankConfig, model: str | None, progress: bool) -> Any:
    from rankwise.rerank.http import HTTPReranker

    return HTTPReranker(
        url=config.url,
        model=model,
        api_key_env=config.api_key_env,
        timeout=config.timeout,
        max_documents=config.max_documents,
        show_progress=progress,
    )


def _rankrag(config: RankRAGRerankConfig, model: str, progress: bool) -> Any:
    from rankwise.rankrag_preset import load_rankrag

    parts = load_rankrag(
        model, dtype=config.dtype, threads=config.threads, rerank_batch_size=config.batch_size, show_progress=progress
    )
    return parts.reranker


# kind -> builder(config, model name or path, show_progress); plain dict literal.
RERANKERS: dict[str, Callable[[Any, Any, bool], Any]] = {
    "cross-encoder": _cross_encoder,
    "llm": _llm,
    "http": _http,
    "rankrag": _rankrag,
}


def rerank_model(config: RerankConfig, models_root: Path, log: Log) -> tuple[str | None, dict[str, Any]]:
    """The model the reranker uses: as configured, or trained first (cached by its settings) when asked."""
    if not isinstance(config, CrossEncoderConfig) or config.train is None:
        return config.model, {}
    from rankwise.experiment.datasets import resolve_dataset

    settings = dict(config.train)
    if "data" in settings:
        source = resolve_dataset(str(settings["data"]))
        settings["data"] = source.path
    directory = models_root / f"reranker-{content_hash('train', config.model, settings)[:16]}"
    model_dir = directory / "model"
    if model_dir.is_dir() and (directory / "metrics.json").is_file():
        return str(model_dir), {"trained_model": str(model_dir), "train": "reused"}
    from rankwise.train.reranker import train_reranker
    from rankwise.train.reranker_config import RerankerTrainConfig

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
            built.append(RERANKERS[config.kind](config, model, progress))
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
    weight, picked_windows = _interpolation(config, model)
    if weight:
        from rankwise.retrieve.fusion import fuse as fuse_runs

        # Reranker first, so fused ties keep the reranker's order (as `rankwise rerank --interpolate`).
        reranked = fuse_runs([reranked, first], method="weighted", weights=[1 - weight, weight])
    info: dict[str, Any] = {"rerank_s": _since(started), "pairs": sum(len(d) for d in first.values())}
    if config.interpolate == "auto":
        info["interpolate"] = weight
        info["interpolate_picked_with_windows"] = picked_windows
    if resumed:
        info["chunks_resumed"] = resumed
    return reranked, info


def _interpolation(config: RerankConfig, model: str | None) -> tuple[float, str | None]:
    """The first-stage weight: the configured number, or for 'auto' the one stored with a trained cross-encoder
    (then also the window fold it was picked with; a different fold here gets a warning, as on the CLI)."""
    if config.interpolate != "auto":
        return config.interpolate or 0.0, None
    from rankwise.rerank.cross_encoder import trained_pick

    # config loading refuses 'auto' for every kind but cross-encoder, whose model is always set
    weight, picked_windows = trained_pick(str(model))
    windows = getattr(config, "windows", "first")  # a CrossEncoderConfig, see above
    if picked_windows != windows:
        logger.warning("rerank: the auto weight was picked with windows %s, this run uses %s", picked_windows, windows)
    return weight, picked_windows


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)
