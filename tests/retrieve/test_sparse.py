"""SPLADE retrieval with the bundled splade-tiny: the inverted index scores exactly the sparse dot product, round
trips through disk (also memory-mapped), refuses corruption, and fuses with BM25 from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rankwise.build import load_index
from rankwise.cli import main
from rankwise.config.models import resolve_path
from rankwise.data import load_dataset, read_run
from rankwise.errors import IndexStoreError
from rankwise.retrieve.fusion import rrf
from rankwise.retrieve.sparse import SparseRetriever
from rankwise.types import Dataset, Document, Query


@pytest.fixture(scope="module")
def subset(scifact_dir: Path) -> Dataset:
    """8 SciFact test queries and 40 docs: their relevant docs plus others."""
    full = load_dataset(scifact_dir, split="test")
    qids = sorted(full.qrels)[:8]
    wanted = sorted({doc for qid in qids for doc in full.qrels[qid]})
    docs = wanted + [d for d in full.corpus if d not in wanted][: 40 - len(wanted)]
    return Dataset(
        "mini",
        {d: full.corpus[d] for d in docs},
        {q: full.queries[q] for q in qids},
        {q: full.qrels[q] for q in qids},
    )


@pytest.fixture(scope="module")
def splade(subset: Dataset) -> SparseRetriever:
    import torch

    torch.set_num_threads(1)
    retriever = SparseRetriever(max_seq_length=64, chunk_size=16, show_progress=False)
    retriever.index(subset.corpus)
    return retriever


def test_bundled_model_is_found_without_importing_its_package() -> None:
    assert (Path(resolve_path("splade-tiny")) / "model.safetensors").is_file()
    assert resolve_path("naver/splade-v3") == "naver/splade-v3"


def test_inverted_index_scores_equal_the_sparse_dot_product(splade: SparseRetriever, subset: Dataset) -> None:
    run = splade.search(subset.queries, k=10)
    docs = splade._encode([d.contents for d in subset.corpus.values()], "document").to_dense().numpy()
    queries = splade._encode([q.text for q in subset.queries.values()], "query").to_dense().numpy()
    scores = queries @ docs.T
    ids = list(subset.corpus)
    for row, qid in enumerate(subset.queries):
        order = sorted(range(len(ids)), key=lambda i: (-scores[row, i], ids[i]))
        expected = [ids[i] for i in order if scores[row, i] > 0][:10]
        assert list(run[qid]) == expected
        np.testing.assert_allclose(list(run[qid].values()), scores[row, order[: len(expected)]], rtol=1e-4)
    assert splade.vocab_size == 30522 and len(splade._offsets) == 30523
    assert np.all(np.diff(splade._offsets) >= 0) and splade._offsets[-1] == len(splade._docs)


def test_only_matching_documents_are_returned() -> None:
    retriever = SparseRetriever(show_progress=False)
    retriever.index({"a": Document("a", "", "protein folding"), "b": Document("b", "", "protein folding")})
    run = retriever.search({"q": Query("q", "protein"), "z": Query("z", "zzzz qqqq")}, k=5)
    assert list(run["q"]) == ["a", "b"]  # equal scores: doc id order
    assert run["q"]["a"] == run["q"]["b"] > 0
    assert all(score > 0 for score in run["z"].values())


def test_save_load_round_trip_and_mmap(splade: SparseRetriever, subset: Dataset, tmp_path: Path) -> None:
    splade.save(tmp_path / "idx")
    expected = splade.search(subset.queries, k=10)
    for mmap in (False, True):
        loaded = load_index(tmp_path / "idx", mmap=mmap, show_progress=False)
        assert isinstance(loaded, SparseRetriever) and loaded.max_seq_length == 64
        assert isinstance(loaded._docs, np.memmap) is mmap
        assert loaded.search(subset.queries, k=10) == expected
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["kind"] == "sparse" and manifest["params"]["postings"] == len(splade._docs)
    path = tmp_path / "idx" / "postings_weights.npy"
    path.write_bytes(path.read_bytes()[:-4] + b"\x00\x00\x80\x7f")
    with pytest.raises(IndexStoreError, match=r"postings_weights\.npy: checksum mismatch"):
        SparseRetriever.load(tmp_path / "idx")


def test_cli_sparse_index_fuses_with_bm25(subset: Dataset, tmp_path: Path) -> None:
    data = tmp_path / "mini"
    (data / "qrels").mkdir(parents=True)
    with (data / "corpus.jsonl").open("w") as handle:
        for doc in subset.corpus.values():
            handle.write(json.dumps({"_id": doc.id, "title": doc.title, "text": doc.text}) + "\n")
    with (data / "queries.jsonl").open("w") as handle:
        for query in subset.queries.values():
            handle.write(json.dumps({"_id": query.id, "text": query.text}) + "\n")
    rows = [f"{q}\t{d}\t{g}\n" for q, docs in subset.qrels.items() for d, g in docs.items()]
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(rows))
    index = ["index", str(data), "--out"]
    assert main([*index, str(tmp_path / "sparse"), "--kind", "sparse", "--max-seq-length", "64"]) == 0
    assert main([*index, str(tmp_path / "bm25"), "--kind", "bm25"]) == 0
    for name in ("sparse", "bm25"):
        search = ["search", "--index", str(tmp_path / name), "--queries", str(data), "--k", "10"]
        assert main([*search, "--out", str(tmp_path / f"{name}.trec")]) == 0
    fused = ["search", "--index", str(tmp_path / "bm25"), "--index", str(tmp_path / "sparse")]
    assert main([*fused, "--queries", str(data), "--k", "10", "--out", str(tmp_path / "hybrid.trec")]) == 0
    singles = [read_run(tmp_path / "bm25.trec"), read_run(tmp_path / "sparse.trec")]
    assert read_run(tmp_path / "hybrid.trec") == rrf(singles, k=60, depth=10)


class _StopAfter:
    """A local engine killed after ``shards`` finished shards (what a Ctrl-C or an OOM kill leaves behind)."""

    kind = "local"

    def __init__(self, shards: int) -> None:
        self.shards = shards

    def map(self, recipe, shards, progress=None, keep=False):
        from rankwise.engine import LocalEngine

        for done, item in enumerate(LocalEngine().map(recipe, shards, progress)):
            if done == self.shards:
                raise KeyboardInterrupt
            yield item


def test_a_killed_sparse_index_resumes_from_its_finished_shards(
    splade: SparseRetriever, subset: Dataset, tmp_path: Path
) -> None:
    work = tmp_path / "shards"
    killed = SparseRetriever(max_seq_length=64, chunk_size=16, show_progress=False, engine=_StopAfter(2))
    with pytest.raises(KeyboardInterrupt):
        killed.index(subset.corpus, work_dir=work)
    assert sorted(p.name for p in work.glob("sparse-*.npz")) == ["sparse-00000.npz", "sparse-00001.npz"]
    encoded: list[int] = []

    class Counting(_StopAfter):
        def map(self, recipe, shards, progress=None, keep=False):
            for shard, result in super().map(recipe, shards, progress, keep):
                encoded.append(shard.index)
                yield shard, result

    resumed = SparseRetriever(max_seq_length=64, chunk_size=16, show_progress=False, engine=Counting(99))
    resumed.index(subset.corpus, work_dir=work)
    assert encoded == [2]  # 40 documents in shards of 16: only the third was left
    assert resumed.search(subset.queries, k=10) == splade.search(subset.queries, k=10)
    # a damaged shard is encoded again, not trusted; another model's shards are refused by name
    (work / "sparse-00000.npz").write_bytes(b"not an npz")
    encoded.clear()
    resumed.index(subset.corpus, work_dir=work)
    assert encoded == [0] and resumed.search(subset.queries, k=10) == splade.search(subset.queries, k=10)
    other = SparseRetriever(max_seq_length=32, chunk_size=16, show_progress=False)
    with pytest.raises(IndexStoreError, match="max_seq_length"):
        other.index(subset.corpus, work_dir=work)
