"""Turn a model's raw output into an :class:`~rankwise.generate.answer.Answer`.

Markers understood: ``[2]``, ``[2, 3]`` / ``[2;3]``, ``[2][3]``, and sentence markers ``[2.3]`` (passage 2,
sentence 3, both 1-based as shown in the prompt). Only ASCII digits make a number (``[５]`` is text, not a
citation). A number outside ``1..len(passages)`` (or a sentence number outside the passage's sentences, when those
counts are known) is dropped and counted, never guessed; so is a number of any length, ``[`` + 5000 digits + ``]``.

Abstention: the answer abstains when its normalised text (lower case, punctuation and extra spaces removed)
contains one of the abstention phrases, "insufficient context" by default.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from rankwise.generate.answer import MARKER, Answer, Citation

DEFAULT_ABSTAIN_PHRASES: tuple[str, ...] = ("insufficient context",)

_MAX_DIGITS = 9  # no passage or sentence number is longer; int() refuses over 4300 digits
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def parse_citations(
    text: str,
    doc_ids: Sequence[str],
    sentence_counts: Sequence[int] | None = None,
) -> tuple[tuple[Citation, ...], int]:
    """Resolve every marker in ``text`` against the passages shown (``doc_ids[i]`` was shown as ``[i+1]``).

    Returns ``(citations, dropped)``: distinct citations in order of first appearance, and how many marker
    numbers were out of range. ``sentence_counts[i]`` (when given) bounds the sentence numbers of passage i.
    """
    if sentence_counts is not None and len(sentence_counts) != len(doc_ids):
        raise ValueError(f"sentence_counts has {len(sentence_counts)} entries for {len(doc_ids)} passages")
    seen: dict[tuple[int, int | None], Citation] = {}
    dropped = 0
    for match in MARKER.finditer(text):
        for item in re.split(r"\s*[,;]\s*", match.group(1).strip()):
            head, _, tail = item.partition(".")
            number = _to_int(head)
            sentence = _to_int(tail) if tail else None
            if number is None or not 1 <= number <= len(doc_ids):
                dropped += 1
                continue
            if tail and (
                sentence is None
                or sentence < 1
                or (sentence_counts is not None and sentence > sentence_counts[number - 1])
            ):
                dropped += 1
                continue
            key = (number, sentence)
            if key not in seen:
                seen[key] = Citation(number=number, doc_id=doc_ids[number - 1], sentence=sentence)
    return tuple(seen.values()), dropped


def _to_int(digits: str) -> int | None:
    """The number ``digits`` spell, or None when it is too long to be any passage or sentence number."""
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= _MAX_DIGITS else None


def normalise_for_phrase(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def is_abstention(text: str, phrases: Sequence[str] = DEFAULT_ABSTAIN_PHRASES) -> bool:
    """True when the normalised ``text`` contains any of the normalised ``phrases``."""
    normalised = f" {normalise_for_phrase(text)} "
    return any(f" {normalise_for_phrase(p)} " in normalised for p in phrases if p.strip())


def apply_stop_strings(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` at the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        if s:
            at = text.find(s)
            if at != -1:
                cut = min(cut, at)
    return text[:cut]


def build_answer(
    raw: str,
    doc_ids: Sequence[str],
    *,
    abstain_phrases: Sequence[str] = DEFAULT_ABSTAIN_PHRASES,
    sentence_counts: Sequence[int] | None = None,
) -> Answer:
    """The :class:`Answer` for a raw model output given the ids of the passages it was shown, in order."""
    text = raw.strip()
    citations, dropped = parse_citations(text, doc_ids, sentence_counts)
    return Answer(
        text=text,
        citations=citations,
        abstained=is_abstention(text, abstain_phrases),
        dropped_citations=dropped,
        raw=raw,
    )
