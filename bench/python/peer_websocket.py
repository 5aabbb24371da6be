"""The Python MCP SDK's WebSocket server (mcp.server.websocket) under uvicorn, with the
same `add` tool as ours: a peer for `cargo xtask bench`. Prints `listening on ADDR` first."""

import asyncio
import socket
import sys

import uvicorn
from mcp.server.fastmcp import FastMCP
from mcp.server.websocket import websocket_server
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

mcp = FastMCP("python-peer")


@mcp.tool()
def add(a: float, b: float) -> float:
    """Adds two numbers."""
    return a + b


async def endpoint(websocket):
    server = mcp._mcp_server
    async with websocket_server(websocket.scope, websocket.receive, websocket.send) as (
        read,
        write,
    ):
        await server.run(read, write, server.create_initialization_options())


async def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    app = Starlette(routes=[WebSocketRoute("/", endpoint)])
    config = uvicorn.Config(app, log_level="warning", ws="websockets-sansio")
    server = uvicorn.Server(config)
    print(f"listening on {host}:{port}", flush=True)
    await server.serve(sockets=[sock])


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
