from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rankwise.errors import DataError
from rankwise.generate.prompts import TEMPLATES, PromptTemplate, load_template, messages_to_text, sentence_counts
from rankwise.types import Document

DOCS = [Document("d1", "Paris", "Paris is the capital.\nIt is in France."), Document("d2", "", "Untitled   text.")]


def test_default_prompt_numbers_passages_and_states_the_rules() -> None:
    system, user = TEMPLATES["default"].messages("Capital of France?", DOCS)
    assert system["role"] == "system" and user["role"] == "user"
    assert "[1]" in system["content"] and '"insufficient context"' in system["content"]
    assert "[1] Paris: Paris is the capital. It is in France.\n[2] Untitled text." in user["content"]
    assert "Question: Capital of France?" in user["content"]
    assert "Conversation so far" not in user["content"]


def test_history_is_shown_recent_turns_only_and_cut() -> None:
    template = replace(TEMPLATES["default"], max_history_turns=2, max_turn_words=3)
    history = ["user: first question", "agent: a very long answer indeed", "user: second one"]
    user = template.messages("And then?", DOCS, history)[1]["content"]
    assert "Conversation so far:\nagent: a very ...\nuser: second one\n\nQuestion: And then?" in user
    assert "first question" not in user


def test_sentence_numbering_and_counts() -> None:
    user = TEMPLATES["sentences"].messages("q", DOCS)[1]["content"]
    assert "[1] Paris: [1.1] Paris is the capital. [1.2] It is in France." in user
    assert sentence_counts(DOCS) == [2, 1]


def test_passages_are_cut_to_max_words() -> None:
    template = replace(TEMPLATES["default"], max_passage_words=3)
    assert template.render_passage(1, DOCS[0]) == "[1] Paris: Paris is the ..."


def test_no_passages_is_explicit() -> None:
    assert "(no passages)" in TEMPLATES["default"].messages("q", [])[1]["content"]


def test_plain_text_rendering() -> None:
    text = messages_to_text([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert text == "System: S\n\nUser: U\n\nAssistant:"


def test_yaml_template_overrides_a_builtin(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text('base: short\nsystem: "Say {abstain} if unsure."\nabstain: no idea\nstop: ["\\n"]\n')
    template = load_template(path)
    assert isinstance(template, PromptTemplate)
    assert template.name == "mine"
    assert template.user == TEMPLATES["short"].user
    assert template.stop == ("\n",)
    assert template.messages("q", DOCS)[0]["content"] == "Say no idea if unsure."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour: red\n", "unknown field"),
        ("base: nope\n", "unknown template 'nope'"),
        ("user: 'no placeholders'\n", "must contain {passages}"),
        ("- a list\n", "must be a mapping"),
        ("system: [unclosed\n", "invalid YAML"),
    ],
)
def test_bad_template_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        load_template(path)
    assert str(path) in str(info.value)


def test_unknown_template_name() -> None:
    with pytest.raises(DataError, match="built-in templates: default, short, sentences"):
        load_template("fancy")
