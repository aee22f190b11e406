"""Dense retrieval with the bundled MiniLM: search quality on a real subset, persistence, mismatch errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rankwise.build import load_index
from rankwise.data import load_dataset
from rankwise.errors import IndexStoreError
from rankwise.evaluate.retrieval import evaluate
from rankwise.retrieve.dense import DenseRetriever
from rankwise.types import Dataset, Query


@pytest.fixture(scope="module")
def scifact_subset(scifact_dir: Path) -> Dataset:
    """40 test queries and a 400-doc corpus: their relevant docs plus the first other docs of the corpus."""
    full = load_dataset(scifact_dir, split="test")
    qids = sorted(full.qrels)[:40]
    wanted = {doc for qid in qids for doc in full.qrels[qid]}
    others = [doc for doc in full.corpus if doc not in wanted][: 400 - len(wanted)]
    corpus = {doc: full.corpus[doc] for doc in [*sorted(wanted), *others]}
    return Dataset("scifact-subset", corpus, {q: full.queries[q] for q in qids}, {q: full.qrels[q] for q in qids})


@pytest.fixture(scope="module")
def dense(minilm_path: str, scifact_subset: Dataset) -> DenseRetriever:
    retriever = DenseRetriever(model=minilm_path, show_progress=False)
    retriever.index(scifact_subset.corpus)
    return retriever


def test_embeddings_are_normalised(dense: DenseRetriever) -> None:
    vectors = dense.encode(["a claim about cells", "another one"])
    assert vectors.dtype == np.float32 and vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_dense_search_finds_relevant_abstracts(dense: DenseRetriever, scifact_subset: Dataset) -> None:
    run = dense.search(scifact_subset.queries, k=10)
    assert set(run) == set(scifact_subset.queries)
    for docs in run.values():
        assert len(docs) == 10 and list(docs.values()) == sorted(docs.values(), reverse=True)
    # with 400 candidates a working encoder ranks relevant docs high; a broken one scores ~0.03
    assert evaluate(run, scifact_subset.qrels, ["nDCG@10"])["nDCG@10"] > 0.6


def test_save_load_same_results_and_mmap(dense: DenseRetriever, scifact_subset: Dataset, tmp_path: Path) -> None:
    dense.save(tmp_path / "idx")
    queries = dict(list(scifact_subset.queries.items())[:5])
    expected = dense.search(queries, k=5)
    for mmap in (False, True):
        loaded = load_index(tmp_path / "idx", mmap=mmap, show_progress=False)
        assert isinstance(loaded, DenseRetriever)
        assert loaded.fingerprint == dense.fingerprint
        assert loaded.search(queries, k=5) == expected


def test_truncated_index_file_is_refused(dense: DenseRetriever, tmp_path: Path) -> None:
    dense.save(tmp_path / "idx")
    path = tmp_path / "idx" / "index.faiss"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IndexStoreError, match="checksum mismatch"):
        DenseRetriever.load(tmp_path / "idx")


def test_model_of_another_size_is_refused(dense: DenseRetriever, tmp_path: Path) -> None:
    dense.save(tmp_path / "idx")
    loaded = DenseRetriever.load(tmp_path / "idx", show_progress=False)
    loaded._encoder = _FakeEncoder(dim=8)  # a stand-in for "a different model": only its output size matters
    with pytest.raises(IndexStoreError, match="8-d vectors but the index holds 384-d"):
        loaded.search({"q": Query("q", "text")}, k=3)


class _FakeEncoder:
    def __init__(self, dim: int) -> None:
        self.dim = dim

    def encode(self, texts: list[str], **_: object) -> np.ndarray:
        return np.ones((len(texts), self.dim), dtype=np.float32)
