"""Shared file helpers for the loaders: UTF-8 text with line-numbered errors, JSON/JSONL records, id
normalisation, counted-warning summaries and atomic writes.

Every reader here raises :class:`~rankwise.errors.DataError` naming the file, the 1-based line and the
problem.
"""

from __future__ import annotations

import json
from collections.abc import Container, Iterable, Iterator
from pathlib import Path
from typing import Any

from rankwise.errors import DataError
from rankwise.types import Qrels

_BOM = b"\xef\xbb\xbf"


def read_text(path: str | Path) -> str:
    """Read ``path`` as UTF-8 (a leading BOM is dropped); bad bytes raise a DataError with line and offset."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, "expected a file, found a directory") from None
    except OSError as exc:
        raise DataError(path, f"cannot read file: {exc.strerror or exc}") from None
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        bad = raw[exc.start : exc.end].hex(" ")
        problem = (
            f"not valid UTF-8: byte(s) {bad} at byte offset {exc.start} "
            f"(column {exc.start - line_start + 1}); re-encode the file as UTF-8"
        )
        raise DataError(path, problem, line=line) from None


def read_lines(path: str | Path) -> list[str]:
    """The file's lines without line terminators (``\\n`` or ``\\r\\n``); line ``i`` is ``lines[i - 1]``.

    Splits on ``\\n`` only (unlike ``str.splitlines``), so line numbers match what an editor shows even when a
    record contains other Unicode line separators.
    """
    text = read_text(path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file."""
    yield from _records(path, enumerate(read_lines(path), start=1))


def iter_jsonl_streamed(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """:func:`iter_jsonl` one line at a time, never the whole file (corpora too big to hold: MS MARCO, Wikipedia)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    with path.open(encoding="utf-8-sig") as handle:
        yield from _records(path, enumerate(handle, start=1))


def _records(path: str | Path, lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """The JSON object of each non-blank numbered line; a malformed line or a non-object is a DataError naming it."""
    for number, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"malformed JSON: {exc.msg} (column {exc.colno})", line=number) from None
        if not isinstance(record, dict):
            raise DataError(path, f"expected a JSON object, found {type(record).__name__}", line=number)
        yield number, record


def iter_json_records(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, item)`` for each item of a top-level JSON array, or each line of a JSONL file.

    The array is decoded item by item so that an error about an item can name the line it starts on.
    """
    text = read_text(path)
    start = _skip_ws(text, 0)
    if start >= len(text) or text[start] != "[":
        yield from iter_jsonl(path)
        return
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, start + 1)
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        line = text.count("\n", 0, pos) + 1
        try:
            item, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"malformed JSON: {exc.msg} (column {exc.colno})", line=exc.lineno) from None
        yield line, item
        pos = _skip_ws(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            return
        where = text.count("\n", 0, pos) + 1
        raise DataError(path, "malformed JSON: expected ',' or ']' after an array item", line=where)


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def require_str(path: str | Path, line: int, record: dict[str, Any], key: str, *, optional: bool = False) -> str:
    """``record[key]`` as a string (ints are converted); a missing or non-string value raises a DataError."""
    if key not in record or record[key] is None:
        if optional:
            return ""
        raise DataError(path, f"missing field '{key}'", line=line)
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DataError(path, f"field '{key}' must be a string, found {type(value).__name__}", line=line)
    return str(value)


GRADE_MIN, GRADE_MAX = -10, 1000  # wider than any real qrels; a grade outside is a misread column


def parse_grade(path: str | Path, line: int, value: str) -> int:
    """A relevance grade as an int (``"1"``, ``"-1"``, also ``"1.0"``) in ``GRADE_MIN..GRADE_MAX``.

    Anything else is a DataError: a grade such as 31715818 is a document id read as a grade, and huge grades
    make the metrics' gain arrays grow without bound.
    """
    try:
        grade = int(value)
    except ValueError:
        try:
            as_float = float(value)
        except ValueError:
            as_float = float("nan")
        if not as_float.is_integer():
            raise DataError(path, f"relevance grade must be an integer, found '{value}'", line=line) from None
        grade = int(as_float)
    if not GRADE_MIN <= grade <= GRADE_MAX:
        raise DataError(
            path, f"relevance grade {value} is outside {GRADE_MIN}..{GRADE_MAX} (is a column missing?)", line=line
        )
    return grade


def normalise_numeric_id(raw: str) -> str:
    """``"001"`` -> ``"1"``: strip leading zeros from all-digit ids, so differently padded files agree."""
    raw = raw.strip()
    return str(int(raw)) if raw.isdigit() else raw


def summarise(path: str | Path, what: str, examples: list[str], *, shown: int = 3) -> str:
    """One counted warning line: ``"<path>: 4 <what> (e.g. a, b, c, ...)"``.

    ``examples`` holds one entry per skipped item (repeats allowed); the line counts them all and shows the
    first few distinct ones.
    """
    distinct = list(dict.fromkeys(examples))
    listed = ", ".join(distinct[:shown]) + (", ..." if len(distinct) > shown else "")
    return f"{path}: {len(examples)} {what} (e.g. {listed})"


def drop_unknown(
    path: str | Path, qrels: Qrels, doc_ids: Container[str], query_ids: Container[str]
) -> tuple[Qrels, list[str]]:
    """Remove judgements naming unknown queries or documents; return the kept qrels and counted warnings.

    Raises a DataError when judgements existed but none survive: that means the files do not belong together.
    """
    kept: Qrels = {}
    unknown_queries: list[str] = []
    unknown_docs: list[str] = []
    for qid, docs in qrels.items():
        if qid not in query_ids:
            unknown_queries.extend([qid] * len(docs))
            continue
        for docid, grade in docs.items():
            if docid in doc_ids:
                kept.setdefault(qid, {})[docid] = grade
            else:
                unknown_docs.append(docid)
    warnings = []
    if unknown_queries:
        warnings.append(summarise(path, "judgements name unknown query ids, skipped", unknown_queries))
    if unknown_docs:
        warnings.append(summarise(path, "judgements name unknown document ids, skipped", unknown_docs))
    if qrels and not kept:
        raise DataError(path, "no judgement names a known query and document: " + "; ".join(warnings))
    return kept, warnings
