"""Fixtures for the serving tests: a toy BM25 index and a scripted OpenAI-compatible model server (127.0.0.1)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import DOCS, ScriptedLLM


@pytest.fixture(scope="module")
def scripted_llm_server() -> Iterator[ScriptedLLM]:
    state = ScriptedLLM()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            with state.lock:
                state.requests.append(body)
            if state.delay:
                time.sleep(state.delay)
            content = state.answer_for(body["messages"][-1]["content"])
            payload: Any = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
            if state.status != 200:
                payload = {"error": "scripted failure"}
            raw = json.dumps(payload).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def scripted_llm(scripted_llm_server: ScriptedLLM) -> ScriptedLLM:
    """The module's scripted model, reset to answer at once and successfully."""
    scripted_llm_server.delay, scripted_llm_server.status = 0.0, 200
    with scripted_llm_server.lock:
        scripted_llm_server.requests.clear()
    return scripted_llm_server


@pytest.fixture(scope="session")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``corpus`` (a BEIR corpus.jsonl of :data:`DOCS`) and ``index`` (its BM25 index)."""
    from rankwise.retrieve.bm25 import BM25Retriever

    root = tmp_path_factory.mktemp("serve-toy")
    corpus = root / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in DOCS), encoding="utf-8"
    )
    retriever = BM25Retriever(show_progress=False)
    retriever.index({d.id: d for d in DOCS})
    retriever.save(root / "bm25")
    return {"corpus": corpus, "index": root / "bm25"}
