"""A client for hosted rerank APIs in the Cohere/Jina style: ``POST {url}`` with a query and documents.

Request body: ``{"model": ..., "query": ..., "documents": [...], "top_n": len(documents)}`` (plus ``extra``).
Expected answer: ``{"results": [{"index": i, "relevance_score": s}, ...]}`` with one result per document
(``score`` is accepted in place of ``relevance_score``). Anything else is a :class:`RankwiseError` naming the URL
and what is wrong. Timeouts, 429 and 5xx answers and faults on the wire (no connection, a reply cut short or not
HTTP at all) are retried with exponential backoff (``Retry-After`` is honoured; a wait is capped at
``max_backoff``); other 4xx answers are not retried.
``timeout`` bounds each attempt as a whole, reply included (see :mod:`rankwise.generate.http_post`), so one call
takes at most ``(retries + 1) * timeout`` seconds plus the backoff sleeps.

The API key is read from the environment variable named by ``api_key_env`` when a request is made (never at
import) and sent as ``Authorization: Bearer``. Built on httpx2.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rankwise.errors import RankwiseError
from rankwise.generate.http_post import WireError, new_client, post_json
from rankwise.rerank.base import Reranker, progress

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class HTTPReranker(Reranker):
    """Rerank through a remote ``/rerank`` endpoint; one request per query and ``max_documents`` documents."""

    def __init__(
        self,
        url: str,
        model: str | None = None,
        api_key_env: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_documents: int = 100,
        extra: Mapping[str, Any] | None = None,
        show_progress: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise RankwiseError(f"rerank URL must start with http:// or https://, not {url!r}")
        if retries < 0 or timeout <= 0 or max_documents < 1:
            raise RankwiseError("retries must be >= 0, timeout > 0 and max_documents >= 1")
        self.url, self.model = url, model
        self.api_key_env = api_key_env
        self.timeout, self.retries, self.backoff, self.max_backoff = timeout, retries, backoff, max_backoff
        self.max_documents = max_documents
        self.extra = dict(extra or {})
        self.show_progress = show_progress
        self._sleep = sleep
        self._client = new_client(timeout)

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        # Pairs arrive grouped by query (see base.collect_candidates); one request per run of equal queries.
        scores: list[float] = []
        with progress(len(pairs), self.show_progress, "HTTP reranking") as advance:
            start = 0
            while start < len(pairs):
                query = pairs[start][0]
                end = start
                while end < len(pairs) and end - start < self.max_documents and pairs[end][0] == query:
                    end += 1
                scores.extend(self.rerank_documents(query, [doc for _, doc in pairs[start:end]]))
                advance(end - start)
                start = end
        return scores

    def rerank_documents(self, query: str, documents: Sequence[str]) -> list[float]:
        """One request: a score per document, in the documents' order."""
        body: dict[str, Any] = {"query": query, "documents": list(documents), "top_n": len(documents)}
        if self.model is not None:
            body["model"] = self.model
        body.update(self.extra)
        answer = self._post(body)
        return self._parse(answer, len(documents))

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise RankwiseError(f"rerank API key: environment variable {self.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post(self, body: dict[str, Any]) -> Any:
        data = json.dumps(body).encode("utf-8")
        last_problem = ""
        for attempt in range(self.retries + 1):
            wait = self.backoff * (2**attempt)
            try:
                reply = post_json(self._client, self.url, data, self._headers(), self.timeout)
            except WireError as exc:
                last_problem = str(exc)
            else:
                if reply.status < 300:
                    return self._json(reply.body)
                detail = " ".join(reply.body[:200].decode("utf-8", "replace").split())
                last_problem = f"HTTP {reply.status}: {detail}"
                if reply.status not in RETRY_STATUS:
                    raise RankwiseError(f"{self.url}: {last_problem}")
                wait = max(wait, _retry_after(reply.headers.get("Retry-After")))
            if attempt < self.retries:
                self._sleep(min(wait, self.max_backoff))
        raise RankwiseError(f"{self.url}: gave up after {self.retries + 1} attempts; last error: {last_problem}")

    def _json(self, raw: bytes) -> Any:
        try:
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise RankwiseError(f"{self.url}: answer is not UTF-8 JSON ({exc.reason} at byte {exc.start})") from None
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, a number too long to convert, deep nesting
            problem = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc).split(";")[0]
            raise RankwiseError(f"{self.url}: answer is not JSON ({problem}): {raw[:200]!r}") from None

    def _parse(self, answer: Any, count: int) -> list[float]:
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list):
            raise RankwiseError(f"{self.url}: answer has no 'results' list: {str(answer)[:200]}")
        scores: list[float | None] = [None] * count
        for position, item in enumerate(results):
            where = f"{self.url}: results[{position}]"
            if not isinstance(item, dict):
                raise RankwiseError(f"{where} is not an object")
            index = item.get("index")
            value = item.get("relevance_score", item.get("score"))
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
                raise RankwiseError(f"{where}: 'index' must be an integer in [0, {count}), got {index!r}")
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise RankwiseError(f"{where}: 'relevance_score' must be a finite number, got {value!r}")
            if scores[index] is not None:
                raise RankwiseError(f"{where}: document {index} scored twice")
            scores[index] = float(value)
        missing = [i for i, value in enumerate(scores) if value is None]
        if missing:
            raise RankwiseError(
                f"{self.url}: no score for {len(missing)} of {count} documents, e.g. index {missing[0]}"
            )
        return [float(value) for value in scores if value is not None]


def _retry_after(value: str | None) -> float:
    try:
        seconds = float(value) if value else 0.0
    except ValueError:
        return 0.0
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0
