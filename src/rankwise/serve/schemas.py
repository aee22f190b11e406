"""Request bodies of the HTTP API (pydantic; unknown fields are refused, so a typo is an error, not ignored)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

MAX_K = 1000  # a hard bound; the pipeline's own depth (Served.max_k) is checked by the service
MAX_DOCUMENTS = 1000
MAX_HISTORY = 50

Text = Annotated[str, StringConstraints(min_length=1, max_length=20_000)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class SearchBody(_Body):
    query: Text
    k: int | None = Field(None, ge=1, le=MAX_K, description="default: 10, or the pipeline's depth when smaller")

    _query = field_validator("query")(_not_blank)


class DocumentBody(_Body):
    text: str = Field(max_length=100_000)


class RerankBody(_Body):
    """Cohere's ``/v1/rerank`` request (``model`` is accepted and reported back, not used to pick a model)."""

    query: Text
    documents: list[Annotated[str, StringConstraints(max_length=100_000)] | DocumentBody] = Field(
        min_length=1, max_length=MAX_DOCUMENTS
    )
    top_n: int | None = Field(None, ge=1)
    model: str | None = None
    return_documents: bool = False

    _query = field_validator("query")(_not_blank)

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class Turn(_Body):
    role: Literal["user", "assistant", "agent"]
    content: str = Field(max_length=20_000)

    def as_history(self) -> str:
        """The ``"user: …"`` / ``"agent: …"`` form rankwise keeps conversation turns in."""
        return f"{'user' if self.role == 'user' else 'agent'}: {self.content}"


class AskBody(_Body):
    question: Text
    k: int | None = Field(None, ge=1, le=MAX_K)
    history: list[Turn] = Field(default_factory=list, max_length=MAX_HISTORY)
    stream: bool = False

    _question = field_validator("question")(_not_blank)
