"""BEIR directories: real SciFact counts and every bad-input path on small hand-written fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankwise.data import load_dataset
from rankwise.data.beir import load_beir
from rankwise.errors import DataError
from rankwise.types import Document, Query


def write_beir(
    root: Path,
    corpus: list[dict] | None = None,
    queries: list[dict] | None = None,
    qrels: dict[str, str] | None = None,
) -> Path:
    corpus = (
        corpus
        if corpus is not None
        else [
            {"_id": "d1", "title": "Cats", "text": "Cats purr."},
            {"_id": "d2", "title": "", "text": "Dogs bark."},
            {"_id": "d3", "title": "Birds", "text": "Birds sing."},
        ]
    )
    queries = (
        queries
        if queries is not None
        else [
            {"_id": "q1", "text": "what purrs"},
            {"_id": "q2", "text": "what barks"},
        ]
    )
    qrels = qrels if qrels is not None else {"test": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td3\t0\n"}
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus), encoding="utf-8")
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries), encoding="utf-8")
    if qrels:
        (root / "qrels").mkdir(exist_ok=True)
        for split, text in qrels.items():
            (root / "qrels" / f"{split}.tsv").write_text(text, encoding="utf-8")
    return root


def test_scifact_test_counts(scifact_dir: Path) -> None:
    dataset = load_dataset(scifact_dir)
    assert dataset.stats() == {"documents": 5183, "queries": 1109, "judged_queries": 300, "qrels": 339}
    assert dataset.warnings == []
    assert dataset.name == "scifact"
    assert dataset.qrels["1"] == {"31715818": 1}  # first row of qrels/test.tsv
    assert dataset.queries["0"].text == "0-dimensional biomaterials lack inductive properties."
    assert dataset.corpus["4983"].title.startswith("Microstructural development of human newborn")


def test_scifact_train_counts(scifact_dir: Path) -> None:
    stats = load_dataset(scifact_dir, split="train").stats()
    assert (stats["judged_queries"], stats["qrels"]) == (809, 919)


def test_small_directory_loads_exactly(tmp_path: Path) -> None:
    dataset = load_beir(write_beir(tmp_path / "tiny"))
    assert dataset.corpus == {
        "d1": Document("d1", "Cats", "Cats purr."),
        "d2": Document("d2", "", "Dogs bark."),
        "d3": Document("d3", "Birds", "Birds sing."),
    }
    assert dataset.queries == {"q1": Query("q1", "what purrs"), "q2": Query("q2", "what barks")}
    assert dataset.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 0}}
    assert dataset.stats() == {"documents": 3, "queries": 2, "judged_queries": 2, "qrels": 3}


def test_integer_ids_become_strings(tmp_path: Path) -> None:
    root = write_beir(
        tmp_path,
        corpus=[{"_id": 7, "title": "T", "text": "x"}],
        queries=[{"_id": 1, "text": "y"}],
        qrels={"test": "query-id\tcorpus-id\tscore\n1\t7\t1\n"},
    )
    dataset = load_beir(root)
    assert list(dataset.corpus) == ["7"] and list(dataset.queries) == ["1"]
    assert dataset.qrels == {"1": {"7": 1}}


def test_empty_query_is_skipped_with_counted_warning(tmp_path: Path) -> None:
    queries = [{"_id": "q1", "text": "what purrs"}, {"_id": "q2", "text": "   "}, {"_id": "q3", "text": ""}]
    dataset = load_beir(write_beir(tmp_path, queries=queries, qrels={"test": "q1\td1\t1\n"}))
    assert list(dataset.queries) == ["q1"]
    assert len(dataset.warnings) == 1
    assert "2 queries have empty text, skipped" in dataset.warnings[0]
    assert "q2, q3" in dataset.warnings[0]


def test_unknown_ids_in_qrels_are_skipped_and_counted(tmp_path: Path) -> None:
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tnope\t1\nq2\tgone\t1\nq9\td1\t1\nq9\td2\t1\n"
    dataset = load_beir(write_beir(tmp_path, qrels={"test": qrels}))
    assert dataset.qrels == {"q1": {"d1": 1}}
    assert len(dataset.warnings) == 2  # one summary line per kind
    queries_line = next(w for w in dataset.warnings if "unknown query" in w)
    docs_line = next(w for w in dataset.warnings if "unknown document" in w)
    assert ": 2 judgements name unknown query ids" in queries_line and "q9" in queries_line
    assert ": 2 judgements name unknown document ids" in docs_line and "nope, gone" in docs_line
    assert "test.tsv" in docs_line


def test_qrels_that_match_nothing_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no judgement names a known query and document"):
        load_beir(write_beir(tmp_path, qrels={"test": "x\ty\t1\n"}))


def test_missing_split_names_available_splits(tmp_path: Path) -> None:
    root = write_beir(tmp_path, qrels={"train": "q1\td1\t1\n", "dev": "q2\td2\t1\n"})
    with pytest.raises(DataError, match=r"no qrels for split 'test' \(available splits: dev, train\)"):
        load_beir(root)


def test_directory_without_qrels_loads_unjudged_with_warning(tmp_path: Path) -> None:
    dataset = load_beir(write_beir(tmp_path, qrels={}))
    assert dataset.qrels == {}
    assert len(dataset.queries) == 2
    assert any("loaded without relevance judgements" in w for w in dataset.warnings)


def test_malformed_json_line_names_file_and_line(tmp_path: Path) -> None:
    root = write_beir(tmp_path)
    with (root / "corpus.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"_id": "d4", "text": \n')
    with pytest.raises(DataError) as info:
        load_beir(root)
    assert info.value.line == 4
    assert info.value.path.endswith("corpus.jsonl")
    assert "malformed JSON" in str(info.value)


@pytest.mark.parametrize(
    ("record", "field"),
    [({"title": "t", "text": "x"}, "_id"), ({"_id": "d9", "title": "t"}, "text")],
)
def test_missing_field_is_named(tmp_path: Path, record: dict, field: str) -> None:
    corpus = [{"_id": "d1", "title": "", "text": "a"}, record]
    with pytest.raises(DataError, match=rf"corpus\.jsonl, line 2: missing field '{field}'"):
        load_beir(write_beir(tmp_path, corpus=corpus, qrels={}))


def test_non_string_field_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="field 'text' must be a string, found list"):
        load_beir(write_beir(tmp_path, corpus=[{"_id": "d1", "text": ["a"]}], qrels={}))


def test_non_utf8_bytes_name_line_and_offset(tmp_path: Path) -> None:
    root = write_beir(tmp_path, qrels={})
    good = b'{"_id": "q1", "text": "fine"}\n'
    (root / "queries.jsonl").write_bytes(good + b'{"_id": "q2", "text": "caf\xe9"}\n')
    with pytest.raises(DataError) as info:
        load_beir(root)
    assert info.value.line == 2
    assert f"byte offset {len(good) + 26}" in str(info.value)
    assert "e9" in str(info.value) and "queries.jsonl" in str(info.value)


def test_empty_corpus_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"corpus\.jsonl: empty corpus"):
        load_beir(write_beir(tmp_path, corpus=[], qrels={}))


def test_duplicate_document_id_names_both_lines(tmp_path: Path) -> None:
    corpus = [{"_id": "d1", "text": "a"}, {"_id": "d2", "text": "b"}, {"_id": "d1", "text": "c"}]
    with pytest.raises(DataError, match=r"line 3: duplicate document id 'd1' \(first on line 1\)"):
        load_beir(write_beir(tmp_path, corpus=corpus, qrels={}))


def test_duplicate_query_id_is_an_error(tmp_path: Path) -> None:
    queries = [{"_id": "q1", "text": "a"}, {"_id": "q1", "text": "b"}]
    with pytest.raises(DataError, match=r"queries\.jsonl, line 2: duplicate query id 'q1'"):
        load_beir(write_beir(tmp_path, queries=queries, qrels={}))


def test_qrels_with_wrong_column_count(tmp_path: Path) -> None:
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\n"
    with pytest.raises(DataError, match=r"test\.tsv, line 3: expected 3 columns like the first line, found 2"):
        load_beir(write_beir(tmp_path, qrels={"test": qrels}))


def test_qrels_with_non_integer_grade(tmp_path: Path) -> None:
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\thigh\n"
    with pytest.raises(DataError, match=r"test\.tsv, line 3: relevance grade must be an integer, found 'high'"):
        load_beir(write_beir(tmp_path, qrels={"test": qrels}))
