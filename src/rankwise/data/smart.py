"""The classic SMART test collections as distributed: Cranfield, CISI and CACM.

Documents and queries are records that start with ``.I <id>``; fields follow as a marker on its own
line (``.T`` title, ``.A`` authors, ``.B`` source, ``.W`` text, ``.X`` citations, ``.N``, ``.K``, or any
other ``.<letter>``), then the field's lines. Documents take title = ``.T`` and text = ``.W``; queries
take text = ``.W``; other fields are read and ignored. Ids are normalised by stripping leading zeros
(``.I 001`` -> ``"1"``) in all three files, so padded and unpadded ids agree.

Relevance files hold whitespace-separated ``qid docid ...`` rows. The quirks, handled explicitly:

- Cranfield's ``cranqrel`` numbers queries 1..225 by their *position* in ``cran.qry``, not by ``.I``
  (which runs 1, 2, 4, 8, 9, ...): position ``n`` is mapped to the ``.I`` id of the n-th query record. A
  position beyond the number of query records is an error (a record is missing, so positions no longer line
  up), never skipped.
- Cranfield grades run 1 (complete answer) .. 4 (minimal interest), 5 = no interest: stored as
  ``5 - grade`` so higher means more relevant; ``-1`` rows mean "no judgement" and are skipped (counted in
  the warnings).
- CISI (``1 28 0 0.000000``) and CACM (``01 1410 0 0``) rows key queries by id and are binary: grade 1;
  columns after the second are ignored.

Cranfield's ``cran.all.1400`` also has stray ``.A``/``.B``/``.W`` marker lines inside three abstracts
(docs 240, 576, 578): a marker repeating a field already read in the same record continues the current
field instead of overwriting it, and is counted in the warnings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from rankwise.data._io import drop_unknown, normalise_numeric_id, parse_grade, read_lines, summarise
from rankwise.errors import DataError
from rankwise.types import Dataset, Document, Qrels, Query


@dataclass(frozen=True)
class SmartCollection:
    name: str
    documents: str
    queries: str
    qrels: str
    qrels_by_position: bool
    graded: bool


COLLECTIONS = (
    SmartCollection("cranfield", "cran.all.1400", "cran.qry", "cranqrel", qrels_by_position=True, graded=True),
    SmartCollection("cisi", "CISI.ALL", "CISI.QRY", "CISI.REL", qrels_by_position=False, graded=False),
    SmartCollection("cacm", "cacm.all", "query.text", "qrels.text", qrels_by_position=False, graded=False),
)

_RECORD_START = re.compile(r"^\.I(?:\s+(\S*))?\s*$")
_FIELD_MARKER = re.compile(r"^\.([A-Z])\s*$")
_GRADE_NONE = -1
_GRADE_WORST = 5  # Cleverdon's "no interest"; stored as 0


@dataclass
class Record:
    id: str
    line: int
    fields: dict[str, str] = field(default_factory=dict)


def _files_by_lower_name(directory: Path) -> dict[str, Path]:
    return {p.name.lower(): p for p in directory.iterdir() if p.is_file()} if directory.is_dir() else {}


def find_collection(directory: str | Path) -> SmartCollection | None:
    """The SMART collection whose document file is in ``directory`` (names matched case-insensitively)."""
    files = _files_by_lower_name(Path(directory))
    return next((c for c in COLLECTIONS if c.documents.lower() in files), None)


def parse_records(path: str | Path) -> tuple[list[Record], list[str]]:
    """Parse a SMART ``.I``-record file into records (in file order) with their fields' text.

    Field text is the field's lines, stripped and joined by single spaces. Returns counted warnings too.
    """
    records: list[Record] = []
    first_line: dict[str, int] = {}
    repeated: list[str] = []
    current: Record | None = None
    marker: str | None = None
    parts: dict[str, list[str]] = {}

    def close() -> None:
        if current is not None:
            current.fields = {name: " ".join(lines) for name, lines in parts.items()}

    for number, line in enumerate(read_lines(path), start=1):
        start = _RECORD_START.match(line)
        if start:
            close()
            raw_id = start.group(1)
            if not raw_id:
                raise DataError(path, "record marker '.I' without an id", line=number)
            record_id = normalise_numeric_id(raw_id)
            if record_id in first_line:
                raise DataError(
                    path,
                    f"duplicate record id '{raw_id}' (first on line {first_line[record_id]})",
                    line=number,
                )
            first_line[record_id] = number
            current, marker, parts = Record(record_id, number), None, {}
            records.append(current)
            continue
        field_match = _FIELD_MARKER.match(line)
        if field_match:
            if current is None:
                raise DataError(path, f"field marker '{line.strip()}' before the first '.I' record", line=number)
            name = field_match.group(1)
            if name in parts:
                repeated.append(current.id)  # a stray marker: keep reading into the current field
                continue
            marker = name
            parts[name] = []
            continue
        if not line.strip():
            continue
        if current is None:
            raise DataError(path, "text before the first '.I' record", line=number)
        if marker is None:
            raise DataError(path, "text before any field marker such as '.W'", line=number)
        parts[marker].append(line.strip())
    close()
    if not records:
        raise DataError(path, "no '.I' records found")
    warnings = []
    if repeated:
        warnings.append(
            summarise(path, "stray field markers repeat a field of their record, read as continuation", repeated)
        )
    return records, warnings


def read_documents(path: str | Path) -> tuple[dict[str, Document], list[str]]:
    records, warnings = parse_records(path)
    corpus = {r.id: Document(r.id, r.fields.get("T", ""), r.fields.get("W", "")) for r in records}
    empty = [doc.id for doc in corpus.values() if not (doc.title or doc.text)]
    if empty:
        warnings.append(summarise(path, "documents have no title or text, kept", empty))
    return corpus, warnings


def read_queries(path: str | Path) -> tuple[dict[str, Query], list[str], list[str]]:
    """Queries with text, counted warnings, and every record's id in file order (for position-keyed qrels)."""
    records, warnings = parse_records(path)
    queries = {r.id: Query(r.id, r.fields["W"]) for r in records if r.fields.get("W")}
    empty = [r.id for r in records if r.id not in queries]
    if empty:
        warnings.append(summarise(path, "queries have no .W text, skipped", empty))
    if not queries:
        raise DataError(path, "no queries with text found")
    return queries, warnings, [r.id for r in records]


def read_relevance(
    path: str | Path, collection: SmartCollection, query_order: list[str], query_file: str | Path = "the query file"
) -> tuple[Qrels, list[str]]:
    """Read a SMART relevance file per ``collection``'s quirks (see the module docstring).

    Position-keyed judgements (Cranfield) naming a position beyond ``query_order`` are an error: the query
    file and the judgements do not line up (a missing query record shifts every later position).
    """
    qrels: Qrels = {}
    seen_at: dict[tuple[str, str], int] = {}
    unjudged: list[str] = []
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        need = 3 if collection.graded else 2
        if len(fields) < need:
            what = "'qid docid grade'" if collection.graded else "'qid docid ...'"
            raise DataError(path, f"expected at least {need} columns {what}, found {len(fields)}", line=number)
        qid, docid = normalise_numeric_id(fields[0]), normalise_numeric_id(fields[1])
        grade = 1
        if collection.graded:
            raw = parse_grade(path, number, fields[2])
            if raw == _GRADE_NONE:
                unjudged.append(f"{qid}/{docid}")
                continue
            if not 1 <= raw <= _GRADE_WORST:
                raise DataError(path, f"grade must be 1..{_GRADE_WORST} or -1, found {raw}", line=number)
            grade = _GRADE_WORST - raw
        if collection.qrels_by_position:
            if not qid.isdigit() or int(qid) < 1:
                raise DataError(path, f"query number must be a position 1, 2, ..., found '{fields[0]}'", line=number)
            if int(qid) > len(query_order):
                raise DataError(
                    path,
                    f"query position {qid} is beyond the {len(query_order)} query records of {query_file}: "
                    f"{collection.name} judgements number queries by position, so a query record is missing "
                    f"and every judgement after it would attach to the wrong query",
                    line=number,
                )
            qid = query_order[int(qid) - 1]
        docs = qrels.setdefault(qid, {})
        if docid in docs and docs[docid] != grade:
            raise DataError(
                path,
                f"query {qid}, document {docid}: grade contradicts line {seen_at[(qid, docid)]}",
                line=number,
            )
        docs[docid] = grade
        seen_at.setdefault((qid, docid), number)
    if not qrels and not unjudged:
        raise DataError(path, "no relevance judgements found")
    warnings = []
    if unjudged:
        warnings.append(summarise(path, "rows have grade -1 (no judgement), skipped", unjudged))
    return qrels, warnings


def load_smart(directory: str | Path) -> Dataset:
    """Load a SMART collection directory (Cranfield, CISI or CACM, recognised by its document file)."""
    directory = Path(directory)
    collection = find_collection(directory)
    if collection is None:
        names = ", ".join(c.documents for c in COLLECTIONS)
        raise DataError(directory, f"no SMART collection found (looked for {names})")
    files = _files_by_lower_name(directory)
    queries_path = files.get(collection.queries.lower())
    if queries_path is None:
        raise DataError(directory / collection.queries, f"{collection.name} query file not found")
    corpus, warnings = read_documents(files[collection.documents.lower()])
    queries, query_warnings, query_order = read_queries(queries_path)
    warnings += query_warnings
    qrels: Qrels = {}
    qrels_path = files.get(collection.qrels.lower())
    if qrels_path is None:
        warnings.append(f"{directory}: no '{collection.qrels}', loaded without relevance judgements")
    else:
        raw_qrels, qrels_warnings = read_relevance(qrels_path, collection, query_order, queries_path)
        qrels, unknown_warnings = drop_unknown(qrels_path, raw_qrels, corpus, queries)
        warnings += qrels_warnings + unknown_warnings
    return Dataset(name=collection.name, corpus=corpus, queries=queries, qrels=qrels, warnings=warnings)
