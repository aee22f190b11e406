"""RAG scoring beyond the generic QA metrics of :mod:`rankwise.experiment.answers`, and what ``rankwise rag``
prints from an experiment's output folders.

- :func:`hotpot_scores`: HotpotQA's official answer precision/recall, supporting-fact and joint scores of one
  answer (the generate stage adds them to every HotpotQA question's scores);
- :func:`hotpotqa_summary` / :func:`open_qa_summary` / :func:`mtrag_summary`: the figures ``rankwise rag``
  reports, read back from ``metrics.json`` and ``per_query.json`` (nothing is recomputed from the answers): the
  share of questions with both gold paragraphs in the top 2/5, open-domain answer recall@k, QA means under their
  HotpotQA names, MT-RAG's pooled retrieval per domain and over all domains, abstention per answerability label,
  and seconds per question of each stage.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rankwise.evaluate.qa import (
    abstention_scores,
    answer_in_text,
    hotpot_answer_scores,
    joint_scores,
    supporting_fact_scores,
)
from rankwise.generate.answer import Answer
from rankwise.types import Document

ANSWERABLE_LABELS = ("ANSWERABLE", "PARTIAL")
MTRAG_RETRIEVAL = ("nDCG@10", "R@5")
# generate-stage means renamed for the HotpotQA summary (the names the rag command has always printed)
HOTPOT_NAMES = {"cited": "answers_with_citations", "abstained": "abstention_rate", "supported": "supported_answer_rate"}


def joint_prefix(sentence_level: bool) -> str:
    """``joint`` (the official names) only for sentence-level supporting facts; ``joint_paragraph`` otherwise."""
    return "joint" if sentence_level else "joint_paragraph"


def _prefixed(prefix: str, scores: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}_{name}": value for name, value in scores.items()}


def hotpot_scores(
    answer: Answer,
    gold_answer: str,
    facts: Sequence[tuple[str, int]],
    corpus: Mapping[str, Document],
    sentence_level: bool,
) -> dict[str, float | None]:
    """Answer precision/recall, supporting facts from the citations (paragraph level: the cited titles, always;
    sentence level: the ``[n.s]`` citations, when ``sentence_level``), joint scores on the finer of the two, named
    for it (``joint_*`` are the official sentence-level metrics, ``joint_paragraph_*`` are not comparable with
    published joint EM/F1), the share of cited passages containing the answer, and whether a non-abstaining
    answer cites a gold paragraph (``supported``)."""
    titles = {title for title, _ in facts}
    answer_scores = hotpot_answer_scores(answer.plain_text, gold_answer)
    cited_docs = [corpus[d] for d in answer.cited_ids]
    cited_titles = [doc.title for doc in cited_docs]
    support = paragraph = supporting_fact_scores(cited_titles, titles)
    scores: dict[str, float | None] = {"precision": answer_scores["precision"], "recall": answer_scores["recall"]}
    scores.update(_prefixed("sp_paragraph", paragraph))
    if sentence_level:
        cited = {(corpus[c.doc_id].title, c.sentence - 1) for c in answer.citations if c.sentence is not None}
        support = supporting_fact_scores(cited, {tuple(f) for f in facts})
        scores.update(_prefixed("sp_sentence", support))
    scores.update(_prefixed(joint_prefix(sentence_level), joint_scores(answer_scores, support)))
    contains = [answer_in_text(gold_answer, doc.text) for doc in cited_docs]
    scores["citation_precision_answer"] = sum(contains) / len(contains) if contains else None
    scores["supported"] = None if answer.abstained else float(bool(set(cited_titles) & titles))
    return scores


# ------------------------------------------------------------------------------------ the rag command's views


def _read(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    return metrics, json.loads((folder / "per_query.json").read_text(encoding="utf-8"))


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _latency(metrics: Mapping[str, Any], questions: int) -> dict[str, float]:
    """Seconds per question of each stage (its total over the questions) and of all of them."""
    totals = {name: value for name, value in metrics["latency_s"].items() if isinstance(value, int | float)}
    per_question = {f"{name}_s": value / max(questions, 1) for name, value in totals.items()}
    per_question["total_s"] = math.fsum(totals.values()) / max(questions, 1)
    return per_question


def hotpotqa_summary(folder: Path) -> dict[str, Any]:
    """The HotpotQA figures of one output folder (its config evaluates R@2 and R@5)."""
    metrics, per_query = _read(folder)
    final = per_query[metrics["final_stage"]]
    retrieval: dict[str, Any] = {}
    for n in (2, 5):
        recall = list(final[f"R@{n}"].values())
        retrieval[f"both_gold@{n}"] = _mean([float(v == 1.0) for v in recall])
        retrieval[f"gold_recall@{n}"] = _mean(recall)
    summary: dict[str, Any] = {"questions": len(final[f"R@{2}"]), "retrieval": retrieval}
    generate = metrics["stages"].get("generate")
    if generate is not None:
        qa = {HOTPOT_NAMES.get(name, name): value for name, value in generate["metrics"].items()}
        qa.update({f"{n}_n": count for n, count in generate["defined"].items() if count != generate["questions"]})
        qa["support_unit"] = "sentence" if "sp_sentence_f1" in qa else "paragraph"
        summary["questions"] = generate["questions"]
        summary["qa"] = qa
    summary["latency_per_question_s"] = _latency(metrics, summary["questions"])
    return summary


def open_qa_summary(folder: Path) -> dict[str, Any]:
    """Open-domain QA figures of one output folder: answer recall@k of the final ranking, EM/F1 when answered."""
    metrics, _ = _read(folder)
    final = metrics["stages"][metrics["final_stage"]]
    summary: dict[str, Any] = {"questions": metrics["counts"]["queries"], "retrieval": dict(final["metrics"])}
    generate = metrics["stages"].get("generate")
    if generate is not None:
        summary["qa"] = {name: generate["metrics"].get(name) for name in ("em", "f1", "answer_in_passages")}
    summary["latency_per_question_s"] = _latency(metrics, summary["questions"])
    return summary


def mtrag_summary(folders: Sequence[Path]) -> dict[str, Any]:
    """MT-RAG figures over one output folder per domain: pooled retrieval (judged tasks) per domain and over all
    of them (``all``: weighted by tasks, ``*_macro``: the mean of the domains), and abstention per label."""
    retrieval: dict[str, Any] = {}
    by_label: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    tasks = 0
    latency: dict[str, float] = {}
    for folder in folders:
        metrics, per_query = _read(folder)
        domain = str(metrics["dataset"]["domain"])
        final = per_query[metrics["final_stage"]]
        judged = len(final[MTRAG_RETRIEVAL[0]])
        if judged:
            retrieval[domain] = {name: _mean(list(final[name].values())) for name in MTRAG_RETRIEVAL}
            retrieval[domain]["queries"] = judged
        warnings.extend(metrics["warnings"][1:])
        generate = metrics["stages"].get("generate")
        count = generate["questions"] if generate is not None else metrics["counts"]["queries"]
        tasks += count
        for name, value in _latency(metrics, count).items():
            latency[name] = latency.get(name, 0.0) + value * count
        for label, block in (generate or {}).get("by_label", {}).items():
            _pool(by_label.setdefault(label, {"questions": 0, "sums": {}, "defined": {}}), block)
    domains = [v for v in retrieval.values()]
    if domains:
        judged_total = sum(d["queries"] for d in domains)
        retrieval["all"] = {
            **{n: math.fsum(d[n] * d["queries"] for d in domains) / judged_total for n in MTRAG_RETRIEVAL},
            "queries": judged_total,
            **{f"{n}_macro": _mean([d[n] for d in domains]) for n in MTRAG_RETRIEVAL},
        }
    summary: dict[str, Any] = {"pooled_evaluation": True, "tasks": tasks, "retrieval": retrieval}
    if by_label:
        summary["generation"] = _generation(by_label)
    summary["warnings"] = warnings
    summary["latency_per_question_s"] = {name: value / max(tasks, 1) for name, value in latency.items()}
    return summary


def _pool(into: dict[str, Any], block: Mapping[str, Any]) -> None:
    into["questions"] += block["questions"]
    for name, value in block["metrics"].items():
        count = block["defined"][name]
        into["sums"][name] = into["sums"].get(name, 0.0) + value * count
        into["defined"][name] = into["defined"].get(name, 0) + count


def _generation(by_label: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Abstention per label and between answerable (ANSWERABLE or PARTIAL) and UNANSWERABLE tasks, and the means
    of the answer scores over the tasks that have them."""

    def mean(label: str, name: str) -> float | None:
        block = by_label.get(label)
        if block is None or not block["defined"].get(name):
            return None
        return block["sums"][name] / block["defined"][name]

    names = ("abstained", "cited", "em", "f1", "citation_precision")
    labels: dict[str, Any] = {}
    for label, block in sorted(by_label.items()):
        labels[label] = {"tasks": block["questions"], **{n: mean(label, n) for n in names}}
        counts = {n: block["defined"].get(n, 0) for n in names}
        labels[label].update({f"{n}_n": c for n, c in counts.items() if c != block["questions"]})
    flags: list[bool] = []
    answerable: list[bool] = []
    for label in (*ANSWERABLE_LABELS, "UNANSWERABLE"):
        block = by_label.get(label)
        if block is not None:
            abstained = round(block["sums"].get("abstained", 0.0))
            flags += [True] * abstained + [False] * (block["questions"] - abstained)
            answerable += [label in ANSWERABLE_LABELS] * block["questions"]
    rate_answerable, rate_unanswerable = mean("ANSWERABLE", "abstained"), mean("UNANSWERABLE", "abstained")
    gap = None if rate_answerable is None or rate_unanswerable is None else rate_unanswerable - rate_answerable

    def defined(name: str) -> int:
        return sum(b["defined"].get(name, 0) for b in by_label.values())

    def pooled(name: str) -> float | None:
        return math.fsum(b["sums"].get(name, 0.0) for b in by_label.values()) / defined(name) if defined(name) else None

    scored = defined("f1")  # the tasks with a reference answer: the answer scores are means over these
    return {
        "abstention_rate_ANSWERABLE": rate_answerable,
        "abstention_rate_UNANSWERABLE": rate_unanswerable,
        "abstention_gap_UNANSWERABLE_minus_ANSWERABLE": gap,
        "answerable_includes_partial": abstention_scores(flags, answerable) if flags else None,
        "by_answerability": labels,
        **{name: pooled(name) for name in ("em", "f1", "citation_precision")},
        **{f"{n}_n": defined(n) for n in ("em", "citation_precision") if defined(n) != scored},
    }
