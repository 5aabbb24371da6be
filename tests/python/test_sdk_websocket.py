"""The official MCP Python SDK's WebSocket client against the real server binary.

The test starts `mcp-server --listen 127.0.0.1:0` (the binary named by MCP_SERVER_BIN),
reads the port from its first stdout line, and drives it with
`mcp.client.websocket.websocket_client` and `mcp.ClientSession`.
"""

import asyncio
import os
import subprocess

import pytest
from mcp import ClientSession
from mcp.client.websocket import websocket_client


@pytest.fixture(scope="module")
def server_url():
    binary = os.environ["MCP_SERVER_BIN"]
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
    )
    try:
        first = proc.stdout.readline().strip()
        assert first.startswith("listening on http://"), f"unexpected first line: {first!r}"
        address = first.removeprefix("listening on http://")
        yield f"ws://{address}/mcp"
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, "the server did not exit cleanly on SIGTERM"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


def test_initialize_list_add_divide(server_url):
    async def scenario():
        async with websocket_client(server_url) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                assert init.protocolVersion == "2025-11-25"
                assert init.serverInfo.name == "mcp-server"
                assert init.capabilities.tools is not None

                tools = await session.list_tools()
                names = {tool.name for tool in tools.tools}
                assert {"add", "subtract", "multiply", "divide", "power", "sqrt", "modulo"} <= names

                added = await session.call_tool("add", {"a": 5, "b": 3})
                assert not added.isError
                assert added.structuredContent == {"result": 8, "operation": "add", "a": 5, "b": 3}
                assert added.content[0].type == "text"

                divided = await session.call_tool("divide", {"a": 1, "b": 0})
                assert divided.isError is True
                assert "division by zero" in divided.content[0].text

    run(scenario())


def test_concurrent_calls_on_one_session(server_url):
    async def scenario():
        async with websocket_client(server_url) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                slow = asyncio.create_task(session.call_tool("sleep", {"ms": 1000}))
                # Calls made while the slow one runs complete first.
                for i in range(20):
                    result = await session.call_tool("multiply", {"a": i, "b": 2})
                    assert result.structuredContent["result"] == i * 2
                await session.send_ping()
                result = await slow
                assert result.structuredContent == {"sleptMs": 1000}

    run(scenario())


def test_progress_reaches_the_sdk_callback(server_url):
    async def scenario():
        seen = []

        async def on_progress(progress, total, message):
            seen.append((progress, total, message))

        async with websocket_client(server_url) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                result = await session.call_tool("sleep", {"ms": 500}, progress_callback=on_progress)
                assert result.structuredContent == {"sleptMs": 500}
        assert seen, "no progress notification reached the callback"
        values = [p for p, _, _ in seen]
        assert values == sorted(set(values)), f"progress not strictly increasing: {values}"
        assert seen[-1][0] == 500 and seen[-1][1] == 500, seen[-1]

    run(scenario())
