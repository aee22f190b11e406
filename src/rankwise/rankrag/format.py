"""How RankRAG blend examples are written: the reranker's and the generator's own prompts, fitted to a token budget.

:class:`Formatter` builds every example's ``(prompt, completion)`` chat messages exactly as the consumers build
theirs: ranking prompts with :func:`rankwise.rerank.llm.ranking_messages`, QA prompts with the generator's template
(:mod:`rankwise.generate.prompts`).

**Token budget** (``max_example_tokens``): a training example longer than the trainer's ``max_length`` is cut at
the end, and trl drops the ones cut before their answer, so they are lost data (session 3's study lost 60% of its
QA examples that way: MT-RAG prompts with six turns of history and five passages run to ~700 tokens). With a
budget set, a QA or retrieval-augmented ranking example that does not fit is rendered again with its passages and
history turns cut to fewer words (x0.75 at a time, down to 8 words each) until prompt + answer fit. What could not
be fitted even so is kept and counted (``over_budget`` in the blend summary), never dropped silently here.
Ranking examples are already bounded by ``max_passage_tokens``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from rankwise.generate.prompts import load_template, messages_to_text
from rankwise.rerank.llm import DEFAULT_TEMPLATE, ranking_messages, truncate_passages
from rankwise.types import Document

Messages = list[dict[str, str]]

RAG_RANKING_USER = (
    "Passages:\n{passages}\n\nFor the question {question}, find all passages relevant to the question. "
    "Answer with their numbers in square brackets, like [1] [3]."
)
SHRINK = 0.75  # words kept per step when an example is over budget
MIN_WORDS = 8  # a passage or history turn is never cut below this many words
CHAT_END_TOKENS = 2  # the end-of-turn marker and newline a chat template puts after the answer


def prompt_text(tokenizer: Any, prompt: Sequence[Mapping[str, str]]) -> str:
    """The prompt as the model sees it: the chat template with the assistant turn opened (plain text without)."""
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True))

    return messages_to_text(prompt)


def example_tokens(tokenizer: Any, prompt: Messages, completion: Messages) -> int:
    """Tokens of prompt + completion as trl trains on them (the chat template's end-of-turn counted)."""
    text = prompt_text(tokenizer, prompt) + completion[0]["content"]
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) + CHAT_END_TOKENS


class Formatter:
    """Builds prompts exactly as the reranker and the generator do, within ``max_example_tokens`` when set."""

    def __init__(self, config: Any, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.max_passage_tokens = config.max_passage_tokens
        self.ranking_template = config.ranking_template or DEFAULT_TEMPLATE
        self.ranking_system = config.ranking_system_prompt
        template = load_template(config.qa_template)
        if config.max_passage_words is not None:
            template = replace(template, max_passage_words=config.max_passage_words)
        self.qa_template = template
        self.list_template = replace(template, number_sentences=False)
        self.contexts = config.contexts
        self.seed = config.seed
        self.variants = config.rag_variants
        self.budget: int | None = getattr(config, "max_example_tokens", None)
        self.shrunk: Counter[str] = Counter()
        self.over_budget: Counter[str] = Counter()

    def rng(self, *parts: object) -> random.Random:
        return random.Random(":".join(str(p) for p in (self.seed, *parts)))

    def ranking(self, question: str, passage: str, relevant: bool) -> tuple[Messages, Messages]:
        (cut,) = truncate_passages(self.tokenizer, [passage], self.max_passage_tokens)
        prompt = ranking_messages(question, cut, self.ranking_template, self.ranking_system)
        return prompt, [{"role": "assistant", "content": "True" if relevant else "False"}]

    def qa(
        self,
        question: str,
        passages: Sequence[Document],
        answer: str,
        cited: Sequence[int] = (),
        sentences: Sequence[tuple[int, int]] = (),
        history: Sequence[str] = (),
    ) -> tuple[Messages, Messages]:
        """``cited``: 1-based passage numbers; ``sentences``: (passage, sentence) 1-based, used when the
        template numbers sentences and they are known."""

        def render(template: Any) -> tuple[Messages, Messages]:
            prompt = template.messages(question, passages, history)
            if template.number_sentences and sentences:
                marks = " ".join(f"[{p}.{s}]" for p, s in sentences)
            else:
                marks = " ".join(f"[{n}]" for n in cited)
            return prompt, [{"role": "assistant", "content": f"{answer.strip()} {marks}".strip()}]

        return self._fit("qa", self.qa_template, render)

    def rag_ranking(
        self, question: str, passages: Sequence[Document], relevant: Sequence[int]
    ) -> tuple[Messages, Messages]:
        def render(template: Any) -> tuple[Messages, Messages]:
            shown = "\n".join(template.render_passage(i, doc) for i, doc in enumerate(passages, start=1))
            prompt = [{"role": "user", "content": RAG_RANKING_USER.format(passages=shown, question=question.strip())}]
            return prompt, [{"role": "assistant", "content": " ".join(f"[{n}]" for n in relevant)}]

        return self._fit("rag_ranking", self.list_template, render)

    def _fit(
        self, kind: str, template: Any, render: Callable[[Any], tuple[Messages, Messages]]
    ) -> tuple[Messages, Messages]:
        """``render(template)``, re-rendered with fewer words per passage and history turn until it fits."""
        example = render(template)
        if self.budget is None or example_tokens(self.tokenizer, *example) <= self.budget:
            return example
        words = template.max_passage_words or 200
        turn_words = template.max_turn_words or 80
        while words > MIN_WORDS or turn_words > MIN_WORDS:
            words = max(MIN_WORDS, int(words * SHRINK))
            turn_words = max(MIN_WORDS, int(turn_words * SHRINK))
            example = render(replace(template, max_passage_words=words, max_turn_words=turn_words))
            if example_tokens(self.tokenizer, *example) <= self.budget:
                self.shrunk[kind] += 1
                return example
        self.over_budget[kind] += 1
        return example

    def retrieved(self, ranked: Sequence[Document], gold_ids: set[str]) -> tuple[list[Document], list[int]]:
        """The first ``contexts`` of ``ranked`` (a retriever's order; gold passages not forced in) and the 1-based
        positions of the gold ones among them."""
        shown = list(ranked[: self.contexts])
        return shown, [i for i, doc in enumerate(shown, start=1) if doc.id in gold_ids]

    def mix(
        self, gold: Sequence[Document], negatives: Sequence[Document], variant: int, *salt: object
    ) -> tuple[list[Document], list[int]]:
        """Gold passages (at most ``contexts - 1`` when negatives exist) plus negatives to ``contexts``, shuffled;
        returns the passages and the 1-based positions of the gold ones. Variant 0 takes the hardest (first)
        negatives; variant ``v > 0`` samples them from the first 30."""
        keep = list(gold[: self.contexts - 1] if negatives else gold[: self.contexts])
        room = self.contexts - len(keep)
        pool = list(negatives[:30])
        picked = pool[:room] if variant == 0 else self.rng(*salt, variant).sample(pool, min(room, len(pool)))
        shown = keep + picked
        self.rng(*salt, variant).shuffle(shown)
        gold_ids = {doc.id for doc in keep}
        return shown, [i for i, doc in enumerate(shown, start=1) if doc.id in gold_ids]
