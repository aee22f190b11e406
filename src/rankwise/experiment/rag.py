"""Run a whole data set through the pipeline and score it → ``answers.jsonl`` + ``metrics.json``: HotpotQA here,
MT-RAG in :mod:`rankwise.experiment.rag_mtrag` (on the same record store and answering loop).

Parts come in built (a ``make_retriever(corpus)`` factory that indexes a corpus, a generator, a reranker): this
module never reads configuration. Both runners write, under ``out_dir``:

- ``answers.jsonl``: one record per question: the question, the gold data, the answer with its citations, the
  passages shown, the final ranking (top 10, or top k if larger), per-question scores and latency;
- ``run.trec``: that ranking as a TREC run;
- ``metrics.json``: aggregates of the records (:mod:`rankwise.experiment.rag_scores`), plus wall time and this
  process's CPU time (on a shared machine the CPU time is the steadier measure of cost).

Long runs resume: records are appended to ``answers.partial.jsonl`` chunk by chunk, and a rerun with the same
settings and ``out_dir`` skips the questions already answered (a rerun with other settings is refused).

HotpotQA settings: ``distractor`` ranks each question's own 10 paragraphs (BM25/dense statistics come from one
index over all paragraphs of the file); ``open`` ranks all paragraphs of the file. Passages are built one
sentence per line, so the sentence-numbered prompt template can cite single sentences.

MT-RAG (:mod:`rankwise.experiment.rag_mtrag`) is evaluated on pooled corpora (see :mod:`rankwise.data.mtrag`);
metrics.json says so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rankwise.data._io import iter_jsonl
from rankwise.data.files import atomic_write_text, atomic_writer
from rankwise.data.hotpotqa import hotpotqa_inputs
from rankwise.errors import RankwiseError
from rankwise.experiment.pipeline import Pipeline, PipelineResult
from rankwise.experiment.rag_scores import hotpot_record_scores, hotpotqa_metrics
from rankwise.generate.base import GenerationRequest
from rankwise.types import Document, Query

MakeRetriever = Callable[[Mapping[str, Document]], Any]
MakeRecord = Callable[[str, PipelineResult, list[tuple[str, float]]], dict[str, Any]]
Log = Callable[[str], None]
RANKING_DEPTH = 10
PARTIAL = "answers.partial.jsonl"
SETTINGS = ("distractor", "open")


def noop(_: str) -> None:
    return None


class RecordStore:
    """``answers.partial.jsonl`` (what is answered so far) plus the settings it was written with."""

    def __init__(self, out_dir: str | Path, settings: Mapping[str, Any]) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / PARTIAL
        self.settings_path = self.out_dir / ".rag-settings.json"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        wanted = json.loads(json.dumps(dict(settings), sort_keys=True))
        self.done: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            saved = json.loads(self.settings_path.read_text(encoding="utf-8")) if self.settings_path.exists() else None
            if saved != wanted:
                raise RankwiseError(
                    f"{self.path}: a partial run with different settings is in this directory; "
                    "use another --out or delete the partial file"
                )
            self.done = {record["id"]: record for _, record in iter_jsonl(self.path)}
        else:
            atomic_write_text(self.settings_path, json.dumps(wanted, sort_keys=True) + "\n")

    def add(self, records: Sequence[dict[str, Any]]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                self.done[record["id"]] = record

    def finish(self, order: Sequence[str], metrics: Mapping[str, Any], tag: str) -> None:
        """Write answers.jsonl, run.trec and metrics.json (each atomically), then drop the partial file."""
        from rankwise.data.trec import write_run

        records = [self.done[i] for i in order]
        with atomic_writer(self.out_dir / "answers.jsonl") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        run = {r["id"]: dict(map(tuple, r["ranking"])) for r in records if r["ranking"]}
        if run:
            write_run(run, self.out_dir / "run.trec", tag=tag)
        atomic_write_text(self.out_dir / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
        self.path.unlink(missing_ok=True)
        self.settings_path.unlink(missing_ok=True)


def answer_all(
    pipeline: Pipeline,
    queries: Mapping[str, Query],
    store: RecordStore,
    make_record: MakeRecord,
    *,
    search_queries: Mapping[str, Query] | None = None,
    restrict: Mapping[str, Sequence[str]] | None = None,
    passages_for: Mapping[str, Sequence[Document]] | None = None,
    generator: Any = None,
    chunk_size: int = 16,
    log: Log = noop,
    label: str = "",
) -> None:
    """Run the pipeline over the queries not yet in ``store``, chunk by chunk, storing one record each.

    With ``passages_for`` (and ``generator``) the answers come from those passages instead of the retrieved ones
    (the pipeline then only ranks).
    """
    search_queries = search_queries if search_queries is not None else queries
    todo = [qid for qid in queries if qid not in store.done]
    if len(todo) < len(queries):
        log(f"{label}: resuming, {len(queries) - len(todo)} of {len(queries)} already done")
    for start in range(0, len(todo), chunk_size):
        ids = todo[start : start + chunk_size]
        output = pipeline.run(
            {q: queries[q] for q in ids},
            search_queries={q: search_queries[q] for q in ids},
            restrict={q: restrict[q] for q in ids} if restrict is not None else None,
        )
        if passages_for is not None and generator is not None:
            _answer_from(generator, output.results, passages_for)
        records = []
        for qid in ids:
            ranking = list(output.run.get(qid, {}).items())[: max(RANKING_DEPTH, pipeline.k)]
            record = make_record(qid, output.results[qid], ranking)
            if pipeline.reranker is not None:
                first = list(output.first_stage.get(qid, {}).items())[:RANKING_DEPTH]
                record["first_stage"] = [[d, s] for d, s in first]
            records.append(record)
        store.add(records)
        log(f"{label}: {min(start + chunk_size, len(todo))}/{len(todo)} done")


def _answer_from(
    generator: Any, results: Mapping[str, PipelineResult], passages_for: Mapping[str, Sequence[Document]]
) -> None:
    ids = list(results)
    requests = [
        GenerationRequest(results[q].query.text, tuple(passages_for[q]), tuple(results[q].query.history)) for q in ids
    ]
    start = time.perf_counter()
    answers = generator.generate_batch(requests)
    per_question = (time.perf_counter() - start) / max(1, len(ids))
    for qid, answer in zip(ids, answers, strict=True):
        result = results[qid]
        result.answer = answer
        result.passages = list(passages_for[qid])
        result.scores = [0.0] * len(result.passages)
        result.latency["generate_s"] = per_question
        result.latency["total_s"] = result.latency.get("total_s", 0.0) + per_question


def base_record(qid: str, result: PipelineResult, ranking: list[tuple[str, float]], generated: bool) -> dict[str, Any]:
    return {
        "id": qid,
        "question": result.query.text,
        "prediction": result.answer.plain_text if generated else None,
        "answer": result.answer.to_dict() if generated else None,
        "passages": [
            {"number": i, "doc_id": doc.id, "title": doc.title, "score": score}
            for i, (doc, score) in enumerate(zip(result.passages, result.scores, strict=True), start=1)
        ],
        "ranking": [[d, s] for d, s in ranking],
        "latency": result.latency,
    }


def run_hotpotqa(
    path: str | Path,
    out_dir: str | Path,
    make_retriever: MakeRetriever,
    generator: Any = None,
    reranker: Any = None,
    k: int = 5,
    candidates: int = 100,
    setting: str = "distractor",
    limit: int | None = None,
    chunk_size: int = 16,
    settings: Mapping[str, Any] | None = None,
    log: Log = noop,
) -> dict[str, Any]:
    """Answer (or, without a generator, only rank for) the HotpotQA questions in ``path``; returns the metrics."""
    if setting not in SETTINGS:
        raise RankwiseError(f"unknown HotpotQA setting '{setting}' (known: {', '.join(SETTINGS)})")
    started, cpu_started = time.perf_counter(), time.process_time()
    examples, corpus, allowed = hotpotqa_inputs(path, limit)
    config = {"dataset": "hotpotqa", "setting": setting, "k": k, "questions": len(examples), **(settings or {})}
    store = RecordStore(out_dir, config)
    start = time.perf_counter()
    retriever = make_retriever(corpus)
    index_s = time.perf_counter() - start
    depth = len(corpus) if setting == "distractor" else candidates
    pipeline = Pipeline(retriever, corpus, generator=generator, reranker=reranker, k=k, candidates=depth)
    by_id = {e.id: e for e in examples}
    queries = {e.id: Query(e.id, e.question) for e in examples}
    sentence_level = bool(getattr(getattr(generator, "template", None), "number_sentences", False))

    def make_record(qid: str, result: PipelineResult, ranking: list[tuple[str, float]]) -> dict[str, Any]:
        example = by_id[qid]
        record = base_record(qid, result, ranking, generator is not None)
        record["gold_answer"] = example.answer
        record["gold_titles"] = sorted({t for t, _ in example.supporting_facts})
        record["supporting_facts"] = [list(f) for f in example.supporting_facts]
        record["type"], record["level"] = example.type, example.level
        answer = result.answer if generator is not None else None
        record["scores"] = hotpot_record_scores(record, corpus, answer, sentence_level)
        return record

    restrict = allowed if setting == "distractor" else None
    answer_all(
        pipeline, queries, store, make_record, restrict=restrict, chunk_size=chunk_size, log=log, label="hotpotqa"
    )
    metrics = hotpotqa_metrics([store.done[q] for q in queries], generated=generator is not None)
    metrics["setting"] = setting
    metrics["timing"] = {
        "index_s": index_s,
        "wall_s": time.perf_counter() - started,
        "process_cpu_s": time.process_time() - cpu_started,
    }
    metrics["config"] = config
    store.finish(list(queries), metrics, tag="rankwise-rag")
    return metrics
