"""BM25 on bm25s' numba and numpy backends: the same runs (ties included), the compile cached on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rankwise.config.experiment import ConfigError, load_config
from rankwise.data import load_dataset
from rankwise.errors import RankwiseError
from rankwise.retrieve import bm25 as bm25_module
from rankwise.retrieve.bm25 import BM25Retriever

pytest.importorskip("numba")

SRC = Path(__file__).resolve().parents[2] / "src"


def reference_top_k(retriever: BM25Retriever, text: str, k: int) -> list[tuple[str, float]]:
    """The tie rule written out: every document's score, sorted by (score descending, doc id ascending)."""
    scored = zip(retriever.doc_ids, retriever.scores(text), strict=True)
    return sorted(scored, key=lambda item: (-item[1], item[0]))[:k]


# lucene: a 0 at the cut is filled from the unmatched documents; atire: ties are settled on the full scores
@pytest.mark.parametrize("method", ["lucene", "atire"])
def test_numba_and_numpy_give_identical_runs_with_ties_at_the_cut(scifact_dir: Path, method: str) -> None:
    dataset = load_dataset(scifact_dir, split="test")
    corpus = dict(list(dataset.corpus.items())[:400])  # small: many queries match fewer than k documents
    queries = dict(list(dataset.queries.items())[:150])
    numpy_side = BM25Retriever(show_progress=False, backend="numpy", method=method)
    numpy_side.index(corpus)
    numba_side = BM25Retriever(show_progress=False, backend="numba", method=method)
    numba_side.index(corpus)
    cut_ties = 0
    for k in (10, 200):
        ours = numpy_side.search(queries, k=k)
        theirs = numba_side.search(queries, k=k)
        assert {q: list(r.items()) for q, r in ours.items()} == {q: list(r.items()) for q, r in theirs.items()}
        for qid, query in queries.items():
            expected = reference_top_k(numpy_side, query.text, k)
            assert list(ours[qid].items()) == expected
            scores = numpy_side.scores(query.text)
            cut_ties += sum(score == expected[-1][1] for score in scores) > sum(
                score == expected[-1][1] for _, score in expected
            )
    assert cut_ties >= 10  # the case the tie rule exists for: documents tied at the k-th score left out


def test_auto_is_numba_when_installed_and_numba_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert BM25Retriever(show_progress=False).backend == "numba"
    monkeypatch.setattr(bm25_module, "numba_available", lambda: False)
    assert BM25Retriever(show_progress=False).backend == "numpy"
    with pytest.raises(RankwiseError, match=r"backend 'numba' needs the numba package: pip install"):
        BM25Retriever(backend="numba")


def test_bad_backend_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(RankwiseError, match=r"^BM25 backend must be one of auto, numpy, numba, not 'gpu'$"):
        BM25Retriever(backend="gpu")
    path = tmp_path / "exp.yaml"
    path.write_text("name: demo\ndatasets: [cranfield]\nretrieve:\n  bm25: {backend: gpu}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}, line 4: retrieve.bm25.backend:")
    assert "'auto', 'numpy' or 'numba'" in message


CACHED_SEARCH = """
import json
from bm25s.numba import retrieve_utils
from rankwise.retrieve.bm25 import BM25Retriever
from rankwise.types import Document, Query
retriever = BM25Retriever(show_progress=False, backend="numba")
retriever.index({"a": Document("a", "", "cats purr"), "b": Document("b", "", "dogs bark at cats")})
run = retriever.search({"q": Query("q", "cats")}, k=1)
stats = retrieve_utils._retrieve_internal_jitted_serial.stats
print(json.dumps({"run": run, "hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values())}))
"""


def test_the_numba_compile_is_cached_under_the_user_cache_dir(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update({"XDG_CACHE_HOME": str(tmp_path), "PYTHONPATH": str(SRC)})

    def run() -> dict:
        done = subprocess.run([sys.executable, "-c", CACHED_SEARCH], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = run()
    cache = tmp_path / "rankwise" / "numba"
    assert any(cache.rglob("*.nbi")) and any(cache.rglob("*.nbc"))
    second = run()
    assert first["run"] == second["run"]
    assert list(first["run"]["q"]) in (["a"], ["b"])
    assert (first["misses"], first["hits"]) == (1, 0)
    assert (second["misses"], second["hits"]) == (0, 1)


def test_indexing_again_forgets_the_previous_corpus_doc_id_order() -> None:
    from rankwise.types import Document, Query

    retriever = BM25Retriever(show_progress=False)
    retriever.index({"a": Document("a", "", "cats purr"), "b": Document("b", "", "dogs bark")})
    assert list(retriever.search({"q": Query("q", "zebra")}, k=1)["q"]) == ["a"]  # a 0 at the cut: first by id
    retriever.index({"y": Document("y", "", "cats purr"), "x": Document("x", "", "dogs bark")})
    assert retriever.search({"q": Query("q", "zebra")}, k=1) == {"q": {"x": 0.0}}
