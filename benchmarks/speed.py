"""Each neural stage of rankwise at reduced precision against the library it wraps at its defaults (fp32), on the
same SciFact texts, in one process, alternating rounds (issue 22).

    RANKWISE_DATA=../shared/datasets python benchmarks/speed.py [--precisions auto,int8] [--queries 20]
        [--depth 20] [--docs 300] [--rounds 2] [--max-length 128] [--stages cross-encoder,dense,bm25,sparse]
        [--bm25-k 100,1000] [--sparse-docs 200] [--runtime auto|torch|openvino]
    RANKWISE_DATA=../shared/datasets python benchmarks/speed.py --stages llm --precisions auto --queries 50 \
        --llm-queries 10 --depth 20 --rounds 2

- cross-encoder: (query, BM25 top-``depth`` passage) pairs of the first ``--queries`` SciFact test queries, scored
  by ``CrossEncoder.predict`` (batch 32, fp32) and by ``CrossEncoderReranker`` at each ``--precisions`` entry
  (on ``--runtime``, as dense below).
  No trained SciFact cross-encoder ships with rankwise: the model is the bundled all-MiniLM-L6-v2 body under a
  seeded, untrained one-logit head (``CrossEncoder(minilm, num_labels=1)``), so nDCG@10 here only checks that
  the precision keeps fp32's ranking, not reranking quality.
- dense: the judged documents of those queries plus others up to ``--docs`` documents (``--docs 0``: the whole
  corpus), encoded by ``SentenceTransformer.encode`` (batch 64, fp32) and ``DenseRetriever.encode`` (batch 64,
  ``--runtime auto``: OpenVINO for bf16 on a CPU where the openvino extra is installed, else torch; ``--runtime
  torch`` for torch's bf16); queries are encoded the way each side encodes its documents. nDCG@10 is over that
  sub-corpus.
- bm25, sparse: see ``benchmarks/_speed_sparse.py`` (all 1,109 SciFact queries through rankwise's BM25 on bm25s'
  numba backend against bm25s' numpy default; splade-tiny at each precision against ``SparseEncoder`` fp32).
- llm: SmolLM2 P(True) against the plain fp32 transformers loop (one pair per forward pass), timed on the first
  ``--llm-queries`` queries' pairs, nDCG@10 over all ``--queries`` (see ``benchmarks/_speed_llm.py``). Not run
  by default (minutes on two CPU cores).

Quality columns, each against the fp32 peer: Spearman of the scores (cross-encoder) or the minimum / mean cosine
of the vectors (dense), nDCG@10 of both sides, recall@10 of rankwise's top-10 against fp32's top-10. Times are the
best of ``--rounds`` rounds, every side once per round in turn. The CPU flags and a final JSON line (everything
printed) close the output.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

import _speed_sparse  # benchmarks/_speed_sparse.py: the bm25 and sparse rows
from _speed_llm import llm  # benchmarks/_speed_llm.py
from _timing import best_of  # benchmarks/_timing.py (scripts run as python benchmarks/X.py)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def engine_of(stage: Any) -> str:
    """What runs a stage's model: onnxruntime for int8, else its runtime (torch | openvino)."""
    return "onnxruntime" if stage.precision == "int8" else stage.runtime


def top10_recall(ours: dict[str, dict[str, float]], reference: dict[str, dict[str, float]]) -> float:
    values = []
    for qid, docs in reference.items():
        truth = sorted(docs, key=lambda d: -docs[d])[:10]
        mine = sorted(ours[qid], key=lambda d: -ours[qid][d])[:10]
        values.append(len(set(truth) & set(mine)) / max(len(truth), 1))
    return float(np.mean(values))


def runs_from_scores(keys: list[tuple[str, str]], scores: Any) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for (qid, doc), score in zip(keys, scores, strict=True):
        run.setdefault(qid, {})[doc] = float(score)
    return run


def cross_encoder(args: argparse.Namespace, dataset: Any, queries: dict, first_stage: dict) -> list[dict]:
    import torch
    from scipy.stats import spearmanr

    from rankwise.evaluate.retrieval import evaluate
    from rankwise.rerank.base import collect_candidates
    from rankwise.rerank.cross_encoder import CrossEncoderReranker, load_cross_encoder

    candidates = collect_candidates(queries, first_stage, dataset.corpus, args.depth)
    pairs = candidates.pairs
    torch.manual_seed(0)  # the untrained head: the same one for every side
    model = load_cross_encoder("minilm", max_length=args.max_length, num_labels=1)
    ours = {
        p: CrossEncoderReranker(model, show_progress=False, precision=p, runtime=args.runtime) for p in args.precisions
    }
    model.predict(pairs[:8], batch_size=32, show_progress_bar=False)
    for reranker in ours.values():
        reranker.score(pairs[:8])
    results: dict[str, Any] = {}

    def peer() -> None:
        results["peer"] = np.asarray(model.predict(pairs, batch_size=32, show_progress_bar=False))

    def side(name: str) -> Any:
        return lambda: results.__setitem__(name, np.asarray(ours[name].score(pairs)))

    times = best_of(args.rounds, peer, *(side(p) for p in args.precisions))
    reference = runs_from_scores(candidates.keys, results["peer"])
    peer_ndcg = evaluate(reference, dataset.qrels, ["nDCG@10"])["nDCG@10"]
    rows = []
    for name, seconds in zip(args.precisions, times[1:], strict=True):
        run = runs_from_scores(candidates.keys, results[name])
        rows.append(
            {
                "stage": "cross-encoder",
                "unit": "pairs/s",
                "size": len(pairs),
                "rankwise": f"{name} -> {ours[name].precision} on {engine_of(ours[name])}",
                "rankwise_rate": len(pairs) / seconds,
                "peer": "CrossEncoder.predict fp32",
                "peer_rate": len(pairs) / times[0],
                "ratio": times[0] / seconds,
                "spearman": float(spearmanr(results[name], results["peer"])[0]),
                "ndcg@10": evaluate(run, dataset.qrels, ["nDCG@10"])["nDCG@10"],
                "peer_ndcg@10": peer_ndcg,
                "recall@10_vs_fp32": top10_recall(run, reference),
                "reason": f"{ours[name].precision_choice.reason}; {ours[name].runtime_line}",
            }
        )
    return rows


def search(vectors: Any, ids: list[str], query_vectors: Any, qids: list[str]) -> dict[str, dict[str, float]]:
    scores = query_vectors @ vectors.T
    run = {}
    for qid, row in zip(qids, scores, strict=True):
        top = np.argsort(-row, kind="stable")[:100]
        run[qid] = {ids[i]: float(row[i]) for i in top}
    return run


def dense(args: argparse.Namespace, dataset: Any, queries: dict) -> list[dict]:
    from sentence_transformers import SentenceTransformer

    from rankwise.config.models import resolve_path
    from rankwise.evaluate.retrieval import evaluate
    from rankwise.retrieve.dense import DenseRetriever

    judged = sorted({doc for qid in queries for doc in dataset.qrels.get(qid, {}) if doc in dataset.corpus})
    others = [doc for doc in dataset.corpus if doc not in set(judged)]
    ids = judged + others if args.docs == 0 else (judged + others)[: max(args.docs, len(judged))]
    texts = [dataset.corpus[doc].contents for doc in ids]
    qids, qtexts = list(queries), [q.text for q in queries.values()]
    peer_model = SentenceTransformer(resolve_path("minilm"), device="cpu")
    ours = {
        p: DenseRetriever("minilm", batch_size=64, show_progress=False, precision=p, runtime=args.runtime)
        for p in args.precisions
    }
    options = {"batch_size": 64, "normalize_embeddings": True, "convert_to_numpy": True, "show_progress_bar": False}
    peer_model.encode(texts[:8], **options)
    for retriever in ours.values():
        retriever.encode(texts[:8])
    results: dict[str, Any] = {}

    def peer() -> None:
        results["peer"] = np.asarray(peer_model.encode(texts, **options), dtype=np.float32)

    def side(name: str) -> Any:
        return lambda: results.__setitem__(name, ours[name].encode(texts))

    times = best_of(args.rounds, peer, *(side(p) for p in args.precisions))
    sub_qrels = {q: {d: r for d, r in dataset.qrels[q].items() if d in set(ids)} for q in qids}
    reference = search(results["peer"], ids, np.asarray(peer_model.encode(qtexts, **options)), qids)
    peer_ndcg = evaluate(reference, sub_qrels, ["nDCG@10"])["nDCG@10"]
    rows = []
    for name, seconds in zip(args.precisions, times[1:], strict=True):
        run = search(results[name], ids, ours[name].encode(qtexts), qids)
        cosine = np.sum(results[name] * results["peer"], axis=1)
        rows.append(
            {
                "stage": "dense",
                "unit": "docs/s",
                "size": len(texts),
                "rankwise": f"{name} -> {ours[name].precision} on {engine_of(ours[name])}",
                "rankwise_rate": len(texts) / seconds,
                "peer": "SentenceTransformer.encode fp32",
                "peer_rate": len(texts) / times[0],
                "ratio": times[0] / seconds,
                "min_cosine": float(cosine.min()),
                "mean_cosine": float(cosine.mean()),
                "ndcg@10": evaluate(run, sub_qrels, ["nDCG@10"])["nDCG@10"],
                "peer_ndcg@10": peer_ndcg,
                "recall@10_vs_fp32": top10_recall(run, reference),
                "reason": f"{ours[name].precision_choice.reason}; {ours[name].runtime_line}",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("RANKWISE_DATA", "../shared/datasets")))
    parser.add_argument("--stages", default="cross-encoder,dense,bm25,sparse")
    parser.add_argument("--precisions", default="auto,int8", help="rankwise precisions to time (comma-separated)")
    parser.add_argument("--queries", type=int, default=20, help="first N judged SciFact test queries")
    parser.add_argument("--depth", type=int, default=20, help="BM25 passages per query for the cross-encoder")
    parser.add_argument(
        "--runtime", default="auto", help="dense, cross-encoder: auto | torch | openvino (what runs the model)"
    )
    parser.add_argument("--docs", type=int, default=300, help="dense: documents to encode (0 = the whole corpus)")
    parser.add_argument("--llm-queries", type=int, default=10, help="llm: time the first N queries' pairs")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--bm25-k", default="100,1000", help="bm25: depths to time (comma-separated)")
    parser.add_argument("--sparse-docs", type=int, default=200, help="sparse: documents to encode")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    args.bm25_k = [int(k) for k in args.bm25_k.split(",") if k.strip()]
    stages = {s.strip() for s in args.stages.split(",")}

    import torch

    from rankwise.config.precision import cpu_flags
    from rankwise.data import load_dataset
    from rankwise.retrieve.bm25 import BM25Retriever

    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = load_dataset(args.data / "scifact", split="test")
    queries = dict(list(dataset.judged_queries().items())[: args.queries])
    rows: list[dict] = []
    if stages & {"cross-encoder", "llm"}:
        bm25 = BM25Retriever(show_progress=False)
        bm25.index(dataset.corpus)
        first_stage = bm25.search(queries, k=args.depth)
    if "cross-encoder" in stages:
        rows += cross_encoder(args, dataset, queries, first_stage)
    if "llm" in stages:
        rows += llm(args, dataset, queries, first_stage, (runs_from_scores, top10_recall))
    if "dense" in stages:
        rows += dense(args, dataset, queries)
    if "sparse" in stages:
        rows += _speed_sparse.sparse(args, dataset, queries)
    notes = []
    if "bm25" in stages:
        if importlib.util.find_spec("numba") is None:
            notes.append("bm25: numba is not installed, so rankwise runs bm25s' numpy backend too")
        rows += _speed_sparse.bm25(args, args.data / "scifact")

    cpu = cpu_model()
    print(
        f"CPU: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; flags: {' '.join(cpu_flags())}"
    )
    print(f"{'stage':14} {'rankwise':14} {'rate':>9} {'peer rate':>9} {'ratio':>6}  quality vs fp32 peer")
    for row in rows:
        if "quality" in row:
            quality = row["quality"]
        elif "spearman" in row:
            quality = f"Spearman {row['spearman']:.4f}"
        else:
            quality = f"cos min {row['min_cosine']:.4f} mean {row['mean_cosine']:.4f}"
        quality += f", nDCG@10 {row['ndcg@10']:.4f} (peer {row['peer_ndcg@10']:.4f})"
        if "recall@10_vs_fp32" in row:
            quality += f", recall@10 vs fp32 {row['recall@10_vs_fp32']:.3f}"
        print(
            f"{row['stage']:14} {row['rankwise']:14} {row['rankwise_rate']:9.1f} {row['peer_rate']:9.1f} "
            f"{row['ratio']:5.2f}x  {quality}  [{row['size']} {row['unit'].split('/')[0]}]"
        )
    for note in notes:
        print(note)
    summary = {"cpu": cpu, "cpu_flags": list(cpu_flags()), "args": vars(args), "rows": rows, "notes": notes}
    print(json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
