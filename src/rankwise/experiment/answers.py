"""The generate stage (answers with citations from the final ranking) and its QA metrics.

Answers go to ``answers.jsonl``, one record per question: ``id``, ``question``, ``passages`` (the doc ids shown
as [1]..[k]) and the :class:`~rankwise.generate.answer.Answer` fields. QA metrics come from
:mod:`rankwise.evaluate.qa`'s pure functions against the gold data of the data set, looked up in
:data:`GOLD` by the data set's source (a plain name -> loader table):

- HotpotQA: the gold answer; the supporting paragraphs are the evidence (qrels);
- MT-RAG: the reference answers, the reference passages as evidence, answerable = ANSWERABLE or PARTIAL;
- anything else (BEIR, SMART): no answer text; the judged relevant documents are the evidence.

Per question: ``em``/``f1`` (SQuAD normalisation, when a gold answer exists and the question is answerable;
HotpotQA answers use the official script's rule that a yes/no/noanswer mismatch scores F1 0),
``answer_in_passages`` (a gold answer occurs in the passages shown: the ceiling the ranking allows),
``citation_precision``/``citation_recall``/``support_f1`` against the evidence, ``cited``, ``abstained``,
``dropped_citations``. Means skip questions where a value is undefined and say how many they cover.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankwise.build import build_generator
from rankwise.config.experiment import GenerateConfig
from rankwise.experiment.cache import Chunks
from rankwise.types import Dataset, Document, Query, Run, sort_run

QA_METRICS = ("em", "f1", "answer_in_passages", "citation_precision", "citation_recall", "support_f1", "cited",
              "abstained", "dropped_citations")  # fmt: skip


@dataclass(frozen=True)
class Gold:
    answers: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()
    answerable: bool | None = None
    answer_rule: str = "squad"  # "hotpotqa": the official HotpotQA answer EM/F1 (yes/no/noanswer score F1 0)


def _gold_from_qrels(dataset: Dataset, info: Mapping[str, Any]) -> dict[str, Gold]:
    return {q: Gold(evidence=tuple(d for d, g in docs.items() if g > 0)) for q, docs in dataset.qrels.items()}


def _gold_hotpotqa(dataset: Dataset, info: Mapping[str, Any]) -> dict[str, Gold]:
    from rankwise.data.hotpotqa import load_hotpotqa

    base = _gold_from_qrels(dataset, info)
    gold = {}
    for example in load_hotpotqa(info["path"]):
        if example.id in dataset.queries and example.answer is not None:
            gold[example.id] = Gold((example.answer,), base.get(example.id, Gold()).evidence, True, "hotpotqa")
    return gold


def _gold_mtrag(dataset: Dataset, info: Mapping[str, Any]) -> dict[str, Gold]:
    from rankwise.data.mtrag import load_generation_tasks

    tasks = {t.id: t for t in load_generation_tasks(info["path"], [info["domain"]])}
    return {
        qid: Gold(tuple(t for t in task.targets if t.strip()), tuple(d.id for d in task.contexts), task.answerable)
        for qid, task in tasks.items()
        if qid in dataset.queries
    }


# data set source/format -> gold loader (plain dict literal).
GOLD: dict[str, Callable[[Dataset, Mapping[str, Any]], dict[str, Gold]]] = {
    "hotpotqa": _gold_hotpotqa,
    "mtrag": _gold_mtrag,
    "default": _gold_from_qrels,
}


def gold_for(dataset: Dataset, info: Mapping[str, Any]) -> dict[str, Gold]:
    key = "mtrag" if info.get("source") in ("mtrag", "mtrag-answerability") else str(info.get("format") or "")
    if key != "mtrag" and info.get("source") == "files":
        from rankwise.data import detect_format

        key = info.get("format") or detect_format(info["path"])
    return GOLD.get(key, GOLD["default"])(dataset, info)


def generate(
    config: GenerateConfig,
    queries: Mapping[str, Query],
    run: Run,
    corpus: Mapping[str, Document],
    chunks: Chunks,
    progress: bool,
    log: Callable[[str], None],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Answer every query from its top ``top_k`` documents of ``run``, in saved chunks of questions."""
    from rankwise.generate.base import GenerationRequest

    started = time.perf_counter()
    ranked = sort_run(run)
    ids = list(queries)
    size = config.checkpoint_every or max(1, len(ids))
    built: list[Any] = []
    records: list[dict[str, Any]] = []
    resumed = 0
    for index, start in enumerate(range(0, len(ids), size)):
        part = chunks.load(index)
        if part is None:
            if not built:
                built.append(build_generator(config, progress))
            batch = ids[start : start + size]
            shown = {qid: list(ranked.get(qid, {}))[: config.top_k] for qid in batch}
            requests = [
                GenerationRequest(queries[q].text, tuple(corpus[d] for d in shown[q]), tuple(queries[q].history))
                for q in batch
            ]
            answers = built[0].generate_batch(requests)
            part = [
                {"id": q, "question": queries[q].text, "passages": shown[q], **answer.to_dict()}
                for q, answer in zip(batch, answers, strict=True)
            ]
            chunks.save(index, part)
            log(f"  generate: {min(start + size, len(ids))}/{len(ids)} questions answered")
        else:
            resumed += 1
        records.extend(part)
    info: dict[str, Any] = {"generate_s": round(time.perf_counter() - started, 3), "questions": len(records)}
    if resumed:
        info["chunks_resumed"] = resumed
    return records, info


def write_answers(records: list[dict[str, Any]], path: Path) -> None:
    from rankwise.data.files import atomic_writer

    with atomic_writer(path) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_answers(path: Path) -> list[dict[str, Any]]:
    from rankwise.data._io import iter_jsonl

    return [record for _, record in iter_jsonl(path)]


def question_scores(record: Mapping[str, Any], gold: Gold, corpus: Mapping[str, Document]) -> dict[str, float | None]:
    """The per-question QA scores (see the module docstring); ``None`` where a score is undefined."""
    from rankwise.evaluate import qa
    from rankwise.generate.answer import Answer

    answer = Answer.from_dict(dict(record))
    cited = answer.cited_ids
    scores: dict[str, float | None] = dict.fromkeys(QA_METRICS)
    if gold.answers and gold.answerable is not False:
        if gold.answer_rule == "hotpotqa":
            official = [qa.hotpot_answer_scores(answer.plain_text, g) for g in gold.answers]
            scores["em"] = max(o["em"] for o in official)
            scores["f1"] = max(o["f1"] for o in official)
        else:
            scores["em"] = qa.exact_match(answer.plain_text, gold.answers)
            scores["f1"] = qa.f1_score(answer.plain_text, gold.answers)
        shown = " ".join(corpus[d].contents for d in record["passages"] if d in corpus)
        scores["answer_in_passages"] = float(qa.answer_in_text(gold.answers, shown))
    if gold.evidence:
        scores["citation_precision"] = qa.citation_precision(cited, gold.evidence)
        scores["citation_recall"] = qa.citation_recall(cited, gold.evidence)
        scores["support_f1"] = qa.supporting_fact_scores(cited, gold.evidence)["f1"]
    scores["cited"] = float(bool(cited))
    scores["abstained"] = float(answer.abstained)
    scores["dropped_citations"] = float(answer.dropped_citations)
    return scores


def qa_metrics(
    records: list[dict[str, Any]], gold: Mapping[str, Gold], corpus: Mapping[str, Document]
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """``(means, per-question values)``: means over the questions where each score is defined."""
    from rankwise.evaluate.qa import abstention_scores

    per_question: dict[str, dict[str, float]] = {name: {} for name in QA_METRICS}
    for record in records:
        for name, value in question_scores(record, gold.get(record["id"], Gold()), corpus).items():
            if value is not None:
                per_question[name][record["id"]] = value
    means: dict[str, Any] = {}
    defined: dict[str, int] = {}
    for name, values in per_question.items():
        if values:
            means[name] = math.fsum(values.values()) / len(values)
            defined[name] = len(values)
    labelled = [r for r in records if gold.get(r["id"], Gold()).answerable is not None]
    if labelled and any(gold[r["id"]].answerable is False for r in labelled):
        split = abstention_scores(
            [bool(r["abstained"]) for r in labelled], [bool(gold[r["id"]].answerable) for r in labelled]
        )
        means.update({k: v for k, v in split.items() if v is not None and k != "abstention_rate"})
    return {"metrics": means, "defined": defined}, {k: dict(sorted(v.items())) for k, v in per_question.items() if v}
