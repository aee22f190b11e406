"""Approximate vs exact dense search on SciFact: recall@10 against exact search and the speed-up, in one run.

The corpus is encoded once with the bundled all-MiniLM-L6-v2 into resumable shards under ``--work-dir`` (a rerun
reuses them) — or taken from an existing exact rankwise index with ``--from-index`` (e.g. the quickstart's) —
then indexed as FAISS exact (``IndexFlatIP``, the peer), HNSW (vectors stored as float16, rankwise's default, and
float32) and IVF through rankwise's ``DenseRetriever``. Recall is always against float32 exact search.
Each index answers all SciFact queries (1,109) two ways, with the same FAISS thread count:

- one query at a time (the RAG case: a question arrives, its passages are needed now);
- all queries in one batch (exact search turns into one matrix product there, its best case).

Each timing is the best of ``--repeats`` runs (this machine is shared; the minimum is the least noisy estimate).

    RANKWISE_DATA=../shared/datasets .venv/bin/python benchmarks/ann.py [--threads 1] [--work-dir /tmp/scifact-minilm]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _timing import best_of  # benchmarks/_timing.py (scripts run as python benchmarks/X.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("RANKWISE_DATA", "../shared/datasets")))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/rankwise-bench/scifact-minilm"))
    parser.add_argument("--from-index", type=Path, help="an exact dense index of SciFact to take the vectors from")
    parser.add_argument("--threads", type=int, default=1, help="FAISS and torch threads")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hnsw-m", type=int, nargs="+", default=[16, 24])
    parser.add_argument("--ef-search", type=int, nargs="+", default=[24, 32, 36, 48])
    parser.add_argument("--ef-construction", type=int, nargs="+", default=[200], help="HNSW build-time list sizes")
    parser.add_argument("--hnsw-storage", nargs="+", default=["float16", "float32"], choices=["float16", "float32"])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[4, 8, 16])
    args = parser.parse_args()

    import faiss
    import torch

    from rankwise.data import load_dataset
    from rankwise.retrieve.dense import DenseRetriever, recall_at_k

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    scifact = load_dataset(args.data / "scifact", split="test")
    queries = scifact.queries  # all 1,109 queries
    if args.from_index:
        exact = DenseRetriever.load(args.from_index, show_progress=False)
        if exact.index_kind != "exact" or set(exact.doc_ids) != set(scifact.corpus):
            raise SystemExit(f"{args.from_index}: not an exact index of the SciFact corpus")
    else:
        exact = DenseRetriever(index_kind="exact", show_progress=True)
        exact.encode_corpus(scifact.corpus, args.work_dir)
        exact.index_encoded(args.work_dir)
    vectors = exact.encode([q.text for q in queries.values()])
    qids = list(queries)

    def run_of(retriever: DenseRetriever) -> dict:
        return retriever._to_run(qids, *retriever._index.search(vectors, 10))

    def one_by_one(index: Any) -> Callable[[], None]:
        def run() -> None:
            for row in range(len(vectors)):
                index.search(vectors[row : row + 1], 10)

        return run

    def batch(index: Any) -> Callable[[], None]:
        return lambda: index.search(vectors, 10)

    truth = run_of(exact)
    print(f"SciFact: {len(scifact.corpus):,} docs, {len(queries):,} queries, 384-d, {args.threads} thread(s)")
    print("each row: exact and the approximate index timed alternately, best of", args.repeats)
    header = f"{'index':<30}{'recall@10':>10}{'exact ms/q':>12}{'ann ms/q':>10}{'speed-up':>10}"
    print(header + f"{'exact batch':>13}{'ann batch':>11}{'speed-up':>10}")
    configs = [
        (
            "hnsw",
            {"hnsw_m": m, "ef_construction": efc, "ef_search": ef, "hnsw_storage": storage},
            f"hnsw {storage[-2:]} M={m} efc={efc} ef={ef}",
        )
        for storage in args.hnsw_storage
        for m in args.hnsw_m
        for efc in args.ef_construction
        for ef in args.ef_search
    ]
    configs += [("ivf", {"nprobe": n}, f"ivf nprobe={n}") for n in args.nprobe]
    built: dict[str, DenseRetriever] = {}
    for kind, options, label in configs:
        key = "ivf" if kind == "ivf" else "hnsw{hnsw_m}/{ef_construction}/{hnsw_storage}".format(**options)
        if key not in built:
            built[key] = exact.converted(kind, **options)
        retriever = built[key]
        if kind == "hnsw":
            retriever._index.hnsw.efSearch = options["ef_search"]
        else:
            retriever._index.nprobe = options["nprobe"]
        recall = recall_at_k(run_of(retriever), truth, 10)
        e_one, a_one = best_of(args.repeats, one_by_one(exact._index), one_by_one(retriever._index))
        e_all, a_all = best_of(args.repeats, batch(exact._index), batch(retriever._index))
        per_query = 1e3 / len(qids)
        print(
            f"{label:<30}{recall:>10.4f}{e_one * per_query:>12.3f}{a_one * per_query:>10.3f}{e_one / a_one:>10.2f}"
            f"{e_all * 1e3:>13.1f}{a_all * 1e3:>11.1f}{e_all / a_all:>10.2f}"
        )
    print("target: HNSW recall@10 >= 0.98 and >= 3x faster than exact")


if __name__ == "__main__":
    main()
