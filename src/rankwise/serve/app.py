"""The HTTP app (FastAPI): ``/healthz``, ``/v1/search``, ``/v1/rerank``, ``/v1/ask`` (JSON or Server-Sent Events),
``/metrics``, the MCP mount at ``/mcp`` and the page at ``/``.

Every error is ``{"error": "<field>: <problem>"}`` with a 4xx status for a bad request (malformed JSON, a missing or
unknown field, a value out of range, a body over ``max_body_bytes``: 413), 401 without the bearer token when one
is required, 501 for a stage the server lacks, 503 with ``Retry-After`` when a batch queue is full, and a 5xx with
a one-line message (never a traceback) when the pipeline itself fails. ``/healthz`` and the page need no token;
everything else does when ``api_key`` is set.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rankwise.errors import RankwiseError
from rankwise.serve.batching import Overloaded
from rankwise.serve.mcp_tools import build_mcp
from rankwise.serve.schemas import AskBody, RerankBody, SearchBody
from rankwise.serve.service import BadRequest, NotServed, Service

logger = logging.getLogger("rankwise.serve")
PAGE = Path(__file__).with_name("page.html")
PROTECTED = ("/v1/", "/metrics", "/mcp")
ENDPOINTS = ("/", "/healthz", "/metrics", "/v1/search", "/v1/rerank", "/v1/ask", "/mcp")
DEFAULT_MAX_BODY = 1 << 20


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Gate:
    """Outermost ASGI layer: request metrics, the body size limit and the bearer token, before any route runs."""

    def __init__(self, app: ASGIApp, service: Service, api_key: str | None, max_body_bytes: int) -> None:
        self.app, self.service, self.api_key, self.max_body = app, service, api_key, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        status = [500]
        metrics = self.service.metrics
        metrics.request_started()
        started = time.perf_counter()

        sent = [False]  # the whole response is out

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                sent[0] = True
            await send(message)

        try:
            refusal = self._refuse(scope)
            if refusal is not None:
                await refusal(scope, receive, send_status)
                return
            if scope["method"] not in ("POST", "PUT", "PATCH"):
                await self.app(scope, receive, send_status)
                return
            refusal, replay = await self._read_body(scope, receive)
            if refusal is not None:
                await refusal(scope, receive, send_status)
            elif scope["path"].startswith("/v1/"):
                if await self._until_disconnect(self.app(scope, replay, send_status), receive, lambda: sent[0]):
                    status[0] = 499  # the client went away; its queued model work was dropped
            else:
                await self.app(scope, replay, send_status)
        finally:
            metrics.request_done(endpoint, status[0], time.perf_counter() - started)

    @staticmethod
    async def _until_disconnect(answer: Any, receive: Receive, sent: Callable[[], bool]) -> bool:
        """Run ``answer``; cancel it when the client disconnects before its response is out (so a question whose
        asker has given up leaves the batch queue instead of taking model time). True when that happened.
        ``receive`` is the connection's own: the body was read from it already, so all it can still say is
        ``http.disconnect`` (also said once the response is complete, hence ``sent``)."""
        task = asyncio.ensure_future(answer)

        async def gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        watcher = asyncio.ensure_future(gone())
        try:
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done() and not sent():
                task.cancel()
            watcher.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if not watcher.done() or watcher.cancelled():
                raise  # cancelled from outside, not by the client leaving
            return True
        return False

    def _refuse(self, scope: Scope) -> Response | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key is not None and scope["path"].startswith(PROTECTED):
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
                return _error(401, "authorization: a valid 'Bearer <token>' header is required",
                              {"WWW-Authenticate": "Bearer"})  # fmt: skip
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if scope["method"] == "POST" and scope["path"].startswith("/v1/") and media != "application/json":
            return _error(415, f"content-type: send the body as application/json, not {media or 'nothing'!r}")
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return _error(400, f"content-length: not a number ({length!r})")
            if int(length) > self.max_body:
                return _error(413, f"body: {int(length):,} bytes is over the limit of {self.max_body:,} bytes")
        return None

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[Response | None, Receive]:
        """Read the whole body (bounded), then replay it: a chunked body over the limit is refused too."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _error(400, "body: the client disconnected before sending it"), receive
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return _error(413, f"body: over the limit of {self.max_body:,} bytes"), receive
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return None, replay


_PROBLEMS = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field",
    "string_too_short": "must not be empty",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
}


def _validation_message(exc: RequestValidationError) -> str:
    error = exc.errors()[0]
    loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "str", "DocumentBody")]
    if error.get("type") == "json_invalid":
        detail = (error.get("ctx") or {}).get("error", "")
        return f"body: malformed JSON{f' ({detail})' if detail else ''}"
    field = ".".join(loc) or "body"
    problem = _PROBLEMS.get(error.get("type", ""))
    if problem is None:
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        problem = f"{message[0].lower()}{message[1:]}" if message else "invalid"
        if "input" in error and error.get("type") != "value_error" and not isinstance(error["input"], dict | list):
            shown = repr(error["input"])
            problem += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
    return f"{field}: {problem}"


def create_app(
    service: Service,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    mcp: bool = True,
    host: str = "127.0.0.1",
) -> ASGIApp:
    """The ASGI app serving ``service``; ``mcp`` mounts the MCP tools at ``/mcp`` (streamable HTTP)."""
    mcp_server = None
    if mcp:
        mcp_server = build_mcp(service)
        mcp_app = mcp_server.streamable_http_app(streamable_http_path="/mcp", host=host)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await service.start()
            stack.push_async_callback(service.stop)  # runs after the MCP sessions close: queued work finishes
            if mcp_server is not None:
                await stack.enter_async_context(mcp_server.session_manager.run())
            yield

    app = FastAPI(title="rankwise", lifespan=lifespan, docs_url=None, redoc_url=None)
    if mcp_server is not None:
        app.router.routes.extend(mcp_app.routes)

    _add_error_handlers(app)
    _add_routes(app, service, api_key, mcp_server is not None)
    return Gate(app, service, api_key, max_body_bytes)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": one line}`` with its status: 422 bad input, 501 not served, 502 the pipeline
    failed, 503 overloaded (with Retry-After), 500 a crash (details in the server log only)."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return _error(exc.status_code, f"{request.url.path}: {detail}", getattr(exc, "headers", None))

    @app.exception_handler(RankwiseError)
    async def refused(request: Request, exc: RankwiseError) -> JSONResponse:
        if isinstance(exc, Overloaded):
            return _error(503, str(exc), {"Retry-After": str(exc.retry_after)})
        if isinstance(exc, BadRequest):
            return _error(422, str(exc))
        if isinstance(exc, NotServed):
            return _error(501, str(exc))
        logger.warning("%s %s failed: %s", request.method, request.url.path, exc)
        return _error(502, f"the pipeline failed: {exc}")

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        logger.error("%s %s crashed", request.method, request.url.path, exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")


def _add_routes(app: FastAPI, service: Service, api_key: str | None, mcp: bool) -> None:
    """The HTTP API (health, metrics, search, rerank, ask with optional SSE streaming) and the page."""

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {**service.health(), "auth": api_key is not None, "mcp": "/mcp" if mcp else None}

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        depth = {name: b.queued for name, b in service.batchers.items()}
        rejected = {name: b.stats.rejected for name, b in service.batchers.items()}
        return PlainTextResponse(service.metrics.render(depth, rejected), media_type="text/plain; version=0.0.4")

    @app.post("/v1/search")
    async def search(body: SearchBody) -> dict[str, Any]:
        return await service.search(body.query, body.k)

    @app.post("/v1/rerank")
    async def rerank(body: RerankBody) -> dict[str, Any]:
        texts = body.texts()
        result = await service.rerank(body.query, texts, body.top_n)
        if body.return_documents:
            for item in result["results"]:
                item["document"] = {"text": texts[item["index"]]}
        if body.model is not None:
            result["model"] = body.model
        return result

    @app.post("/v1/ask", response_model=None)
    async def ask(body: AskBody) -> dict[str, Any] | StreamingResponse:
        history = [turn.as_history() for turn in body.history]
        if not body.stream:
            return await service.ask(body.question, body.k, history)
        events = service.ask_events(body.question, body.k, history)
        first = await anext(events)  # errors before the stream starts still get a status code

        async def sse() -> AsyncIterator[str]:
            yield _event(*first)
            try:
                async for name, data in events:
                    yield _event(name, data)
            except RankwiseError as exc:
                yield _event("error", {"error": str(exc)})
            finally:
                await events.aclose()

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(sse(), media_type="text/event-stream", headers=headers)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
