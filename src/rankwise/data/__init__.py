"""Loading data sets (BEIR, SMART collections, HotpotQA) and TREC run/qrels files.

``load_dataset(path)`` takes a data set directory or file and recognises its format from the files it
holds (:func:`detect_format`), or takes ``format=`` explicitly. Every loader returns a
:class:`~rankwise.types.Dataset` whose ``warnings`` count what was skipped; bad input raises
:class:`~rankwise.errors.DataError` naming the file, the line and the problem.
"""

from __future__ import annotations

from pathlib import Path

from rankwise.data.beir import is_beir_dir, load_beir, read_corpus
from rankwise.data.hotpotqa import (
    HotpotExample,
    find_hotpotqa_file,
    load_hotpotqa,
    load_hotpotqa_dataset,
    looks_like_hotpotqa,
)
from rankwise.data.smart import COLLECTIONS as SMART_COLLECTIONS
from rankwise.data.smart import find_collection, load_smart
from rankwise.data.trec import load_qrels, load_queries, read_qrels, read_run, write_qrels, write_run
from rankwise.errors import DataError
from rankwise.types import Dataset

FORMATS = ("beir", "smart", "hotpotqa")

__all__ = [
    "FORMATS",
    "HotpotExample",
    "detect_format",
    "load_corpus",
    "load_dataset",
    "load_hotpotqa",
    "load_qrels",
    "load_queries",
    "read_qrels",
    "read_run",
    "write_qrels",
    "write_run",
]


def _dataset_dir(path: Path) -> Path:
    """A file of a directory data set (``corpus.jsonl``, ``cran.all.1400``, ...) stands for its directory."""
    if path.is_file() and not looks_like_hotpotqa(path):
        return path.parent
    return path


def detect_format(path: str | Path) -> str:
    """Recognise a data set's format from its files: ``"beir"``, ``"smart"`` or ``"hotpotqa"``.

    A file of a directory data set (e.g. ``corpus.jsonl`` or ``cran.qry``) is recognised only by its own name;
    an unrelated file in such a directory is not a data set.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such file or directory")
    if path.is_file():
        if looks_like_hotpotqa(path):
            return "hotpotqa"
        name = path.name.lower()
        if name in {"corpus.jsonl", "queries.jsonl"} and is_beir_dir(path.parent):
            return "beir"
        smart_names = {n.lower() for c in SMART_COLLECTIONS for n in (c.documents, c.queries, c.qrels)}
        if name in smart_names and find_collection(path.parent) is not None:
            return "smart"
    else:
        if is_beir_dir(path):
            return "beir"
        if find_collection(path) is not None:
            return "smart"
        if find_hotpotqa_file(path) is not None:
            return "hotpotqa"
    smart = ", ".join(c.documents for c in SMART_COLLECTIONS)
    raise DataError(
        path,
        "unrecognised data set: looked for BEIR (corpus.jsonl + queries.jsonl), a SMART collection "
        f"({smart}) and HotpotQA JSON (a list of objects with 'question' and 'context'); "
        "pass format= (--format) if the files are named differently",
    )


def load_dataset(path: str | Path, format: str | None = None, split: str = "test") -> Dataset:
    """Load the data set at ``path`` (directory or file) with the judgements of ``split``.

    BEIR reads ``qrels/<split>.tsv``. SMART collections and HotpotQA files hold one set of judgements: another
    ``split`` than ``"test"`` is ignored and noted in the warnings.
    """
    path = Path(path)
    fmt = detect_format(path) if format is None else format.lower()
    if fmt not in FORMATS:
        raise DataError(path, f"unknown format '{format}' (expected one of: {', '.join(FORMATS)})")
    if not path.exists():
        raise DataError(path, "no such file or directory")
    if fmt == "beir":
        return load_beir(_dataset_dir(path), split=split)
    dataset = load_smart(_dataset_dir(path)) if fmt == "smart" else load_hotpotqa_dataset(path)
    if split != "test":
        dataset.warnings.append(f"{path}: split '{split}' ignored: {fmt} data has a single set of judgements")
    return dataset


def load_corpus(path: str | Path, format: str | None = None) -> tuple[dict, list[str]]:
    """``(corpus, warnings)`` of a BEIR ``corpus.jsonl`` file, or the corpus of any data set :func:`load_dataset`
    reads (``format`` as there); what ``ask``, ``rerank`` and ``serve`` take as ``--corpus``."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".jsonl" and format is None:
        return read_corpus(path)
    dataset = load_dataset(path, format=format)
    return dataset.corpus, list(dataset.warnings)
