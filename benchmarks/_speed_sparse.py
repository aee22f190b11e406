"""The BM25 and SPLADE rows of ``benchmarks/speed.py`` (issue 22); a sibling module, as ``_timing.py`` is.

- bm25: rankwise's ``BM25Retriever.search`` (``backend: auto``: bm25s' compiled numba retrieval where numba is
  installed) against bm25s at its defaults (``bm25s.BM25()``, the numpy backend) on every SciFact query (all
  1,109, every split), at each ``--bm25-k``. Both sides tokenize the query text (English stop words, Snowball
  stemmer) and retrieve the top k; rankwise also builds its run (doc ids, the doc-id tie rule). Quality: whether
  rankwise's numba and numpy backends give identical runs, and nDCG@10 of both sides on the test queries.
- sparse: the bundled splade-tiny SPLADE model encoding ``--sparse-docs`` SciFact documents (the judged ones of the
  first ``--queries`` test queries first), by ``SparseEncoder.encode_document`` (fp32, batch 32) and by
  ``SparseRetriever.index`` (encoding plus the inverted index) at each ``--precisions`` entry that SPLADE takes.
  Quality: minimum cosine of the document vectors with fp32's, nDCG@10 over that sub-corpus and recall@10 of the
  top 10 against fp32's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from _timing import best_of


def _top10_recall(ours: dict, reference: dict) -> float:
    values = []
    for qid, docs in reference.items():
        truth = sorted(docs, key=lambda d: -docs[d])[:10]
        mine = sorted(ours.get(qid, {}), key=lambda d: -ours[qid][d])[:10]
        values.append(len(set(truth) & set(mine)) / max(len(truth), 1))
    return float(np.mean(values))


def bm25(args: argparse.Namespace, scifact: Path) -> list[dict]:
    import bm25s
    import Stemmer

    from rankwise.data import load_dataset
    from rankwise.data.beir import read_corpus, read_queries
    from rankwise.evaluate.retrieval import evaluate
    from rankwise.retrieve.bm25 import BM25Retriever

    corpus, _ = read_corpus(scifact / "corpus.jsonl")
    queries, _ = read_queries(scifact / "queries.jsonl")
    qrels = load_dataset(scifact, split="test").qrels
    texts, ids = [q.text for q in queries.values()], list(corpus)
    stemmer = Stemmer.Stemmer("english")
    peer_model = bm25s.BM25()  # its defaults: Lucene BM25, k1 1.5, b 0.75, the numpy backend
    documents = [d.contents for d in corpus.values()]
    peer_model.index(
        bm25s.tokenize(documents, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False
    )
    ours = BM25Retriever(show_progress=False, backend="auto")
    ours.index(corpus)
    numpy_side = BM25Retriever(show_progress=False, backend="numpy")
    numpy_side._model, numpy_side.doc_ids = ours._model, ours.doc_ids  # the same index, the other backend
    start = time.perf_counter()
    ours.search(dict(list(queries.items())[:1]), k=10)  # the compile (numba), or its on-disk cache
    first_call = time.perf_counter() - start
    rows, results = [], {}
    for k in args.bm25_k:

        def peer(k: int = k) -> None:
            tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
            docs, scores = peer_model.retrieve(tokens, k=k, show_progress=False)
            results["peer"] = {
                qid: {ids[i]: float(s) for i, s in zip(d, row, strict=True)}
                for qid, d, row in zip(queries, docs.tolist(), scores.tolist(), strict=True)
            }

        def side(k: int = k) -> None:
            results["ours"] = ours.search(queries, k=k)

        peer(), side()  # warm both (tokenizer, caches) before timing
        times = best_of(args.rounds, peer, side)
        other = numpy_side.search(queries, k=k)
        identical = all(list(other[q].items()) == list(results["ours"][q].items()) for q in queries)
        test = {q: results["ours"][q] for q in qrels}
        peer_test = {q: results["peer"][q] for q in qrels}
        rows.append(
            {
                "stage": "bm25",
                "unit": "queries/s",
                "size": len(queries),
                "k": k,
                "rankwise": f"auto -> {ours.backend}",
                "rankwise_rate": len(queries) / times[1],
                "peer": "bm25s.BM25() numpy",
                "peer_rate": len(queries) / times[0],
                "ratio": times[0] / times[1],
                "first_call_s": first_call,
                "identical_numba_numpy": identical,
                "ndcg@10": evaluate(test, qrels, ["nDCG@10"])["nDCG@10"],
                "peer_ndcg@10": evaluate(peer_test, qrels, ["nDCG@10"])["nDCG@10"],
                "quality": f"k={k}, numba = numpy runs: {identical}",
            }
        )
    return rows


def _search(matrix: Any, ids: list[str], queries: Any, qids: list[str]) -> dict:
    scores = queries @ matrix.T
    return {
        q: {ids[i]: float(row[i]) for i in np.argsort(-row, kind="stable")[:100]}
        for q, row in zip(qids, scores, strict=True)
    }


def sparse(args: argparse.Namespace, dataset: Any, queries: dict) -> list[dict]:
    from sentence_transformers import SparseEncoder

    from rankwise.config.models import resolve_path
    from rankwise.evaluate.retrieval import evaluate
    from rankwise.retrieve.sparse import SparseRetriever

    judged = sorted({doc for qid in queries for doc in dataset.qrels.get(qid, {}) if doc in dataset.corpus})
    ids = (judged + [d for d in dataset.corpus if d not in set(judged)])[: max(args.sparse_docs, len(judged))]
    corpus = {doc: dataset.corpus[doc] for doc in ids}
    texts, qids, qtexts = [d.contents for d in corpus.values()], list(queries), [q.text for q in queries.values()]
    peer_model = SparseEncoder(resolve_path("splade-tiny"), device="cpu")
    precisions = [p for p in args.precisions if p in ("auto", "fp32", "bf16")]
    ours = {p: SparseRetriever("splade-tiny", batch_size=32, show_progress=False, precision=p) for p in precisions}
    peer_model.encode_document(texts[:8], batch_size=32)
    for retriever in ours.values():
        retriever._encode(texts[:8], "document")
    results: dict[str, Any] = {}

    def peer() -> None:
        results["peer"] = peer_model.encode_document(texts, batch_size=32)

    def side(name: str) -> Any:
        return lambda: ours[name].index(corpus)

    times = best_of(args.rounds, peer, *(side(p) for p in precisions))
    sub_qrels = {q: {d: r for d, r in dataset.qrels[q].items() if d in corpus} for q in qids}
    reference_docs = results["peer"].to_dense().float().numpy()
    reference = _search(reference_docs, ids, peer_model.encode_query(qtexts).to_dense().float().numpy(), qids)
    rows = []
    for name, seconds in zip(precisions, times[1:], strict=True):
        docs = ours[name]._encode(texts, "document").to_dense().float().numpy()
        cosine = np.sum(docs * reference_docs, axis=1) / (
            np.linalg.norm(docs, axis=1) * np.linalg.norm(reference_docs, axis=1) + 1e-12
        )
        run = ours[name].search(queries, k=100)
        rows.append(
            {
                "stage": "sparse",
                "unit": "docs/s",
                "size": len(texts),
                "rankwise": f"{name} -> {ours[name].precision}",
                "rankwise_rate": len(texts) / seconds,
                "peer": "SparseEncoder.encode_document fp32",
                "peer_rate": len(texts) / times[0],
                "ratio": times[0] / seconds,
                "min_cosine": float(cosine.min()),
                "ndcg@10": evaluate(run, sub_qrels, ["nDCG@10"])["nDCG@10"],
                "peer_ndcg@10": evaluate(reference, sub_qrels, ["nDCG@10"])["nDCG@10"],
                "recall@10_vs_fp32": _top10_recall(run, reference),
                "reason": ours[name].precision_choice.reason,
                "quality": f"cos min {float(cosine.min()):.4f}",
            }
        )
    return rows
