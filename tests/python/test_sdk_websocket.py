"""The official MCP Python SDK's WebSocket client against the real server binary.

The server comes from conftest.py; these tests drive it with
`mcp.client.websocket.websocket_client` and `mcp.ClientSession`.
"""

import asyncio
import pytest
from mcp import ClientSession, types
from mcp.client.websocket import websocket_client


@pytest.fixture(scope="module")
def server_url(server_address):
    return f"ws://{server_address}/mcp"


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


async def call_with_progress(server_url, tool, arguments):
    """Calls a tool with a progress callback; returns the result and the progress seen by the
    time the result came back."""
    seen = []

    async def on_progress(progress, total, message):
        seen.append((progress, total, message))

    async with websocket_client(server_url) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool(tool, arguments, progress_callback=on_progress)
            return result, list(seen)


def assert_increasing_to(seen, total):
    assert seen, "no progress notification reached the callback"
    values = [p for p, _, _ in seen]
    assert values == sorted(set(values)), f"progress not strictly increasing: {values}"
    assert seen[-1][:2] == (total, total), seen[-1]


def test_progress_reaches_the_sdk_callback(server_url):
    result, seen = run(call_with_progress(server_url, "sleep", {"ms": 500}))
    assert result.structuredContent == {"sleptMs": 500}
    assert_increasing_to(seen, 500)


def test_batch_progress_ends_at_total_before_the_result(server_url):
    result, seen = run(call_with_progress(server_url, "process_batch", {"count": 10000}))
    assert not result.isError, result
    assert result.structuredContent["succeeded"] == 10000
    assert_increasing_to(seen, 10000)
    assert "items/s" in seen[-1][2]


def test_cancelled_batch_stops_and_gets_no_response(server_url):
    async def scenario():
        loop = asyncio.get_running_loop()
        seen = []
        running = asyncio.Event()

        async def on_progress(progress, total, message):
            seen.append((loop.time(), progress))
            if progress > 0:
                running.set()

        async with websocket_client(server_url) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                # The id the SDK gives the next request.
                request_id = session._request_id
                call = asyncio.create_task(
                    session.call_tool(
                        "process_batch", {"count": 10_000_000}, progress_callback=on_progress
                    )
                )
                await asyncio.wait_for(running.wait(), timeout=30)
                await session.send_notification(
                    types.ClientNotification(
                        types.CancelledNotification(
                            params=types.CancelledNotificationParams(
                                requestId=request_id, reason="user pressed stop"
                            )
                        )
                    )
                )
                cancelled_at = loop.time()
                await session.send_ping()
                # Watch for two seconds: progress must stop within one, and no response come.
                await asyncio.sleep(2)
                late = [p for t, p in seen if t > cancelled_at + 1.0]
                assert not late, f"progress after the cancel: {late}"
                assert not call.done(), "a cancelled request got a response"
                call.cancel()
        assert seen[-1][1] < 10_000_000

    run(scenario())
