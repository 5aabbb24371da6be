"""The official Python SDK 2.x client (MCP 2026-07-28) against the server's fixtures.

python sdk_client_2026.py MODE URL

MODE is "2026-07-28" (the client speaks only the modern revision) or "auto" (it probes, and
falls back to `initialize` for an older server). Runs every script over Streamable HTTP and
prints one JSON line per script: {"script": "...", "ok": true|false, "error": "..."}.
Exits 0 once all ran; the caller scores the lines. Every wait is bounded and ends on an
event.
"""

import asyncio
import json
import sys
import traceback

from mcp import Client, types

LIMIT_S = 20


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def text(result):
    return next((c.text for c in result.content if c.type == "text"), "")


async def elicitation(context, params):
    return types.ElicitResult(action="accept", content={"name": "Ada"})


async def negotiated(client):
    check(client.protocol_version == "2026-07-28", f"negotiated {client.protocol_version}")
    # Pinned, the client skips server/discover and knows the server only from its results.
    info = client.server_info
    check(info is None or info.name == "mcp-server", str(info))


async def tools(client):
    listed = await client.list_tools()
    names = {tool.name for tool in listed.tools}
    check("add" in names, "add not listed")
    added = await client.call_tool("add", {"a": 5, "b": 3})
    check(added.structured_content["result"] == 8, str(added))
    stamp = (added.meta or {}).get("io.modelcontextprotocol/serverInfo") or {}
    check(stamp.get("name") == "mcp-server", f"serverInfo in the result's _meta: {added.meta}")


async def progress(client):
    seen = []

    async def on_progress(value, total, message):
        seen.append(value)

    await client.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
    check(seen and seen[-1] == 100, f"progress {seen}")


async def input_required(client):
    # The tool asks the user; the client answers the input-required round and retries.
    result = await client.call_tool("test_input_required_result_elicitation", {})
    check(text(result) == "Hello, Ada!", text(result))


async def subscription(client):
    async with client.listen(resource_subscriptions=["mcp://server/stats"]) as sub:
        honored = sub.honored.resource_subscriptions or []
        check("mcp://server/stats" in honored, f"honored {sub.honored}")


SCRIPTS = [negotiated, tools, progress, input_required, subscription]


async def main(mode, url):
    async with Client(url, mode=mode, elicitation_callback=elicitation, read_timeout_seconds=LIMIT_S) as client:
        for script in SCRIPTS:
            line = {"script": f"{script.__name__} ({mode})", "ok": True}
            try:
                await asyncio.wait_for(script(client), LIMIT_S)
            except BaseException as error:  # noqa: BLE001 - every failure is a result
                line = {**line, "ok": False, "error": f"{type(error).__name__}: {error}"}
                traceback.print_exc()
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
