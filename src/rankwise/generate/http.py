"""Generation through an OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp's server, TGI, OpenAI...).

``HTTPGenerator(base_url="http://127.0.0.1:8000/v1", model="Qwen/Qwen2.5-0.5B-Instruct")`` posts
``{"model", "messages", "max_tokens", "temperature": 0, "stop"}`` to ``<base_url>/chat/completions`` and reads
``choices[0].message.content``. Built on httpx2.

Failures: faults on the wire (no connection, a reply cut short or not HTTP at all), timeouts and HTTP
408/409/429/5xx are retried with exponential backoff (a numeric ``Retry-After`` is honoured, capped at
``max_backoff``); other HTTP errors and malformed replies (``content: null`` included) raise
:class:`HTTPGenerationError` at once, naming the URL, the status and the start of the server's reply.
``timeout`` bounds each attempt as a whole, reply included (see :mod:`rankwise.generate.http_post`), so one completion
takes at most ``(max_retries + 1) * timeout`` seconds plus the backoff sleeps.
The API key is passed in explicitly (the CLI reads it from an environment variable the user names).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rankwise.errors import RankwiseError
from rankwise.generate.base import ChatGenerator, Message
from rankwise.generate.http_post import WireError, new_client, post_json
from rankwise.generate.prompts import PromptTemplate

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_STOP_STRINGS = 4  # the OpenAI API accepts at most four


class HTTPGenerationError(RankwiseError):
    """The generation endpoint failed or answered something that is not a chat completion."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def chat_completions_url(base_url: str) -> str:
    """``http://host:8000/v1`` → ``http://host:8000/v1/chat/completions`` (a full URL is kept as is)."""
    url = base_url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise HTTPGenerationError(f"{base_url!r}: the endpoint must be an http:// or https:// URL")
    return url if url.endswith("/chat/completions") else f"{url}/chat/completions"


class HTTPGenerator(ChatGenerator):
    """``generate(question, passages, history=()) -> Answer`` served by a remote chat-completions endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        template: PromptTemplate | str = "default",
        max_new_tokens: int = 96,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        concurrency: int = 4,
        abstain_phrases: Sequence[str] | None = None,
        extra_body: dict[str, Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(template, max_new_tokens, stop, abstain_phrases)
        self.url = chat_completions_url(base_url)
        self.model = model
        self.api_key = api_key
        self.temperature = temperature
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.concurrency = max(1, concurrency)
        self.extra_body = dict(extra_body or {})
        self._sleep = sleep
        self._client = new_client(timeout)

    def chat(
        self,
        conversations: Sequence[Sequence[Message]],
        max_new_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """One completion per conversation, in input order (requests run ``concurrency`` at a time)."""
        stop_list = [s for s in (stop if stop is not None else self.stop) if s][:MAX_STOP_STRINGS]
        bodies = [self._body(c, max_new_tokens or self.max_new_tokens, stop_list) for c in conversations]
        if len(bodies) <= 1 or self.concurrency == 1:
            return [self._complete(b) for b in bodies]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._complete, bodies))

    def _body(self, messages: Sequence[Message], max_tokens: int, stop: list[str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in messages],
            "max_tokens": max_tokens,
            "temperature": self.temperature,
        }
        if stop:
            body["stop"] = stop
        body.update(self.extra_body)
        return body

    def _complete(self, body: dict[str, Any]) -> str:
        attempt = 0
        while True:
            try:
                return self._post_once(body)
            except _Retryable as exc:
                if attempt >= self.max_retries:
                    raise HTTPGenerationError(f"{self.url}: gave up after {attempt + 1} attempt(s): {exc}") from None
                delay = min(self.max_backoff, self.backoff * (2**attempt))
                if exc.retry_after is not None:
                    delay = min(self.max_backoff, max(delay, exc.retry_after))
                self._sleep(delay)
                attempt += 1

    def _post_once(self, body: dict[str, Any]) -> str:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            reply = post_json(self._client, self.url, data, headers, self.timeout)
        except WireError as exc:
            raise _Retryable(str(exc)) from None
        except RankwiseError as exc:  # a request that cannot be sent (bad URL, non-ASCII key): not retried
            raise HTTPGenerationError(str(exc)) from None
        if reply.status >= 300:
            detail = _excerpt(reply.body)
            if reply.status in RETRY_STATUS:
                raise _Retryable(f"HTTP {reply.status}: {detail}", _retry_after(reply.headers))
            hint = " (check the API key)" if reply.status in (401, 403) else ""
            raise HTTPGenerationError(f"{self.url}: HTTP {reply.status}{hint}: {detail}")
        return self._parse(reply.body)

    def _parse(self, raw: bytes) -> str:
        try:
            reply = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):  # not UTF-8, not JSON, a number too long to convert, deep nesting
            raise HTTPGenerationError(f"{self.url}: reply is not JSON: {_excerpt(raw)}") from None
        try:
            message = reply["choices"][0]["message"]
            content = message["content"]
        except (KeyError, IndexError, TypeError):
            raise HTTPGenerationError(f"{self.url}: reply has no choices[0].message.content: {_excerpt(raw)}") from None
        if content is None:
            # An error, not an abstention nor an empty answer. The server sends null content when the model
            # produced no text: a tool call, a refusal (``message.refusal``) or a content filter. An abstention is
            # the model's own judgement that the passages do not answer the question; counting a server-side
            # non-answer as one would inflate abstention scores, and as "" it would silently score as a wrong
            # answer. Not retried: at temperature 0 the same request gets the same reply.
            choice = reply["choices"][0]
            why = choice.get("finish_reason") if isinstance(choice, dict) else None
            refusal = message.get("refusal") if isinstance(message, dict) else None
            detail = f"finish_reason {why!r}" + (f", refusal {str(refusal)[:200]!r}" if refusal else "")
            raise HTTPGenerationError(f"{self.url}: choices[0].message.content is null ({detail}): no answer text")
        if not isinstance(content, str):
            raise HTTPGenerationError(f"{self.url}: choices[0].message.content is not a string: {_excerpt(raw)}")
        return content


def _excerpt(raw: bytes, limit: int = 300) -> str:
    text = " ".join(raw.decode("utf-8", errors="replace").split())  # one line, whatever the server sent
    return text if len(text) <= limit else text[:limit] + "..."


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
