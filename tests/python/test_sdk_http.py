"""The official MCP Python SDK's Streamable HTTP client against the real server binary."""

import asyncio

import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


@pytest.fixture(scope="module")
def server_url(server_address):
    return f"http://{server_address}/mcp"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


def test_tools_progress_and_concurrency_over_http(server_url):
    async def scenario():
        async with streamable_http_client(server_url) as (read, write, session_id):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                assert init.protocolVersion == "2025-11-25"
                assert len(session_id()) == 32

                tools = await session.list_tools()
                assert "process_batch" in {tool.name for tool in tools.tools}

                added = await session.call_tool("add", {"a": 5, "b": 3})
                assert added.structuredContent == {"result": 8, "operation": "add", "a": 5, "b": 3}

                divided = await session.call_tool("divide", {"a": 1, "b": 0})
                assert divided.isError is True

                seen = []

                async def on_progress(progress, total, message):
                    seen.append(progress)

                slow = asyncio.create_task(
                    session.call_tool("sleep", {"ms": 500}, progress_callback=on_progress)
                )
                # Calls made while the slow one streams complete first, each on its own POST.
                for i in range(10):
                    result = await session.call_tool("multiply", {"a": i, "b": 2})
                    assert result.structuredContent["result"] == i * 2
                await session.send_ping()
                result = await slow
                assert result.structuredContent == {"sleptMs": 500}
                assert seen and seen == sorted(set(seen)) and seen[-1] == 500, seen

                batch = await session.call_tool("process_batch", {"count": 10000})
                assert batch.structuredContent["succeeded"] == 10000

    run(scenario())
