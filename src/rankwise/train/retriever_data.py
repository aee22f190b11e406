"""The retriever trainer's data: training pairs from a judged data set, triples or raw passages
(:mod:`rankwise.train.pairs`), the held-out dev set (queries, a corpus sample, qrels: dev queries never train), BM25
negatives where the source has none, and the columns ``SentenceTransformerTrainer`` reads.
"""

from __future__ import annotations

import random
from typing import Any

from rankwise.config.train_retriever import RetrieverTrainConfig
from rankwise.data import load_dataset
from rankwise.errors import RankwiseError
from rankwise.train import pairs
from rankwise.train.msmarco import stream_pairs
from rankwise.train.pairs import Pair, PairSet
from rankwise.types import Qrels, Query


def load_pairs(config: RetrieverTrainConfig) -> PairSet:
    if config.data and config.negative_pool is not None:
        return stream_pairs(
            config.path("data"), config.train_split, config.sample_ratio, config.max_triples, config.seed,
            config.negative_pool,
        )  # fmt: skip
    if config.data:
        dataset = load_dataset(config.path("data"), split=config.train_split)
        return pairs.from_dataset(dataset, ratio=config.sample_ratio, cap=config.max_triples, seed=config.seed)
    if config.triples:
        return pairs.read_triples(config.path("triples"), config.max_triples, config.sample_ratio, config.seed)
    docs = pairs.read_passages(config.path("passages"))
    return pairs.pseudo_query_pairs(docs, mode=config.pseudo_queries, seed=config.seed)


def split_dev(config: RetrieverTrainConfig, pair_set: PairSet) -> tuple[list[Pair], dict[str, Any] | None]:
    """Training pairs and the dev set (queries, corpus sample, qrels) — dev queries never train."""
    rng = random.Random(config.seed)
    if config.dev_split:
        dev_pairs = pairs.from_dataset(load_dataset(config.path("data"), split=config.dev_split)).pairs
        train = [pair for pair in pair_set.pairs if pair.query_id not in {p.query_id for p in dev_pairs}]
    elif config.dev_queries > 0:
        qids = sorted({pair.query_id for pair in pair_set.pairs})
        if config.dev_queries >= len(qids):
            raise RankwiseError(f"dev_queries={config.dev_queries} leaves no training query ({len(qids)} in all)")
        dev_ids = set(rng.sample(qids, config.dev_queries))
        dev_pairs = [pair for pair in pair_set.pairs if pair.query_id in dev_ids]
        train = [pair for pair in pair_set.pairs if pair.query_id not in dev_ids]
    else:
        return list(pair_set.pairs), None
    qrels: Qrels = {}
    for pair in dev_pairs:
        qrels.setdefault(pair.query_id, {})[pair.positive_id] = 1
    relevant = {doc_id for judged in qrels.values() for doc_id in judged}
    others = sorted(set(pair_set.corpus) - relevant)
    if config.dev_corpus_size:
        others = rng.sample(others, max(0, min(len(others), config.dev_corpus_size - len(relevant))))
    corpus = {doc_id: pair_set.corpus[doc_id] for doc_id in sorted(relevant) + sorted(others)}
    queries = {pair.query_id: Query(pair.query_id, pair.query) for pair in dev_pairs}
    return train, {"queries": queries, "corpus": corpus, "qrels": qrels}


def prepare_data(config: RetrieverTrainConfig) -> dict[str, Any]:
    pair_set = load_pairs(config)
    train, dev = split_dev(config, pair_set)
    warnings = list(pair_set.warnings)
    if config.num_negatives and config.negative_miner == "bm25" and any(not pair.negatives for pair in train):
        mined = pairs.mine_bm25_negatives(
            PairSet(train, pair_set.corpus), config.num_negatives, config.negative_window, config.seed
        )
        train, warnings = mined.pairs, warnings + mined.warnings
    width = config.num_negatives
    short = [pair for pair in train if len(pair.negatives) < width]
    if short:
        warnings.append(f"{len(short)} pairs dropped: fewer than {width} negatives")
    train = [pair for pair in train if len(pair.negatives) >= width]
    if config.max_pairs is not None and len(train) > config.max_pairs:
        train = random.Random(config.seed).sample(train, config.max_pairs)
    if len(train) < 2:
        raise RankwiseError(f"only {len(train)} training pairs left: " + "; ".join(warnings))
    columns: dict[str, list[str]] = {"anchor": [p.query for p in train], "positive": [p.positive for p in train]}
    for i in range(width):
        columns[f"negative_{i + 1}"] = [p.negatives[i] for p in train]
    sample = random.Random(config.seed).sample(
        sorted(pair_set.corpus), min(len(pair_set.corpus), config.diagnostics_sample)
    )
    return {
        "columns": columns,
        "dev": dev,
        "warnings": warnings,
        "diagnostic_texts": [pair_set.corpus[doc_id] for doc_id in sample],
    }
