"""Training pairs from an MS MARCO-sized BEIR directory, streamed (the retriever trainer's ``negative_pool``).

BEIR's ``msmarco`` (what ``rankwise download msmarco`` fetches) holds 8.8M passages in ``corpus.jsonl``, 510k
queries and 533k judged training pairs in ``qrels/train.tsv``. :func:`stream_pairs` reads the three files line by
line and holds only what training needs:

1. the judged-relevant ``(query-id, corpus-id)`` rows of ``qrels/<split>.tsv``, sampled with
   :func:`rankwise.train.pairs.sample` (``ratio``, ``cap``, ``seed``: the same files give the same rows);
2. the texts of those queries (``queries.jsonl``);
3. the texts of their positives, plus a seeded uniform sample of ``pool`` other passages (reservoir sampling, one
   pass) — the pool BM25 negatives are mined from and the dev corpus is drawn from.

So negatives come from BM25 over positives + pool, not over all 8.8M passages: the price of never indexing the
whole corpus. Give ``pool`` in the millions (and the memory) to come closer to full-corpus BM25 negatives.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

from rankwise.data._io import iter_jsonl_streamed
from rankwise.errors import DataError
from rankwise.train.pairs import Pair, PairSet, sample
from rankwise.types import Document


def _records(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` per non-blank line of a BEIR JSONL file, read line by line (never whole)."""
    for number, record in iter_jsonl_streamed(path):
        if "_id" not in record:
            raise DataError(path, "expected a JSON object with an '_id'", number)
        yield number, record


def _judged(path: Path) -> Iterator[tuple[str, str]]:
    """The judged-relevant ``(query-id, corpus-id)`` rows of a BEIR qrels TSV (header line skipped)."""
    if not path.is_file():
        raise DataError(path, "file not found")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            columns = line.rstrip("\r\n").split("\t")
            if (number == 1 and columns[0] == "query-id") or not line.strip():
                continue
            if len(columns) != 3:
                raise DataError(path, "expected query-id<TAB>corpus-id<TAB>score", number)
            try:
                grade = int(columns[2])
            except ValueError:
                raise DataError(path, f"score must be an integer, not {columns[2]!r}", number) from None
            if grade > 0:
                yield columns[0], columns[1]


def stream_pairs(
    directory: str | Path,
    split: str = "train",
    ratio: float = 1.0,
    cap: int | None = None,
    seed: int = 0,
    pool: int = 0,
) -> PairSet:
    """Sampled judged pairs of a BEIR directory with a corpus of their positives + ``pool`` other passages."""
    directory = Path(directory)
    rows = list(sample(_judged(directory / "qrels" / f"{split}.tsv"), ratio, cap, seed))
    if not rows:
        raise DataError(directory / "qrels" / f"{split}.tsv", "no judged-relevant rows kept")
    wanted_queries = {qid for qid, _ in rows}
    positives = {doc_id for _, doc_id in rows}
    queries = {
        str(r["_id"]): str(r.get("text", ""))
        for _, r in _records(directory / "queries.jsonl")
        if str(r["_id"]) in wanted_queries
    }
    corpus: dict[str, str] = {}
    reservoir: list[tuple[str, str]] = []
    rng, seen = random.Random(seed), 0
    for _, record in _records(directory / "corpus.jsonl"):
        doc_id = str(record["_id"])
        text = Document(doc_id, str(record.get("title") or ""), str(record.get("text") or "")).contents
        if doc_id in positives:
            corpus[doc_id] = text
            continue
        seen += 1  # reservoir sampling (algorithm R): a uniform sample of `pool` in one pass
        if len(reservoir) < pool:
            reservoir.append((doc_id, text))
        elif pool and (slot := rng.randrange(seen)) < pool:
            reservoir[slot] = (doc_id, text)
    corpus.update(reservoir)
    pairs = [
        Pair(qid, queries[qid], doc_id, corpus[doc_id]) for qid, doc_id in rows if qid in queries and doc_id in corpus
    ]
    dropped = len(rows) - len(pairs)
    warnings = [f"{dropped} sampled pairs dropped: query or passage missing from {directory}"] if dropped else []
    if not pairs:
        raise DataError(directory, "none of the sampled judged pairs has both its query and its passage")
    return PairSet(pairs, corpus, warnings)
