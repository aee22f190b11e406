"""Saved indexes refuse a tampered folder or manifest, and a corpus other than the one they were built from.

Each test builds a tiny real index in ``tmp_path`` (BM25 over three docs; dense with a 2-layer random encoder;
SPLADE with the bundled splade-tiny), edits the folder or its ``manifest.json`` the way a user might, and expects
a one-line ``IndexStoreError`` naming the folder or manifest and the file or field, never a traceback or a
silently wrong search.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rankwise.build import load_index
from rankwise.cli import main
from rankwise.data.beir import read_corpus
from rankwise.errors import IndexStoreError
from rankwise.retrieve.bm25 import BM25Retriever
from rankwise.retrieve.dense import DenseRetriever
from rankwise.retrieve.sparse import SparseRetriever
from rankwise.types import Document, Query

TOY = {
    "a": Document("a", "Cats", "cats purr and sleep all day"),
    "b": Document("b", "Dogs", "dogs bark at the postman"),
    "c": Document("c", "", "the postman delivers letters"),
}
OTHER = {
    "x": Document("x", "Ships", "ships sail across the sea"),
    "y": Document("y", "Trains", "trains run on rails"),
}
QUERY = {"q": Query("q", "postman letters")}


def copy(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "idx"
    shutil.copytree(source, target)
    return target


def edit_manifest(directory: Path, change: Callable[[dict[str, Any]], object]) -> Path:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest, indent=2))
    return path


def refused(directory: Path, *parts: str, **load: Any) -> str:
    """Load ``directory``; expect one IndexStoreError line that contains every one of ``parts``."""
    with pytest.raises(IndexStoreError) as caught:
        load_index(directory, **load)
    message = str(caught.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


@pytest.fixture(scope="module")
def bm25_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    retriever = BM25Retriever(show_progress=False)
    retriever.index(TOY)
    directory = tmp_path_factory.mktemp("bm25") / "idx"
    retriever.save(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory, minilm_path: str) -> str:
    from rankwise.retrieve.encode import build_random_encoder

    return str(build_random_encoder(tmp_path_factory.mktemp("tiny") / "encoder", minilm_path, hidden_size=32))


@pytest.fixture(scope="module")
def dense_dirs(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: str) -> dict[str, Path]:
    """An exact and an HNSW index over TOY, encoded by the tiny random encoder."""
    root = tmp_path_factory.mktemp("dense")
    exact = DenseRetriever(model=tiny_encoder, show_progress=False)
    exact.index(TOY)
    exact.save(root / "exact")
    exact.converted("hnsw", hnsw_m=8, ef_construction=40).save(root / "hnsw")
    return {"exact": root / "exact", "hnsw": root / "hnsw"}


# 1. every file in the folder is listed in the manifest with its checksum, and verified on load


def _corrupt_scores(directory: Path) -> None:
    """Overwrite BM25's score array with a valid .npy of other numbers (what a bad copy or edit leaves)."""
    path = directory / "data.csc.index.npy"
    np.save(path, np.full_like(np.load(path), 9.0), allow_pickle=False)


def test_a_file_dropped_from_the_manifest_list_is_refused_not_searched(bm25_dir: Path, tmp_path: Path) -> None:
    directory = copy(bm25_dir, tmp_path)
    _corrupt_scores(directory)
    edit_manifest(directory, lambda m: m["files"].pop("data.csc.index.npy"))
    refused(directory, str(directory), "'data.csc.index.npy'", "not listed in manifest.json", show_progress=False)


def test_an_emptied_file_list_is_refused(bm25_dir: Path, tmp_path: Path) -> None:
    directory = copy(bm25_dir, tmp_path)
    _corrupt_scores(directory)
    edit_manifest(directory, lambda m: m.update(files={}))
    refused(directory, str(directory), "not listed in manifest.json", show_progress=False)


def test_a_stray_file_in_the_folder_is_refused(bm25_dir: Path, tmp_path: Path) -> None:
    directory = copy(bm25_dir, tmp_path)
    (directory / "extra.npy").write_bytes(b"not an index file")
    refused(directory, str(directory), "'extra.npy'", "not listed", show_progress=False)


def test_a_needed_file_neither_listed_nor_present_is_refused(bm25_dir: Path, tmp_path: Path) -> None:
    directory = copy(bm25_dir, tmp_path)
    (directory / "doc_ids.json").unlink()
    edit_manifest(directory, lambda m: m["files"].pop("doc_ids.json"))
    refused(directory, str(directory), "'doc_ids.json' is missing", show_progress=False)


def test_a_listed_file_that_is_missing_or_changed_is_refused(bm25_dir: Path, tmp_path: Path) -> None:
    directory = copy(bm25_dir, tmp_path)
    _corrupt_scores(directory)
    refused(directory, str(directory / "data.csc.index.npy"), "checksum mismatch", show_progress=False)
    (directory / "data.csc.index.npy").unlink()
    refused(directory, str(directory), "'data.csc.index.npy' is missing", show_progress=False)


def test_a_dense_index_file_dropped_from_the_list_is_refused(dense_dirs: dict[str, Path], tmp_path: Path) -> None:
    directory = copy(dense_dirs["exact"], tmp_path)
    shutil.copy(dense_dirs["hnsw"] / "index.faiss", directory / "index.faiss")
    edit_manifest(directory, lambda m: m["files"].pop("index.faiss"))
    refused(directory, str(directory), "'index.faiss'", "not listed", show_progress=False)


def test_the_untampered_indexes_still_load_and_search_alike(
    bm25_dir: Path, dense_dirs: dict[str, Path], tiny_encoder: str
) -> None:
    bm25 = load_index(bm25_dir, show_progress=False)
    assert next(iter(bm25.search(QUERY, k=3)["q"])) == "c"
    for kind, directory in dense_dirs.items():
        dense = load_index(directory, show_progress=False)
        assert dense.index_kind == kind and dense.model_name == tiny_encoder
        assert set(dense.search(QUERY, k=3)["q"]) == set(TOY)


# 2. the manifest is checked against a schema per index kind; stored params agree with the stored data


def test_kind_edited_to_another_kind_names_the_field(bm25_dir: Path, tmp_path: Path) -> None:
    directory = copy(bm25_dir, tmp_path)
    manifest = edit_manifest(directory, lambda m: m.update(kind="dense"))
    refused(directory, str(manifest), "'params.model' of a 'dense' index", "field required")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m.update(kind=["bm25"]), "'kind'"),
        (lambda m: m.update(kind="bm26"), "'kind'"),
        (lambda m: m.update(params=[]), "'params'"),
        (lambda m: m["params"].pop("documents"), "'params.documents'"),
        (lambda m: m["params"].update(k3=1.0), "'params.k3'"),
        (lambda m: m["params"].update(b="0.75"), "'params.b'"),
        (lambda m: m["params"].update(stemmer="klingon"), "'params.stemmer'"),
        (lambda m: m["params"].update(stopwords="klingon"), "'params.stopwords'"),
        (lambda m: m.update(note="hand-edited"), "'note'"),
        (lambda m: m.pop("files"), "'files'"),
        (lambda m: m["files"].update({"doc_ids.json": "abc"}), "'files.doc_ids.json'"),
    ],
)
def test_a_bad_bm25_manifest_field_is_named(bm25_dir: Path, tmp_path: Path, change: Callable, field: str) -> None:
    directory = copy(bm25_dir, tmp_path)
    manifest = edit_manifest(directory, change)
    refused(directory, str(manifest), field, show_progress=False)


@pytest.mark.parametrize(("field", "value"), [("k1", 0.9), ("b", 0.4), ("method", "robertson")])
def test_an_edited_bm25_weight_is_refused_not_ignored(bm25_dir: Path, tmp_path: Path, field: str, value: Any) -> None:
    # the scores were computed with the built values and stored: an edited k1 cannot take effect, so it is refused
    directory = copy(bm25_dir, tmp_path)
    manifest = edit_manifest(directory, lambda m: m["params"].update({field: value}))
    message = refused(directory, str(manifest), f"'params.{field}'", show_progress=False)
    assert repr(value) in message


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m["params"].update(index_kind="hnsw"), "'params.index_kind'"),
        (lambda m: m["params"].update(index_kind="flat"), "'params.index_kind'"),
        (lambda m: m["params"].update(dim=384), "'params.dim'"),
        (lambda m: m["params"].update(documents=4), "'params.documents'"),
        (lambda m: m["params"].update(k1=1.5), "'params.k1'"),
        (lambda m: m["params"]["faiss"].update(nprobe="all"), "'params.faiss.nprobe'"),
        (lambda m: m["params"].update(model=None), "'params.model'"),
    ],
)
def test_a_bad_exact_dense_manifest_field_is_named(
    dense_dirs: dict[str, Path], tmp_path: Path, change: Callable, field: str
) -> None:
    directory = copy(dense_dirs["exact"], tmp_path)
    manifest = edit_manifest(directory, change)
    refused(directory, str(manifest), field, show_progress=False)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m["params"].update(index_kind="exact"), "'params.index_kind'"),
        (lambda m: m["params"].update(index_kind="ivf"), "'params.index_kind'"),
        (lambda m: m["params"]["faiss"].update(hnsw_m=32), "'params.faiss.hnsw_m'"),
        (lambda m: m["params"]["faiss"].update(hnsw_storage="float32"), "'params.faiss.hnsw_storage'"),
        (lambda m: m["params"]["faiss"].update(ef_construction=200), "'params.faiss.ef_construction'"),
    ],
)
def test_an_hnsw_manifest_that_contradicts_the_faiss_file_is_refused(
    dense_dirs: dict[str, Path], tmp_path: Path, change: Callable, field: str
) -> None:
    directory = copy(dense_dirs["hnsw"], tmp_path)
    manifest = edit_manifest(directory, change)
    refused(directory, str(manifest), field, "index.faiss holds", show_progress=False)


def test_an_edited_search_time_setting_is_applied(dense_dirs: dict[str, Path], tmp_path: Path) -> None:
    directory = copy(dense_dirs["hnsw"], tmp_path)
    edit_manifest(directory, lambda m: m["params"]["faiss"].update(ef_search=7))
    assert load_index(directory, show_progress=False)._index.hnsw.efSearch == 7


@pytest.fixture(scope="module")
def sparse_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    retriever = SparseRetriever(max_seq_length=32, show_progress=False)
    retriever.index(TOY)
    directory = tmp_path_factory.mktemp("sparse") / "idx"
    retriever.save(directory)
    return directory


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m["params"].update(vocab_size=m["params"]["vocab_size"] + 1), "'params.vocab_size'"),
        (lambda m: m["params"].update(postings=0), "'params.postings'"),
        (lambda m: m["params"].update(max_seq_length=0), "'params.max_seq_length'"),
        (lambda m: m["params"].update(k1=1.5), "'params.k1'"),
    ],
)
def test_a_bad_sparse_manifest_field_is_named(sparse_dir: Path, tmp_path: Path, change: Callable, field: str) -> None:
    directory = copy(sparse_dir, tmp_path)
    manifest = edit_manifest(directory, change)
    refused(directory, str(manifest), field, show_progress=False)


# 3. an index is not paired with a corpus other than the one it was built from


def write_beir(root: Path, corpus: dict[str, Document]) -> Path:
    (root / "qrels").mkdir(parents=True)
    lines = [json.dumps({"_id": d.id, "title": d.title, "text": d.text}) for d in corpus.values()]
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "postman letters"}) + "\n")
    first = next(iter(corpus))
    (root / "qrels" / "test.tsv").write_text(f"query-id\tcorpus-id\tscore\nq\t{first}\t1\n")
    return root


def test_check_corpus_names_the_index_and_the_corpus(bm25_dir: Path, tmp_path: Path) -> None:
    from rankwise.retrieve.store import check_corpus

    retriever = load_index(bm25_dir, show_progress=False)
    same = write_beir(tmp_path / "same", TOY) / "corpus.jsonl"
    check_corpus(bm25_dir, retriever.fingerprint, read_corpus(same)[0], same)
    with pytest.raises(IndexStoreError) as caught:
        check_corpus(bm25_dir, retriever.fingerprint, OTHER, "other/corpus.jsonl")
    assert str(bm25_dir) in str(caught.value) and "other/corpus.jsonl" in str(caught.value)


def test_search_refuses_a_data_set_of_another_corpus(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    built, other = write_beir(tmp_path / "built", TOY), write_beir(tmp_path / "other", OTHER)
    index = tmp_path / "idx"
    assert main(["index", str(built), "--kind", "bm25", "--out", str(index)]) == 0
    assert main(["search", "--index", str(index), "--queries", str(built), "--out", str(tmp_path / "a.trec")]) == 0
    capsys.readouterr()
    code = main(["search", "--index", str(index), "--queries", str(other), "--out", str(tmp_path / "b.trec")])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error and str(index) in error and str(other) in error
    assert "another corpus" in error and not (tmp_path / "b.trec").exists()
    tsv = tmp_path / "queries.tsv"  # a bare queries file carries no corpus: nothing to compare
    tsv.write_text("q\tships at sea\n")
    assert main(["search", "--index", str(index), "--queries", str(tsv), "--out", str(tmp_path / "c.trec")]) == 0


def test_ask_refuses_a_corpus_the_index_was_not_built_from(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    built, other = write_beir(tmp_path / "built", TOY), write_beir(tmp_path / "other", OTHER)
    index = tmp_path / "idx"
    assert main(["index", str(built), "--kind", "bm25", "--out", str(index)]) == 0
    capsys.readouterr()
    # the corpus is checked before any generator is built or called (this endpoint is never reached)
    argv = ["ask", "what do postmen do?", "--index", str(index), "--corpus", str(other / "corpus.jsonl")]
    code = main([*argv, "--generator", "http://127.0.0.1:9/v1"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error and str(index) in error and str(other / "corpus.jsonl") in error
