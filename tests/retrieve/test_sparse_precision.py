"""SPLADE precision (issue 22): bf16 scores within tolerance of fp32 on the bundled splade-tiny, ``auto`` never
picks emulated bf16, the index records its precision and encodes its queries the same way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from precision_texts import TEXTS
from pydantic import ValidationError
from scipy.stats import spearmanr

from rankwise.build import build_retriever, open_retriever
from rankwise.config.sections import SparseConfig
from rankwise.errors import IndexStoreError, RankwiseError
from rankwise.retrieve.sparse import SparseRetriever
from rankwise.types import Document, Query

QUERIES = {
    f"q{i}": Query(f"q{i}", text)
    for i, text in enumerate(["does aspirin prevent heart attacks", "vitamin D and bone fractures", "liver genes"])
}
CORPUS = {f"d{i}": Document(f"d{i}", text, "") for i, text in enumerate(TEXTS)}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_bf16_scores_within_tolerance_of_fp32() -> None:
    fp32 = SparseRetriever(show_progress=False)
    bf16 = SparseRetriever(show_progress=False, precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    reference = fp32._encode(TEXTS, "document").to_dense().numpy()
    weights = bf16._encode(TEXTS, "document").float().to_dense().numpy()
    assert weights.shape == reference.shape
    assert np.mean((weights > 0) == (reference > 0)) > 0.999  # the same active terms, bar a few
    cosine = np.sum(weights * reference, axis=1) / np.linalg.norm(weights, axis=1) / np.linalg.norm(reference, axis=1)
    assert float(cosine.min()) > 0.995
    fp32.index(CORPUS)
    bf16.index(CORPUS)
    assert bf16._weights.dtype == np.float32  # stored as float32 whatever the model ran in
    ours, theirs = bf16.search(QUERIES, k=8), fp32.search(QUERIES, k=8)
    for qid in QUERIES:
        assert next(iter(ours[qid])) == next(iter(theirs[qid]))
        shared = [doc for doc in theirs[qid] if doc in ours[qid]]
        assert spearmanr([ours[qid][d] for d in shared], [theirs[qid][d] for d in shared])[0] > 0.95


def test_auto_never_picks_emulated_bf16_for_splade(pretend_cpu) -> None:
    pretend_cpu(torch_says=False, flags=("avx2",))  # an AVX2-only CPU: bf16 would be emulated
    assert SparseRetriever(show_progress=False, precision="auto").precision == "fp32"
    pretend_cpu(torch_says=True, flags=("avx2", "avx512f"))  # AVX-512 without BF16: still emulated
    assert build_retriever(SparseConfig(precision="auto"), show_progress=False).precision == "fp32"
    pretend_cpu(torch_says=True, flags=("avx2", "avx512f", "avx512_bf16"))
    assert build_retriever(SparseConfig(precision="auto"), show_progress=False).precision == "bf16"


def test_bad_precisions_are_refused() -> None:
    with pytest.raises(ValidationError, match="precision"):
        SparseConfig(precision="int8")
    with pytest.raises(RankwiseError, match=r"^sparse precision must be one of auto, fp32, bf16, not 'fp16'$"):
        SparseRetriever(precision="fp16")
    assert SparseConfig().precision == "fp32"


def test_index_records_its_precision_and_queries_are_encoded_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pretend_cpu
) -> None:
    pretend_cpu(torch_says=True, flags=("avx2", "avx512_bf16"))
    retriever = SparseRetriever(show_progress=False, precision="auto")
    retriever.index(CORPUS)
    expected = retriever.search(QUERIES, k=3)
    retriever.save(tmp_path / "idx")
    manifest = tmp_path / "idx" / "manifest.json"
    params = json.loads(manifest.read_text())["params"]
    assert params["precision"] == "bf16" and params["precision_choice"]["requested"] == "auto"
    assert "avx512_bf16" in params["precision_choice"]["cpu_flags"]

    pretend_cpu(torch_says=False, flags=("avx2",))  # searched elsewhere: still bf16, like the documents
    loaded = open_retriever(tmp_path / "idx", SparseConfig(precision="auto"), show_progress=False)
    assert loaded.precision == "bf16" and loaded.search(QUERIES, k=3) == expected
    assert loaded.precision_record["requested"] == "auto"  # how the documents were encoded, kept
    with pytest.raises(IndexStoreError, match=r"params\.precision' is 'bf16'.*not in fp32"):
        open_retriever(tmp_path / "idx", SparseConfig(precision="fp32"), show_progress=False)


def test_an_index_saved_before_the_setting_is_fp32(tmp_path: Path) -> None:
    retriever = SparseRetriever(show_progress=False)
    retriever.index(dict(list(CORPUS.items())[:3]))
    retriever.save(tmp_path / "idx")
    manifest = tmp_path / "idx" / "manifest.json"
    data = json.loads(manifest.read_text())
    for key in ("precision", "precision_choice"):
        del data["params"][key]
    manifest.write_text(json.dumps(data))
    assert SparseRetriever.load(tmp_path / "idx", show_progress=False).precision == "fp32"
