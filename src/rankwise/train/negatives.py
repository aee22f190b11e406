"""Hard negatives mined from a first-stage run: ``(query, positive, negatives)`` training examples.

For every judged-relevant (query, document) pair one example is emitted whose negatives are sampled from a rank
window of the run (e.g. ranks 10–100: hard, but past the top where unjudged relevant documents cluster). Every
document the qrels judge relevant for that query is skipped; documents judged non-relevant are fair negatives.
Sampling is seeded per (seed, query, positive), so an example does not change when other queries are added.

:func:`bm25_windows` rewrites examples so that each document is the window of it (as ``rankwise rerank --windows``
cuts it) that BM25 scores highest for the query, for a model that will score windows.

Examples are stored as JSON lines (:func:`write_examples`, :func:`read_examples`) with fields ``query_id``,
``query``, ``positive_id``, ``positive``, ``negative_ids``, ``negatives``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rankwise.data.files import atomic_writer
from rankwise.errors import DataError, RankwiseError
from rankwise.rerank.windows import DEFAULT_STRIDE, DEFAULT_WORDS, passage_windows
from rankwise.retrieve.bm25 import BM25Retriever
from rankwise.types import Document, Qrels, Query, Run, sort_run


@dataclass(frozen=True)
class TrainingExample:
    query_id: str
    query: str
    positive_id: str
    positive: str
    negative_ids: tuple[str, ...]
    negatives: tuple[str, ...]


@dataclass
class MinedExamples:
    """The examples, plus counted notes on what was skipped (skipping is never silent)."""

    examples: list[TrainingExample]
    warnings: list[str] = field(default_factory=list)


def mine_negatives(
    queries: Mapping[str, Query],
    run: Run,
    qrels: Qrels,
    corpus: Mapping[str, Document],
    *,
    num_negatives: int = 2,
    window: tuple[int, int] = (10, 100),
    seed: int = 0,
    min_relevance: int = 1,
) -> MinedExamples:
    """One example per judged-relevant (query, document), with ``num_negatives`` negatives from ``window``.

    ``window`` is a 1-based, inclusive range of ranks in ``run`` (equal scores keep the run order). A query
    with fewer than ``num_negatives`` candidates in the window gets as many as there are; one with none, or
    missing from ``run`` or ``queries``, is skipped and counted in ``warnings``.
    """
    start, end = window
    if num_negatives < 1:
        raise RankwiseError(f"num_negatives must be at least 1, not {num_negatives}")
    if not 1 <= start <= end:
        raise RankwiseError(f"negative window must satisfy 1 <= start <= end, got {start}-{end}")
    ranked = sort_run(run)
    examples: list[TrainingExample] = []
    skipped: dict[str, list[str]] = {"not in queries": [], "not in run": [], "no negative in window": []}
    short: list[str] = []
    unknown_docs: list[str] = []
    for qid, judged in qrels.items():
        positives = [doc_id for doc_id, grade in judged.items() if grade >= min_relevance]
        if not positives:
            continue
        if qid not in queries:
            skipped["not in queries"].append(qid)
            continue
        if qid not in ranked:
            skipped["not in run"].append(qid)
            continue
        relevant = {doc_id for doc_id, grade in judged.items() if grade >= min_relevance}
        candidates = [
            doc_id for doc_id in list(ranked[qid])[start - 1 : end] if doc_id not in relevant and doc_id in corpus
        ]
        if not candidates:
            skipped["no negative in window"].append(qid)
            continue
        if len(candidates) < num_negatives:
            short.append(qid)
        order = {doc_id: rank for rank, doc_id in enumerate(candidates)}
        for pos_id in positives:
            if pos_id not in corpus:
                unknown_docs.append(pos_id)
                continue
            rng = random.Random(f"{seed}:{qid}:{pos_id}")
            picked = rng.sample(candidates, min(num_negatives, len(candidates)))
            picked.sort(key=order.__getitem__)  # keep run order inside an example
            examples.append(
                TrainingExample(
                    query_id=qid,
                    query=queries[qid].text,
                    positive_id=pos_id,
                    positive=corpus[pos_id].contents,
                    negative_ids=tuple(picked),
                    negatives=tuple(corpus[doc_id].contents for doc_id in picked),
                )
            )
    warnings = [f"{len(ids)} queries skipped ({why}), e.g. {ids[:3]}" for why, ids in skipped.items() if ids]
    if short:
        warnings.append(f"{len(short)} queries have fewer than {num_negatives} negatives in ranks {start}-{end}")
    if unknown_docs:
        warnings.append(f"{len(unknown_docs)} positives not in the corpus skipped, e.g. {unknown_docs[:3]}")
    return MinedExamples(examples=examples, warnings=warnings)


def bm25_windows(
    examples: list[TrainingExample],
    corpus: Mapping[str, Document],
    *,
    words: int = DEFAULT_WORDS,
    stride: int = DEFAULT_STRIDE,
    show_progress: bool = False,
) -> list[TrainingExample]:
    """``examples`` with every positive and negative text replaced by its best window for the query.

    The windows are those ``rankwise rerank --windows`` scores (:func:`rankwise.rerank.windows.passage_windows`:
    the plain contents first, then the title before each later ``words``-word window); BM25, indexed over the
    windows of the examples' documents, picks the one sharing most with the query (ties: the earlier window, so
    a document that matches nowhere stays its plain contents). The contents window is judged by its title and
    first ``words`` words, what a model that reads that much of it sees. Training on these teaches a model that reads
    ~70 words to judge the stretch of an abstract that holds the evidence, the stretch ``--windows max`` keeps.
    """
    needed = sorted({doc_id for ex in examples for doc_id in (ex.positive_id, *ex.negative_ids)})
    missing = [doc_id for doc_id in needed if doc_id not in corpus]
    if missing:
        raise RankwiseError(f"{len(missing)} example documents are not in the corpus, e.g. {missing[:3]}")
    texts = {doc_id: passage_windows(corpus[doc_id], words, stride) for doc_id in needed}
    window_corpus = {}
    for doc_id in needed:
        # BM25 judges the first window by the words the model reads of it (the model cuts the contents).
        head = Document(doc_id, corpus[doc_id].title, " ".join(corpus[doc_id].text.split()[:words]))
        for k, text in enumerate([head.contents, *texts[doc_id][1:]]):
            window_corpus[f"{doc_id}#{k}"] = Document(f"{doc_id}#{k}", "", text)
    bm25 = BM25Retriever(show_progress=show_progress)
    bm25.index(window_corpus)
    position = {window_id: i for i, window_id in enumerate(bm25.doc_ids)}
    slots = {doc_id: [position[f"{doc_id}#{k}"] for k in range(len(texts[doc_id]))] for doc_id in needed}

    def best(doc_id: str, scores: list[float]) -> str:
        window_scores = [scores[slot] for slot in slots[doc_id]]
        return texts[doc_id][window_scores.index(max(window_scores))]

    rewritten: list[TrainingExample] = []
    scored, scores = None, []
    for ex in examples:
        if ex.query != scored:  # a query's examples come together: score each query once
            scored, scores = ex.query, bm25.scores(ex.query)
        negatives = tuple(best(doc_id, scores) for doc_id in ex.negative_ids)
        rewritten.append(replace(ex, positive=best(ex.positive_id, scores), negatives=negatives))
    return rewritten


def write_examples(examples: Iterable[TrainingExample], path: str | Path) -> int:
    """Write examples as JSON lines, atomically; returns how many were written."""
    count = 0
    with atomic_writer(path) as handle:
        for example in examples:
            record = asdict(example)
            record["negative_ids"] = list(example.negative_ids)
            record["negatives"] = list(example.negatives)
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_examples(path: str | Path) -> list[TrainingExample]:
    """Read examples written by :func:`write_examples`; bad records raise :class:`DataError` with the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    examples = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"not valid JSON ({exc.msg})", line_no) from exc
            examples.append(_example(path, line_no, record))
    return examples


def _example(path: Path, line_no: int, record: Any) -> TrainingExample:
    if not isinstance(record, dict):
        raise DataError(path, "expected a JSON object", line_no)
    values: dict[str, Any] = {}
    for key in ("query_id", "query", "positive_id", "positive"):
        if not isinstance(record.get(key), str):
            raise DataError(path, f"field '{key}' must be a string", line_no)
        values[key] = record[key]
    for key in ("negative_ids", "negatives"):
        items = record.get(key)
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise DataError(path, f"field '{key}' must be a list of strings", line_no)
        values[key] = tuple(items)
    if len(values["negative_ids"]) != len(values["negatives"]):
        raise DataError(path, "fields 'negative_ids' and 'negatives' differ in length", line_no)
    unknown = sorted(set(record) - set(values))
    if unknown:
        raise DataError(path, f"unknown field '{unknown[0]}'", line_no)
    return TrainingExample(**values)
