"""Reranking speed against plain sentence-transformers, and the zero-shot SmolLM2 P(True) baseline, on SciFact.

    python benchmarks/rerank.py throughput [--model PATH] [--queries 10] [--depth 50] [--max-length 256]
    python benchmarks/rerank.py llm-zero-shot [--queries 50] [--depth 20] [--out run.trec]

``throughput`` builds (query, BM25 top-``depth`` passage) pairs for the first ``--queries`` SciFact test queries,
scores them with ``CrossEncoder.predict`` (batch size 32, its default) and with rankwise's
``CrossEncoderReranker`` (token-length buckets under a token budget; its device default unless ``--max-tokens``)
in the same process, alternating rounds, and prints pairs/s of each, the ratio (best round of each) and the
largest score difference (must be < 1e-4). Both paths run with the allocator settings that ``rankwise rerank``
uses (``rankwise.cli.allocator``; ``RANKWISE_KEEP_FREED_MEMORY=0`` turns them off for both).
It then times the LLM reranker (bundled SmolLM2) on ``--llm-pairs`` of the same pairs.

``llm-zero-shot`` reranks BM25's top-20 of the first 50 SciFact test queries with SmolLM2-135M-Instruct's
P(True) and prints nDCG@10 of BM25 and of the reranked run on those same queries: the baseline a trained
RankRAG reranker must beat. Data: ``$RANKWISE_DATA/scifact`` (or ``--data``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def _scifact(args: argparse.Namespace):
    from rankwise.data import load_dataset
    from rankwise.retrieve.bm25 import BM25Retriever

    root = Path(args.data or Path(os.environ.get("RANKWISE_DATA", "../shared/datasets")) / "scifact")
    dataset = load_dataset(root, split="test")
    queries = dict(list(dataset.judged_queries().items())[: args.queries])
    bm25 = BM25Retriever(show_progress=False)
    bm25.index(dataset.corpus)
    return dataset, queries, bm25.search(queries, k=args.depth)


def throughput(args: argparse.Namespace) -> None:
    import numpy as np

    from rankwise.cli.allocator import keep_freed_memory
    from rankwise.rerank.base import collect_candidates
    from rankwise.rerank.cross_encoder import CrossEncoderReranker, load_cross_encoder

    keep_freed_memory()
    dataset, queries, run = _scifact(args)
    pairs = collect_candidates(queries, run, dataset.corpus, args.depth).pairs
    model = load_cross_encoder(args.model, max_length=args.max_length, num_labels=1 if args.model == "minilm" else None)
    ours = CrossEncoderReranker(model, batch_size=args.batch_size, max_tokens=args.max_tokens, show_progress=False)
    model.predict(pairs[:8], batch_size=8)  # warm up both paths
    ours.score(pairs[:8])
    times: dict[str, list[float]] = {"predict": [], "rankwise": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        reference = model.predict(pairs, batch_size=32)
        times["predict"].append(time.perf_counter() - start)
        start = time.perf_counter()
        scores = np.asarray(ours.score(pairs))
        times["rankwise"].append(time.perf_counter() - start)
        diff = float(np.max(np.abs(scores - reference)))
    best = {name: len(pairs) / min(values) for name, values in times.items()}
    print(
        f"cross-encoder {args.model} max_length={ours.max_length}, {len(pairs)} pairs, {args.rounds} rounds, "
        f"rankwise token budget {ours.max_tokens}"
    )
    print(f"  CrossEncoder.predict(batch_size=32): {best['predict']:8.1f} pairs/s")
    print(f"  rankwise CrossEncoderReranker:       {best['rankwise']:8.1f} pairs/s")
    print(f"  ratio rankwise / predict:            {best['rankwise'] / best['predict']:8.2f}x")
    print(f"  max |score difference|:              {diff:.2e} ({'OK' if diff < 1e-4 else 'MISMATCH'})")
    if args.llm_pairs > 0:
        from rankwise.rerank.llm import LLMReranker

        llm = LLMReranker("smollm2", max_passage_tokens=args.llm_passage_tokens, show_progress=False)
        sample = pairs[: args.llm_pairs]
        llm.score(sample[:2])
        start = time.perf_counter()
        llm.score(sample)
        elapsed = time.perf_counter() - start
        rate = len(sample) / elapsed
        print(f"LLM reranker SmolLM2-135M (passage <= {args.llm_passage_tokens} tokens): {rate:.2f} pairs/s")


def llm_zero_shot(args: argparse.Namespace) -> None:
    from rankwise.data import write_run
    from rankwise.evaluate.retrieval import evaluate
    from rankwise.rerank.llm import LLMReranker

    dataset, queries, run = _scifact(args)
    reranker = LLMReranker(args.model, max_passage_tokens=args.llm_passage_tokens)
    start = time.perf_counter()
    reranked = reranker.rerank(queries, run, dataset.corpus, k=args.depth)
    elapsed = time.perf_counter() - start
    metrics = ["nDCG@10", "RR@10"]
    before, after = evaluate(run, dataset.qrels, metrics), evaluate(reranked, dataset.qrels, metrics)
    print(f"SciFact test, first {len(queries)} queries, BM25 top-{args.depth}, reranker {args.model} P(True)")
    for name in metrics:
        print(f"  {name}: BM25 {before[name]:.4f}   LLM zero-shot {after[name]:.4f}")
    print(f"  {len(queries) * args.depth} pairs in {elapsed:.0f} s")
    if args.out:
        write_run(reranked, args.out, tag="smollm2-zero-shot")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["throughput", "llm-zero-shot"], nargs="?", default="throughput")
    parser.add_argument("--data", help="SciFact directory (default: $RANKWISE_DATA/scifact)")
    parser.add_argument("--model", help="cross-encoder (throughput) or LLM (llm-zero-shot) name or path")
    parser.add_argument("--queries", type=int, help="first N test queries (default 10 / 50)")
    parser.add_argument("--depth", type=int, help="BM25 documents per query (default 50 / 20)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, help="rankwise's token budget (default: its device default)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--llm-pairs", type=int, default=24, help="pairs to time the LLM reranker on (0: skip)")
    parser.add_argument("--llm-passage-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", help="llm-zero-shot: write the reranked run here")
    args = parser.parse_args()
    zero_shot = args.mode == "llm-zero-shot"
    args.queries = args.queries or (50 if zero_shot else 10)
    args.depth = args.depth or (20 if zero_shot else 50)
    args.model = args.model or ("smollm2" if zero_shot else "minilm")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    (llm_zero_shot if zero_shot else throughput)(args)


if __name__ == "__main__":
    main()
