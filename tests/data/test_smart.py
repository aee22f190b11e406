"""SMART collections: real Cranfield (position-keyed qrels, grades), synthetic CISI and CACM, bad input."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from rankwise.data import load_dataset
from rankwise.data.smart import load_smart, parse_records
from rankwise.errors import DataError
from rankwise.types import Document


def write(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


# --- Cranfield, the real thing ---


def test_cranfield_counts(cranfield_dir: Path) -> None:
    dataset = load_dataset(cranfield_dir)
    assert dataset.stats() == {"documents": 1400, "queries": 225, "judged_queries": 225, "qrels": 1612}
    assert dataset.name == "cranfield"
    assert any("225 rows have grade -1 (no judgement), skipped" in w for w in dataset.warnings)


def test_cranfield_qrels_are_keyed_by_position_mapped_to_query_ids(cranfield_dir: Path) -> None:
    dataset = load_dataset(cranfield_dir)
    # cran.qry's .I ids run 001, 002, 004, 008, ..., 365: ids stripped of zeros, in file order.
    assert list(dataset.queries)[:4] == ["1", "2", "4", "8"]
    assert list(dataset.queries)[-1] == "365"
    # cranqrel position 3 = the third query, .I 004 (rows "3 5 3", ..., "3 485 -1").
    assert dataset.qrels["4"] == {d: 2 for d in ["5", "6", "90", "91", "119", "144", "181", "399"]}
    # position 225 = .I 365: 25 rows, one of them -1 ("225 1188 -1").
    assert len(dataset.qrels["365"]) == 24
    assert dataset.qrels["365"]["1379"] == 3 and dataset.qrels["365"]["161"] == 1
    assert "1188" not in dataset.qrels["365"]
    assert "3" not in dataset.qrels  # there is no query .I 003: keyed by .I, position 3 would be lost
    assert set(dataset.qrels) == set(dataset.queries)


def test_cranfield_grades_map_so_higher_is_more_relevant(cranfield_dir: Path) -> None:
    dataset = load_dataset(cranfield_dir)
    assert dataset.qrels["1"]["184"] == 3  # "1 184 2" -> 5 - 2
    grades = Counter(g for docs in dataset.qrels.values() for g in docs.values())
    # cranqrel holds grade 1 x128, 2 x387, 3 x734, 4 x363 (after dropping -1 rows).
    assert grades == {4: 128, 3: 387, 2: 734, 1: 363}


def test_cranfield_documents(cranfield_dir: Path) -> None:
    dataset = load_dataset(cranfield_dir)
    doc = dataset.corpus["1"]
    assert doc.title == "experimental investigation of the aerodynamics of a wing in a slipstream ."
    assert doc.text.startswith("experimental investigation of the aerodynamics of a wing in a slipstream . an ")
    assert doc.text.endswith("for the specific configuration of the experiment .")
    # 471 and 995 have no abstract: kept (995 is judged relevant to query 125's position), and counted.
    assert dataset.corpus["471"] == Document("471", "", "")
    assert any("2 documents have no title or text, kept" in w for w in dataset.warnings)
    # doc 240 has stray ".A"/".B" lines inside its abstract: the abstract continues past them.
    assert "application to turbulent separations is made for a prandtl number of unity" in (dataset.corpus["240"].text)
    assert dataset.corpus["240"].text.endswith("heat transfer in a laminar separated flow .")


# --- synthetic collections ---

CRAN_DOCS = """.I 1
.T
flow past a plate .
.A
smith,j.
.B
j. ae. 1958.
.W
flow past a plate .
  a study of flow .
.I 2
.T
wings .
.W
wing theory .
.I 3
.T
heat .
.W
heat transfer .
"""

CRAN_QUERIES = """.I 001
.W
what about flow .
.I 004
.W
tell me of wings
and heat .
.I 009
.W
.I 010
.W
heat ?
"""


def test_cranfield_quirks_on_a_small_fixture(tmp_path: Path) -> None:
    qrels = "1 1 1\n1 3 4\n2 2 2\n2 3 -1\n4 3 3\n3 1 2\n"
    root = write(tmp_path / "cran", {"cran.all.1400": CRAN_DOCS, "cran.qry": CRAN_QUERIES, "cranqrel": qrels})
    dataset = load_smart(root)
    assert dataset.corpus["1"] == Document("1", "flow past a plate .", "flow past a plate . a study of flow .")
    assert dataset.queries["4"].text == "tell me of wings and heat ."
    assert list(dataset.queries) == ["1", "4", "10"]  # .I 009 has no text: skipped
    # positions 1, 2, 4 -> .I 1, 4, 10; position 3 (.I 009, skipped) is dropped.
    assert dataset.qrels == {"1": {"1": 4, "3": 1}, "4": {"2": 3}, "10": {"3": 2}}
    joined = "\n".join(dataset.warnings)
    assert "1 queries have no .W text, skipped (e.g. 9)" in joined
    assert "1 rows have grade -1 (no judgement), skipped (e.g. 2/3)" in joined
    assert "1 judgements name unknown query ids, skipped (e.g. 9)" in joined


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("1 1 1\n1 2 x\n", r"cranqrel, line 2: relevance grade must be an integer, found 'x'"),
        ("1 1 1\n1 2 7\n", r"cranqrel, line 2: grade must be 1..5 or -1, found 7"),
        ("1 1 1\n1 2\n", r"cranqrel, line 2: expected at least 3 columns"),
        ("1 1 1\n1 1 2\n", r"cranqrel, line 2: query 1, document 1: grade contradicts line 1"),
        ("\n", r"cranqrel: no relevance judgements found"),
    ],
)
def test_bad_cranfield_relevance_rows(tmp_path: Path, rows: str, message: str) -> None:
    root = write(tmp_path, {"cran.all.1400": CRAN_DOCS, "cran.qry": CRAN_QUERIES, "cranqrel": rows})
    with pytest.raises(DataError, match=message):
        load_smart(root)


CISI_ALL = """.I 1
.T
18 Editions of the Dewey Decimal Classifications
.A
Comaromi, J.P.
.W
   The present study is a history of the DEWEY Decimal
Classification.
.X
1\t5\t1
92\t1\t1
.I 2
.T
Use Made of Technical Libraries
.A
Slater, M.
.W
This report is an analysis of 6300 acts of use.
.X
2\t1\t2
"""

CISI_QRY = """.I 1
.W
What problems and concerns are there in making up descriptive titles?
.I 2
.T
Some Article Title
.A
Someone, A.
.W
How can actually pertinent data be retrieved?
.B
1970
"""

CISI_REL = "     1     2 0 0.000000\n     1     1\t0\t0.000000\n     2     1 0 0.000000\n     2    99 0 0.000000\n"


def test_cisi_fixture(tmp_path: Path) -> None:
    root = write(tmp_path / "cisi", {"CISI.ALL": CISI_ALL, "CISI.QRY": CISI_QRY, "CISI.REL": CISI_REL})
    dataset = load_dataset(root)
    assert dataset.name == "cisi"
    assert dataset.corpus["1"] == Document(
        "1",
        "18 Editions of the Dewey Decimal Classifications",
        "The present study is a history of the DEWEY Decimal Classification.",
    )
    assert dataset.queries["2"].text == "How can actually pertinent data be retrieved?"  # .W only, not .T/.B
    assert dataset.qrels == {"1": {"2": 1, "1": 1}, "2": {"1": 1}}  # ids, not positions; binary
    assert any("1 judgements name unknown document ids, skipped (e.g. 99)" in w for w in dataset.warnings)


CACM_ALL = """.I 1
.T
Preliminary Report-International Algebraic Language
.B
CACM December, 1958
.A
Perlis, A. J.
Samelson,K.
.N
CA581203 JB March 22, 1978  8:28 PM
.X
100\t5\t1
.I 2
.T
Extraction of Roots by Repeated Subtractions for Digital Computers
.W
An algorithm for roots.
.K
roots, subtraction
.Z
an unknown field
"""

CACM_QUERIES = """.I 1
.W
 What articles exist which deal with TSS (Time Sharing System), an
operating system for IBM computers?
.N
 1. Richard Alexander, Comp Serv, Langmuir Lab (TSS)
.I 02
.W
 I am interested in roots.
.A
Someone
"""

CACM_QRELS = "01 0002 0 0\n01 1 0 0\n02 2 0 0\n"


def test_cacm_fixture_strips_zeros_consistently(tmp_path: Path) -> None:
    files = {"cacm.all": CACM_ALL, "query.text": CACM_QUERIES, "qrels.text": CACM_QRELS}
    dataset = load_dataset(write(tmp_path / "cacm", files))
    assert dataset.name == "cacm"
    assert dataset.corpus["1"] == Document("1", "Preliminary Report-International Algebraic Language", "")
    assert dataset.corpus["2"].text == "An algorithm for roots."  # .K and the unknown .Z are skipped
    assert dataset.queries["1"].text == (
        "What articles exist which deal with TSS (Time Sharing System), an operating system for IBM computers?"
    )
    assert list(dataset.queries) == ["1", "2"]
    assert dataset.qrels == {"1": {"2": 1, "1": 1}, "2": {"2": 1}}
    assert dataset.warnings == []


def test_file_names_match_case_insensitively(tmp_path: Path) -> None:
    root = write(tmp_path, {"cisi.all": CISI_ALL, "cisi.qry": CISI_QRY, "cisi.rel": CISI_REL})
    assert load_smart(root).stats()["qrels"] == 3


def test_missing_relevance_file_loads_unjudged(tmp_path: Path) -> None:
    dataset = load_smart(write(tmp_path, {"CISI.ALL": CISI_ALL, "CISI.QRY": CISI_QRY}))
    assert dataset.qrels == {} and len(dataset.queries) == 2
    assert any("loaded without relevance judgements" in w for w in dataset.warnings)


def test_missing_query_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"CISI\.QRY: cisi query file not found"):
        load_smart(write(tmp_path, {"CISI.ALL": CISI_ALL}))


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        (".I 1\n.W\na\n.I 2\n.W\nb\n.I 001\n.W\nc\n", 7, "duplicate record id '001' (first on line 1)"),
        ("stray words\n.I 1\n.W\na\n", 1, "text before the first '.I' record"),
        (".W\na\n", 1, "field marker '.W' before the first '.I' record"),
        (".I 1\nwords without a marker\n", 2, "text before any field marker"),
        (".I\n.W\na\n", 1, "record marker '.I' without an id"),
    ],
)
def test_malformed_records(tmp_path: Path, text: str, line: int, problem: str) -> None:
    path = tmp_path / "CISI.ALL"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as info:
        parse_records(path)
    assert info.value.line == line
    assert problem in info.value.problem


def test_crlf_line_endings_and_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "cran.all.1400"
    path.write_bytes(b".I 1\r\n.T\r\ntitle\r\n.W\r\nsome text\r\n")
    records, _ = parse_records(path)
    assert records[0].fields == {"T": "title", "W": "some text"}
    path.write_bytes(b".I 1\r\n.W\r\nna\xefve\r\n")
    with pytest.raises(DataError, match=r"cran\.all\.1400, line 3: not valid UTF-8.*byte offset 12"):
        parse_records(path)
