"""Open-domain QA data: question/answer files and the DPR Wikipedia passages, as RankRAG evaluates them.

Question files (:func:`load_qa`, format recognised from the file, or given):

- ``nq-open``: NQ-open JSONL, ``{"question": str, "answer": [str, ...]}`` per line (id = ``nq-<line>``);
- ``triviaqa``: TriviaQA unfiltered, either the official ``qa/*.json`` (``{"Data": [{"QuestionId", "Question",
  "Answer": {"Value", "Aliases", ...}}]}``) or the Hugging Face ``*.nocontext`` JSONL (``question_id``,
  ``question``, ``answer: {value, aliases, ...}``); the gold answers are the value and its aliases;
- ``popqa``: PopQA's TSV/CSV (``id``, ``question``, ``possible_answers`` a JSON list, other columns ignored);
- ``qa-jsonl``: the generic ``{"id", "question", "answers": [...]}`` per line.

Passages: :func:`iter_dpr_passages` streams DPR's ``psgs_w100.tsv`` (``id\\ttext\\ttitle`` with a header; plain
or ``.gz``) one :class:`~rankwise.types.Document` at a time, so a consumer can index the 21M passages without
holding the file. :func:`load_open_qa` pairs a question file with a corpus (BEIR ``corpus.jsonl`` or a DPR TSV)
into a :class:`~rankwise.types.Dataset` with no judgements and the gold answers in ``Dataset.answers``: retrieval
is scored by answer recall@k (:func:`rankwise.evaluate.qa.answer_recall`).
"""

from __future__ import annotations

import csv
import gzip
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rankwise.data._io import iter_json_records, iter_jsonl, read_text, require_str, summarise
from rankwise.data.beir import read_corpus
from rankwise.errors import DataError
from rankwise.types import Dataset, Document, Query

QA_FORMATS = ("nq-open", "triviaqa", "popqa", "qa-jsonl")
DPR_HEADER = ("id", "text", "title")
CORPUS_NAMES = ("corpus.jsonl", "psgs_w100.tsv", "psgs_w100.tsv.gz")
_SNIFF = 65536


@dataclass(frozen=True)
class QAExample:
    id: str
    question: str
    answers: tuple[str, ...]
    line: int | None = None  # where it starts in its file (None inside the official TriviaQA JSON)


def detect_qa_format(path: Path) -> str:
    """The question file's format from its name and first record (see the module docstring)."""
    name = path.name.lower()
    if name.endswith((".tsv", ".csv")):
        return "popqa"
    with path.open("rb") as handle:
        head = handle.read(_SNIFF).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{") and b'"Data"' in head.split(b"\n", 1)[0][:200]:
        return "triviaqa"
    first = head.split(b"\n", 1)[0]
    try:
        record = json.loads(first)
    except ValueError:
        raise DataError(path, "line 1 is not a JSON object: not a recognised QA file (pass the format)") from None
    if isinstance(record, dict):
        if "answers" in record:
            return "qa-jsonl"
        if isinstance(record.get("answer"), list):
            return "nq-open"
        if isinstance(record.get("answer"), dict):
            return "triviaqa"
    raise DataError(
        path, "unrecognised QA file: expected 'answers' (qa-jsonl), 'answer' list (NQ-open) or dict (TriviaQA)", 1
    )


def _answers(path: Path, line: int, value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise DataError(path, f"field '{field}' must be a non-empty list of strings", line)
    return tuple(dict.fromkeys(value))


def _trivia_answers(path: Path, line: int, answer: Any, field: str) -> tuple[str, ...]:
    if not isinstance(answer, dict):
        raise DataError(path, f"field '{field}' must be an object", line)
    value = answer.get("Value", answer.get("value"))
    aliases = answer.get("Aliases", answer.get("aliases", []))
    if not isinstance(value, str) or not isinstance(aliases, list):
        raise DataError(path, f"field '{field}' needs a string 'Value' and a list 'Aliases'", line)
    return _answers(path, line, [value, *aliases], f"{field}.Aliases")


def _read_triviaqa(path: Path) -> Iterator[QAExample]:
    with path.open("rb") as handle:
        head = handle.read(200).lstrip(b"\xef\xbb\xbf \t\r\n")
    if path.suffix.lower() == ".json" and head.startswith(b"{"):  # the official file: one object holding Data
        data = json.loads(read_text(path))
        items = data.get("Data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise DataError(path, "field 'Data' must be a list of questions", 1)
        for i, item in enumerate(items):
            where = f"Data[{i}]"
            if not isinstance(item, dict) or not isinstance(item.get("Question"), str):
                raise DataError(path, f"{where}: field 'Question' must be a string")
            qid = str(item.get("QuestionId", i))
            yield QAExample(qid, item["Question"], _trivia_answers(path, None, item.get("Answer"), f"{where}.Answer"))
        return
    for line, record in iter_jsonl(path):
        qid = require_str(path, line, record, "question_id")
        question = require_str(path, line, record, "question")
        yield QAExample(qid, question, _trivia_answers(path, line, record.get("answer"), "answer"), line)


def _read_popqa(path: Path) -> Iterator[QAExample]:
    delimiter = "\t" if path.name.lower().endswith(".tsv") else ","
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        missing = [c for c in ("question", "possible_answers") if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, f"missing column(s) {', '.join(missing)} in the header", 1)
        for row in reader:
            line = reader.line_num
            try:
                answers = json.loads(row["possible_answers"] or "")
            except ValueError:
                raise DataError(path, "field 'possible_answers' is not a JSON list", line) from None
            qid = row.get("id") or f"popqa-{line}"
            yield QAExample(qid, row["question"] or "", _answers(path, line, answers, "possible_answers"), line)


def _read_jsonl(path: Path, fmt: str) -> Iterator[QAExample]:
    field = "answers" if fmt == "qa-jsonl" else "answer"
    for line, record in iter_json_records(path):
        if not isinstance(record, dict):
            raise DataError(path, f"expected an object, found {type(record).__name__}", line)
        qid = require_str(path, line, record, "id") if fmt == "qa-jsonl" else f"nq-{line}"
        question = require_str(path, line, record, "question")
        yield QAExample(qid, question, _answers(path, line, record.get(field), field), line)


def load_qa(path: str | Path, format: str | None = None) -> list[QAExample]:
    """The questions of an open-domain QA file; a duplicate id or an empty file is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    fmt = format or detect_qa_format(path)
    if fmt not in QA_FORMATS:
        raise DataError(path, f"unknown QA format '{fmt}' (expected one of: {', '.join(QA_FORMATS)})")
    reader = {"triviaqa": _read_triviaqa, "popqa": _read_popqa}.get(fmt)
    examples = list(reader(path) if reader else _read_jsonl(path, fmt))
    first: dict[str, int | None] = {}
    for example in examples:
        if example.id in first:
            where = f" (first on line {first[example.id]})" if first[example.id] is not None else ""
            raise DataError(path, f"duplicate question id '{example.id}'{where}", example.line)
        first[example.id] = example.line
    if not examples:
        raise DataError(path, "no questions found")
    return examples


def _open_text(path: Path) -> IO[str]:
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def iter_dpr_passages(path: str | Path) -> Iterator[Document]:
    """Stream DPR's ``psgs_w100.tsv`` (or ``.tsv.gz``): one Document per row, never the whole file in memory."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    csv.field_size_limit(sys.maxsize)
    with _open_text(path) as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != DPR_HEADER:
            raise DataError(path, f"header must be {chr(9).join(DPR_HEADER)!r}, found {header!r}", 1)
        for row in reader:
            if len(row) != 3:
                raise DataError(path, f"expected 3 tab-separated fields (id, text, title), found {len(row)}",
                                reader.line_num)  # fmt: skip
            if not row[0].strip():
                raise DataError(path, "field 'id' is empty", reader.line_num)
            yield Document(row[0], row[2], row[1])


def read_passages(path: str | Path) -> tuple[dict[str, Document], list[str]]:
    """A corpus as a dict: a BEIR ``corpus.jsonl`` or a DPR passage TSV (streamed into the dict)."""
    path = Path(path)
    if path.name.lower().endswith(".jsonl"):
        return read_corpus(path)
    corpus: dict[str, Document] = {}
    duplicates: list[str] = []
    for doc in iter_dpr_passages(path):
        if doc.id in corpus:
            duplicates.append(doc.id)
        corpus[doc.id] = doc
    if not corpus:
        raise DataError(path, "empty corpus: no passages found")
    return corpus, [summarise(path, "passage ids repeat, the last kept", duplicates)] if duplicates else []


def find_corpus(qa_path: Path) -> Path:
    """The corpus beside a question file: ``corpus.jsonl`` or ``psgs_w100.tsv[.gz]`` in its folder."""
    for name in CORPUS_NAMES:
        if (qa_path.parent / name).is_file():
            return qa_path.parent / name
    raise DataError(qa_path, f"no corpus beside it (looked for {', '.join(CORPUS_NAMES)} in its folder)")


def load_open_qa(qa_path: str | Path, corpus: str | Path | None = None, format: str | None = None) -> Dataset:
    """Questions with gold answers over a corpus (default: the one beside the question file); no judgements."""
    qa_path = Path(qa_path)
    examples = load_qa(qa_path, format)
    corpus_path = Path(corpus) if corpus is not None else find_corpus(qa_path)
    documents, warnings = read_passages(corpus_path)
    empty = [e.id for e in examples if not e.question.strip()]
    kept = [e for e in examples if e.question.strip()]
    if empty:
        warnings.append(summarise(qa_path, "questions are empty, skipped", empty))
    queries = {e.id: Query(e.id, e.question) for e in kept}
    answers = {e.id: e.answers for e in kept}
    return Dataset(qa_path.stem, documents, queries, {}, warnings, answers=answers)
