"""A server of the 2025 revisions only: the official MCP Python SDK 1.x (FastMCP), over
Streamable HTTP at /mcp and WebSocket at /ws, on a port the OS picks.

Prints `listening on 127.0.0.1:PORT` once it accepts connections, then serves until
SIGTERM. The Rust client's tests use it to check that a client of 2026-07-28 falls back to
`initialize` with a server that does not know `server/discover`.
"""

import contextlib
import socket
import sys

import uvicorn
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.websocket import websocket_server
from starlette.applications import Starlette
from starlette.routing import Mount, WebSocketRoute

mcp = FastMCP("legacy-only")


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


async def ws_endpoint(websocket):
    async with websocket_server(websocket.scope, websocket.receive, websocket.send) as (read, write):
        server = mcp._mcp_server
        await server.run(read, write, server.create_initialization_options())


http_app = mcp.streamable_http_app()


@contextlib.asynccontextmanager
async def lifespan(app):
    async with mcp.session_manager.run():
        yield


app = Starlette(
    routes=[WebSocketRoute("/ws", ws_endpoint), Mount("/", app=http_app)],
    lifespan=lifespan,
)


class Server(uvicorn.Server):
    async def startup(self, sockets=None):
        await super().startup(sockets=sockets)
        port = sockets[0].getsockname()[1]
        print(f"listening on 127.0.0.1:{port}", flush=True)


def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", ws="websockets-sansio")
    Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
