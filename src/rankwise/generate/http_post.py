"""One JSON POST with an overall deadline, shared by the HTTP reranker and generator (built on httpx2).

httpx2's timeouts (like urllib's) bound each socket operation, not the request: a server that trickles one byte
every few seconds never trips them. :func:`post_json` adds one deadline per request: ``timeout`` seconds from the
start for connecting, sending, and receiving the whole reply (status line, headers and body). A watchdog timer
shuts the request's socket down when the deadline passes, which wakes a read or write blocked on it wherever it
is; the body is also read in chunks with the deadline checked between them. Connections are not kept alive, so
each request's socket is a new one, which httpcore2's ``trace`` extension reports as it is opened. Name
resolution happens before there is a socket and is bounded only by the system resolver.

Whatever goes wrong on the wire (no connection, a timeout, the deadline, a reply that is not HTTP or is cut
short) raises :class:`WireError` with a one-line description; callers decide whether to retry and add the URL.
A complete reply of any status is returned as :class:`Reply`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx2

from rankwise.errors import RankwiseError


class WireError(Exception):
    """The request failed on the wire (worth retrying); the message is one line without the URL."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: httpx2.Headers
    body: bytes


def new_client(timeout: float) -> httpx2.Client:
    """A client for :func:`post_json`: per-operation timeouts of ``timeout`` s, no keep-alive, no redirects."""
    return httpx2.Client(timeout=timeout, limits=httpx2.Limits(max_keepalive_connections=0), follow_redirects=False)


def post_json(client: httpx2.Client, url: str, data: bytes, headers: Mapping[str, str], timeout: float) -> Reply:
    """POST ``data`` and read the whole reply within ``timeout`` seconds overall, or raise :class:`WireError`.

    A request that cannot be sent at all (a malformed URL, a header value that is not ASCII) raises
    :class:`RankwiseError` naming the URL: retrying would not help.
    """
    deadline = time.monotonic() + timeout
    late = f"no reply within {timeout:g} s (the whole request, reply included, must finish in that time)"
    watchdog = _Watchdog(timeout)
    watchdog.start()
    try:
        extensions = {"trace": watchdog.trace}
        with client.stream("POST", url, content=data, headers=dict(headers), extensions=extensions) as response:
            chunks = []
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise WireError(late)
            return Reply(response.status_code, response.headers, b"".join(chunks))
    except httpx2.HTTPError as exc:
        if watchdog.fired:
            raise WireError(late) from None
        raise WireError(_describe(exc, timeout)) from None
    except httpx2.InvalidURL as exc:
        raise RankwiseError(f"{url}: not a usable URL: {_one_line(exc)}") from None
    except UnicodeEncodeError as exc:
        raise RankwiseError(f"{url}: a request header is not ASCII ({_one_line(exc)}); check the API key") from None
    finally:
        watchdog.cancel()


def _describe(exc: httpx2.HTTPError, timeout: float) -> str:
    text = _one_line(exc)
    if isinstance(exc, httpx2.TimeoutException):
        return f"no reply within {timeout:g} s ({type(exc).__name__}: {text})"
    if isinstance(exc, httpx2.ConnectError):
        return f"cannot connect: {text}"
    if isinstance(exc, httpx2.RemoteProtocolError | httpx2.DecodingError):
        return f"broken HTTP reply: {text}"
    return f"connection failed: {type(exc).__name__}: {text}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class _Watchdog:
    """Shuts down the sockets one request opened once ``timeout`` seconds have passed (unless cancelled)."""

    def __init__(self, timeout: float) -> None:
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(timeout, self._fire)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._sockets.clear()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        # httpcore2 reports each new TCP or TLS stream as the return value of these two events.
        if event not in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with self._lock:
                self._sockets.append(sock)
                if self.fired:
                    _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # shutdown() (unlike close()) wakes a recv or send blocked on the socket in another thread. The plain socket
    # method is called on TLS sockets too, leaving the TLS object alone while the reading thread still uses it.
    with contextlib.suppress(OSError):  # already closed: the request finished as the deadline passed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
