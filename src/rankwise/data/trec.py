"""TREC run and qrels files (read/write), BEIR qrels TSV, and the ``load_qrels``/``load_queries`` helpers.

Formats
- run: ``qid Q0 docid rank score tag``, one line per retrieved doc, written in rank order (score descending,
  ties in the order their producer gave them, see :func:`rankwise.types.sort_run`).
- qrels: TREC ``qid 0 docid grade`` (4 columns) or BEIR ``query-id corpus-id score`` (3 columns after its header
  line; outside a BEIR directory a headerless 3-column file is refused, see :func:`read_qrels`). Grades lie in
  -10..1000.

Columns are separated by tabs when a line contains a tab, otherwise by runs of whitespace. Writers use single
spaces, or tabs for the whole file when some id contains a space (HotpotQA titles), so every id round-trips.
"""

from __future__ import annotations

import math
from pathlib import Path

from rankwise.data._io import iter_jsonl, parse_grade, read_lines, require_str
from rankwise.data.files import atomic_writer
from rankwise.errors import DataError
from rankwise.types import Qrels, Query, Run, sort_run

RUN_COLUMNS = 6


def split_columns(line: str) -> list[str]:
    """Split one line into columns: on tabs when it has any, else on whitespace."""
    stripped = line.strip()
    if "\t" in stripped:
        return [field.strip() for field in stripped.split("\t")]
    return stripped.split()


def read_run(path: str | Path) -> Run:
    """Read a 6-column TREC run file into ``{qid: {docid: score}}`` (each query's docs in rank order)."""
    run: Run = {}
    ranks: dict[str, dict[str, int]] = {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        fields = split_columns(line)
        if len(fields) != RUN_COLUMNS:
            raise DataError(
                path,
                f"expected {RUN_COLUMNS} columns 'qid Q0 docid rank score tag', found {len(fields)}",
                line=number,
            )
        qid, _, docid, rank, score, _ = fields
        try:
            int(rank)
        except ValueError:
            raise DataError(path, f"rank must be an integer, found '{rank}'", line=number) from None
        try:
            value = float(score)
        except ValueError:
            raise DataError(path, f"score must be a number, found '{score}'", line=number) from None
        docs = run.setdefault(qid, {})
        if docid in docs:
            raise DataError(path, f"query {qid} lists document {docid} twice", line=number)
        docs[docid] = value
        ranks.setdefault(qid, {})[docid] = int(rank)
    if not run:
        raise DataError(path, "no run lines found (expected 'qid Q0 docid rank score tag')")
    # Score descending, then the file's own rank: ties keep the order their producer gave them.
    return {
        qid: dict(sorted(docs.items(), key=lambda item: (-item[1], ranks[qid][item[0]]))) for qid, docs in run.items()
    }


def write_run(run: Run, path: str | Path, tag: str = "rankwise") -> None:
    """Write ``run`` as a TREC run file, atomically, ranks from 1: score descending, ties in dict order."""
    ranked = sort_run(run)
    sep = _separator(path, [tag, *ranked, *(d for docs in ranked.values() for d in docs)])
    with atomic_writer(path) as handle:
        for qid, docs in ranked.items():
            for rank, (docid, score) in enumerate(docs.items(), start=1):
                if math.isnan(score):
                    raise DataError(path, f"cannot write a NaN score (query {qid}, document {docid})")
                handle.write(sep.join((qid, "Q0", docid, str(rank), repr(float(score)), tag)) + "\n")


def read_qrels(path: str | Path, *, beir_directory: bool = False) -> Qrels:
    """Read TREC qrels (``qid 0 docid grade``) or BEIR qrels TSV (``query-id corpus-id score`` + header).

    The format is fixed per file, by its first line: a BEIR header (``query-id corpus-id score``) makes it BEIR,
    3 columns on every line; otherwise it is TREC, 4 columns on every line (a header line allowed). A headerless
    3-column line is refused: it is usually a TREC line missing its grade (``1 0 31715818``), which would
    otherwise read as BEIR with the document id as the grade. ``beir_directory`` is for a BEIR directory's
    ``qrels/<split>.tsv``, whose place already says BEIR: there a headerless 3-column file is read as BEIR. A
    repeated (query, doc) pair must repeat its grade.
    """
    qrels: Qrels = {}
    seen_at: dict[tuple[str, str], int] = {}
    columns = 0
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        fields = split_columns(line)
        if not columns:
            columns = len(fields)
            if columns in (3, 4) and _is_header(fields):
                continue
            if columns == 3 and not beir_directory:
                raise DataError(
                    path,
                    "found 3 columns and no 'query-id corpus-id score' header line: expected 4 columns "
                    "'qid 0 docid grade' (TREC; is the grade missing?) or a BEIR file that starts with that header",
                    line=number,
                )
            if columns not in (3, 4):
                raise DataError(
                    path,
                    f"expected 4 columns 'qid 0 docid grade' (TREC) or 3 columns 'query-id corpus-id score' "
                    f"(BEIR), found {len(fields)}",
                    line=number,
                )
        if len(fields) != columns:
            raise DataError(path, f"expected {columns} columns like the first line, found {len(fields)}", line=number)
        if columns == 3:
            qid, docid, grade_text = fields
        else:
            qid, _, docid, grade_text = fields
        grade = parse_grade(path, number, grade_text)
        docs = qrels.setdefault(qid, {})
        if docid in docs and docs[docid] != grade:
            raise DataError(
                path,
                f"query {qid}, document {docid}: grade {grade} contradicts grade {docs[docid]} "
                f"on line {seen_at[(qid, docid)]}",
                line=number,
            )
        docs[docid] = grade
        seen_at.setdefault((qid, docid), number)
    if not qrels:
        raise DataError(path, "no relevance judgements found")
    return qrels


def write_qrels(qrels: Qrels, path: str | Path) -> None:
    """Write ``qrels`` as TREC qrels (``qid 0 docid grade``), atomically, in the dict's order."""
    sep = _separator(path, [*qrels, *(d for docs in qrels.values() for d in docs)])
    with atomic_writer(path) as handle:
        for qid, docs in qrels.items():
            for docid, grade in docs.items():
                handle.write(sep.join((qid, "0", docid, str(int(grade)))) + "\n")


def load_qrels(path: str | Path, split: str = "test") -> Qrels:
    """Qrels from a qrels file (TREC or BEIR TSV) or from a data set (directory or file) and its ``split``."""
    path = Path(path)
    if path.is_file() and _is_qrels_file(path):
        return read_qrels(path)
    from rankwise.data import load_dataset

    dataset = load_dataset(path, split=split)
    if not dataset.qrels:
        raise DataError(path, f"data set has no relevance judgements for split '{split}'")
    return dataset.qrels


def load_queries(path: str | Path, split: str = "test") -> dict[str, Query]:
    """The queries to run for ``split``.

    A data set (directory or file) gives its judged queries for ``split`` (all its queries when it has no
    judgements); a ``.jsonl`` file is read as BEIR queries (``_id``, ``text``); a ``.tsv`` file as
    ``qid<TAB>text`` lines. Queries with empty text are skipped.
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".jsonl" and path.name != "corpus.jsonl":
        queries = {}
        for number, record in iter_jsonl(path):
            qid, text = require_str(path, number, record, "_id"), require_str(path, number, record, "text")
            if qid in queries:
                raise DataError(path, f"duplicate query id '{qid}'", line=number)
            if text.strip():
                queries[qid] = Query(qid, text)
        return _non_empty(path, queries)
    if path.is_file() and path.suffix.lower() == ".tsv":
        queries = {}
        for number, line in enumerate(read_lines(path), start=1):
            if not line.strip():
                continue
            qid, tab, text = line.partition("\t")
            if not tab:
                raise DataError(path, "expected 'qid<TAB>text'", line=number)
            if qid.strip() in queries:
                raise DataError(path, f"duplicate query id '{qid.strip()}'", line=number)
            if text.strip():
                queries[qid.strip()] = Query(qid.strip(), text.strip())
        return _non_empty(path, queries)
    from rankwise.data import load_dataset

    dataset = load_dataset(path, split=split)
    return dataset.judged_queries() if dataset.qrels else dataset.queries


def _non_empty(path: Path, queries: dict[str, Query]) -> dict[str, Query]:
    if not queries:
        raise DataError(path, "no queries with text found")
    return queries


_HEADER_FIRST = {"query-id", "query_id", "qid", "query", "topic"}
_HEADER_LAST = {"score", "rel", "relevance", "grade", "label", "judgement", "judgment"}


def _is_header(fields: list[str]) -> bool:
    """A header line such as BEIR's ``query-id corpus-id score`` (only allowed as the first line)."""
    return fields[0].lower() in _HEADER_FIRST or fields[-1].lower() in _HEADER_LAST


def _is_qrels_file(path: Path) -> bool:
    """True when the file is not one of the data set files that ``detect_format`` recognises."""
    from rankwise.data import detect_format

    try:
        detect_format(path)
    except DataError:
        return True
    return False


def _separator(path: str | Path, ids: list[str]) -> str:
    for value in ids:
        if "\t" in value or "\n" in value or "\r" in value or not value.strip():
            raise DataError(path, f"cannot write id {value!r}: ids must be non-empty and hold no tabs/newlines")
    return "\t" if any(" " in value for value in ids) else " "
