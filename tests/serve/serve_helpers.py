"""Shared pieces of the serving tests (a module of its own: ``conftest`` is not importable by name).

Everything listens on 127.0.0.1 on a free port. The scripted model answers from the prompt it gets: the first
words of passage [1] with a ``[1]`` citation, or ``insufficient context`` when the question mentions the moon, so a
test can predict the answer, its citation and an abstention.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rankwise.serve.app import create_app
from rankwise.serve.parts import from_flags
from rankwise.serve.service import ServeSettings, Service
from rankwise.types import Document

DOCS = [
    Document("d1", "Cats", "Cats purr when they are content and sleep all day."),
    Document("d2", "Dogs", "Dogs bark at the postman and chase cats."),
    Document("d3", "", "Fish swim in water and breathe through gills."),
    Document("d4", "Birds", "Birds sing in the morning and fly south in winter."),
    Document("d5", "Purring", "Purring is a sound cats make; big cats roar instead of purring."),
    Document("d6", "Whales", "Whales are mammals that sing long songs under water."),
]


@dataclass
class ScriptedLLM:
    """Answers ``<first 4 words of passage 1> [1].``; ``delay`` seconds per reply; ``status`` to fail."""

    url: str = ""
    delay: float = 0.0
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def answer_for(prompt: str) -> str:
        question = prompt.rsplit("Question:", 1)[-1]
        if "moon" in question.lower():
            return "insufficient context"
        first = re.search(r"^\[1\] (?:[^:\n]*: )?(.*)$", prompt, flags=re.MULTILINE)
        words = first.group(1).split()[:4] if first else ["nothing"]
        return " ".join(words) + " [1]."


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def live(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1 in a thread; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def build(toy, reranker=None, llm=None, settings: ServeSettings | None = None, **options) -> Any:
    """The app ``rankwise serve --index --corpus [--reranker cross-encoder] [--generator URL]`` serves (no MCP)."""
    flags: dict[str, Any] = {"candidates": 6, "k": 3}
    if reranker is not None:
        flags.update(reranker="cross-encoder", reranker_model=str(reranker))
    if llm is not None:
        flags.update(generator=llm.url, generator_model="scripted")
    served = from_flags([toy["index"]], toy["corpus"], log=lambda message: None, **flags)
    return create_app(Service(served, settings or ServeSettings()), mcp=False, **options)
