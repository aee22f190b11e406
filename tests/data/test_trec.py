"""TREC run/qrels files: exact bytes written, round trips, atomic writes, every parse error."""

from __future__ import annotations

from pathlib import Path

import pytest

from rankwise.data import load_qrels, load_queries, read_qrels, read_run, write_qrels, write_run
from rankwise.errors import DataError


def test_write_run_orders_by_score_and_keeps_the_order_of_ties(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    run = {"q2": {"b": 0.5, "a": 0.5, "c": 2.0}, "q1": {"z": -1.0, "y": 3.25}}
    write_run(run, path, tag="bm25")
    assert path.read_text() == (
        "q2 Q0 c 1 2.0 bm25\n"
        "q2 Q0 b 2 0.5 bm25\n"  # tie at 0.5: the producer's order (b before a) is kept
        "q2 Q0 a 3 0.5 bm25\n"
        "q1 Q0 y 1 3.25 bm25\n"
        "q1 Q0 z 2 -1.0 bm25\n"
    )
    back = read_run(path)
    assert back == run
    assert list(back["q2"]) == ["c", "b", "a"]


def test_read_run_breaks_ties_by_the_files_ranks(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    path.write_text("q Q0 x 2 1.0 t\nq Q0 y 1 1.0 t\nq Q0 z 3 5.0 t\n")
    assert list(read_run(path)["q"]) == ["z", "y", "x"]


def test_run_scores_round_trip_exactly(tmp_path: Path) -> None:
    run = {"q": {"d1": 0.1 + 0.2, "d2": 1e-17, "d3": 123456789.123456789}}
    write_run(run, tmp_path / "r.trec")
    assert read_run(tmp_path / "r.trec") == run


def test_ids_with_spaces_are_written_tab_separated(tmp_path: Path) -> None:
    run = {"q 1": {"Lilu (mythology)": 2.0, "Alû": 1.0}}
    write_run(run, tmp_path / "r.trec")
    first = (tmp_path / "r.trec").read_text(encoding="utf-8").splitlines()[0]
    assert first == "q 1\tQ0\tLilu (mythology)\t1\t2.0\trankwise"
    assert read_run(tmp_path / "r.trec") == run
    qrels = {"q 1": {"Alû": 1}}
    write_qrels(qrels, tmp_path / "q.txt")
    assert read_qrels(tmp_path / "q.txt") == qrels


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    write_run({"q": {"d": 1.0}}, path)
    before = path.read_bytes()
    with pytest.raises(DataError, match="NaN score"):
        write_run({"q": {"a": 2.0, "b": float("nan")}}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.trec"]
    with pytest.raises(DataError, match="ids must be non-empty"):
        write_run({"q": {"bad\tid": 1.0}}, tmp_path / "other.trec")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.trec"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("q Q0 d 1 1.0 t\nq Q0 e 2 0.5\n", "expected 6 columns 'qid Q0 docid rank score tag', found 5"),
        ("q Q0 d 1 1.0 t\nq Q0 e 2 high t\n", "score must be a number, found 'high'"),
        ("q Q0 d 1 1.0 t\nq Q0 e two 0.5 t\n", "rank must be an integer, found 'two'"),
        ("q Q0 d 1 1.0 t\nq Q0 d 2 0.5 t\n", "query q lists document d twice"),
    ],
)
def test_bad_run_lines(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "r.trec"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        read_run(path)
    assert (info.value.line, info.value.problem) == (2, problem)


def test_empty_run_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "r.trec").write_text("\n")
    with pytest.raises(DataError, match="no run lines found"):
        read_run(tmp_path / "r.trec")


def test_read_trec_and_beir_qrels(tmp_path: Path) -> None:
    (tmp_path / "a.qrels").write_text("1 0 d1 2\n1 0 d2 0\n2 Q0 d1 1\n1 0 d1 2\n")
    (tmp_path / "b.tsv").write_text("query-id\tcorpus-id\tscore\n1\td1\t2\n1\td2\t0\n2\td1\t1\n")
    expected = {"1": {"d1": 2, "d2": 0}, "2": {"d1": 1}}
    assert read_qrels(tmp_path / "a.qrels") == expected
    assert read_qrels(tmp_path / "b.tsv") == expected
    write_qrels(expected, tmp_path / "out.qrels")
    assert (tmp_path / "out.qrels").read_text() == "1 0 d1 2\n1 0 d2 0\n2 0 d1 1\n"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("1 0 d1 1\n1 d2 1\n", 2, "expected 4 columns like the first line, found 3"),
        ("1 0 d1 1\n1 0 d2 maybe\n", 2, "relevance grade must be an integer, found 'maybe'"),
        ("1 0 d1 1\n1 0 d2 0.5\n", 2, "relevance grade must be an integer, found '0.5'"),
        ("1 0 d1 1\n1 0 d1 2\n", 2, "query 1, document d1: grade 2 contradicts grade 1 on line 1"),
        ("1 d1\n", 1, "expected 4 columns 'qid 0 docid grade' (TREC) or 3 columns"),
    ],
)
def test_bad_qrels_lines(tmp_path: Path, text: str, line: int, problem: str) -> None:
    (tmp_path / "q.txt").write_text(text)
    with pytest.raises(DataError) as info:
        read_qrels(tmp_path / "q.txt")
    assert info.value.line == line
    assert problem in info.value.problem


def test_only_a_recognised_first_line_is_a_header(tmp_path: Path) -> None:
    (tmp_path / "q.tsv").write_text("q1\td1\thigh\nq2\td2\t1\n")
    with pytest.raises(DataError, match=r"line 1: found 3 columns and no 'query-id corpus-id score' header"):
        read_qrels(tmp_path / "q.tsv")
    (tmp_path / "q.tsv").write_text("qid 0 docno rel\nq2 0 d2 1\n")
    assert read_qrels(tmp_path / "q.tsv") == {"q2": {"d2": 1}}


def test_header_only_qrels_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "q.tsv").write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(DataError, match="no relevance judgements found"):
        read_qrels(tmp_path / "q.tsv")


def test_load_qrels_from_file_or_data_set(scifact_dir: Path, cranfield_dir: Path) -> None:
    from_file = load_qrels(scifact_dir / "qrels" / "test.tsv")
    assert sum(len(d) for d in from_file.values()) == 339
    assert load_qrels(scifact_dir) == from_file
    assert sum(len(d) for d in load_qrels(scifact_dir, split="train").values()) == 919
    # cranqrel is not a TREC file: naming it loads the collection, so positions map to query ids.
    assert load_qrels(cranfield_dir / "cranqrel") == load_qrels(cranfield_dir)
    assert sum(len(d) for d in load_qrels(cranfield_dir).values()) == 1612


def test_load_queries(scifact_dir: Path, tmp_path: Path) -> None:
    test_queries = load_queries(scifact_dir)
    assert len(test_queries) == 300 and "1" in test_queries and "0" not in test_queries
    assert len(load_queries(scifact_dir, split="train")) == 809
    assert len(load_queries(scifact_dir / "queries.jsonl")) == 1109
    (tmp_path / "q.tsv").write_text("a\twhat is x\nb\t  \nc\twhy y\n")
    assert {q.id: q.text for q in load_queries(tmp_path / "q.tsv").values()} == {
        "a": "what is x",
        "c": "why y",
    }
    (tmp_path / "bad.tsv").write_text("a what is x\n")
    with pytest.raises(DataError, match=r"bad\.tsv, line 1: expected 'qid<TAB>text'"):
        load_queries(tmp_path / "bad.tsv")
