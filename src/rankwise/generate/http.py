"""Generation through an OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp's server, TGI, OpenAI...).

``HTTPGenerator(base_url="http://127.0.0.1:8000/v1", model="Qwen/Qwen2.5-0.5B-Instruct")`` posts
``{"model", "messages", "max_tokens", "temperature": 0, "stop"}`` to ``<base_url>/chat/completions`` and reads
``choices[0].message.content``. Standard library only (urllib), so it adds no dependency.

Failures: connection errors, timeouts and HTTP 408/409/429/5xx are retried with exponential backoff (a numeric
``Retry-After`` is honoured, capped at ``max_backoff``); other HTTP errors and malformed replies raise
:class:`HTTPGenerationError` at once, naming the URL, the status and the start of the server's reply.
The API key is passed in explicitly (the CLI reads it from an environment variable the user names).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rankwise.errors import RankwiseError
from rankwise.generate.base import ChatGenerator, Message
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
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = _excerpt(exc.read())
            if exc.code in RETRY_STATUS:
                raise _Retryable(f"HTTP {exc.code}: {detail}", _retry_after(exc.headers)) from None
            hint = " (check the API key)" if exc.code in (401, 403) else ""
            raise HTTPGenerationError(f"{self.url}: HTTP {exc.code}{hint}: {detail}") from None
        except TimeoutError as exc:
            raise _Retryable(f"no reply within {self.timeout:g} s ({exc})") from None
        except urllib.error.URLError as exc:
            raise _Retryable(f"cannot connect: {exc.reason}") from None
        except (ConnectionError, OSError) as exc:
            raise _Retryable(f"connection failed: {exc}") from None
        return self._parse(raw)

    def _parse(self, raw: bytes) -> str:
        try:
            reply = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise HTTPGenerationError(f"{self.url}: reply is not JSON: {_excerpt(raw)}") from None
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise HTTPGenerationError(f"{self.url}: reply has no choices[0].message.content: {_excerpt(raw)}") from None
        if content is None:
            return ""
        if not isinstance(content, str):
            raise HTTPGenerationError(f"{self.url}: choices[0].message.content is not a string: {_excerpt(raw)}")
        return content


def _excerpt(raw: bytes, limit: int = 300) -> str:
    text = raw.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
