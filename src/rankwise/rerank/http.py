"""A client for hosted rerank APIs in the Cohere/Jina style: ``POST {url}`` with a query and documents.

Request body: ``{"model": ..., "query": ..., "documents": [...], "top_n": len(documents)}`` (plus ``extra``).
Expected answer: ``{"results": [{"index": i, "relevance_score": s}, ...]}`` with one result per document
(``score`` is accepted in place of ``relevance_score``). Anything else is a :class:`RankwiseError` naming the URL
and what is wrong. Timeouts, 429 and 5xx answers and connection errors are retried with exponential backoff
(``Retry-After`` is honoured); other 4xx answers are not retried.

The API key is read from the environment variable named by ``api_key_env`` when a request is made (never at
import) and sent as ``Authorization: Bearer``. Built on the standard library (urllib): no extra dependency.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rankwise.errors import RankwiseError
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
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.max_documents = max_documents
        self.extra = dict(extra or {})
        self.show_progress = show_progress
        self._sleep = sleep

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
            request = urllib.request.Request(self.url, data=data, headers=self._headers(), method="POST")
            wait = self.backoff * (2**attempt)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:200].decode("utf-8", "replace")
                last_problem = f"HTTP {exc.code}: {detail}"
                if exc.code not in RETRY_STATUS:
                    raise RankwiseError(f"{self.url}: {last_problem}") from exc
                wait = max(wait, _retry_after(exc.headers.get("Retry-After")))
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last_problem = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            else:
                try:
                    return json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise RankwiseError(f"{self.url}: answer is not JSON ({exc.msg}): {raw[:200]!r}") from exc
            if attempt < self.retries:
                self._sleep(wait)
        raise RankwiseError(f"{self.url}: gave up after {self.retries + 1} attempts; last error: {last_problem}")

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
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0
