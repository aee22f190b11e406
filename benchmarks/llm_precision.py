"""A trained P(True) reranker in float32 and in bfloat16 on the same queries: quality and speed (issue 22).

Reranks BM25's top ``--depth`` of SciFact queries with one model directory (a ``rankwise rankrag train`` model or
any causal LM) loaded in each dtype in turn, and prints nDCG@10 for both, their Spearman correlation over every
scored pair, pairs/s, the CPU flags and a final JSON line. By default the queries are the 50 SciFact train queries a
RankRAG blend with ``scifact: {dev_queries: 50}`` held out (never the test split, where systems are scored once):

    python benchmarks/llm_precision.py --model outputs/rankrag-ranking-dev/model --data $RANKWISE_DATA/scifact

bfloat16 is only worth it where the CPU runs it natively (avx512_bf16 / AMX); elsewhere this measures emulation.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model directory (or 'smollm2')")
    parser.add_argument("--data", required=True, help="BEIR SciFact directory")
    parser.add_argument("--dev-queries", type=int, default=50, help="held-out train queries (seed --dev-seed)")
    parser.add_argument("--dev-seed", type=int, default=42)
    parser.add_argument("--depth", type=int, default=20, help="BM25 documents reranked per query")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch
    from scipy.stats import spearmanr

    from rankwise.config.precision import cpu_flags
    from rankwise.data.beir import load_beir
    from rankwise.evaluate.retrieval import evaluate
    from rankwise.rankrag.preset import load_rankrag, shared_model
    from rankwise.retrieve.bm25 import BM25Retriever
    from rankwise.train.dev import split_dev

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_beir(args.data, split="train")
    dev = split_dev(data.qrels, data.queries, args.dev_queries, args.dev_seed)[1]
    queries = {qid: data.queries[qid] for qid in dev}
    qrels = {qid: data.qrels[qid] for qid in dev}
    bm25 = BM25Retriever(show_progress=False)
    bm25.index(data.corpus)
    run = bm25.search(queries, k=args.depth)
    pairs = sum(len(docs) for docs in run.values())
    results: dict[str, Any] = {"bm25": evaluate(run, qrels, ["nDCG@10"])["nDCG@10"]}
    scores: dict[str, list[float]] = {}
    for dtype in ("float32", "bfloat16"):
        shared_model.cache_clear()
        reranker = load_rankrag(args.model, dtype=dtype, device="cpu", show_progress=False).reranker
        started = time.perf_counter()
        reranked = reranker.rerank(queries, run, data.corpus, k=args.depth)
        seconds = time.perf_counter() - started
        scores[dtype] = [reranked[q][d] for q in sorted(run) for d in sorted(run[q])]
        results[dtype] = {"nDCG@10": evaluate(reranked, qrels, ["nDCG@10"])["nDCG@10"], "pairs_per_s": pairs / seconds}
        print(f"{dtype}: nDCG@10 {results[dtype]['nDCG@10']:.4f}, {pairs / seconds:.2f} pairs/s", flush=True)
    results.update(
        queries=len(queries),
        pairs=pairs,
        spearman=float(spearmanr(scores["float32"], scores["bfloat16"]).statistic),
        delta=results["bfloat16"]["nDCG@10"] - results["float32"]["nDCG@10"],
        speedup=results["bfloat16"]["pairs_per_s"] / results["float32"]["pairs_per_s"],
        cpu_flags=list(cpu_flags()),
        model=args.model,
    )
    print(f"BM25 {results['bm25']:.4f}; bf16 - fp32 {results['delta']:+.4f}, Spearman {results['spearman']:.4f}, "
          f"speed {results['speedup']:.2f}x")  # fmt: skip
    print(json.dumps(results))


if __name__ == "__main__":
    main()
