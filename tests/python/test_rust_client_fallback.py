"""`mcpc` (the Rust client, MCPC_BIN) against a server of the 2025 revisions only: the
official Python SDK 1.x in legacy_server.py. The client speaks 2026-07-28 first; this
server does not know `server/discover`, so the client must fall back to `initialize`, over
Streamable HTTP and over WebSocket, and then work as usual (tools, calls, progress).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def legacy_address():
    script = Path(__file__).with_name("legacy_server.py")
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
    )
    try:
        first = proc.stdout.readline().strip()
        assert first.startswith("listening on "), f"unexpected first line: {first!r}"
        yield first.removeprefix("listening on ")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def mcpc(*args):
    return subprocess.run(
        [os.environ["MCPC_BIN"], "--progress", "lines", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("path", ["http://{}/mcp", "ws://{}/ws"])
def test_falls_back_to_initialize_and_calls(legacy_address, path):
    url = path.format(legacy_address)
    tools = mcpc("--url", url, "tools")
    assert tools.returncode == 0, tools.stderr
    assert "add" in tools.stdout and "count" in tools.stdout

    added = mcpc("--url", url, "--json", "call", "add", "a=2", "b=3")
    assert added.returncode == 0, added.stderr
    assert '"result": 5' in added.stdout

    counted = mcpc("--url", url, "call", "count", "n=3")
    assert counted.returncode == 0, counted.stderr
    assert "progress 3/3" in counted.stderr
