"""The first-stage weight of ``rerank: {kind: rankrag, interpolate: auto}``, picked on dev after training.

When the blend holds SciFact train queries out as a dev split (``scifact: {dev_queries: N}``), ``rankwise rankrag
train`` ends as ``rankwise train reranker`` does: it reranks those queries' BM25 top ``interpolation_depth`` with
the trained model's P(True) scores, picks the first-stage weight with :func:`rankwise.train.dev.tune_interpolation`
(the cross-encoder's pick, on the same queries when ``dev_seed`` is the reranker trainer's seed) and writes it
beside the weights in the file the cross-encoder uses, which ``interpolate: auto`` reads. Test queries are never
looked at.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rankwise.config.rankrag_train import RankRAGTrainConfig, blend_config
from rankwise.data.beir import load_beir
from rankwise.data.files import atomic_write_text
from rankwise.evaluate.retrieval import evaluate
from rankwise.rankrag.preset import load_rankrag
from rankwise.rankrag.sources import scifact_dev
from rankwise.rerank.cross_encoder import TRAINED_SETTINGS
from rankwise.retrieve.bm25 import BM25Retriever
from rankwise.train.dev import tune_interpolation

logger = logging.getLogger(__name__)


def dev_source(config: RankRAGTrainConfig) -> Any:
    """The blend's SciFact source when it holds out dev queries and the pick is wanted; else None."""
    if not config.tune_interpolation or config.blend is None:
        return None
    source = blend_config(config.blend).scifact
    return source if source is not None and source.dev_queries else None


def pick_interpolation(config: RankRAGTrainConfig, model_dir: Path, show_progress: bool = True) -> dict[str, Any]:
    """Pick the weight on the dev queries with the model in ``model_dir`` and write it beside the weights.

    A model that already carries a pick made with the same settings is not scored again (a re-run resumes).
    """
    source = dev_source(config)
    depth = config.interpolation_depth
    settings = {"dev_queries": source.dev_queries, "dev_seed": source.dev_seed, "depth": depth, "dtype": config.dtype}
    target = model_dir / TRAINED_SETTINGS
    if target.is_file():
        saved = json.loads(target.read_text(encoding="utf-8"))
        if saved.get("settings") == settings:
            return saved["pick"]
    data = load_beir(source.path, split="train")
    dev = scifact_dev(data, source)
    queries = {qid: data.queries[qid] for qid in dev}
    qrels = {qid: data.qrels[qid] for qid in dev}
    bm25 = BM25Retriever(show_progress=False)
    bm25.index(data.corpus)
    run = bm25.search(queries, k=depth)
    logger.info("picking the first-stage weight on %d SciFact dev queries' BM25 top %d", len(dev), depth)
    parts = load_rankrag(str(model_dir), dtype=config.dtype, threads=config.threads, show_progress=show_progress)
    reranked = parts.reranker.rerank(queries, run, data.corpus, k=depth)
    pick = tune_interpolation(reranked, run, qrels)
    pick.update(depth=depth, queries=len(dev), bm25_dev_ndcg10=evaluate(run, qrels, ["nDCG@10"])["nDCG@10"])
    record = {
        "first_stage_weight": pick["weight"],
        "picked_on": f"dev nDCG@10, {len(dev)} SciFact train queries held out of the blend, BM25 top {depth}",
        "windows": "first",
        "settings": settings,
        "pick": pick,
    }
    atomic_write_text(target, json.dumps(record, indent=2) + "\n")
    return pick
