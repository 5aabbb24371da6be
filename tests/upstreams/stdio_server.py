"""An MCP server over stdio, on the official MCP Python SDK 1.x (FastMCP): the kind of
server teams already have, which the Rust client's stdio transport and the gateway are
tested against.

Run by the tests as `python stdio_server.py`; speaks on its standard input and output,
logs to standard error.
"""

import asyncio
import os
import sys

from mcp.server.fastmcp import Context, FastMCP
from mcp.types import SamplingMessage, TextContent

mcp = FastMCP("python-stdio")


@mcp.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@mcp.tool()
async def count(n: int, ctx: Context) -> int:
    """Counts to n, reporting progress at each step."""
    for i in range(1, n + 1):
        await ctx.report_progress(i, n)
    return n


CANCELLED = []


@mcp.tool()
async def wait() -> str:
    """Waits until cancelled (`cancellations` counts the calls that were)."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        CANCELLED.append(1)
        raise
    return "not cancelled"


@mcp.tool()
def cancellations() -> int:
    """How many `wait` calls were cancelled."""
    return len(CANCELLED)


@mcp.tool()
async def ask(question: str, ctx: Context) -> str:
    """Asks the client's model (sampling) and returns its answer."""
    result = await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=question))],
        max_tokens=50,
    )
    return result.content.text if result.content.type == "text" else str(result.content)


@mcp.tool()
def crash() -> str:
    """Exits the process at once, mid-call."""
    print("crashing on purpose", file=sys.stderr, flush=True)
    os._exit(3)


@mcp.tool()
def pid() -> int:
    """The server process's id."""
    return os.getpid()


if __name__ == "__main__":
    print("python stdio server starting", file=sys.stderr, flush=True)
    mcp.run("stdio")
