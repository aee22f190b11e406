from __future__ import annotations

import pytest

from rankwise.generate.answer import Answer, Citation, strip_citations
from rankwise.generate.citations import (
    apply_stop_strings,
    build_answer,
    is_abstention,
    parse_citations,
)

IDS = ["a", "b", "c"]


def test_markers_resolve_in_order_of_first_appearance_without_duplicates() -> None:
    citations, dropped = parse_citations("X [2] and Y [1][2], also [3, 1].", IDS)
    assert [(c.number, c.doc_id) for c in citations] == [(2, "b"), (1, "a"), (3, "c")]
    assert dropped == 0


def test_out_of_range_markers_are_dropped_and_counted() -> None:
    citations, dropped = parse_citations("[0] [4] [2] [12; 3]", IDS)
    assert [c.number for c in citations] == [2, 3]
    assert dropped == 3


def test_sentence_markers() -> None:
    citations, dropped = parse_citations("Paris [1.2] [3.1] [1.9] [2.0]", IDS, sentence_counts=[3, 1, 1])
    assert [(c.doc_id, c.sentence) for c in citations] == [("a", 2), ("c", 1)]
    assert dropped == 2  # [1.9]: passage 1 has 3 sentences; [2.0]: sentences are 1-based


def test_sentence_counts_must_match_passages() -> None:
    with pytest.raises(ValueError, match="2 entries for 3 passages"):
        parse_citations("[1]", IDS, sentence_counts=[1, 1])


def test_text_without_markers_is_not_a_citation() -> None:
    assert parse_citations("In 1999 [sic] the list [a] grew", IDS) == ((), 0)


def test_strip_citations_tidies_spacing() -> None:
    assert strip_citations("Paris [1], the capital [2][3].") == "Paris, the capital."
    assert strip_citations("  [1] Paris  ") == "Paris"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("insufficient context", True),
        ("Insufficient context.", True),
        ("The passages give INSUFFICIENT   CONTEXT to answer.", True),
        ("insufficient-context", True),
        ("The context is sufficient: Paris [1]", False),
        ("insufficiently contextualised", False),
    ],
)
def test_abstention_detection(text: str, expected: bool) -> None:
    assert is_abstention(text) is expected


def test_custom_abstention_phrases() -> None:
    assert is_abstention("I don't know.", ["I don't know"])
    assert not is_abstention("insufficient context", ["no answer"])


def test_stop_strings_cut_at_the_earliest() -> None:
    assert apply_stop_strings("Paris [1]\n\nQuestion: next", ["Question:", "\n\n"]) == "Paris [1]"
    assert apply_stop_strings("Paris", ["", "zzz"]) == "Paris"


def test_build_answer_and_round_trip() -> None:
    answer = build_answer("  Madrid [2] [9]\n", IDS)
    assert answer.text == "Madrid [2] [9]"
    assert answer.raw == "  Madrid [2] [9]\n"
    assert answer.citations == (Citation(2, "b"),)
    assert answer.dropped_citations == 1
    assert answer.cited_ids == ["b"]
    assert Answer.from_dict(answer.to_dict()) == answer
    with_sentence = Citation(1, "a", sentence=2)
    assert Citation.from_dict(with_sentence.to_dict()) == with_sentence
