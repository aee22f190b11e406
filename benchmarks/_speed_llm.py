"""The ``llm`` stage of ``benchmarks/speed.py``: SmolLM2 P(True) by rankwise's ``LLMReranker`` (built from an
``llm`` rerank section at each precision) against the plain fp32 transformers loop computing the same P(True).

The peer loads the same bundled SmolLM2 in fp32 and, for one pair at a time, tokenises rankwise's exact prompt
text and takes ``sigmoid(logit[True] - logit[False])`` of the last position of ``model(**inputs).logits``.
Speed: the first ``--llm-queries`` queries' BM25 top-``--depth`` pairs, best of ``--rounds`` alternating rounds.
Quality: nDCG@10 of both sides over all ``--queries`` queries' BM25 top-``--depth`` (each side scores them once),
Spearman of the scores and recall@10 of rankwise's top-10 against the peer's.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from _timing import best_of


def peer_loop(model: Any, tokenizer: Any, prompts: list[str], true_id: int, false_id: int) -> np.ndarray:
    """The plain transformers loop: one prompt per forward pass, fp32, full logits."""
    import torch

    scores = []
    with torch.no_grad():
        for prompt in prompts:
            inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
            logits = model(**inputs).logits[0, -1]
            scores.append(torch.sigmoid(logits[true_id] - logits[false_id]).item())
    return np.asarray(scores)


def llm(args: argparse.Namespace, dataset: Any, queries: dict, first_stage: dict, helpers: tuple) -> list[dict]:
    """The speed rows; ``helpers`` = speed.py's ``(runs_from_scores, top10_recall)``."""
    from scipy.stats import spearmanr

    from rankwise.build import build_reranker
    from rankwise.config.models import load_causal_lm
    from rankwise.config.precision import choose_precision
    from rankwise.config.sections.rerank import LLMRerankConfig
    from rankwise.evaluate.retrieval import evaluate
    from rankwise.rerank.base import collect_candidates

    runs_from_scores, top10_recall = helpers
    precisions = [p for p in args.precisions if p in ("auto", "fp32", "bf16")]
    ours = {p: build_reranker(LLMRerankConfig(precision=p), show_progress=False) for p in precisions}
    model, tokenizer = load_causal_lm("smollm2", None, "float32")
    model.eval()
    any_ours = next(iter(ours.values()))
    true_id, false_id = any_ours.true_id, any_ours.false_id
    candidates = collect_candidates(queries, first_stage, dataset.corpus, args.depth)
    timed_queries = set(list(queries)[: args.llm_queries])
    timed = [i for i, (qid, _) in enumerate(candidates.keys) if qid in timed_queries]
    pairs = candidates.pairs
    passages = any_ours.truncate([passage for _, passage in pairs])
    prompts = [any_ours.prompt(q, p) for (q, _), p in zip(pairs, passages, strict=True)]
    sample_pairs, sample_prompts = [pairs[i] for i in timed], [prompts[i] for i in timed]
    peer_loop(model, tokenizer, sample_prompts[:2], true_id, false_id)  # warm-up
    for reranker in ours.values():
        reranker.score(sample_pairs[:2])
    results: dict[str, Any] = {}

    def peer() -> None:
        results["peer"] = peer_loop(model, tokenizer, sample_prompts, true_id, false_id)

    def side(name: str) -> Any:
        return lambda: results.__setitem__(name, np.asarray(ours[name].score(sample_pairs)))

    times = best_of(args.rounds, peer, *(side(p) for p in precisions))
    rest = [i for i in range(len(pairs)) if i not in set(timed)]  # quality: every query, each pair scored once
    full = {"peer": np.empty(len(pairs))}
    full["peer"][timed], full["peer"][rest] = (
        results["peer"],
        peer_loop(model, tokenizer, [prompts[i] for i in rest], true_id, false_id),
    )
    reference = runs_from_scores(candidates.keys, full["peer"])
    peer_ndcg = evaluate(reference, dataset.qrels, ["nDCG@10"])["nDCG@10"]
    rows = []
    for name, seconds in zip(precisions, times[1:], strict=True):
        scores = np.empty(len(pairs))
        scores[timed], scores[rest] = results[name], ours[name].score([pairs[i] for i in rest])
        run = runs_from_scores(candidates.keys, scores)
        rows.append(
            {
                "stage": "llm",
                "unit": "pairs/s",
                "size": len(sample_pairs),
                "rankwise": f"{name} -> {choose_precision(name, 'llm reranker').precision}",
                "rankwise_rate": len(sample_pairs) / seconds,
                "peer": "transformers loop fp32",
                "peer_rate": len(sample_pairs) / times[0],
                "ratio": times[0] / seconds,
                "spearman": float(spearmanr(scores, full["peer"])[0]),
                "max_abs_diff": float(np.max(np.abs(scores - full["peer"]))),
                "ndcg@10": evaluate(run, dataset.qrels, ["nDCG@10"])["nDCG@10"],
                "peer_ndcg@10": peer_ndcg,
                "recall@10_vs_fp32": top10_recall(run, reference),
                "quality_pairs": len(pairs),
                "reason": choose_precision(name, "llm reranker").reason,
            }
        )
    return rows
