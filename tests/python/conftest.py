"""The real server binary for the SDK tests.

Starts `mcp-server --listen 127.0.0.1:0` (the binary named by MCP_SERVER_BIN) once per test
module, reads its address from the first stdout line, and stops it with SIGTERM, which it
must survive with exit code 0.
"""

import os
import subprocess

import pytest


@pytest.fixture(scope="module")
def server_address():
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
        yield first.removeprefix("listening on http://")
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, "the server did not exit cleanly on SIGTERM"
