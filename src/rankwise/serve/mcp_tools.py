"""MCP tools on the official ``mcp`` SDK: ``search`` and ``ask`` over a served pipeline, so an assistant can use a
rankwise index as its retrieval.

:func:`build_mcp` makes the server; ``rankwise serve`` mounts it at ``/mcp`` (streamable HTTP) and ``rankwise mcp``
runs it on stdio (:func:`run_stdio`). The tools call the same :class:`~rankwise.serve.service.Service` as the HTTP
API (same batching, same results). Arguments are typed, so the SDK publishes their JSON schema and checks them; a
request the pipeline refuses (``k`` deeper than it ranks, no generator, a full queue) comes back as a tool error
with the reason.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from rankwise.errors import RankwiseError
from rankwise.serve.schemas import MAX_K
from rankwise.serve.service import Service


class Passage(BaseModel):
    id: str
    title: str
    text: str
    score: float
    rank: int = Field(description="1-based position in the final ranking")
    first_stage_rank: int | None = Field(description="1-based position before reranking")


class SearchResult(BaseModel):
    results: list[Passage]
    latency_ms: dict[str, float]


class Citation(BaseModel):
    n: int = Field(description="the [n] marker: passages[n-1]")
    id: str


class AskResult(BaseModel):
    answer: str
    citations: list[Citation]
    abstained: bool = Field(description="the model said the passages do not support an answer")
    passages: list[Passage]
    latency_ms: dict[str, float]


def build_mcp(service: Service) -> Any:
    """The MCP server (``mcp.server.MCPServer``) with the ``search`` and ``ask`` tools of ``service``."""
    from mcp.server import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    info = service.served.info
    server = MCPServer(
        "rankwise",
        instructions=(
            f"Search and question answering over {len(service.pipeline.corpus):,} documents "
            f"({info.get('source', 'a rankwise index')}; stages: {', '.join(info.get('stages', []))}). "
            "Use `search` for ranked passages, `ask` for an answer citing them as [n]."
        ),
        log_level="WARNING",
    )

    @server.tool()
    async def search(
        query: Annotated[str, Field(min_length=1, description="what to look for")],
        k: Annotated[int | None, Field(ge=1, le=MAX_K, description="how many passages to return (default: 10)")] = None,
    ) -> SearchResult:
        """Rank the indexed documents for a query (first stage, then the reranker when the server has one)."""
        try:
            return SearchResult.model_validate(await service.search(query, k))
        except RankwiseError as exc:
            raise ToolError(str(exc)) from exc

    @server.tool()
    async def ask(
        question: Annotated[str, Field(min_length=1, description="the question to answer")],
        k: Annotated[
            int | None, Field(ge=1, le=MAX_K, description="passages the answer may use (default: the server's)")
        ] = None,
    ) -> AskResult:
        """Answer a question from the best passages, citing them as [n]; says so when they do not suffice."""
        try:
            return AskResult.model_validate(await service.ask(question, k))
        except RankwiseError as exc:
            raise ToolError(str(exc)) from exc

    return server


async def run_stdio(service: Service) -> None:
    """Serve the tools on stdin/stdout until the client closes them."""
    server = build_mcp(service)
    await service.start()
    try:
        await server.run_stdio_async()
    finally:
        await service.stop()
