"""The generate stage (answers with citations from the final ranking) and its QA metrics.

Answers go to ``answers.jsonl``, one record per question: ``id``, ``question``, ``passages`` (the doc ids shown
as [1]..[k]) and the :class:`~rankwise.generate.answer.Answer` fields. QA metrics come from
:mod:`rankwise.evaluate.qa`'s pure functions against the gold data of the data set, looked up in
:data:`GOLD` by the data set's source (a plain name -> loader table):

- HotpotQA: the gold answer; the supporting paragraphs are the evidence (qrels); the supporting facts;
- open-domain QA (``open-qa:FILE``): the gold answers of the question file; no evidence passages;
- MT-RAG: the reference answers, the reference passages as evidence, answerable = ANSWERABLE or PARTIAL, and
  the answerability label (the means are also given per label, ``by_label``);
- anything else (BEIR, SMART): no answer text; the judged relevant documents are the evidence.

Per question: ``em``/``f1`` (SQuAD normalisation, when a gold answer exists and the question is answerable;
HotpotQA answers use the official script's rule that a yes/no/noanswer mismatch scores F1 0),
``answer_in_passages`` (a gold answer occurs in the passages shown: the ceiling the ranking allows),
``citation_precision``/``citation_recall``/``support_f1`` against the evidence, ``cited``, ``abstained``,
``dropped_citations``. HotpotQA adds the official answer precision/recall, supporting-fact and joint scores and
``citation_precision_answer``/``supported`` (:func:`rankwise.experiment.rag_scores.hotpot_scores`). Means skip
questions where a value is undefined and say how many they cover.

``generate: {passages: reference}`` answers from the question's evidence passages (all of them, in the data
set's order) instead of the ranking's top ``top_k``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from rankwise.build import build_engine, build_generator
from rankwise.build import key_params as stage_key
from rankwise.config.experiment import GenerateConfig
from rankwise.config.sections import EngineConfig
from rankwise.data import detect_format
from rankwise.data._io import iter_jsonl
from rankwise.data.files import atomic_writer
from rankwise.data.hotpotqa import load_hotpotqa
from rankwise.data.mtrag import load_generation_tasks
from rankwise.engine import Progress, Shard
from rankwise.evaluate import qa
from rankwise.evaluate.qa import abstention_scores
from rankwise.experiment.cache import Chunks
from rankwise.experiment.rag_scores import hotpot_scores
from rankwise.generate.answer import Answer
from rankwise.generate.base import GenerationRequest
from rankwise.generate.prompts import load_template
from rankwise.generate.sharded import GeneratorRecipe
from rankwise.types import Dataset, Document, Query, Run, sort_run

QA_METRICS = ("em", "f1", "answer_in_passages", "citation_precision", "citation_recall", "support_f1", "cited",
              "abstained", "dropped_citations")  # fmt: skip


@dataclass(frozen=True)
class Gold:
    answers: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()
    answerable: bool | None = None
    answer_rule: str = "squad"  # "hotpotqa": the official HotpotQA answer EM/F1 (yes/no/noanswer score F1 0)
    facts: tuple[tuple[str, int], ...] = ()  # HotpotQA supporting facts (title, sentence index)
    label: str | None = None  # MT-RAG answerability label


def _gold_from_qrels(dataset: Dataset, info: Mapping[str, Any]) -> dict[str, Gold]:
    return {q: Gold(evidence=tuple(d for d, g in docs.items() if g > 0)) for q, docs in dataset.qrels.items()}


def _gold_hotpotqa(dataset: Dataset, info: Mapping[str, Any]) -> dict[str, Gold]:
    base = _gold_from_qrels(dataset, info)
    gold = {}
    for example in load_hotpotqa(info["path"]):
        if example.id in dataset.queries and example.answer is not None:
            evidence = base.get(example.id, Gold()).evidence
            gold[example.id] = Gold((example.answer,), evidence, True, "hotpotqa", tuple(example.supporting_facts))
    return gold


def _gold_mtrag(dataset: Dataset, info: Mapping[str, Any]) -> dict[str, Gold]:
    tasks = {t.id: t for t in load_generation_tasks(info["path"], [info["domain"]])}
    return {
        qid: Gold(
            tuple(t for t in task.targets if t.strip()),
            tuple(d.id for d in task.contexts),
            task.answerable,
            label=task.answerability,
        )
        for qid, task in tasks.items()
        if qid in dataset.queries
    }


def _gold_open_qa(dataset: Dataset, info: Mapping[str, Any]) -> dict[str, Gold]:
    """Open-domain QA: the gold answers the data set carries (EM/F1 against any of them); no evidence passages."""
    return {qid: Gold(tuple(golds), (), True) for qid, golds in dataset.answers.items() if qid in dataset.queries}


# data set source/format -> gold loader (plain dict literal).
GOLD: dict[str, Callable[[Dataset, Mapping[str, Any]], dict[str, Gold]]] = {
    "hotpotqa": _gold_hotpotqa,
    "mtrag": _gold_mtrag,
    "open-qa": _gold_open_qa,
    "default": _gold_from_qrels,
}


def gold_for(dataset: Dataset, info: Mapping[str, Any]) -> dict[str, Gold]:
    key = (
        "mtrag"
        if info.get("source") in ("mtrag", "mtrag-answerability", "mtrag-tasks")
        else str(info.get("format") or "")
    )
    if info.get("source") == "open-qa":
        key = "open-qa"
    elif key != "mtrag" and info.get("source") == "files":
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
    reference: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Answer every query from its top ``top_k`` documents of ``run`` (or its ``reference`` passages when given),
    in saved chunks of questions. The chunks are the shards the section's engine runs (in this process, or one
    generator per Ray actor); each is saved as it arrives, so a killed run resumes whichever engine ran it."""
    started = time.perf_counter()
    ranked = sort_run(run)
    ids = list(queries)
    size = config.checkpoint_every or max(1, len(ids))
    parts: dict[int, list[dict[str, Any]]] = {}
    bar = Progress(len(ids), -(-len(ids) // size), "answering", "question", enabled=progress)

    def unfinished() -> Iterator[Shard]:
        for index, start in enumerate(range(0, len(ids), size)):
            batch = ids[start : start + size]
            shard = Shard(index, f"answer shard {index} (questions {batch[0]}..{batch[-1]})", None, len(batch))
            saved = chunks.load(index)
            if saved is not None:
                parts[index] = saved
                bar.shard_reused(shard)
                continue
            if reference is not None:
                shown = {qid: list(reference.get(qid, ())) for qid in batch}
            else:
                shown = {qid: list(ranked.get(qid, {}))[: config.top_k] for qid in batch}
            requests = [
                GenerationRequest(queries[q].text, tuple(corpus[d] for d in shown[q]), tuple(queries[q].history))
                for q in batch
            ]
            yield replace(shard, payload=requests, key=(batch, shown))

    engine = build_engine(getattr(config, "engine", EngineConfig()))
    recipe = GeneratorRecipe(partial(build_generator, config, False))  # built where it runs: one per Ray actor
    answered = 0
    try:
        for shard, answers in engine.map(recipe, unfinished(), bar):
            batch, shown = shard.key
            part = [
                {"id": q, "question": queries[q].text, "passages": shown[q], **answer.to_dict()}
                for q, answer in zip(batch, answers, strict=True)
            ]
            chunks.save(shard.index, part)
            parts[shard.index] = part
            answered += len(batch)
            log(f"  generate: {shard.name} done, {answered} questions answered in this run")
    finally:
        bar.close()
        engine.close()
    records = [record for index in sorted(parts) for record in parts[index]]
    info: dict[str, Any] = {"generate_s": round(time.perf_counter() - started, 3), "questions": len(records)}
    if bar.reused:
        info["chunks_resumed"] = bar.reused
    return records, info


def key_params(config: GenerateConfig) -> dict[str, Any]:
    """What the answers depend on: the section without where it ran (an engine's batch size counts: it is the
    generator's), so a run resumes the chunks another engine answered."""
    return stage_key(config)


def reference_passages(config: GenerateConfig, gold: Mapping[str, Gold]) -> dict[str, list[str]] | None:
    """Each question's evidence passages when ``config.passages`` is ``reference``, else None."""
    return {qid: list(g.evidence) for qid, g in gold.items()} if config.passages == "reference" else None


def numbers_sentences(config: GenerateConfig) -> bool:
    """Whether the generator's template numbers sentences (``[n.s]`` citations: sentence-level support)."""
    name = config.template
    if config.kind == "rankrag" and name == "default":  # the template the model was trained with
        saved = Path(config.model) / "rankrag.json"
        name = json.loads(saved.read_text(encoding="utf-8")).get("template", "short") if saved.is_file() else "short"
    return load_template(name).number_sentences


def write_answers(records: list[dict[str, Any]], path: Path) -> None:
    with atomic_writer(path) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_answers(path: Path) -> list[dict[str, Any]]:
    return [record for _, record in iter_jsonl(path)]


def question_scores(
    record: Mapping[str, Any], gold: Gold, corpus: Mapping[str, Document], sentence_level: bool = False
) -> dict[str, float | None]:
    """The per-question QA scores (see the module docstring); ``None`` where a score is undefined.
    ``sentence_level``: the answers cite sentences (HotpotQA support is then scored per sentence too)."""
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
    if gold.answer_rule == "hotpotqa" and gold.answers:
        scores.update(hotpot_scores(answer, gold.answers[0], gold.facts, corpus, sentence_level))
    return scores


def qa_metrics(
    records: list[dict[str, Any]],
    gold: Mapping[str, Gold],
    corpus: Mapping[str, Document],
    sentence_level: bool = False,
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """``(means, per-question values)``: means over the questions where each score is defined; with answerability
    labels also ``by_label``: per label the question count, the means and how many each covers."""
    per_question: dict[str, dict[str, float]] = {name: {} for name in QA_METRICS}
    for record in records:
        scores = question_scores(record, gold.get(record["id"], Gold()), corpus, sentence_level)
        for name, value in scores.items():
            if value is not None:
                per_question.setdefault(name, {})[record["id"]] = value
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
    scored: dict[str, Any] = {"metrics": means, "defined": defined}
    labels = {r["id"]: gold[r["id"]].label for r in records if r["id"] in gold and gold[r["id"]].label is not None}
    if labels:
        scored["by_label"] = {
            label: _label_block(per_question, labels, label) for label in sorted(set(labels.values()))
        }
    return scored, {k: dict(sorted(v.items())) for k, v in per_question.items() if v}


def _label_block(
    per_question: Mapping[str, Mapping[str, float]], labels: Mapping[str, str], label: str
) -> dict[str, Any]:
    ids = {qid for qid, value in labels.items() if value == label}
    block: dict[str, Any] = {"questions": len(ids), "metrics": {}, "defined": {}}
    for name, values in per_question.items():
        picked = [v for qid, v in values.items() if qid in ids]
        if picked:
            block["metrics"][name] = math.fsum(picked) / len(picked)
            block["defined"][name] = len(picked)
    return block
