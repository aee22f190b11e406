"""Turning a conversational question into a search query.

Strategies (:data:`STRATEGIES`, a name → function table):

- ``last_turn``: the user's last question as it stands (pronouns and ellipses unresolved);
- ``full_history``: every user turn so far joined into one query (agent turns too with ``include_agent``);
- ``llm``: a chat model rewrites the last question into a standalone question given the conversation
  (:class:`LLMRewriter`; any object with ``chat(conversations, max_new_tokens, stop) -> list[str]`` works, e.g.
  :class:`~rankwise.generate.local.LocalGenerator` or :class:`~rankwise.generate.http.HTTPGenerator`);
- ``human``: rewrites written by people, looked up by query id (:class:`GivenRewrites`; MT-RAG ships them for
  its original retrieval tasks, see :func:`rankwise.data.mtrag.load_human_rewrites`).

History entries are turns prefixed ``"user: "`` or ``"agent: "`` (as :mod:`rankwise.data.mtrag` writes them);
an entry without a prefix counts as a user turn. Rewritten queries keep their history, so a generator still
sees the conversation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rankwise.errors import DataError, RankwiseError
from rankwise.types import Query

REWRITE_SYSTEM = (
    "Rewrite the user's last question so that it can be understood without the conversation: replace pronouns "
    "and vague references with what they refer to. Reply with the rewritten question only."
)
REWRITE_USER = "Conversation:\n{turns}\n\nLast question: {question}\n\nStandalone question:"
_LEAD_IN = re.compile(r"^\s*(?:standalone question|rewritten question|question|rewrite)\s*:\s*", re.IGNORECASE)


def split_turn(turn: str) -> tuple[str, str]:
    """``"agent: hi"`` → ``("agent", "hi")``; an unprefixed entry is a user turn."""
    head, sep, rest = turn.partition(":")
    speaker = head.strip().lower()
    if sep and speaker in ("user", "agent", "assistant"):
        return ("agent" if speaker == "assistant" else speaker), rest.strip()
    return "user", turn.strip()


def last_turn(query: Query) -> Query:
    """The question as asked."""
    return query


def full_history(query: Query, include_agent: bool = False) -> Query:
    """All user turns (and agent turns with ``include_agent``) followed by the question, as one query."""
    parts = [text for speaker, text in map(split_turn, query.history) if include_agent or speaker == "user"]
    return replace(query, text=" ".join([*parts, query.text.strip()]))


class LLMRewriter:
    """Rewrite conversational questions into standalone ones with a chat model.

    Only the most recent ``max_turns`` turns are shown, each cut to ``max_turn_words`` words (agent answers are
    long; a small model reads a short prompt better). A question without history is kept as is, without a model
    call. An empty rewrite falls back to the question and is counted in ``fallbacks``.
    """

    def __init__(
        self,
        chat_model: Any,
        max_new_tokens: int = 48,
        max_turns: int = 6,
        max_turn_words: int = 60,
        system: str = REWRITE_SYSTEM,
        user: str = REWRITE_USER,
    ) -> None:
        if not callable(getattr(chat_model, "chat", None)):
            raise RankwiseError("LLMRewriter needs a chat model with a chat(conversations, ...) method")
        self.chat_model = chat_model
        self.max_new_tokens = max_new_tokens
        self.max_turns = max_turns
        self.max_turn_words = max_turn_words
        self.system = system
        self.user = user
        self.fallbacks = 0

    def messages(self, query: Query) -> list[dict[str, str]]:
        turns = []
        for speaker, text in map(split_turn, query.history[-self.max_turns :] if self.max_turns else ()):
            words = text.split()
            short = " ".join(words[: self.max_turn_words]) + (" ..." if len(words) > self.max_turn_words else "")
            turns.append(f"{speaker}: {short}")
        user = self.user.format(turns="\n".join(turns), question=query.text.strip())
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    def rewrite(self, queries: Mapping[str, Query]) -> dict[str, Query]:
        """Rewritten queries in input order (history kept)."""
        needing = [qid for qid, q in queries.items() if q.history]
        outputs = self.chat_model.chat(
            [self.messages(queries[qid]) for qid in needing], max_new_tokens=self.max_new_tokens, stop=["\n\n"]
        )
        rewritten = dict(zip(needing, outputs, strict=True))
        result: dict[str, Query] = {}
        for qid, query in queries.items():
            text = clean_rewrite(rewritten[qid]) if qid in rewritten else query.text
            if not text:
                self.fallbacks += 1
                text = query.text
            result[qid] = replace(query, text=text)
        return result


class CachedRewriter:
    """An :class:`LLMRewriter` whose rewrites are kept in a JSONL file (``id``, ``question``, ``rewrite``) and
    reused by later runs (e.g. the same rewrites searched with BM25 and then with a dense retriever).

    A cached rewrite is used only when its question text is unchanged; new rewrites are appended as they come.
    """

    def __init__(self, rewriter: LLMRewriter, path: str | Path, chunk_size: int = 16) -> None:
        from rankwise.data._io import iter_jsonl

        self.rewriter = rewriter
        self.chunk_size = max(1, chunk_size)
        self.path = Path(path)
        self.cache: dict[tuple[str, str], str] = {}
        if self.path.exists():
            for line, record in iter_jsonl(self.path):
                if not all(isinstance(record.get(key), str) for key in ("id", "question", "rewrite")):
                    raise DataError(self.path, "each line needs string fields id, question and rewrite", line=line)
                self.cache[(record["id"], record["question"])] = record["rewrite"]

    def rewrite(self, queries: Mapping[str, Query]) -> dict[str, Query]:
        missing = [(qid, q) for qid, q in queries.items() if (qid, q.text) not in self.cache]
        if missing:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(missing), self.chunk_size):  # saved chunk by chunk: an interrupted run resumes
            chunk = dict(missing[start : start + self.chunk_size])
            fresh = self.rewriter.rewrite(chunk)
            with self.path.open("a", encoding="utf-8") as handle:
                for qid, query in fresh.items():
                    original = chunk[qid].text
                    self.cache[(qid, original)] = query.text
                    record = {"id": qid, "question": original, "rewrite": query.text}
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        return {qid: replace(q, text=self.cache[(qid, q.text)]) for qid, q in queries.items()}


class GivenRewrites:
    """Rewrites that already exist (e.g. a benchmark's human rewrites), as a table query id -> rewritten text.

    Every query must have one: a missing rewrite is an error naming the queries (silently searching with the
    raw question would mix two strategies in one run). ``source`` names where the table came from, for errors.
    """

    def __init__(self, rewrites: Mapping[str, str], source: str = "the given rewrites") -> None:
        self.rewrites = dict(rewrites)
        self.source = source

    def rewrite(self, queries: Mapping[str, Query]) -> dict[str, Query]:
        missing = [qid for qid in queries if not self.rewrites.get(qid, "").strip()]
        if missing:
            raise RankwiseError(
                f"{self.source}: no rewrite for {len(missing)} of {len(queries)} queries (e.g. {missing[0]!r})"
            )
        return {qid: replace(q, text=self.rewrites[qid].strip()) for qid, q in queries.items()}


def clean_rewrite(output: str) -> str:
    """First non-empty line of a model's rewrite, without a lead-in like "Standalone question:" or quotes."""
    for line in output.strip().splitlines():
        line = _LEAD_IN.sub("", line.strip()).strip().strip('"“”').strip()
        if line:
            return line
    return ""


STRATEGIES: dict[str, Callable[[Query], Query]] = {"last_turn": last_turn, "full_history": full_history}
# strategy -> the rewriter class it needs (passed to rewrite_queries as ``rewriter``).
NEEDS_REWRITER: dict[str, type] = {"llm": LLMRewriter, "human": GivenRewrites}


def rewrite_queries(
    queries: Mapping[str, Query],
    strategy: str,
    rewriter: LLMRewriter | CachedRewriter | GivenRewrites | None = None,
) -> dict[str, Query]:
    """Apply a strategy by name (``last_turn``, ``full_history``, ``llm``, ``human``) to every query."""
    if strategy in NEEDS_REWRITER:
        expected = NEEDS_REWRITER[strategy]
        wrong = isinstance(rewriter, GivenRewrites) != (expected is GivenRewrites)
        if rewriter is None or wrong:
            raise RankwiseError(f"the '{strategy}' rewrite strategy needs a {expected.__name__}")
        return rewriter.rewrite(queries)
    if strategy not in STRATEGIES:
        raise RankwiseError(f"unknown rewrite strategy '{strategy}' (known: {', '.join(rewrite_names())})")
    function = STRATEGIES[strategy]
    return {qid: function(q) for qid, q in queries.items()}


def rewrite_names() -> Sequence[str]:
    return (*STRATEGIES, *NEEDS_REWRITER)
