"""Format recognition, load_dataset dispatch, and the shared file helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rankwise.data import detect_format, load_dataset
from rankwise.data._io import iter_json_records, normalise_numeric_id, read_lines, read_text
from rankwise.data.files import atomic_writer
from rankwise.errors import DataError


def test_detect_format_on_real_directories_and_files(
    scifact_dir: Path, cranfield_dir: Path, hotpotqa_file: Path
) -> None:
    assert detect_format(scifact_dir) == "beir"
    assert detect_format(scifact_dir / "corpus.jsonl") == "beir"
    assert detect_format(cranfield_dir) == "smart"
    assert detect_format(cranfield_dir / "cran.qry") == "smart"
    assert detect_format(hotpotqa_file) == "hotpotqa"
    assert detect_format(hotpotqa_file.parent) == "hotpotqa"


def test_a_file_of_a_directory_data_set_loads_the_directory(scifact_dir: Path, cranfield_dir: Path) -> None:
    assert load_dataset(scifact_dir / "queries.jsonl").stats()["qrels"] == 339
    assert load_dataset(cranfield_dir / "cran.all.1400").stats()["documents"] == 1400


def test_unrecognised_input_says_what_was_looked_for(tmp_path: Path, hotpotqa_file: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError) as info:
        detect_format(tmp_path)
    message = str(info.value)
    assert "corpus.jsonl + queries.jsonl" in message and "cran.all.1400" in message and "HotpotQA" in message
    with pytest.raises(DataError, match="unrecognised data set"):
        detect_format(hotpotqa_file.parent / "hotpotqa_train_corpus.json")  # a dict of titles, not questions
    with pytest.raises(DataError, match="no such file or directory"):
        detect_format(tmp_path / "missing")


def test_explicit_format(tmp_path: Path, cranfield_dir: Path) -> None:
    with pytest.raises(DataError, match="unknown format 'trec' \\(expected one of: beir, smart, hotpotqa\\)"):
        load_dataset(cranfield_dir, format="trec")
    with pytest.raises(DataError, match="no SMART collection found"):
        load_dataset(tmp_path, format="smart")
    with pytest.raises(DataError, match=r"corpus\.jsonl: file not found"):
        load_dataset(tmp_path, format="beir")


def test_split_on_single_judgement_formats_is_noted(cranfield_dir: Path) -> None:
    dataset = load_dataset(cranfield_dir, split="train")
    assert dataset.stats()["qrels"] == 1612
    assert dataset.warnings[-1].endswith("split 'train' ignored: smart data has a single set of judgements")


def test_read_text_reports_line_and_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"ok\nab\xffc\n")
    with pytest.raises(DataError) as info:
        read_text(path)
    assert info.value.line == 2
    assert "byte(s) ff at byte offset 5 (column 3)" in info.value.problem
    path.write_bytes(b"\xef\xbb\xbfa\r\nb\n\nc")
    assert read_lines(path) == ["a", "b", "", "c"]
    with pytest.raises(DataError, match="file not found"):
        read_text(tmp_path / "nope")


def test_json_array_items_carry_their_line(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('[\n  {"a": 1},\n\n  {"b":\n 2}, 3\n]')
    assert list(iter_json_records(path)) == [(2, {"a": 1}), (4, {"b": 2}), (5, 3)]
    path.write_text('[{"a": 1} {"b": 2}]')
    with pytest.raises(DataError, match="expected ',' or ']'"):
        list(iter_json_records(path))
    path.write_text(json.dumps({"a": 1}) + "\n\n" + json.dumps({"b": 2}) + "\n")
    assert list(iter_json_records(path)) == [(1, {"a": 1}), (3, {"b": 2})]


def test_normalise_numeric_id() -> None:
    ids = ["001", "0", "000", "12", "a01", " 7 "]
    assert [normalise_numeric_id(x) for x in ids] == ["1", "0", "0", "12", "a01", "7"]


def test_atomic_writer_replaces_or_leaves_untouched(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old")
    os.chmod(path, 0o640)
    with pytest.raises(RuntimeError), atomic_writer(path) as handle:
        handle.write("half")
        raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]
    with atomic_writer(path) as handle:
        handle.write("new")
    assert path.read_text() == "new"
    assert path.stat().st_mode & 0o777 == 0o640
    with atomic_writer(tmp_path / "sub" / "fresh.txt") as handle:
        handle.write("x")
    assert (tmp_path / "sub" / "fresh.txt").stat().st_mode & 0o777 == 0o644
