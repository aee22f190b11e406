"""A local server that speaks the OpenAI chat-completions protocol, started inside the test (127.0.0.1, port 0).

Tests script it with a queue of replies: each is ``(status, body, headers, delay_s)``; when the queue is empty it
answers ``200`` with ``default_content``. Every request (path, headers, JSON body) is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class FakeOpenAI:
    url: str = ""
    default_content: str = "Paris [1]"
    replies: list[tuple[int, Any, dict[str, str], float]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reply(
        self, status: int = 200, body: Any = None, headers: dict[str, str] | None = None, delay: float = 0.0
    ) -> None:
        self.replies.append((status, body, headers or {}, delay))

    @staticmethod
    def completion(content: str) -> dict[str, Any]:
        return {
            "id": "x",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        }


@pytest.fixture()
def fake_openai() -> Iterator[FakeOpenAI]:
    state = FakeOpenAI()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            with state.lock:
                state.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                scripted = state.replies.pop(0) if state.replies else None
            if scripted is None:
                # Echo which question was asked, so tests can check ordering under concurrency.
                last = body["messages"][-1]["content"]
                content = state.default_content.replace("{last}", last[-40:])
                scripted = (200, state.completion(content), {}, 0.0)
            status, payload, headers, delay = scripted
            if delay:
                time.sleep(delay)
            raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and hung up: expected in the timeout test

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
