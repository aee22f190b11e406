"""MT-RAG through the pipeline on pooled per-domain corpora → ``answers.jsonl`` + ``metrics.json``.

The record store, answering loop and output files are :mod:`rankwise.experiment.rag`'s (its docstring describes them);
this module holds what is MT-RAG's own: task selection, query rewriting, answerability caps, the records.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rankwise.errors import RankwiseError
from rankwise.experiment.pipeline import Pipeline, PipelineResult
from rankwise.experiment.rag import Log, MakeRecord, MakeRetriever, RecordStore, answer_all, base_record, noop
from rankwise.experiment.rag_scores import mtrag_metrics, mtrag_record_scores
from rankwise.types import Query


def run_mtrag(
    path: str | Path,
    out_dir: str | Path,
    make_retriever: MakeRetriever,
    generator: Any = None,
    reranker: Any = None,
    rewrite: str = "last_turn",
    rewriter: Any = None,
    domains: Sequence[str] | None = None,
    k: int = 5,
    candidates: int = 100,
    passages: str = "retrieved",
    answerability: Sequence[str] | None = None,
    subset: str = "un",
    limit: int | None = None,
    per_label_limit: int | None = None,
    chunk_size: int = 16,
    settings: Mapping[str, Any] | None = None,
    log: Log = noop,
) -> dict[str, Any]:
    """MT-RAG on pooled per-domain corpora (see :mod:`rankwise.data.mtrag`); returns the metrics.

    Without a generator only the judged tasks are ranked (retrieval metrics). With one, the tasks with the
    given ``answerability`` labels (default all) are answered from the top-``k`` retrieved passages
    (``passages="retrieved"``) or from their reference passages (``"reference"``; unanswerable tasks have none).
    ``rewrite``: ``last_turn``, ``full_history``, ``llm`` (needs ``rewriter``), or ``human`` with
    ``subset="human"``: the original MT-RAG tasks whose judged passages fall in the pool, where the benchmark's
    own human rewrites exist (retrieval only). ``limit`` caps the tasks per domain; ``per_label_limit`` caps
    the answered tasks of each answerability label per domain (first ones in file order).
    """
    from rankwise.data import mtrag
    from rankwise.retrieve.rewrite import rewrite_queries

    if passages not in ("retrieved", "reference"):
        raise RankwiseError(f"passages must be 'retrieved' or 'reference', not '{passages}'")
    if subset not in ("un", "human"):
        raise RankwiseError(f"subset must be 'un' (MT-RAG-UN tasks) or 'human' (original tasks), not '{subset}'")
    if subset == "human" and generator is not None:
        raise RankwiseError("the 'human' subset is for retrieval only: run it without a generator")
    if rewrite == "human" and subset != "human":
        raise RankwiseError("human rewrites exist for the original MT-RAG tasks only: use the 'human' subset")
    labels = sorted(answerability or mtrag.ANSWERABILITY)
    unknown = sorted(set(labels) - set(mtrag.ANSWERABILITY))
    if unknown:
        raise RankwiseError(f"unknown answerability label(s) {unknown} (known: {', '.join(mtrag.ANSWERABILITY)})")
    started, cpu_started = time.perf_counter(), time.process_time()
    chosen = [mtrag.canonical_domain(d) for d in (domains or mtrag.DOMAINS)]
    config = {
        "dataset": "mtrag",
        "pooled_evaluation": True,
        "rewrite": rewrite,
        "subset": subset,
        "k": k,
        "passages": passages,
        "answerability": labels,
        "domains": chosen,
        "limit": limit,
        "per_label_limit": per_label_limit,
        **(settings or {}),
    }
    store = RecordStore(out_dir, config)
    all_tasks = mtrag.load_generation_tasks(path)
    order: list[str] = []
    qrels_by_domain: dict[str, Any] = {}
    timing = {"index_s": 0.0, "rewrite_s": 0.0}
    notes = [mtrag.POOLED_NOTE]
    for domain in chosen:
        dataset = mtrag.load_pooled_retrieval(path, domain, all_tasks)
        notes.extend(dataset.warnings[1:])
        tasks = {t.id: t for t in all_tasks if t.domain == domain}
        given: dict[str, Query] = {}
        if subset == "human":
            by_strategy, qrels, warnings = mtrag.load_human_rewrite_subset(path, domain, dataset.corpus)
            notes.extend(warnings[1:])
            queries = by_strategy["last_turn"]
            if rewrite in ("human", "full_history"):
                given = by_strategy[rewrite]
        else:
            qrels = dataset.qrels
            picked = (
                [tasks[q] for q in dataset.queries]
                if generator is None
                else [t for t in tasks.values() if t.answerability in labels]
            )
            if generator is not None and per_label_limit is not None:
                picked = _cap_per_label(picked, per_label_limit)
            queries = {t.id: t.query() for t in picked}
        queries = dict(list(queries.items())[:limit])
        if not queries:
            continue
        todo = {q: v for q, v in queries.items() if q not in store.done}
        start = time.perf_counter()
        search = {q: given[q] for q in todo} if given else rewrite_queries(todo, rewrite, rewriter)
        timing["rewrite_s"] += time.perf_counter() - start
        start = time.perf_counter()
        retriever = make_retriever(dataset.corpus)
        timing["index_s"] += time.perf_counter() - start
        use_reference = passages == "reference" and generator is not None
        pipeline = Pipeline(
            retriever,
            dataset.corpus,
            generator=None if use_reference else generator,
            reranker=reranker,
            k=k,
            candidates=candidates,
        )
        qrels_by_domain[domain] = qrels
        make_record = _mtrag_record_maker(domain, tasks, qrels, search, generator is not None)
        answer_all(
            pipeline,
            todo,
            store,
            make_record,
            search_queries=search,
            chunk_size=chunk_size,
            log=log,
            label=f"mtrag/{domain}",
            generator=generator,
            passages_for={q: tasks[q].contexts for q in todo} if use_reference else None,
        )
        order.extend(queries)
    if not order:
        raise RankwiseError("no MT-RAG task matched the chosen domains and answerability labels")
    metrics = mtrag_metrics([store.done[q] for q in order], qrels_by_domain, generated=generator is not None)
    metrics = {"pooled_evaluation": True, "note": mtrag.POOLED_NOTE, **metrics}
    metrics["warnings"] = notes[1:]
    metrics["timing"] = {
        **timing,
        "wall_s": time.perf_counter() - started,
        "process_cpu_s": time.process_time() - cpu_started,
    }
    metrics["config"] = config
    store.finish(order, metrics, tag="rankwise-rag-pooled")
    return metrics


def _cap_per_label(tasks: Sequence[Any], limit: int) -> list[Any]:
    """The first ``limit`` tasks of each answerability label, in their order."""
    seen: dict[str, int] = {}
    capped = []
    for task in tasks:
        seen[task.answerability] = seen.get(task.answerability, 0) + 1
        if seen[task.answerability] <= limit:
            capped.append(task)
    return capped


def _mtrag_record_maker(
    domain: str, tasks: Mapping[str, Any], qrels: Mapping[str, Any], search: Mapping[str, Query], generated: bool
) -> MakeRecord:
    def make_record(qid: str, result: PipelineResult, ranking: list[tuple[str, float]]) -> dict[str, Any]:
        record = base_record(qid, result, ranking, generated)
        record["domain"] = domain
        record["search_query"] = search[qid].text
        record["history_turns"] = len(result.query.history)
        record["judged"] = qid in qrels
        task = tasks.get(qid)
        if task is not None:
            record["answerability"] = task.answerability
            record["reference_answer"] = list(task.targets)
            record["reference_passages"] = [d.id for d in task.contexts]
        if generated:
            record["scores"] = mtrag_record_scores(record, result.answer)
        return record

    return make_record
