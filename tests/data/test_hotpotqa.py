"""HotpotQA: the real train-100 file (checked against its own title->sentences corpus) and small fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankwise.data import HotpotExample, load_dataset, load_hotpotqa
from rankwise.data.hotpotqa import hotpotqa_dataset
from rankwise.errors import DataError
from rankwise.types import Document


def example(qid: str, question: str, context: list, facts: list, **extra: object) -> dict:
    return {
        "_id": qid,
        "question": question,
        "answer": "yes",
        "supporting_facts": facts,
        "context": context,
        "type": "bridge",
        "level": "easy",
        **extra,
    }


def test_real_examples(hotpotqa_file: Path) -> None:
    examples = load_hotpotqa(hotpotqa_file)
    assert len(examples) == 100
    first = examples[0]
    assert first.id == "5a77ec115542992a6e59dff7"
    assert first.question == "If Gallu is a demon Lilu is what?"
    assert first.answer == "a spirit"
    assert first.supporting_facts == [("Alû", 3), ("Lilu (mythology)", 0)]
    assert first.context[0][0] == "Demon Dice"
    assert (first.type, first.level) == ("bridge", "easy")


def test_real_dataset_matches_its_published_corpus(hotpotqa_file: Path) -> None:
    # the directory also holds hotpotqa_train_corpus.json, which is not a question file
    dataset = load_dataset(hotpotqa_file.parent)
    assert dataset.stats() == {"documents": 994, "queries": 100, "judged_queries": 100, "qrels": 200}
    assert dataset.warnings == []
    corpus = json.loads((hotpotqa_file.parent / "hotpotqa_train_corpus.json").read_text(encoding="utf-8"))
    assert {d.id: d.text for d in dataset.corpus.values()} == {t: "".join(s) for t, s in corpus.items()}
    assert dataset.qrels["5a77ec115542992a6e59dff7"] == {"Alû": 1, "Lilu (mythology)": 1}
    doc = dataset.corpus["Demon Dice"]
    assert doc.title == "Demon Dice"
    assert doc.text.startswith("Demon Dice, originally published as Chaos Progenitus, is a collectible dice game")
    assert "Tim Brown. In it, each player controls a demon" in doc.text  # sentences keep their own spaces


def test_repeated_titles_dedupe_or_disambiguate(tmp_path: Path) -> None:
    items = [
        example("a", "q one", [["T", ["One.", " Two."]], ["U", ["u."]]], [["T", 0]]),
        example("b", "q two", [["T", ["One.", " Two."]], ["V", ["v."]]], [["T", 1], ["V", 0]]),
        example("c", "q three", [["T", ["Other text."]], ["U", ["u."]]], [["T", 0], ["U", 0]]),
    ]
    path = tmp_path / "h.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    dataset = load_dataset(path)
    assert dataset.corpus == {
        "T": Document("T", "T", "One. Two."),
        "U": Document("U", "U", "u."),
        "V": Document("V", "V", "v."),
        "T (2)": Document("T (2)", "T", "Other text."),
    }
    assert dataset.qrels == {"a": {"T": 1}, "b": {"T": 1, "V": 1}, "c": {"T (2)": 1, "U": 1}}
    assert dataset.warnings == [f"{path}: 1 paragraphs reuse a title with different text, renamed (e.g. T (2))"]


def test_unknown_supporting_title_and_empty_question_are_counted() -> None:
    examples = [
        HotpotExample("a", "q", "x", [("Missing", 0), ("T", 0)], [("T", ["t."])]),
        HotpotExample("b", "  ", "x", [("T", 0)], [("T", ["t."])]),
    ]
    dataset = hotpotqa_dataset(examples, source="h.json")
    assert list(dataset.queries) == ["a"]
    assert dataset.qrels == {"a": {"T": 1}}
    assert "h.json: 1 questions have empty text, skipped (e.g. b)" in dataset.warnings
    assert any("1 supporting facts name a title missing" in w and "Missing" in w for w in dataset.warnings)


def test_jsonl_and_test_set_records_without_answers(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    lines = [
        {"_id": "a", "question": "q?", "context": [["T", ["t."]]]},
        example("b", "r?", [["U", ["u."]]], []),
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    examples = load_hotpotqa(path)
    assert examples[0] == HotpotExample("a", "q?", None, [], [("T", ["t."])], None, None)
    assert load_dataset(path).stats() == {"documents": 2, "queries": 2, "judged_queries": 0, "qrels": 0}


@pytest.mark.parametrize(
    ("second", "problem"),
    [
        ('{"_id": "b", "context": []}', "field 'question' must be a string, found missing"),
        (
            '{"_id": "b", "question": "q", "context": [["T", "not a list"]]}',
            "context[0] must be [title, [sentence",
        ),
        (
            '{"_id": "b", "question": "q", "context": [], "supporting_facts": [["T", "0"]]}',
            "supporting_facts[0]",
        ),
        ('{"_id": "a", "question": "q", "context": []}', "duplicate _id 'a' (first on line 2)"),
        ("7", "expected a question object, found int"),
    ],
)
def test_bad_records_name_their_line(tmp_path: Path, second: str, problem: str) -> None:
    path = tmp_path / "h.json"
    path.write_text('[\n{"_id": "a", "question": "q", "context": [["T", ["t"]]]},\n' + second + "\n]\n")
    with pytest.raises(DataError) as info:
        load_hotpotqa(path)
    assert info.value.line == 3
    assert problem in info.value.problem


def test_malformed_json_names_line(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    path.write_text('[\n{"_id": "a", "question": "q", "context": []},\n{"_id": "b",, }\n]\n')
    with pytest.raises(DataError, match=r"h\.json, line 3: malformed JSON"):
        load_hotpotqa(path)


def test_empty_file_and_directory_without_questions(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    path.write_text("[]")
    with pytest.raises(DataError, match="no questions found"):
        load_hotpotqa(path)
    path.unlink()
    (tmp_path / "corpus.json").write_text('{"T": ["t."]}')
    with pytest.raises(DataError, match="no HotpotQA JSON file"):
        load_hotpotqa(tmp_path)
