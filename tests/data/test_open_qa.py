"""Open-domain QA loaders (NQ-open, TriviaQA, PopQA, QA JSONL), DPR passage streaming, and the checksummed
download of those files from a local (file://) mirror."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from rankwise.data.open_qa import detect_qa_format, iter_dpr_passages, load_open_qa, load_qa, read_passages
from rankwise.data.open_qa_download import OPEN_QA_FILES, ensure_open_qa
from rankwise.errors import DataError, RankwiseError

QA_A = {"id": "a", "question": "Q", "answers": ["x"]}
DPR_ROWS = 'id\ttext\ttitle\n1\tAaron is a prophet.\tAaron\n2\t"He said ""hi"""\tQuote\n'


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def test_each_public_format_is_recognised_and_read(tmp_path):
    nq = write(tmp_path / "nq.jsonl", jsonl({"question": "who wrote it", "answer": ["Ann", "Ann B.", "Ann"]}))
    trivia = write(
        tmp_path / "unfiltered-web-dev.json",
        json.dumps({"Version": 1.0, "Data": [{"QuestionId": "tc_1", "Question": "Which?",
                                                "Answer": {"Value": "Nile", "Aliases": ["Nile", "River Nile"],
                                                           "NormalizedAliases": ["nile"]}}]}),
    )  # fmt: skip
    trivia_hf = write(
        tmp_path / "trivia.jsonl",
        jsonl({"question_id": "q7", "question": "Q?", "answer": {"value": "X", "aliases": ["Y"]}}),
    )
    popqa = write(
        tmp_path / "test.tsv",
        "id\tsubj\tquestion\tpossible_answers\n"
        '4222362\tGeorge Rankin\tWhat is George Rankin\'s occupation?\t["politician", "political leader"]\n',
    )
    generic = write(tmp_path / "qa.jsonl", jsonl({"id": "a", "question": "Q?", "answers": ["x"]}))
    assert [detect_qa_format(p) for p in (nq, trivia, trivia_hf, popqa, generic)] == [
        "nq-open", "triviaqa", "triviaqa", "popqa", "qa-jsonl"
    ]  # fmt: skip
    [e] = load_qa(nq)
    assert (e.id, e.question, e.answers) == ("nq-1", "who wrote it", ("Ann", "Ann B."))
    assert load_qa(trivia)[0].answers == ("Nile", "River Nile") and load_qa(trivia)[0].id == "tc_1"
    assert load_qa(trivia_hf)[0].answers == ("X", "Y")
    [p] = load_qa(popqa)
    assert (p.id, p.answers) == ("4222362", ("politician", "political leader"))
    assert load_qa(generic)[0].answers == ("x",)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("qa.jsonl", jsonl(QA_A, {"id": "b", "question": "R", "answers": []}),
         "qa.jsonl, line 2: field 'answers' must be"),
        ("qa.jsonl", jsonl(QA_A, {"id": "a", "question": "R", "answers": ["x"]}),
         "qa.jsonl, line 2: duplicate question id 'a' (first on line 1)"),
        ("nq.jsonl", jsonl({"answer": ["x"]}), "nq.jsonl, line 1: missing field 'question'"),
        ("t.tsv", "id\tquestion\tpossible_answers\n1\tQ\tnot json\n", "t.tsv, line 2: field 'possible_answers' is not"),
        ("t.tsv", "id\tquestion\n1\tQ\n", "t.tsv, line 1: missing column(s) possible_answers"),
        ("x.jsonl", jsonl({"question": "Q"}), "x.jsonl, line 1: unrecognised QA file"),
    ],
)  # fmt: skip
def test_bad_question_files_are_one_line_errors_naming_file_line_and_field(tmp_path, name, text, message):
    with pytest.raises(DataError, match=None) as info:
        load_qa(write(tmp_path / name, text))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_dpr_passages_stream_from_plain_and_gzipped_tsv(tmp_path):
    plain = write(tmp_path / "psgs_w100.tsv", DPR_ROWS)
    packed = tmp_path / "psgs_w100.tsv.gz"
    packed.write_bytes(gzip.compress(DPR_ROWS.encode()))
    stream = iter_dpr_passages(plain)
    assert not isinstance(stream, list | tuple | dict)  # a generator: rows are read as they are consumed
    first = next(stream)
    assert (first.id, first.title, first.text) == ("1", "Aaron", "Aaron is a prophet.")
    assert [d.text for d in iter_dpr_passages(packed)] == ["Aaron is a prophet.", 'He said "hi"']
    corpus, warnings = read_passages(packed)
    assert list(corpus) == ["1", "2"] and warnings == []


@pytest.mark.parametrize(
    ("text", "message"),
    [("id\ttitle\ttext\n", "line 1: header must be"), ("id\ttext\ttitle\n1\tonly two\n", "line 2: expected 3")],
)
def test_a_bad_dpr_file_names_its_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        list(iter_dpr_passages(write(tmp_path / "psgs.tsv", text)))


def test_questions_pair_with_the_corpus_beside_them(tmp_path):
    qa = write(tmp_path / "qa.jsonl", jsonl({"id": "a", "question": "Q?", "answers": ["x"]},
                                             {"id": "b", "question": " ", "answers": ["y"]}))  # fmt: skip
    write(tmp_path / "psgs_w100.tsv", DPR_ROWS)
    dataset = load_open_qa(qa)
    assert list(dataset.queries) == ["a"] and dataset.answers == {"a": ("x",)} and dataset.qrels == {}
    assert len(dataset.corpus) == 2 and "1 questions are empty, skipped" in dataset.warnings[0]
    with pytest.raises(DataError, match="no corpus beside it"):
        load_open_qa(write(tmp_path / "alone" / "qa.jsonl", jsonl({"id": "a", "question": "Q", "answers": ["x"]})))


def test_download_from_a_local_mirror_is_checksummed_and_extracts_triviaqa(tmp_path):
    mirror = tmp_path / "mirror"
    nq = write(mirror / "NQ-open.dev.jsonl", jsonl({"question": "q", "answer": ["a"]}))
    digest = hashlib.sha256(nq.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    path = ensure_open_qa("nq-open-dev", cache, mirror.as_uri(), sha256=digest, progress=False)
    assert load_qa(path, OPEN_QA_FILES["nq-open-dev"].format)[0].answers == ("a",)
    with pytest.raises(RankwiseError, match="checksum mismatch"):
        ensure_open_qa("nq-open-dev", tmp_path / "c2", mirror.as_uri(), sha256="0" * 64, progress=False)
    assert not (tmp_path / "c2" / "open-qa" / "NQ-open.dev.jsonl").exists()  # nothing half-written

    member = json.dumps({"Data": [{"QuestionId": "t1", "Question": "Q?", "Answer": {"Value": "V", "Aliases": []}}]})
    with tarfile.open(mirror / "triviaqa-unfiltered.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("triviaqa-unfiltered/unfiltered-web-dev.json")
        info.size = len(member)
        tar.addfile(info, io.BytesIO(member.encode()))
    extracted = ensure_open_qa("triviaqa-unfiltered-dev", cache, mirror.as_uri(), progress=False)
    assert load_qa(extracted)[0].answers == ("V",)
    with pytest.raises(RankwiseError, match=r"no file 'triviaqa-unfiltered/unfiltered-web-train\.json'"):
        ensure_open_qa("triviaqa-unfiltered-train", cache, mirror.as_uri(), progress=False)
    with pytest.raises(RankwiseError, match="unknown open-domain QA file 'nq'"):
        ensure_open_qa("nq", cache)
