"""What a generator returns: the answer text, the passages it cites, and whether it abstained.

A :class:`Citation` points at a passage by the number it was shown under in the prompt (``[2]`` is the second
passage, 1-based) and carries that passage's document id; ``[2.3]`` also names the passage's third sentence
(1-based, as shown by the sentence-numbered template). ``Answer.text`` keeps the markers as the model wrote
them; :attr:`Answer.plain_text` drops them for EM/F1 scoring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# A citation marker: [2], [2, 3], [2;3], [2.3] (passage 2, sentence 3). See rankwise.generate.citations.
_NUMBER = r"[0-9]+(?:\.[0-9]+)?"  # not \d, which matches every script's digits (int() reads them too)
MARKER = re.compile(rf"\[\s*({_NUMBER}(?:\s*[,;]\s*{_NUMBER})*)\s*\]")


def strip_citations(text: str) -> str:
    """``text`` without citation markers; spaces left before punctuation and doubled spaces are tidied."""
    out = MARKER.sub(" ", text)
    out = re.sub(r"[ \t]+([.,;:!?])", r"\1", out)
    out = re.sub(r"[ \t]{2,}", " ", out)
    return out.strip()


@dataclass(frozen=True)
class Citation:
    """One ``[n]`` (or ``[n.s]``) marker resolved to a document id."""

    number: int
    doc_id: str
    sentence: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"number": self.number, "doc_id": self.doc_id}
        if self.sentence is not None:
            out["sentence"] = self.sentence
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Citation:
        return cls(int(data["number"]), str(data["doc_id"]), data.get("sentence"))


@dataclass(frozen=True)
class Answer:
    """A generated answer.

    ``citations`` are in order of first appearance, without duplicates; ``dropped_citations`` counts markers
    that named no shown passage (``[7]`` when five were shown) and were therefore discarded. ``raw`` is the
    model output before any clean-up (stop strings already applied).
    """

    text: str
    citations: tuple[Citation, ...] = ()
    abstained: bool = False
    dropped_citations: int = 0
    raw: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def cited_ids(self) -> list[str]:
        """Distinct cited document ids in order of first citation."""
        return list(dict.fromkeys(c.doc_id for c in self.citations))

    @property
    def plain_text(self) -> str:
        """The answer without citation markers and surrounding whitespace (what EM/F1 score)."""
        return strip_citations(self.text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "citations": [c.to_dict() for c in self.citations],
            "abstained": self.abstained,
            "dropped_citations": self.dropped_citations,
            "raw": self.raw,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Answer:
        return cls(
            text=str(data["text"]),
            citations=tuple(Citation.from_dict(c) for c in data.get("citations", [])),
            abstained=bool(data.get("abstained", False)),
            dropped_citations=int(data.get("dropped_citations", 0)),
            raw=str(data.get("raw", "")),
        )
