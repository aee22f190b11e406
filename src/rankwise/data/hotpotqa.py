"""HotpotQA in its official JSON format (a list of questions; JSONL with one question per line also works).

Each question: ``_id``, ``question``, ``answer``, ``supporting_facts`` ``[[title, sentence_index], ...]``,
``context`` ``[[title, [sentence, ...]], ...]``, ``type``, ``level`` (the test set lacks the answer, the
supporting facts, the type and the level, so those are optional).

As a retrieval data set: the corpus is every context paragraph, id = title, text = its sentences joined
as ``"".join(sentences)`` (HotpotQA sentences carry their own leading spaces); queries are the questions
(id = ``_id``); qrels give grade 1 to the paragraphs named by the supporting facts. A title seen again
with identical text is one document. A title seen again with *different* text becomes a new document
``"<title> (2)"`` (then ``(3)``, ...), numbered in file order, and that question's judgements point at it;
this is counted in the warnings.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankwise.data._io import iter_json_records, summarise
from rankwise.errors import DataError
from rankwise.types import Dataset, Document, Qrels, Query

_SNIFF_BYTES = 65536


@dataclass(frozen=True)
class HotpotExample:
    id: str
    question: str
    answer: str | None
    supporting_facts: list[tuple[str, int]] = field(default_factory=list)
    context: list[tuple[str, list[str]]] = field(default_factory=list)
    type: str | None = None
    level: str | None = None


def looks_like_hotpotqa(path: Path) -> bool:
    """Cheap check on the file's head: a JSON array (or JSONL) of objects with "question" and "context"."""
    if not path.is_file() or path.suffix.lower() not in {".json", ".jsonl"}:
        return False
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{") and path.suffix.lower() == ".jsonl":
        head = head.split(b"\n", 1)[0]
    elif not head.startswith(b"["):
        return False
    return b'"question"' in head and b'"context"' in head


def find_hotpotqa_file(directory: Path) -> Path | None:
    """The one HotpotQA question file in ``directory``; several is an error (pass the file instead)."""
    found = sorted(p for p in directory.iterdir() if looks_like_hotpotqa(p)) if directory.is_dir() else []
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DataError(directory, f"several HotpotQA files ({names}); pass the one to load")
    return found[0] if found else None


def load_hotpotqa(path: str | Path) -> list[HotpotExample]:
    """Read a HotpotQA JSON (or JSONL) file, or the one such file in a directory, into examples."""
    path = Path(path)
    if path.is_dir():
        found = find_hotpotqa_file(path)
        if found is None:
            raise DataError(path, "no HotpotQA JSON file (a list of objects with 'question' and 'context')")
        path = found
    examples: list[HotpotExample] = []
    first_line: dict[str, int] = {}
    for line, item in iter_json_records(path):
        example = _example(path, line, item)
        if example.id in first_line:
            raise DataError(path, f"duplicate _id '{example.id}' (first on line {first_line[example.id]})", line)
        first_line[example.id] = line
        examples.append(example)
    if not examples:
        raise DataError(path, "no questions found")
    return examples


def _example(path: Path, line: int, item: Any) -> HotpotExample:
    if not isinstance(item, dict):
        raise DataError(path, f"expected a question object, found {type(item).__name__}", line)

    def text(key: str, *, optional: bool = False) -> str | None:
        value = item.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            found = "missing" if value is None else f"a {type(value).__name__}"
            raise DataError(path, f"field '{key}' must be a string, found {found}", line)
        return value

    qid = text("_id") or ""
    question = text("question") or ""
    context: list[tuple[str, list[str]]] = []
    for i, pair in enumerate(_list(path, line, item, "context")):
        ok = isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and isinstance(pair[1], list)
        if not ok or not all(isinstance(s, str) for s in pair[1]):
            raise DataError(path, f"question {qid}: context[{i}] must be [title, [sentence, ...]]", line)
        context.append((pair[0], list(pair[1])))
    facts: list[tuple[str, int]] = []
    for i, pair in enumerate(_list(path, line, item, "supporting_facts", optional=True)):
        ok = isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
        if not ok or isinstance(pair[1], bool) or not isinstance(pair[1], int):
            raise DataError(path, f"question {qid}: supporting_facts[{i}] must be [title, sentence_index]", line)
        facts.append((pair[0], pair[1]))
    return HotpotExample(
        id=qid,
        question=question,
        answer=text("answer", optional=True),
        supporting_facts=facts,
        context=context,
        type=text("type", optional=True),
        level=text("level", optional=True),
    )


def _list(path: Path, line: int, item: dict[str, Any], key: str, *, optional: bool = False) -> list[Any]:
    value = item.get(key)
    if value is None and optional:
        return []
    if not isinstance(value, list):
        found = "missing" if value is None else f"a {type(value).__name__}"
        raise DataError(path, f"field '{key}' must be a list, found {found}", line)
    return value


def hotpotqa_dataset(examples: list[HotpotExample], name: str = "hotpotqa", source: str = "hotpotqa") -> Dataset:
    """Turn examples into a retrieval :class:`Dataset` (see the module docstring for the rules)."""
    corpus: dict[str, Document] = {}
    ids_by_title: dict[str, list[str]] = {}
    renamed: list[str] = []
    queries: dict[str, Query] = {}
    qrels: Qrels = {}
    empty: list[str] = []
    unknown: list[str] = []
    for example in examples:
        local: dict[str, str] = {}
        for title, sentences in example.context:
            doc_id = _doc_id(corpus, ids_by_title, title, "".join(sentences), renamed)
            local.setdefault(title, doc_id)
        if not example.question.strip():
            empty.append(example.id)
            continue
        queries[example.id] = Query(example.id, example.question)
        for title, _ in example.supporting_facts:
            if title in local:
                qrels.setdefault(example.id, {})[local[title]] = 1
            else:
                unknown.append(title)
    if not corpus:
        raise DataError(source, "empty corpus: no context paragraphs found")
    warnings = []
    if renamed:
        warnings.append(summarise(source, "paragraphs reuse a title with different text, renamed", renamed))
    if empty:
        warnings.append(summarise(source, "questions have empty text, skipped", empty))
    if unknown:
        what = "supporting facts name a title missing from their question's context, skipped"
        warnings.append(summarise(source, what, unknown))
    return Dataset(name=name, corpus=corpus, queries=queries, qrels=qrels, warnings=warnings)


def _doc_id(
    corpus: dict[str, Document], ids_by_title: dict[str, list[str]], title: str, text: str, renamed: list[str]
) -> str:
    """The id of the paragraph (title, text): an existing one with the same text, else a new one."""
    known = ids_by_title.setdefault(title, [])
    for doc_id in known:
        if corpus[doc_id].text == text:
            return doc_id
    doc_id, n = title, 1
    while doc_id in corpus:
        n += 1
        doc_id = f"{title} ({n})"
    if known:
        renamed.append(doc_id)
    known.append(doc_id)
    corpus[doc_id] = Document(doc_id, title, text)
    return doc_id


def load_hotpotqa_dataset(path: str | Path) -> Dataset:
    """Load a HotpotQA file (or the one in a directory) as a retrieval data set."""
    path = Path(path)
    examples = load_hotpotqa(path)
    name = path.name if path.is_dir() else path.stem
    return hotpotqa_dataset(examples, name=name, source=str(path))


def hotpotqa_split(questions: Iterable[Any], heldout: int = 50, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split HotpotQA questions (examples with ``.id``, or ids) into ``(train_ids, heldout_ids)``, both sorted.

    The split depends only on the set of ids and the seed (not on file order): ids are sorted, shuffled with
    ``random.Random(seed)`` and the first ``heldout`` are held out.
    """
    ids = sorted({q if isinstance(q, str) else q.id for q in questions})
    if heldout > len(ids):
        raise DataError("hotpotqa", f"cannot hold out {heldout} of {len(ids)} questions")
    random.Random(seed).shuffle(ids)
    return sorted(ids[heldout:]), sorted(ids[:heldout])


def hotpotqa_inputs(
    path: str | Path, limit: int | None = None
) -> tuple[list[Any], dict[str, Document], dict[str, list[str]]]:
    """``(examples, corpus, candidates)``: the sentence-per-line corpus of the whole file (ids as
    :func:`rankwise.data.hotpotqa.hotpotqa_dataset` gives them) and each question's own paragraph ids."""
    examples = load_hotpotqa(path)
    dataset = hotpotqa_dataset(examples, source=str(path))
    by_content = {(doc.title, doc.text): doc.id for doc in dataset.corpus.values()}
    corpus: dict[str, Document] = {}
    candidates: dict[str, list[str]] = {}
    for example in examples:
        ids = []
        for title, sentences in example.context:
            doc_id = by_content[(title, "".join(sentences))]
            lines = "\n".join(" ".join(s.split()) for s in sentences)
            corpus.setdefault(doc_id, Document(doc_id, title, lines))
            ids.append(doc_id)
        candidates[example.id] = ids
    selected = [e for e in examples if e.question.strip() and e.answer is not None][:limit]
    return selected, {d: corpus[d] for d in dataset.corpus}, candidates
