"""FAISS index kinds: exact / HNSW / IVF built from shards, recall against exact search, save + mmap load, and
the ``index --faiss`` CLI. Vectors come from a deterministic stand-in encoder (clustered, like real embeddings)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from rankwise.build import load_index
from rankwise.cli import main
from rankwise.errors import RankwiseError
from rankwise.retrieve.dense import DenseRetriever, recall_at_k
from rankwise.types import Document, Query

DIM = 24


class ClusteredEncoder:
    """Text -> a unit vector near one of 40 cluster centres, chosen and jittered by a hash of the text."""

    def __init__(self) -> None:
        self.centres = np.random.default_rng(0).standard_normal((40, DIM)).astype(np.float32)

    def encode(self, texts, **_: object) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            rng = np.random.default_rng(seed)
            rows.append(self.centres[seed % 40] + 0.6 * rng.standard_normal(DIM))
        rows = np.asarray(rows, dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


CORPUS = {f"d{i:04d}": Document(f"d{i:04d}", "", f"document number {i}") for i in range(3000)}
QUERIES = {f"q{i}": Query(f"q{i}", f"query number {i}") for i in range(100)}


def build(kind: str, **options: object) -> DenseRetriever:
    retriever = DenseRetriever(model="stand-in", index_kind=kind, shard_size=700, show_progress=False, **options)
    retriever._encoder = ClusteredEncoder()
    retriever.index(CORPUS)
    return retriever


@pytest.fixture(scope="module")
def exact() -> DenseRetriever:
    return build("exact")


def test_recall_at_k_is_the_share_of_exact_top_k_found() -> None:
    exact = {"a": {"1": 3.0, "2": 2.0, "3": 1.0, "4": 0.5}, "b": {"5": 1.0, "6": 0.9}}
    approximate = {"a": {"1": 3.0, "9": 2.5, "3": 1.0, "2": 0.1}, "b": {"6": 1.0}}
    # a: top-3 {1,2,3} vs {1,9,3} -> 2/3; b: top-2 {5,6} vs {6} -> 1/2
    assert recall_at_k(approximate, exact, k=3) == pytest.approx((2 / 3 + 1 / 2) / 2)


HNSW32 = {"hnsw_m": 16, "ef_search": 64, "hnsw_storage": "float32"}  # float16's reference is its rounded vectors


@pytest.mark.parametrize(("kind", "options"), [("hnsw", HNSW32), ("ivf", {"nprobe": 8})])
def test_approximate_indexes_find_most_of_the_exact_top_10(kind: str, options: dict, exact: DenseRetriever) -> None:
    approximate = build(kind, **options)
    assert approximate.doc_ids == exact.doc_ids and approximate._index.ntotal == 3000
    recall = approximate.recall_vs_exact(QUERIES, k=10)
    assert 0.9 <= recall <= 1.0
    assert recall == pytest.approx(recall_at_k(approximate.search(QUERIES, k=10), exact.search(QUERIES, k=10)))
    if kind == "ivf":
        assert approximate.faiss_params["nlist"] == min(int(4 * np.sqrt(3000)), 3000 // 39)  # 39 points per cell
        one_cell = build(kind, nprobe=1)
        assert one_cell.recall_vs_exact(QUERIES, k=10) < recall  # fewer cells searched, fewer found


def test_exact_recall_is_one_and_search_matches_brute_force(exact: DenseRetriever) -> None:
    assert exact.recall_vs_exact(QUERIES, k=10) == 1.0
    encoder = ClusteredEncoder()
    docs = encoder.encode([d.text for d in CORPUS.values()])
    query = encoder.encode([QUERIES["q3"].text])[0]
    best = np.argsort(-(docs @ query), kind="stable")[:5]
    assert list(exact.search({"q3": QUERIES["q3"]}, k=5)["q3"]) == [f"d{i:04d}" for i in best]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_saved_index_loads_memory_mapped_with_its_search_settings(kind: str, tmp_path: Path) -> None:
    built = build(kind, ef_search=40, nprobe=4)
    built.recall_vs_exact(QUERIES, k=10)
    built.save(tmp_path / "idx")
    params = json.loads((tmp_path / "idx" / "manifest.json").read_text())["params"]
    assert params["index_kind"] == kind and params["recall_at_10_vs_exact"] == built.recall_at_10
    expected = built.search(QUERIES, k=10)
    for mmap in (False, True):
        loaded = load_index(tmp_path / "idx", mmap=mmap, show_progress=False)
        loaded._encoder = ClusteredEncoder()
        assert loaded.index_kind == kind and loaded.faiss_params == built.faiss_params
        assert loaded.search(QUERIES, k=10) == expected
    wider = DenseRetriever.load(tmp_path / "idx", ef_search=400, nprobe=60, show_progress=False)
    wider._encoder = ClusteredEncoder()
    assert wider.recall_vs_exact(QUERIES, k=10) >= built.recall_at_10


def test_an_exact_index_converts_to_hnsw_without_re_encoding(exact: DenseRetriever) -> None:
    hnsw = exact.converted("hnsw", hnsw_m=16, ef_search=64)
    assert hnsw.index_kind == "hnsw" and hnsw.doc_ids == exact.doc_ids and hnsw.fingerprint == exact.fingerprint
    assert hnsw._index.hnsw.efSearch == 64 and exact.index_kind == "exact"
    assert hnsw.recall_vs_exact(QUERIES, k=10) >= 0.9


def test_unknown_index_kind_is_refused() -> None:
    with pytest.raises(RankwiseError, match="index_kind must be one of exact, hnsw, ivf"):
        DenseRetriever(index_kind="lsh")


def test_cli_builds_hnsw_and_reports_recall(tmp_path: Path, minilm_path: str, capsys: pytest.CaptureFixture) -> None:
    from rankwise.retrieve.encode import build_random_encoder

    model = build_random_encoder(tmp_path / "tiny", minilm_path, hidden_size=32)
    data = tmp_path / "beir"
    (data / "qrels").mkdir(parents=True)
    words = ["cell", "gene", "virus", "drug", "brain", "blood", "tumour", "trial"]
    with (data / "corpus.jsonl").open("w") as handle:
        for i in range(400):
            text = " ".join(words[(i * 5 + j) % 8] for j in range(2 + i % 7)) + f" n{i}"
            handle.write(json.dumps({"_id": f"d{i}", "title": "", "text": text}) + "\n")
    (data / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": words[i]}) + "\n" for i in range(8))
    )
    (data / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(8))
    )
    args = [
        "index",
        str(data),
        "--kind",
        "dense",
        "--model",
        str(model),
        "--faiss",
        "hnsw",
        "--out",
        str(tmp_path / "i"),
    ]
    assert main([*args, "--work-dir", str(tmp_path / "shards"), "--shard-size", "150"]) == 0
    out = capsys.readouterr().out
    assert "hnsw recall@10 vs exact search over 8 queries: " in out
    assert sorted(p.name for p in (tmp_path / "shards").glob("shard-*.npy")) == [
        "shard-00000.npy",
        "shard-00001.npy",
        "shard-00002.npy",
    ]
    params = json.loads((tmp_path / "i" / "manifest.json").read_text())["params"]
    assert params["index_kind"] == "hnsw" and 0.0 <= params["recall_at_10_vs_exact"] <= 1.0
    assert main(["index", str(data), "--kind", "bm25", "--faiss", "hnsw", "--out", str(tmp_path / "x")]) == 2
    assert "--faiss applies to --kind dense only" in capsys.readouterr().err


def test_hnsw_stores_float16_by_default_at_half_the_size_and_the_same_ranking(
    exact: DenseRetriever, tmp_path: Path
) -> None:
    half, full = build("hnsw", hnsw_m=16, ef_search=64), build("hnsw", hnsw_m=16, ef_search=64, hnsw_storage="float32")
    assert half.faiss_params["hnsw_storage"] == "float16" and type(half._index).__name__ == "IndexHNSWSQ"
    assert type(full._index).__name__ == "IndexHNSWFlat"
    truth = exact.search(QUERIES, k=10)
    assert recall_at_k(half.search(QUERIES, k=10), truth) >= recall_at_k(full.search(QUERIES, k=10), truth) - 0.02
    stored = half._index.reconstruct_n(0, 3000)
    assert np.abs(stored - exact._index.reconstruct_n(0, 3000)).max() < 1e-3  # fp16 rounding only
    half.save(tmp_path / "half")
    full.save(tmp_path / "full")
    saved = (tmp_path / "full" / "index.faiss").stat().st_size - (tmp_path / "half" / "index.faiss").stat().st_size
    assert saved >= 0.99 * 3000 * DIM * 2  # two bytes a dimension instead of four; the graph links are the same


def test_an_index_saved_before_hnsw_storage_existed_loads_as_float32(tmp_path: Path) -> None:
    build("hnsw", hnsw_storage="float32").save(tmp_path / "old")
    manifest = json.loads((tmp_path / "old" / "manifest.json").read_text())
    del manifest["params"]["faiss"]["hnsw_storage"]
    (tmp_path / "old" / "manifest.json").write_text(json.dumps(manifest))
    assert DenseRetriever.load(tmp_path / "old", show_progress=False).faiss_params["hnsw_storage"] == "float32"
    with pytest.raises(RankwiseError, match="hnsw_storage must be one of float16, float32, not 'int4'"):
        DenseRetriever(index_kind="hnsw", hnsw_storage="int4")
