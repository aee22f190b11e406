"""What every generator shares: prompts in, :class:`Answer` out.

A generator is ``generate(question, passages, history=()) -> Answer`` plus a batched ``generate_batch``.
Backends only implement ``chat(conversations) -> list[str]`` (one completion per chat-message list); this base
class builds the numbered-evidence prompt, applies stop strings and parses citations and abstention.
The same ``chat`` is what the LLM query rewriter (:mod:`rankwise.retrieve.rewrite`) calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from rankwise.generate.answer import Answer
from rankwise.generate.citations import DEFAULT_ABSTAIN_PHRASES, apply_stop_strings, build_answer
from rankwise.generate.prompts import TEMPLATES, PromptTemplate, load_template, sentence_counts
from rankwise.types import Document

Message = dict[str, str]


@dataclass(frozen=True)
class GenerationRequest:
    """One question with the passages to answer from (shown as ``[1]..[n]`` in this order)."""

    question: str
    passages: tuple[Document, ...]
    history: tuple[str, ...] = ()


class ChatModel(Protocol):
    def chat(
        self,
        conversations: Sequence[Sequence[Message]],
        max_new_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> list[str]: ...


class ChatGenerator:
    """Base class: subclasses implement :meth:`chat`; this turns requests into answers."""

    def __init__(
        self,
        template: PromptTemplate | str = "default",
        max_new_tokens: int = 96,
        stop: Sequence[str] = (),
        abstain_phrases: Sequence[str] | None = None,
    ) -> None:
        self.template = template if isinstance(template, PromptTemplate) else load_template(template)
        self.max_new_tokens = max_new_tokens
        self.stop = tuple(stop) + tuple(s for s in self.template.stop if s not in stop)
        phrases = abstain_phrases if abstain_phrases is not None else DEFAULT_ABSTAIN_PHRASES
        if self.template.abstain not in phrases:
            phrases = (self.template.abstain, *phrases)
        self.abstain_phrases = tuple(phrases)

    def chat(
        self,
        conversations: Sequence[Sequence[Message]],
        max_new_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        raise NotImplementedError

    def fit(self, request: GenerationRequest) -> GenerationRequest:
        """Hook for backends with a context limit: return the request with passages that fit (default: all)."""
        return request

    def generate(self, question: str, passages: Sequence[Document], history: Sequence[str] = ()) -> Answer:
        return self.generate_batch([GenerationRequest(question, tuple(passages), tuple(history))])[0]

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Answer]:
        fitted = [self.fit(r) for r in requests]
        conversations = [self.template.messages(r.question, r.passages, r.history) for r in fitted]
        raws = self.chat(conversations, max_new_tokens=self.max_new_tokens, stop=self.stop)
        answers = []
        for original, request, raw in zip(requests, fitted, raws, strict=True):
            passages = request.passages
            answer = build_answer(
                apply_stop_strings(raw, self.stop),
                [p.id for p in passages],
                abstain_phrases=self.abstain_phrases,
                sentence_counts=sentence_counts(passages) if self.template.number_sentences else None,
            )
            answer.meta["passages_shown"] = len(passages)
            if len(passages) < len(original.passages):
                answer.meta["passages_dropped_to_fit"] = len(original.passages) - len(passages)
            answers.append(answer)
        return answers


__all__ = ["TEMPLATES", "ChatGenerator", "ChatModel", "GenerationRequest", "Message"]
