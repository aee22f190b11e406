"""The MCP tools through the official SDK's client: in process, over the server's streamable-HTTP mount (with the
bearer token) and over stdio from ``rankwise mcp``."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx2
from serve_helpers import live

from rankwise.serve.app import create_app
from rankwise.serve.mcp_tools import build_mcp
from rankwise.serve.parts import from_flags
from rankwise.serve.service import Service

SRC = str(Path(__file__).resolve().parents[2] / "src")


def service_for(toy, llm) -> Service:
    served = from_flags(
        [toy["index"]], toy["corpus"], generator=llm.url, generator_model="scripted", k=2, log=lambda m: None
    )
    return Service(served)


async def exercise(client) -> dict:
    """List the tools and call each; returns what a test checks."""
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    searched = await client.call_tool("search", {"query": "why do cats purr", "k": 3})
    asked = await client.call_tool("ask", {"question": "why do cats purr"})
    too_deep = await client.call_tool("search", {"query": "cats", "k": 500})
    bad_type = await client.call_tool("search", {"query": "cats", "k": "three"})
    return {"tools": tools, "search": searched, "ask": asked, "too_deep": too_deep, "bad_type": bad_type}


def check(seen: dict) -> None:
    tools = seen["tools"]
    assert set(tools) == {"search", "ask"}
    schema = tools["search"].input_schema
    assert schema["required"] == ["query"] and "k" in schema["properties"]
    assert "question" in tools["ask"].input_schema["required"]
    results = seen["search"].structured_content["results"]
    assert not seen["search"].is_error and len(results) == 3 and results[0]["id"] == "d1"
    answer = seen["ask"].structured_content
    assert answer["answer"] == "Cats purr when they [1]." and answer["citations"] == [{"n": 1, "id": "d1"}]
    assert answer["passages"][0]["id"] == "d1" and answer["abstained"] is False
    assert seen["too_deep"].is_error and "k: must be at most" in seen["too_deep"].content[0].text
    assert seen["bad_type"].is_error


def test_tools_in_process(toy, scripted_llm):
    from mcp import Client

    service = service_for(toy, scripted_llm)

    async def main() -> dict:
        await service.start()
        try:
            async with Client(build_mcp(service)) as client:
                return await exercise(client)
        finally:
            await service.stop()

    check(asyncio.run(main()))


def test_tools_over_the_servers_streamable_http_mount(toy, scripted_llm):
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    app = create_app(service_for(toy, scripted_llm), api_key="tok")
    with live(app) as url:
        refused = httpx2.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, timeout=10)
        assert refused.status_code == 401

        async def main() -> dict:
            headers = {"Authorization": "Bearer tok"}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=30) as http,
                Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
            ):
                return await exercise(client)

        check(asyncio.run(main()))


def test_tools_over_stdio_from_rankwise_mcp(toy, scripted_llm, tmp_path):
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    args = ["-m", "rankwise", "mcp", "--index", str(toy["index"]), "--corpus", str(toy["corpus"])]
    args += ["--generator", scripted_llm.url, "--generator-model", "scripted", "--k", "2"]
    env = {"PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    params = StdioServerParameters(command=sys.executable, args=args, env=env)

    async def main() -> dict:
        # errlog named: the SDK's default is the sys.stderr of when it was imported (maybe a closed capture)
        with (tmp_path / "mcp.log").open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=60) as client:
                return await exercise(client)

    try:
        check(asyncio.run(main()))
    finally:
        print((tmp_path / "mcp.log").read_text())  # shown when the test fails
