"""HTTPReranker against a real local HTTP server: request shape, scores by index, retries, clear errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rankwise.errors import RankwiseError
from rankwise.rerank.http import HTTPReranker


class Server:
    """A /rerank endpoint scoring by word overlap; ``script`` queues canned answers to send first."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.script: list[tuple[int, Any]] = []  # (status, body) answers consumed before normal service
        self.delay = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                outer.requests.append(body)
                outer.headers.append(dict(self.headers))
                if outer.delay:
                    threading.Event().wait(outer.delay)
                status, answer = outer.script.pop(0) if outer.script else (200, outer.answer(body))
                payload = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/rerank"

    @staticmethod
    def answer(body: dict[str, Any]) -> dict[str, Any]:
        query = set(body["query"].lower().split())
        scores = [len(query & set(doc.lower().strip(".").split())) for doc in body["documents"]]
        order = sorted(range(len(scores)), key=lambda i: -scores[i])  # results sorted by score, like Cohere
        return {"results": [{"index": i, "relevance_score": float(scores[i])} for i in order]}


@pytest.fixture()
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.httpd.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _client(server: Server, **kwargs: Any) -> HTTPReranker:
    sleeps: list[float] = []
    kwargs.setdefault("sleep", sleeps.append)
    client = HTTPReranker(server.url, show_progress=False, **kwargs)
    client.sleeps = sleeps  # type: ignore[attr-defined]
    return client


def test_rerank_maps_scores_back_by_index(server, toy_corpus, toy_queries, monkeypatch):
    monkeypatch.setenv("TEST_RERANK_KEY", "sekret")
    client = _client(server, model="rerank-v3", api_key_env="TEST_RERANK_KEY")
    run = {"q1": {"d2": 3.0, "d1": 2.0, "d3": 1.0}, "q2": {"d3": 2.0, "d4": 1.0}}
    out = client.rerank(toy_queries, run, toy_corpus, k=10)
    assert out == {"q1": {"d1": 2.0, "d2": 0.0, "d3": 0.0}, "q2": {"d4": 1.0, "d3": 0.0}}
    assert [r["query"] for r in server.requests] == ["why do cats purr", "which animals fly"]
    first = server.requests[0]
    assert first["model"] == "rerank-v3" and first["top_n"] == 3
    assert first["documents"] == [toy_corpus[d].contents for d in ("d2", "d1", "d3")]
    assert server.headers[0]["Authorization"] == "Bearer sekret"


def test_long_candidate_lists_are_split_into_requests(server):
    client = _client(server, max_documents=2)
    pairs = [("cats", f"cats {i}") for i in range(5)] + [("dogs", "dogs")]
    assert client.score(pairs) == [1.0] * 6
    assert [len(r["documents"]) for r in server.requests] == [2, 2, 1, 1]


def test_retries_on_503_and_429_then_succeeds(server):
    server.script = [(503, {"error": "busy"}), (429, {"error": "slow down"})]
    client = _client(server, retries=3, backoff=0.25)
    assert client.score([("cats", "cats purr")]) == [1.0]
    assert len(server.requests) == 3
    assert client.sleeps == [0.25, 0.5]  # exponential backoff


def test_gives_up_after_retries_with_last_error(server):
    server.script = [(500, {"error": "boom"})] * 3
    client = _client(server, retries=2)
    with pytest.raises(RankwiseError, match=r"gave up after 3 attempts.*HTTP 500"):
        client.score([("q", "d")])


def test_client_errors_are_not_retried(server):
    server.script = [(401, {"error": "bad key"})]
    client = _client(server, retries=3)
    with pytest.raises(RankwiseError, match=r"HTTP 401.*bad key"):
        client.score([("q", "d")])
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ("not json", "not JSON"),
        ({"data": []}, "no 'results' list"),
        ({"results": [{"index": 5, "relevance_score": 1.0}]}, "'index' must be an integer in"),
        ({"results": [{"index": 0, "relevance_score": "high"}]}, "finite number"),
        ({"results": []}, "no score for 1 of 1 documents"),
        ({"results": [{"index": 0, "score": 1.0}, {"index": 0, "score": 2.0}]}, "scored twice"),
    ],
)
def test_bad_answers_name_the_url_and_problem(server, answer, problem):
    server.script = [(200, answer)]
    with pytest.raises(RankwiseError, match=problem) as info:
        _client(server).score([("q", "d")])
    assert server.url in str(info.value)


def test_timeout_is_retried(server):
    server.delay = 0.5
    client = _client(server, timeout=0.1, retries=1)
    with pytest.raises(RankwiseError, match="gave up after 2 attempts"):
        client.score([("q", "d")])
    assert len(client.sleeps) == 1


def test_missing_api_key_and_bad_url(server, monkeypatch):
    monkeypatch.delenv("NO_SUCH_RERANK_KEY", raising=False)
    with pytest.raises(RankwiseError, match="NO_SUCH_RERANK_KEY is not set"):
        _client(server, api_key_env="NO_SUCH_RERANK_KEY").score([("q", "d")])
    with pytest.raises(RankwiseError, match="http:// or https://"):
        HTTPReranker("ftp://example.org/rerank")
