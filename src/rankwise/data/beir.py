"""BEIR data set directories: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
``text``) and ``qrels/<split>.tsv`` (``query-id corpus-id score`` with a header line).

Ids are kept exactly as written. Documents with neither title nor text are kept (judgements may name them) and
counted in the warnings; queries with empty text are skipped and counted.
"""

from __future__ import annotations

from pathlib import Path

from rankwise.data._io import drop_unknown, iter_jsonl, require_str, summarise
from rankwise.data.trec import read_qrels
from rankwise.errors import DataError
from rankwise.types import Dataset, Document, Qrels, Query

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"


def is_beir_dir(path: Path) -> bool:
    return (path / CORPUS_FILE).is_file() and (path / QUERIES_FILE).is_file()


def read_corpus(path: str | Path) -> tuple[dict[str, Document], list[str]]:
    """Read a BEIR ``corpus.jsonl``; returns the documents and counted warnings."""
    corpus: dict[str, Document] = {}
    first_line: dict[str, int] = {}
    empty: list[str] = []
    for number, record in iter_jsonl(path):
        doc_id = require_str(path, number, record, "_id")
        text = require_str(path, number, record, "text")
        title = require_str(path, number, record, "title", optional=True)
        if doc_id in corpus:
            raise DataError(path, f"duplicate document id '{doc_id}' (first on line {first_line[doc_id]})", line=number)
        first_line[doc_id] = number
        corpus[doc_id] = Document(doc_id, title, text)
        if not (title.strip() or text.strip()):
            empty.append(doc_id)
    if not corpus:
        raise DataError(path, "empty corpus: no documents found")
    warnings = [summarise(path, "documents have no title or text, kept", empty)] if empty else []
    return corpus, warnings


def read_queries(path: str | Path) -> tuple[dict[str, Query], list[str]]:
    """Read a BEIR ``queries.jsonl``; queries with empty text are skipped and counted in the warnings."""
    queries: dict[str, Query] = {}
    first_line: dict[str, int] = {}
    empty: list[str] = []
    for number, record in iter_jsonl(path):
        qid = require_str(path, number, record, "_id")
        text = require_str(path, number, record, "text")
        if qid in first_line:
            raise DataError(path, f"duplicate query id '{qid}' (first on line {first_line[qid]})", line=number)
        first_line[qid] = number
        if text.strip():
            queries[qid] = Query(qid, text)
        else:
            empty.append(qid)
    if not queries:
        raise DataError(path, "no queries with text found")
    warnings = [summarise(path, "queries have empty text, skipped", empty)] if empty else []
    return queries, warnings


def available_splits(directory: str | Path) -> list[str]:
    qrels_dir = Path(directory) / QRELS_DIR
    return sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []


def load_beir(directory: str | Path, split: str = "test") -> Dataset:
    """Load a BEIR directory with the judgements of ``qrels/<split>.tsv``.

    A directory without a ``qrels/`` folder loads with no judgements (and says so in the warnings); a
    ``qrels/`` folder without the requested split is an error naming the splits it has.
    """
    directory = Path(directory)
    corpus, warnings = read_corpus(directory / CORPUS_FILE)
    queries, query_warnings = read_queries(directory / QUERIES_FILE)
    warnings += query_warnings
    qrels: Qrels = {}
    qrels_path = directory / QRELS_DIR / f"{split}.tsv"
    if qrels_path.is_file():
        qrels, qrels_warnings = drop_unknown(qrels_path, read_qrels(qrels_path, beir_directory=True), corpus, queries)
        warnings += qrels_warnings
    elif (directory / QRELS_DIR).is_dir():
        splits = available_splits(directory)
        have = ", ".join(splits) if splits else "none"
        raise DataError(qrels_path, f"no qrels for split '{split}' (available splits: {have})")
    else:
        warnings.append(f"{directory}: no '{QRELS_DIR}/' folder, loaded without relevance judgements")
    return Dataset(name=directory.name, corpus=corpus, queries=queries, qrels=qrels, warnings=warnings)
