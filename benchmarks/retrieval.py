"""Retrieval throughput of rankwise against the libraries it wraps, on the same data, in one process.

Prints two ratios (rankwise / peer; 1.0 = as fast as calling the library directly):
- BM25 search: rankwise's BM25Retriever.search vs bm25s tokenize + retrieve over the same index settings;
- dense encoding: DenseRetriever.encode vs SentenceTransformer.encode on the same texts and batch size.

Each side runs ``--repeats`` times, alternating, and the best time of each is compared (this machine is shared;
the minimum is the least noisy estimate). Run by hand, not in CI:

    RANKWISE_DATA=../shared/datasets .venv/bin/python benchmarks/retrieval.py [--docs 1000]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from _timing import best_of  # benchmarks/_timing.py (scripts run as python benchmarks/X.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("RANKWISE_DATA", "../shared/datasets")))
    parser.add_argument("--docs", type=int, default=1000, help="documents to encode for the dense comparison")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import bm25s
    import Stemmer
    from sentence_transformers import SentenceTransformer

    from rankwise.config.models import resolve_path
    from rankwise.data import load_dataset
    from rankwise.retrieve.bm25 import BM25Retriever
    from rankwise.retrieve.dense import DenseRetriever

    scifact = load_dataset(args.data / "scifact", split="train")
    queries = dict(scifact.queries)  # all 1,109 queries
    texts = [doc.contents for doc in scifact.corpus.values()]

    ours = BM25Retriever(show_progress=False)
    ours.index(scifact.corpus)
    stemmer = Stemmer.Stemmer("english")
    peer = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    peer.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    query_texts = [q.text for q in queries.values()]

    def peer_search() -> object:
        tokens = bm25s.tokenize(query_texts, stopwords="en", stemmer=stemmer, show_progress=False)
        return peer.retrieve(tokens, k=100, show_progress=False)

    ours_s, peer_s = best_of(args.repeats, lambda: ours.search(queries, k=100), peer_search)
    print(
        f"BM25 search, {len(queries)} queries, k=100: rankwise {len(queries) / ours_s:,.0f} q/s, "
        f"bm25s {len(queries) / peer_s:,.0f} q/s, ratio {peer_s / ours_s:.2f}x (target >= 0.9x)"
    )

    sample = texts[: args.docs]
    dense = DenseRetriever(show_progress=False, batch_size=64)
    model = SentenceTransformer(resolve_path(dense.model_name))
    dense._encoder = model  # the same loaded model on both sides: only the call path differs
    ours_e, peer_e = best_of(
        args.repeats,
        lambda: dense.encode(sample),
        lambda: model.encode(sample, batch_size=64, normalize_embeddings=True, show_progress_bar=False),
    )
    same = np.allclose(
        dense.encode(sample[:64]),
        model.encode(sample[:64], batch_size=64, normalize_embeddings=True, show_progress_bar=False),
        atol=1e-6,
    )
    print(
        f"dense encoding, {len(sample)} SciFact docs: rankwise {len(sample) / ours_e:,.1f} docs/s, "
        f"SentenceTransformer.encode {len(sample) / peer_e:,.1f} docs/s, ratio {peer_e / ours_e:.2f}x "
        f"(target >= 0.95x); identical embeddings: {same}"
    )


if __name__ == "__main__":
    main()
