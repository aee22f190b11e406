"""Training pairs for a dense retriever: ``(query, positive, negatives...)`` from three kinds of source.

- a judged data set (BEIR and the other formats :func:`rankwise.data.load_dataset` reads): one pair per
  judged-relevant (query, document);
- MS MARCO-style triples: TSV ``query<TAB>positive<TAB>negative[<TAB>negative...]`` (the layout of MS MARCO's
  ``triples.train.small.tsv``), or JSONL objects with ``query``, ``positive`` (or ``pos``) and optionally
  ``negative``/``negatives`` (or ``neg``), each a string or a list of strings;
- raw passages (Wikipedia-style text): JSONL with ``text`` (and optional ``title``/``_id``/``id``, so a BEIR
  ``corpus.jsonl`` works), or plain text with passages separated by blank lines, turned into pseudo-query pairs by
  the inverse cloze task (a sentence of the passage is the query, the rest of the passage the positive; Lee et
  al., 2019) or by ``title`` (the title is the query, the text the positive).

Every source yields a :class:`PairSet`: the pairs plus a corpus (id → text) that the dev evaluation and the
negative miner search. Triples and passages without ids get ids from a hash of their text.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from rankwise.errors import DataError, RankwiseError
from rankwise.retrieve.bm25 import BM25Retriever
from rankwise.train.negatives import mine_negatives
from rankwise.types import Dataset, Document, Query

T = TypeVar("T")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


@dataclass(frozen=True)
class Pair:
    query_id: str
    query: str
    positive_id: str
    positive: str
    negatives: tuple[str, ...] = ()


@dataclass
class PairSet:
    pairs: list[Pair]
    corpus: dict[str, str]
    warnings: list[str] = field(default_factory=list)

    def qrels(self) -> dict[str, dict[str, int]]:
        judged: dict[str, dict[str, int]] = {}
        for pair in self.pairs:
            judged.setdefault(pair.query_id, {})[pair.positive_id] = 1
        return judged


def sample(items: Iterable[T], ratio: float = 1.0, cap: int | None = None, seed: int = 0) -> Iterator[T]:
    """Keep each item with probability ``ratio`` (one seeded draw per item, in order: the same file, ratio and
    seed keep the same items), stop after ``cap`` kept; lazy, so a file is read only as far as needed."""
    rng = random.Random(seed)
    kept = 0
    for item in items:
        if cap is not None and kept >= cap:
            return
        if ratio >= 1.0 or rng.random() < ratio:
            kept += 1
            yield item


def text_id(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def from_dataset(
    dataset: Dataset, min_relevance: int = 1, ratio: float = 1.0, cap: int | None = None, seed: int = 0
) -> PairSet:
    """One pair per judged-relevant (query, document) of ``dataset`` (in qrels order); ``ratio``/``cap``/``seed``
    sample them (:func:`sample`)."""
    judged_pairs = (
        (qid, doc_id)
        for qid, judged in dataset.qrels.items()
        if qid in dataset.queries
        for doc_id, grade in judged.items()
        if grade >= min_relevance and doc_id in dataset.corpus
    )
    pairs = [
        Pair(qid, dataset.queries[qid].text, doc_id, dataset.corpus[doc_id].contents)
        for qid, doc_id in sample(judged_pairs, ratio, cap, seed)
    ]
    if not pairs:
        raise RankwiseError(f"data set '{dataset.name}' has no judged-relevant (query, document) pairs")
    corpus = {doc_id: doc.contents for doc_id, doc in dataset.corpus.items()}
    return PairSet(pairs, corpus, list(dataset.warnings))


def _strings(path: Path, line: int, value: object, key: str) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) and item.strip() for item in items):
        raise DataError(path, f"field '{key}' must be a non-empty string or a list of them", line)
    return list(items)


def _iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    if not path.is_file():
        raise DataError(path, "file not found")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield number, line


def read_triples(path: str | Path, limit: int | None = None, ratio: float = 1.0, seed: int = 0) -> PairSet:
    """Read MS MARCO-style triples (``.tsv`` or ``.jsonl``, see the module docstring), streamed: each line kept
    with probability ``ratio`` (seeded, :func:`sample`), reading stops at ``limit`` pairs; only kept lines' texts
    are held (MS MARCO's ``triples.train.small.tsv`` has 39.8M lines)."""
    path = Path(path)
    pairs: list[Pair] = []
    corpus: dict[str, str] = {}
    jsonl = path.suffix.lower() in (".jsonl", ".json")
    for number, line in sample(_iter_lines(path), ratio, seed=seed):
        if limit is not None and len(pairs) >= limit:
            break
        if jsonl:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"malformed JSON: {exc.msg}", number) from None
            if not isinstance(record, dict):
                raise DataError(path, "expected a JSON object", number)
            query = _strings(path, number, record.get("query"), "query")
            positives = _strings(path, number, record.get("positive", record.get("pos")), "positive")
            negatives = _strings(
                path, number, record.get("negatives", record.get("negative", record.get("neg"))), "negatives"
            )
            if len(query) != 1 or not positives:
                raise DataError(path, "needs one 'query' string and at least one 'positive'", number)
        else:
            columns = line.split("\t")
            if len(columns) < 2 or not all(column.strip() for column in columns):
                raise DataError(path, "expected query<TAB>positive[<TAB>negative...] with no empty column", number)
            query, positives, negatives = [columns[0]], [columns[1]], columns[2:]
        for positive in positives:
            corpus.setdefault(text_id(positive), positive)
            for negative in negatives:
                corpus.setdefault(text_id(negative), negative)
            pairs.append(Pair(text_id(query[0]), query[0], text_id(positive), positive, tuple(negatives)))
    if not pairs:
        raise DataError(path, "no triples found")
    return PairSet(pairs, corpus)


def read_passages(path: str | Path, limit: int | None = None) -> list[Document]:
    """Raw passages from JSONL (``text`` + optional ``title``/``_id``/``id``) or blank-line separated text."""
    path = Path(path)
    docs: list[Document] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for number, line in _iter_lines(path):
            if limit is not None and len(docs) >= limit:
                break
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"malformed JSON: {exc.msg}", number) from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise DataError(path, "expected an object with a string 'text'", number)
            title = record.get("title") or ""
            if not isinstance(title, str):
                raise DataError(path, "field 'title' must be a string", number)
            doc_id = record.get("_id", record.get("id"))
            doc_id = str(doc_id) if doc_id is not None else text_id(title + record["text"])
            docs.append(Document(doc_id, title, record["text"]))
    else:
        if not path.is_file():
            raise DataError(path, "file not found")
        for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
            text = " ".join(block.split())
            if text and (limit is None or len(docs) < limit):
                docs.append(Document(text_id(text), "", text))
    if not docs:
        raise DataError(path, "no passages found")
    return docs


def split_sentences(text: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_END.split(text) if part.strip()]


def pseudo_query_pairs(
    passages: list[Document],
    mode: str = "ict",
    seed: int = 0,
    keep_sentence: float = 0.1,
    min_words: int = 4,
) -> PairSet:
    """Pseudo-query pairs from raw passages (see the module docstring); seeded per passage id.

    ``ict``: a random sentence with at least ``min_words`` words is the query; it is removed from the positive
    except with probability ``keep_sentence`` (so the model also learns plain lexical matching). Passages with
    fewer than two sentences are skipped and counted. ``title``: passages without a title are skipped.
    """
    if mode not in ("ict", "title"):
        raise RankwiseError(f"pseudo-query mode must be 'ict' or 'title', not '{mode}'")
    pairs: list[Pair] = []
    corpus = {doc.id: doc.contents for doc in passages}
    skipped = 0
    for doc in passages:
        if mode == "title":
            if not doc.title.strip() or not doc.text.strip():
                skipped += 1
                continue
            pairs.append(Pair(f"title:{doc.id}", doc.title, doc.id, doc.text))
            continue
        sentences = split_sentences(doc.text)
        candidates = [i for i, sentence in enumerate(sentences) if len(sentence.split()) >= min_words]
        if len(sentences) < 2 or not candidates:
            skipped += 1
            continue
        rng = random.Random(f"{seed}:{doc.id}")
        chosen = rng.choice(candidates)
        kept = sentences if rng.random() < keep_sentence else sentences[:chosen] + sentences[chosen + 1 :]
        positive = " ".join([doc.title, *kept]).strip() if doc.title else " ".join(kept)
        pairs.append(Pair(f"ict:{doc.id}", sentences[chosen], doc.id, positive))
    if not pairs:
        raise RankwiseError(f"no pseudo-query pairs could be made from {len(passages)} passages (mode {mode})")
    warnings = [f"{skipped} passages skipped (too short for mode '{mode}')"] if skipped else []
    return PairSet(pairs, corpus, warnings)


def mine_bm25_negatives(
    pair_set: PairSet, num_negatives: int, window: tuple[int, int], seed: int, show_progress: bool = False
) -> PairSet:
    """Add ``num_negatives`` BM25 negatives from ranks ``window`` to every pair that has none.

    Uses :func:`rankwise.train.negatives.mine_negatives` (documents judged relevant for the query are never
    negatives). Pairs left with fewer than ``num_negatives`` negatives are dropped and counted, so that every
    training row has the same columns.
    """
    corpus = {doc_id: Document(doc_id, "", text) for doc_id, text in pair_set.corpus.items()}
    need = [pair for pair in pair_set.pairs if not pair.negatives]
    queries = {pair.query_id: Query(pair.query_id, pair.query) for pair in need}
    bm25 = BM25Retriever(show_progress=show_progress)
    bm25.index(corpus)
    run = bm25.search(queries, k=window[1])
    qrels = {qid: judged for qid, judged in pair_set.qrels().items() if qid in queries}
    mined = mine_negatives(queries, run, qrels, corpus, num_negatives=num_negatives, window=window, seed=seed)
    found = {(ex.query_id, ex.positive_id): ex.negatives for ex in mined.examples}
    pairs, dropped = [], 0
    for pair in pair_set.pairs:
        if not pair.negatives:
            negatives = found.get((pair.query_id, pair.positive_id), ())
            if len(negatives) < num_negatives:
                dropped += 1
                continue
            pair = replace(pair, negatives=tuple(negatives))
        pairs.append(pair)
    warnings = [*pair_set.warnings, *mined.warnings]
    if dropped:
        warnings.append(f"{dropped} pairs dropped: fewer than {num_negatives} BM25 negatives in ranks {window}")
    return PairSet(pairs, pair_set.corpus, warnings)
