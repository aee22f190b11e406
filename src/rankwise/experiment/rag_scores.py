"""Scores for the records ``rankwise rag`` writes (one per question) and their aggregates for ``metrics.json``.

Per-record scores are computed once, when the record is made, from :mod:`rankwise.evaluate.qa`'s pure
functions; aggregates are means over the records where a score is defined (a citation precision is undefined
for an answer that cites nothing), each reported with how many records it covers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rankwise.evaluate.qa import (
    abstention_scores,
    answer_in_text,
    citation_precision,
    citation_recall,
    exact_match,
    f1_score,
    hotpot_answer_scores,
    joint_scores,
    mean_defined,
    supporting_fact_scores,
)
from rankwise.generate.answer import Answer
from rankwise.types import Document

RETRIEVAL_METRICS = ("nDCG@10", "R@5")
ANSWERABLE_LABELS = ("ANSWERABLE", "PARTIAL")


def joint_prefix(sentence_level: bool) -> str:
    """``joint`` (the official names) only for sentence-level supporting facts; ``joint_paragraph`` otherwise."""
    return "joint" if sentence_level else "joint_paragraph"


def _prefixed(prefix: str, scores: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}_{name}": value for name, value in scores.items()}


def hotpot_record_scores(
    record: Mapping[str, Any], corpus: Mapping[str, Document], answer: Answer | None, sentence_level: bool
) -> dict[str, Any]:
    """Retrieval (both gold paragraphs in the top 2/5) and, with an answer, the HotpotQA answer, supporting-fact,
    joint and citation scores. Supporting facts come from the citations: paragraph level (cited titles) always,
    sentence level (``[n.s]`` citations) when ``sentence_level``. Joint scores use the finer of the two and are
    named for it: ``joint_*`` (the official, sentence-level metrics) or ``joint_paragraph_*`` (not comparable
    with published joint EM/F1)."""
    gold = set(record["gold_titles"])
    titles = [corpus[doc_id].title for doc_id, _ in record["ranking"]]
    scores: dict[str, Any] = {}
    for n in (2, 5):
        top = set(titles[:n])
        scores[f"both_gold@{n}"] = float(gold <= top)
        scores[f"gold_recall@{n}"] = len(gold & top) / len(gold) if gold else None
    if answer is None:
        return scores
    answer_scores = hotpot_answer_scores(answer.plain_text, record["gold_answer"])
    cited_titles = [corpus[d].title for d in answer.cited_ids]
    paragraph = supporting_fact_scores(cited_titles, gold)
    scores.update(answer_scores)
    scores.update(_prefixed("sp_paragraph", paragraph))
    support = paragraph
    if sentence_level:
        facts = {(corpus[c.doc_id].title, c.sentence - 1) for c in answer.citations if c.sentence is not None}
        support = supporting_fact_scores(facts, {tuple(f) for f in record["supporting_facts"]})
        scores.update(_prefixed("sp_sentence", support))
    scores.update(_prefixed(joint_prefix(sentence_level), joint_scores(answer_scores, support)))
    cited_docs = [corpus[d] for d in answer.cited_ids]
    scores["citation_precision"] = citation_precision(cited_titles, gold)
    scores["citation_recall"] = citation_recall(cited_titles, gold)
    scores["citation_precision_answer"] = (
        sum(answer_in_text(record["gold_answer"], d.text) for d in cited_docs) / len(cited_docs) if cited_docs else None
    )
    scores["cited"] = float(bool(cited_docs))
    scores["supported"] = None if answer.abstained else float(bool(set(cited_titles) & gold))
    scores["abstained"] = float(answer.abstained)
    scores["dropped_citations"] = float(answer.dropped_citations)
    return scores


def mean_block(records: Iterable[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """``{name: mean over records where defined}`` plus ``{name}_n`` where some records lack it."""
    rows = [r.get("scores", {}) for r in records]
    out: dict[str, Any] = {}
    for name in names:
        value, count = mean_defined(row.get(name) for row in rows)
        out[name] = value
        if count != len(rows):
            out[f"{name}_n"] = count
    return out


def latency_block(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean seconds per question for each stage."""
    stages = sorted({s for r in records for s in r.get("latency", {})})
    return {s: sum(r["latency"].get(s, 0.0) for r in records) / len(records) for s in stages} if records else {}


def hotpotqa_metrics(records: Sequence[Mapping[str, Any]], generated: bool) -> dict[str, Any]:
    retrieval = mean_block(records, ["both_gold@2", "both_gold@5", "gold_recall@2", "gold_recall@5"])
    metrics: dict[str, Any] = {"dataset": "hotpotqa", "questions": len(records), "retrieval": retrieval}
    if generated:
        names = [
            "em",
            "f1",
            "precision",
            "recall",
            "sp_paragraph_em",
            "sp_paragraph_precision",
            "sp_paragraph_recall",
            "sp_paragraph_f1",
        ]
        sentence_level = any("sp_sentence_f1" in r["scores"] for r in records)
        if sentence_level:
            names += ["sp_sentence_em", "sp_sentence_precision", "sp_sentence_recall", "sp_sentence_f1"]
        joint = joint_prefix(sentence_level)
        names += [
            f"{joint}_em",
            f"{joint}_f1",
            "citation_precision",
            "citation_precision_answer",
            "citation_recall",
            "cited",
            "supported",
            "abstained",
            "dropped_citations",
        ]
        qa = mean_block(records, names)
        qa["supported_answer_rate"] = qa.pop("supported")
        qa["abstention_rate"] = qa.pop("abstained")
        qa["answers_with_citations"] = qa.pop("cited")
        qa["support_unit"] = "sentence" if sentence_level else "paragraph"
        metrics["qa"] = qa
    metrics["latency_per_question_s"] = latency_block(records)
    return metrics


def mtrag_record_scores(record: Mapping[str, Any], answer: Answer) -> dict[str, Any]:
    """Answer EM/F1 against the reference answer and citation precision against the reference passages
    (answerable and partial tasks only), and whether the answer abstained."""
    scores: dict[str, Any] = {"abstained": float(answer.abstained), "cited": float(bool(answer.citations))}
    targets = [t for t in record.get("reference_answer", []) if t.strip()]
    if record.get("answerability") in ANSWERABLE_LABELS and targets:
        scores["em"] = exact_match(answer.plain_text, targets)
        scores["f1"] = f1_score(answer.plain_text, targets)
        if record.get("reference_passages"):
            scores["citation_precision"] = citation_precision(answer.cited_ids, record["reference_passages"])
    return scores


def _rate(records: Sequence[Mapping[str, Any]]) -> float | None:
    return sum(r["scores"]["abstained"] for r in records) / len(records) if records else None


def mtrag_metrics(
    records: Sequence[Mapping[str, Any]],
    qrels_by_domain: Mapping[str, Mapping[str, Mapping[str, int]]],
    generated: bool,
) -> dict[str, Any]:
    """Pooled retrieval metrics per domain (judged tasks) and, with answers, abstention by answerability."""
    from rankwise.evaluate.retrieval import evaluate

    metrics: dict[str, Any] = {"dataset": "mtrag", "tasks": len(records), "retrieval": {}}
    totals: dict[str, float] = dict.fromkeys(RETRIEVAL_METRICS, 0.0)
    judged_total = 0
    for domain, qrels in qrels_by_domain.items():
        run = {r["id"]: {d: s for d, s in r["ranking"]} for r in records if r.get("domain") == domain and r["judged"]}
        if not run:
            continue
        values = evaluate(run, {q: dict(v) for q, v in qrels.items()}, list(RETRIEVAL_METRICS))
        metrics["retrieval"][domain] = {**values, "queries": len(run)}
        judged_total += len(run)
        for name in RETRIEVAL_METRICS:
            totals[name] += values[name] * len(run)
    if judged_total:
        domains = [v for v in metrics["retrieval"].values()]
        metrics["retrieval"]["all"] = {
            **{name: totals[name] / judged_total for name in RETRIEVAL_METRICS},
            "queries": judged_total,
            **{f"{name}_macro": sum(d[name] for d in domains) / len(domains) for name in RETRIEVAL_METRICS},
        }
    if generated:
        labels = sorted({r["answerability"] for r in records if "answerability" in r})
        by_label = {}
        for label in labels:
            group = [r for r in records if r.get("answerability") == label]
            by_label[label] = {
                "tasks": len(group),
                **mean_block(group, ["abstained", "cited", "em", "f1", "citation_precision"]),
            }
        graded = [r for r in records if r.get("answerability") in (*ANSWERABLE_LABELS, "UNANSWERABLE")]
        abstention = abstention_scores(
            [bool(r["scores"]["abstained"]) for r in graded],
            [r["answerability"] in ANSWERABLE_LABELS for r in graded],
        )
        answerable = [r for r in records if r.get("answerability") == "ANSWERABLE"]
        unanswerable = [r for r in records if r.get("answerability") == "UNANSWERABLE"]
        rate_answerable, rate_unanswerable = _rate(answerable), _rate(unanswerable)
        gap = None
        if rate_answerable is not None and rate_unanswerable is not None:
            gap = rate_unanswerable - rate_answerable
        metrics["generation"] = {
            "abstention_rate_ANSWERABLE": rate_answerable,
            "abstention_rate_UNANSWERABLE": rate_unanswerable,
            "abstention_gap_UNANSWERABLE_minus_ANSWERABLE": gap,
            "answerable_includes_partial": abstention,
            "by_answerability": by_label,
            **mean_block([r for r in records if "f1" in r.get("scores", {})], ["em", "f1", "citation_precision"]),
        }
    metrics["latency_per_question_s"] = latency_block(records)
    return metrics
