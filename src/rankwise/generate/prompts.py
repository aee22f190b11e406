"""Numbered-evidence prompts: passages shown as ``[1] title: text``, instructions to cite ``[n]`` and to answer
exactly "insufficient context" when the passages do not support an answer.

A :class:`PromptTemplate` is plain data: built-in templates live in :data:`TEMPLATES` (a dict literal), and a
YAML file with any subset of the fields overrides a built-in one (``base: short`` picks which; default
``default``). Placeholders: ``{passages}``, ``{question}``, ``{history}`` in ``user``; ``{number}``, ``{title}``,
``{text}`` in ``passage``; ``{turns}`` in ``history_block``; ``{abstain}`` anywhere in ``system``/``user``.

Conversation history (multi-turn inputs) is shown as a block of earlier turns before the question; turns are
rendered as given (the MT-RAG loader prefixes them with ``user:`` / ``agent:``), the most recent
``max_history_turns`` only, each cut to ``max_turn_words`` words (agent answers are long).

With ``number_sentences`` each passage's lines are treated as its sentences and shown as ``[n.s] sentence``
(both 1-based), so a model can cite single sentences; HotpotQA passages are built one sentence per line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from rankwise.errors import DataError
from rankwise.types import Document

ABSTAIN = "insufficient context"

_SYSTEM = (
    "You answer questions using only the numbered passages you are given. "
    "Cite the passages that support your answer with their numbers in square brackets, like [1] or [2]. "
    'If the passages do not contain the answer, reply exactly "{abstain}" and nothing else.'
)
_USER = (
    "Passages:\n{passages}\n\n{history}Question: {question}\n\n"
    'Answer from the passages and cite them like [1]. If they do not contain the answer, reply "{abstain}".'
)

# Small models follow a short instruction placed right before the answer better than a long system prompt.
_SYSTEM_SHORT = (
    "Answer the question using the numbered passages. Write a short answer, then the number of the "
    'supporting passage in brackets, e.g. [3]. If no passage answers it, write "{abstain}".'
)
_USER_SHORT = (
    "Question: {question}\n\nPassages:\n{passages}\n\n{history}Question: {question}\n"
    "Short answer with [passage number]:"
)
_USER_SENTENCES = _USER_SHORT.replace("[passage number]", "[passage.sentence] numbers")

_SYSTEM_SENTENCES = (
    "Answer the question using the passages. Each sentence is numbered [passage.sentence]. Give a short "
    'answer, then cite every sentence that supports it, like [1.2] [3.1]. If no passage answers it, write "{abstain}".'
)


@dataclass(frozen=True)
class PromptTemplate:
    name: str = "default"
    system: str = _SYSTEM
    user: str = _USER
    passage: str = "[{number}] {title}: {text}"
    passage_untitled: str = "[{number}] {text}"
    history_block: str = "Conversation so far:\n{turns}\n\n"
    number_sentences: bool = False
    max_passage_words: int | None = None
    max_history_turns: int | None = 6
    max_turn_words: int | None = 80
    abstain: str = ABSTAIN
    stop: tuple[str, ...] = ()

    def render_passage(self, number: int, doc: Document) -> str:
        if self.number_sentences:
            lines = [s.strip() for s in doc.text.split("\n")]
            text = " ".join(f"[{number}.{i}] {s}" for i, s in enumerate(lines, start=1))
        else:
            text = " ".join(doc.text.split())
        text = _truncate_words(text, self.max_passage_words)
        pattern = self.passage if doc.title else self.passage_untitled
        return pattern.format(number=number, title=doc.title, text=text)

    def render_history(self, history: Sequence[str]) -> str:
        turns = [_truncate_words(" ".join(t.split()), self.max_turn_words) for t in history if t.strip()]
        if self.max_history_turns is not None:
            turns = turns[-self.max_history_turns :] if self.max_history_turns > 0 else []
        if not turns:
            return ""
        return self.history_block.format(turns="\n".join(turns))

    def messages(
        self, question: str, passages: Sequence[Document], history: Sequence[str] = ()
    ) -> list[dict[str, str]]:
        """Chat messages (system + user) for ``question`` over ``passages`` shown as ``[1]..[n]``."""
        shown = "\n".join(self.render_passage(i, doc) for i, doc in enumerate(passages, start=1))
        user = self.user.format(
            passages=shown or "(no passages)",
            question=question.strip(),
            history=self.render_history(history),
            abstain=self.abstain,
        )
        return [
            {"role": "system", "content": self.system.format(abstain=self.abstain)},
            {"role": "user", "content": user},
        ]


def sentence_counts(passages: Sequence[Document]) -> list[int]:
    """Sentences per passage as the sentence-numbered template shows them (one per line)."""
    return [len(doc.text.split("\n")) for doc in passages]


def messages_to_text(messages: Sequence[dict[str, str]]) -> str:
    """A plain-text rendering for models without a chat template."""
    parts = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(parts) + "\n\nAssistant:"


def _truncate_words(text: str, limit: int | None) -> str:
    if limit is None:
        return text
    words = text.split()
    return text if len(words) <= limit else " ".join(words[:limit]) + " ..."


TEMPLATES: dict[str, PromptTemplate] = {
    "default": PromptTemplate(),
    "short": PromptTemplate(name="short", system=_SYSTEM_SHORT, user=_USER_SHORT),
    "sentences": PromptTemplate(
        name="sentences", system=_SYSTEM_SENTENCES, user=_USER_SENTENCES, number_sentences=True
    ),
}


def load_template(name_or_path: str | Path) -> PromptTemplate:
    """A built-in template by name, or a YAML file of overrides on top of one (``base:``, default ``default``)."""
    key = str(name_or_path)
    if key in TEMPLATES:
        return TEMPLATES[key]
    path = Path(key)
    if not path.is_file():
        raise DataError(path, f"no such prompt template file (built-in templates: {', '.join(TEMPLATES)})")
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DataError(path, f"invalid YAML: {exc}", line=mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise DataError(path, "a prompt template file must be a mapping of field: value")
    base_name = str(data.pop("base", "default"))
    if base_name not in TEMPLATES:
        raise DataError(path, f"field 'base': unknown template '{base_name}' (known: {', '.join(TEMPLATES)})")
    known = {f.name for f in fields(PromptTemplate)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise DataError(path, f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    overrides: dict[str, Any] = dict(data)
    if "stop" in overrides:
        overrides["stop"] = tuple(overrides["stop"] or ())
    overrides.setdefault("name", path.stem)
    template = replace(TEMPLATES[base_name], **overrides)
    for placeholder in ("{passages}", "{question}"):
        if placeholder not in template.user:
            raise DataError(path, f"field 'user' must contain {placeholder}")
    return template
