"""The HTTP reranker and generator against servers that misbehave on purpose (issue 20).

Every server here is a raw socket on 127.0.0.1 (port 0) started inside the test: it reads one request per
connection and answers with exactly the bytes a test scripts (a broken status line, a short body, bytes that are
not UTF-8, a reply trickled one byte at a time). Each server accepts a bounded number of connections, gives up
after a bounded time, and stops when the test ends. Retry sleeps are recorded, never slept.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rankwise.errors import RankwiseError
from rankwise.generate.answer import strip_citations
from rankwise.generate.citations import build_answer, parse_citations
from rankwise.generate.http import HTTPGenerationError, HTTPGenerator
from rankwise.rerank.http import HTTPReranker
from rankwise.types import Document

Respond = Callable[[socket.socket, threading.Event], None]
SERVER_LIFETIME_S = 30.0  # a server stops accepting after this long, whatever the test does


class RawServer:
    """Accepts at most ``max_connections`` connections; for each, reads one request and calls ``respond``."""

    def __init__(self, respond: Respond, max_connections: int = 4) -> None:
        self.respond = respond
        self.max_connections = max_connections
        self.connections = 0
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1"
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        give_up = time.monotonic() + SERVER_LIFETIME_S
        while not self.stop.is_set() and time.monotonic() < give_up and self.connections < self.max_connections:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            worker = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self.threads.append(worker)
            worker.start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5.0)
            try:
                _read_request(conn)
                self.respond(conn, self.stop)
            except OSError:
                pass  # the client hung up first: what a deadline is for

    def close(self) -> None:
        self.stop.set()
        self.threads[0].join(timeout=2.0)  # the accept loop polls every 0.05 s
        self.listener.close()
        for thread in self.threads[1:]:
            thread.join(timeout=2.0)


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 1 << 20:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return body


def _http(status: str, body: bytes, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    return head.encode("ascii") + body


def send(payload: bytes) -> Respond:
    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(payload)

    return respond


def trickle(head: bytes, body: bytes, every_s: float = 0.3, max_bytes: int = 40) -> Respond:
    """Send ``head`` at once, then ``body`` one byte every ``every_s`` s (at most ``max_bytes``, then hang up)."""

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(head)
        for byte in body[:max_bytes]:
            conn.sendall(bytes([byte]))
            if stop.wait(every_s):
                return

    return respond


def in_turn(*payloads: bytes) -> Respond:
    """The n-th connection gets ``payloads[n]`` (the last one once they run out)."""
    queue = list(payloads)
    lock = threading.Lock()

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        with lock:
            payload = queue.pop(0) if len(queue) > 1 else queue[0]
        conn.sendall(payload)

    return respond


@pytest.fixture()
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(respond: Respond, max_connections: int = 4) -> RawServer:
        servers.append(RawServer(respond, max_connections))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _reranker(server: RawServer, **kwargs: Any) -> HTTPReranker:
    options: dict[str, Any] = {"retries": 0, "timeout": 5.0, "sleep": lambda s: None, "show_progress": False}
    return HTTPReranker(server.url + "/rerank", **{**options, **kwargs})


def _generator(server: RawServer, **kwargs: Any) -> HTTPGenerator:
    options: dict[str, Any] = {"max_retries": 0, "timeout": 5.0, "sleep": lambda s: None}
    return HTTPGenerator(server.url, "m", **{**options, **kwargs})


def _rerank(client: HTTPReranker) -> list[float]:
    return client.score([("q", "d")])


def _generate(client: HTTPGenerator) -> str:
    return client.chat([[{"role": "user", "content": "q"}]])[0]


RERANK_OK = json.dumps({"results": [{"index": 0, "relevance_score": 1.0}]}).encode()
CHAT_OK = json.dumps({"choices": [{"message": {"role": "assistant", "content": "Paris [1]"}}]}).encode()

# (name, raw reply, what the one-line error must say)
PROTOCOL_FAULTS = [
    ("not-utf8", _http("200 OK", b'{"results": [], "note": "\xff\xfe"}'), r"not (UTF-8|JSON)"),
    ("short-body", _http("200 OK", b'{"results": [', length=500), r"broken HTTP reply"),
    ("bad-status-line", b"HELLO THERE\r\n\r\n", r"broken HTTP reply"),
    ("no-status-line", b"", r"broken HTTP reply|cannot connect|connection"),
    (
        "huge-json-number",
        _http("200 OK", b'{"results": [{"index": 0, "relevance_score": 1' + b"0" * 5000 + b"}]}"),
        r"not JSON",
    ),
    ("deep-json", _http("200 OK", b"[" * 100_000 + b"]" * 100_000), r"not JSON"),
]


@pytest.mark.parametrize(("name", "reply", "problem"), PROTOCOL_FAULTS, ids=[f[0] for f in PROTOCOL_FAULTS])
def test_reranker_protocol_faults_are_one_line_rankwise_errors(serve, name, reply, problem):
    server = serve(send(reply))
    with pytest.raises(RankwiseError, match=problem) as info:
        _rerank(_reranker(server))
    message = str(info.value)
    assert server.url in message and "\n" not in message


@pytest.mark.parametrize(("name", "reply", "problem"), PROTOCOL_FAULTS, ids=[f[0] for f in PROTOCOL_FAULTS])
def test_generator_protocol_faults_are_one_line_rankwise_errors(serve, name, reply, problem):
    server = serve(send(reply))
    with pytest.raises(HTTPGenerationError, match=problem) as info:
        _generate(_generator(server))
    message = str(info.value)
    assert server.url in message and "\n" not in message


def test_protocol_faults_are_retried_like_connection_errors(serve):
    # A truncated reply is a dropped connection: retried with backoff, then reported once.
    server = serve(send(_http("200 OK", b"{", length=50)), max_connections=3)
    sleeps: list[float] = []
    with pytest.raises(RankwiseError, match=r"gave up after 3 attempts.*broken HTTP reply"):
        _rerank(_reranker(server, retries=2, backoff=0.25, sleep=sleeps.append))
    assert sleeps == [0.25, 0.5] and server.connections == 3


def test_a_good_reply_still_parses_through_the_raw_server(serve):
    assert _rerank(_reranker(serve(send(_http("200 OK", RERANK_OK))))) == [1.0]
    assert _generate(_generator(serve(send(_http("200 OK", CHAT_OK))))) == "Paris [1]"


@pytest.mark.parametrize("retry_after", ["1e9", "inf", "nan", "-5"])
def test_reranker_caps_a_hostile_retry_after(serve, retry_after):
    busy = _http("429 Too Many Requests", b"{}").replace(
        b"\r\n\r\n", f"\r\nRetry-After: {retry_after}\r\n\r\n".encode(), 1
    )
    server = serve(in_turn(busy, _http("200 OK", RERANK_OK)))
    sleeps: list[float] = []
    assert _rerank(_reranker(server, retries=1, backoff=0.5, max_backoff=30.0, sleep=sleeps.append)) == [1.0]
    assert sleeps == [30.0 if retry_after == "1e9" else 0.5]


def test_a_key_that_cannot_be_sent_is_a_clear_error(serve, monkeypatch):
    server = serve(send(_http("200 OK", RERANK_OK)))
    monkeypatch.setenv("HOSTILE_RERANK_KEY", "sk-\u2603")
    with pytest.raises(RankwiseError, match=r"not ASCII.*check the API key") as info:
        _rerank(_reranker(server, api_key_env="HOSTILE_RERANK_KEY"))
    assert server.url in str(info.value)
    with pytest.raises(HTTPGenerationError, match=r"not ASCII.*check the API key"):
        _generate(_generator(server, api_key="sk-\u2603"))


# Servers that send one byte every 0.3 s (40 bytes, then hang up): each socket read succeeds well inside the
# timeout, so only an overall deadline stops them. Without one a request takes about 12 s; with one it must end
# within timeout + margin. "body": the headers arrive at once, the body trickles; "status-line": everything does.
TIMEOUT_S = 1.0
MARGIN_S = 1.5
TRICKLES = {
    "body": (_http("200 OK", b"", length=40), b" " * 39 + b"{"),
    "status-line": (b"", _http("200 OK", RERANK_OK)),
}


@pytest.mark.parametrize("reply", TRICKLES.values(), ids=TRICKLES.keys())
def test_reranker_deadline_bounds_a_trickling_server(serve, reply):
    server = serve(trickle(*reply))
    client = _reranker(server, timeout=TIMEOUT_S)
    start = time.monotonic()
    with pytest.raises(RankwiseError, match=r"no reply within 1 s") as info:
        _rerank(client)
    assert time.monotonic() - start < TIMEOUT_S + MARGIN_S
    assert server.url in str(info.value)


@pytest.mark.parametrize("reply", TRICKLES.values(), ids=TRICKLES.keys())
def test_generator_deadline_bounds_a_trickling_server(serve, reply):
    server = serve(trickle(*reply))
    client = _generator(server, timeout=TIMEOUT_S)
    start = time.monotonic()
    with pytest.raises(HTTPGenerationError, match=r"no reply within 1 s") as info:
        _generate(client)
    assert time.monotonic() - start < TIMEOUT_S + MARGIN_S
    assert server.url in str(info.value)


def test_deadline_is_per_attempt_and_attempts_are_retried(serve):
    server = serve(trickle(*TRICKLES["body"]), max_connections=2)
    sleeps: list[float] = []
    client = _generator(server, timeout=TIMEOUT_S, max_retries=1, backoff=0.1, sleep=sleeps.append)
    start = time.monotonic()
    with pytest.raises(HTTPGenerationError, match=r"gave up after 2 attempt\(s\): no reply within 1 s"):
        _generate(client)
    assert time.monotonic() - start < 2 * TIMEOUT_S + MARGIN_S
    assert sleeps == [0.1] and server.connections == 2


def test_null_content_is_an_error_not_an_empty_answer(serve):
    reply = {"choices": [{"message": {"role": "assistant", "content": None}, "finish_reason": "content_filter"}]}
    server = serve(send(_http("200 OK", json.dumps(reply).encode())))
    with pytest.raises(HTTPGenerationError, match=r"content is null.*content_filter") as info:
        _generate(_generator(server))
    assert server.url in str(info.value)


PASSAGES = [Document(f"d{i}", "", f"passage {i}") for i in range(1, 6)]
IDS = [p.id for p in PASSAGES]


def test_a_five_thousand_digit_marker_is_a_dropped_citation_not_a_crash():
    huge = "[" + "7" * 5000 + "]"
    citations, dropped = parse_citations(f"Paris {huge} [2]", IDS)
    assert [c.number for c in citations] == [2] and dropped == 1
    sentence = "[1." + "3" * 5000 + "]"
    assert parse_citations(f"x {sentence}", IDS, [2] * 5) == ((), 1)
    assert build_answer(f"Paris {huge}", IDS).dropped_citations == 1
    padded = "[" + "0" * 5000 + "3]"  # leading zeros do not make a number big
    assert [c.number for c in parse_citations(padded, IDS)[0]] == [3]


def test_only_ascii_digits_are_citation_numbers():
    citations, dropped = parse_citations("Paris [\uff15] and [\u0663] but [5]", IDS)  # full-width 5, Arabic-Indic 3
    assert [c.number for c in citations] == [5] and dropped == 0
    assert strip_citations("Paris [\uff15].") == "Paris [\uff15]."
