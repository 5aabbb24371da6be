// A browser's WebSocket cannot set headers: it carries its token as the subprotocol
// `mcp.auth.<token>` beside `mcp`, and the server selects `mcp`. Driven with the WebSocket
// API browsers have, against the real binary with a token configured.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { WebSocketImpl, startServer, stopServer } from './server.mjs';

const TOKEN = 'browser-token-0123456789';

/** Opens a WebSocket to /mcp offering `protocols`; resolves to it once open, or rejects. */
function open(address, protocols) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocketImpl(`ws://${address}/mcp`, protocols);
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error('refused'));
  });
}

/** Sends a request and resolves to the answer with its id. */
function request(ws, message) {
  return new Promise((resolve) => {
    ws.onmessage = (event) => {
      const answer = JSON.parse(event.data);
      if (answer.id === message.id) resolve(answer);
    };
    ws.send(JSON.stringify(message));
  });
}

test('a browser-style client authenticates with the mcp.auth subprotocol', { timeout: 30_000 }, async () => {
  const { address, child } = await startServer(['--auth-token', `ui=${TOKEN}`]);
  try {
    await assert.rejects(open(address, ['mcp']), /refused/, 'no token: the upgrade is refused');
    await assert.rejects(open(address, ['mcp', 'mcp.auth.wrong']), /refused/, 'a wrong token is refused');
    const ws = await open(address, ['mcp', `mcp.auth.${TOKEN}`]);
    assert.equal(ws.protocol, 'mcp', 'the server selects mcp, never the token');
    const init = await request(ws, {
      jsonrpc: '2.0', id: 1, method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'browser', version: '1' } },
    });
    assert.equal(init.result.protocolVersion, '2025-11-25');
    const sum = await request(ws, {
      jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'add', arguments: { a: 5, b: 3 } },
    });
    assert.equal(sum.result.structuredContent.result, 8);
    const closed = new Promise((resolve) => { ws.onclose = resolve; });
    ws.close();
    await closed;
  } finally {
    await stopServer(child);
  }
});
