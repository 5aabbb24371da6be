"""The official Python SDK's client against the server's conformance fixtures.

python sdk_client.py ws|http URL

Runs every script over one transport (`websocket_client` or `streamable_http_client`) and
prints one JSON line per script: {"script": "...", "ok": true|false, "error": "..."}.
Exits 0 once all ran; the caller scores the lines. Every wait is bounded and ends on an
event.
"""

import asyncio
import json
import sys
import traceback

from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client
from mcp.client.websocket import websocket_client

LIMIT_S = 20


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def text(result):
    return next((c.text for c in result.content if c.type == "text"), "")


async def sampling(context, params):
    prompt = params.messages[0].content.text
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text=f"echo: {prompt}"),
        model="script-model",
        stopReason="endTurn",
    )


async def elicitation(context, params):
    return types.ElicitResult(
        action="accept", content={"username": "script", "email": "script@example.com"}
    )


class Logs:
    def __init__(self):
        self.messages = []

    async def __call__(self, params):
        self.messages.append(params.data)


async def initialize(session, init, logs):
    check(init.serverInfo.name == "mcp-server", init.serverInfo.name)
    check(init.capabilities.prompts is not None, "no prompts capability")


async def tools(session, init, logs):
    listed = await session.list_tools()
    names = {tool.name for tool in listed.tools}
    for name in ("add", "test_simple_text", "test_sampling"):
        check(name in names, f"{name} not listed")
    added = await session.call_tool("add", {"a": 5, "b": 3})
    check(added.structuredContent["result"] == 8, str(added))
    simple = await session.call_tool("test_simple_text", {})
    check(text(simple) == "This is a simple text response for testing.", text(simple))


async def progress(session, init, logs):
    seen = []

    async def on_progress(value, total, message):
        seen.append(value)

    await session.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
    check(seen == [0, 50, 100], f"progress {seen}")


async def cancellation(session, init, logs):
    call = asyncio.create_task(session.call_tool("sleep", {"ms": 60_000}))
    # Cancel once the call is known to run: its resource ("sleep <request id>") lists it.
    request_id = None
    while request_id is None:
        listed = (await session.list_resources()).resources
        running = [r.name for r in listed if r.name.startswith("sleep ")]
        if running:
            request_id = json.loads(running[0].removeprefix("sleep "))
        else:
            await asyncio.sleep(0.02)
    await session.send_notification(
        types.ClientNotification(
            types.CancelledNotification(
                params=types.CancelledNotificationParams(requestId=request_id, reason="script")
            )
        )
    )
    # The server stopped it: no call runs any more, and no answer came.
    while True:
        stats = await session.read_resource("mcp://server/stats")
        if json.loads(stats.contents[0].text)["inflightRequests"] == 0:
            break
        await asyncio.sleep(0.02)
    check(not call.done(), "the cancelled call was answered")
    call.cancel()


async def logging(session, init, logs):
    await session.set_logging_level("debug")
    await session.call_tool("test_tool_with_logging", {})
    expected = ["Tool execution started", "Tool processing data", "Tool execution completed"]
    check(all(m in logs.messages for m in expected), f"logs {logs.messages}")


async def resources(session, init, logs):
    listed = await session.list_resources()
    check(any(str(r.uri) == "test://static-text" for r in listed.resources), "static text")
    read = await session.read_resource("test://template/42/data")
    check(json.loads(read.contents[0].text)["id"] == "42", str(read))
    binary = await session.read_resource("test://static-binary")
    check(len(binary.contents[0].blob) > 0, "no blob")
    await session.subscribe_resource("test://watched-resource")
    await session.unsubscribe_resource("test://watched-resource")


async def prompts(session, init, logs):
    listed = await session.list_prompts()
    check(len(listed.prompts) >= 4, f"{len(listed.prompts)} prompts")
    prompt = await session.get_prompt("test_prompt_with_arguments", {"arg1": "a", "arg2": "b"})
    check("arg1='a'" in prompt.messages[0].content.text, str(prompt))
    completion = await session.complete(
        types.PromptReference(type="ref/prompt", name="test_prompt_with_arguments"),
        {"name": "arg1", "value": "par"},
    )
    check("paris" in completion.completion.values, str(completion))


async def sampling_script(session, init, logs):
    result = await session.call_tool("test_sampling", {"prompt": "hello"})
    check(text(result) == "LLM response: echo: hello", text(result))


async def elicitation_script(session, init, logs):
    result = await session.call_tool("test_elicitation", {"message": "who?"})
    check("action=accept" in text(result), text(result))
    check("script@example.com" in text(result), text(result))


SCRIPTS = [
    ("initialize", initialize),
    ("tools", tools),
    ("progress", progress),
    ("cancellation", cancellation),
    ("logging", logging),
    ("resources", resources),
    ("prompts", prompts),
    ("sampling", sampling_script),
    ("elicitation", elicitation_script),
]


async def run_all(transport, url):
    client = websocket_client(url) if transport == "ws" else streamable_http_client(url)
    logs = Logs()
    async with client as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(
            read,
            write,
            sampling_callback=sampling,
            elicitation_callback=elicitation,
            logging_callback=logs,
        ) as session:
            init = await asyncio.wait_for(session.initialize(), LIMIT_S)
            for name, script in SCRIPTS:
                try:
                    await asyncio.wait_for(script(session, init, logs), LIMIT_S)
                    print(json.dumps({"script": name, "ok": True}), flush=True)
                except Exception as e:  # noqa: BLE001 - every failure is reported
                    error = str(e) or traceback.format_exception_only(e)[-1].strip()
                    print(json.dumps({"script": name, "ok": False, "error": error}), flush=True)


def main():
    transport, url = sys.argv[1], sys.argv[2]
    try:
        asyncio.run(run_all(transport, url))
    except Exception as e:  # noqa: BLE001 - a failed connection fails every script
        for name, _ in SCRIPTS:
            print(json.dumps({"script": name, "ok": False, "error": f"session: {e}"}))


if __name__ == "__main__":
    main()
