"""Pick a two-stage pipeline's settings on dev queries, then score that one pick on test: fusion, depth, interpolation.

Inputs are runs already made (no model runs here): the two first-stage runs (BM25 and dense) and the reranker's
scores of every document in their union (``rankwise rerank --interpolate 0 --top-n 200`` over a run holding that
union), each for the dev and the test queries, and both splits' qrels. For every combination of

- fusion: RRF with k in ``--rrf-k`` and dense:BM25 weights in ``--rrf-weights``, or min-max weighted fusion with the
  BM25 weight in ``--weighted`` (dense gets 1 minus it);
- depth: the fused top ``--depths`` documents reranked;
- interpolation: the first-stage weight in 0, 0.1, ..., 1 (:func:`rankwise.rerank.base.interpolate`, as the rerank
  stage applies it),

it computes dev nDCG@10 exactly as ``rankwise run`` would produce it (the same fusion, top-k and interpolation
code), keeps the best (ties: the cheaper depth, then the smaller weight), and only then evaluates that one setting
on test, with the paired randomisation test against each single run given with ``--baseline``.

    python benchmarks/pick_on_dev.py --dev DEV_DIR/runs --test TEST_DIR/runs --scores union-ce.trec \\
        --dev-qrels DEV_DIR/qrels.tsv --test-qrels TEST_DIR/qrels.tsv --out pick.json
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

LAMBDAS = tuple(round(0.1 * i, 1) for i in range(11))


def fused(bm25: Any, dense: Any, setting: tuple[str, float, float]) -> Any:
    from rankwise.retrieve.fusion import fuse

    method, a, b = setting
    if method == "rrf":
        return fuse([bm25, dense], "rrf", k=a, weights=[1.0, b], depth=100)
    return fuse([bm25, dense], "weighted", weights=[a, 1.0 - a], depth=100)


def pipeline(first: Any, scores: Any, depth: int, weight: float) -> Any:
    from rankwise.rerank.base import assemble_run, interpolate
    from rankwise.types import top_k

    head = top_k(first, depth)
    keys = [(qid, doc) for qid, docs in head.items() for doc in docs]
    missing = [key for key in keys if key[1] not in scores.get(key[0], {})]
    if missing:
        raise SystemExit(f"--scores lacks {len(missing)} (query, document) pairs, e.g. {missing[0]}")
    reranked = assemble_run(keys, [scores[qid][doc] for qid, doc in keys])
    return interpolate(head, reranked, weight) if weight else reranked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", type=Path, required=True, help="folder with the dev bm25.trec and dense.trec")
    parser.add_argument("--test", type=Path, required=True, help="folder with the test bm25.trec and dense.trec")
    parser.add_argument("--scores", type=Path, required=True, help="reranker scores over the union, both splits")
    parser.add_argument("--dev-qrels", type=Path, required=True)
    parser.add_argument("--test-qrels", type=Path, required=True)
    parser.add_argument("--rrf-k", default="10,30,60")
    parser.add_argument("--rrf-weights", default="1,2,3", help="dense weight against BM25's 1")
    parser.add_argument("--weighted", default="0.2,0.3,0.4,0.5", help="BM25 weights of min-max fusion")
    parser.add_argument("--depths", default="20,30,50,100")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from rankwise.data import read_qrels, read_run
    from rankwise.evaluate.retrieval import evaluate, evaluate_per_query
    from rankwise.evaluate.stats import permutation_test

    scores = read_run(args.scores)
    split = {name: (read_run(folder / "bm25.trec"), read_run(folder / "dense.trec")) for name, folder in
             (("dev", args.dev), ("test", args.test))}  # fmt: skip
    qrels = {"dev": read_qrels(args.dev_qrels), "test": read_qrels(args.test_qrels)}
    floats = lambda text: [float(x) for x in text.split(",")]  # noqa: E731
    settings = [("rrf", k, w) for k, w in itertools.product(floats(args.rrf_k), floats(args.rrf_weights))]
    settings += [("weighted", w, 0.0) for w in floats(args.weighted)]
    depths = [int(d) for d in args.depths.split(",")]
    grid: list[dict[str, Any]] = []
    for setting in settings:
        first = fused(*split["dev"], setting)
        first_ndcg = evaluate(first, qrels["dev"], ["nDCG@10"])["nDCG@10"]
        for depth, weight in itertools.product(depths, LAMBDAS):
            ndcg = evaluate(pipeline(first, scores, depth, weight), qrels["dev"], ["nDCG@10"])["nDCG@10"]
            grid.append({"fusion": setting, "depth": depth, "interpolate": weight, "dev": ndcg, "fuse_dev": first_ndcg})
    best = max(grid, key=lambda row: (round(row["dev"], 10), -row["depth"], -row["interpolate"]))
    print("dev pick:", json.dumps(best))
    first = fused(*split["test"], best["fusion"])
    final = pipeline(first, scores, best["depth"], best["interpolate"])
    per_query = evaluate_per_query(final, qrels["test"], ["nDCG@10"])["nDCG@10"]
    result: dict[str, Any] = {"pick": best, "test": evaluate(final, qrels["test"], ["nDCG@10"])["nDCG@10"]}
    result["test_fuse"] = evaluate(first, qrels["test"], ["nDCG@10"])["nDCG@10"]
    for name, run in zip(("bm25", "dense"), split["test"], strict=True):
        base = evaluate_per_query(run, qrels["test"], ["nDCG@10"])["nDCG@10"]
        qids = sorted(qrels["test"])  # a query a run misses counts 0, as `rankwise compare` counts it
        a = [base.get(q, 0.0) for q in qids]
        b = [per_query.get(q, 0.0) for q in qids]
        result[f"vs_{name}"] = {"baseline": sum(a) / len(a), "pipeline": sum(b) / len(b), "p": permutation_test(a, b)}
    top = sorted(grid, key=lambda row: -row["dev"])[:10]
    result["dev_top10"] = top
    print(json.dumps({k: v for k, v in result.items() if k != "dev_top10"}, indent=1))
    if args.out:
        args.out.write_text(json.dumps({**result, "grid": grid}, indent=1))


if __name__ == "__main__":
    main()
