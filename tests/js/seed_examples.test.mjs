// The math-mcp seed's fetch and WebSocket examples, run unchanged against the real server.
//
// seed/http_example.js and seed/websocket_example.js are the examples exactly as the seed
// (shared/seeds/000_...) prints them. The only thing changed before running them is the
// server's address: `https://your-server.workers.dev` becomes the test server's. They run as
// one script, as the seed means ("Create an agent first via HTTP (see above)").
//
// Run by `cargo xtask ci` as `node --test`, with MCP_SERVER_BIN naming the server binary and
// JS_DEPS naming the folder whose node_modules holds `ws` (Node 20 has no WebSocket global).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { WebSocketImpl, startServer, stopServer } from './server.mjs';

const here = dirname(fileURLToPath(import.meta.url));

/** The seed's two examples as one async script, pointed at `address`. */
function seedScript(address) {
  const http = readFileSync(join(here, 'seed', 'http_example.js'), 'utf8');
  const websocket = readFileSync(join(here, 'seed', 'websocket_example.js'), 'utf8');
  return (http + '\n' + websocket)
    .replaceAll('https://your-server.workers.dev', `http://${address}`)
    .replaceAll('wss://your-server.workers.dev', `ws://${address}`);
}

test('the seed fetch and WebSocket examples work as written', { timeout: 30_000 }, async () => {
  const { address, child } = await startServer();
  try {
    // What the example logs, and a promise for its first `Received:` line.
    let received;
    const firstReceived = new Promise((resolve) => {
      received = resolve;
    });
    const logs = [];
    const console = {
      log: (...args) => {
        logs.push(args);
        if (args[0] === 'Received:') received(args[1]);
      },
    };
    const AsyncFunction = (async () => {}).constructor;
    const run = new AsyncFunction(
      'console',
      'WebSocket',
      seedScript(address) + '\nreturn { agentId, result, ws };',
    );
    const { agentId, result, ws } = await run(console, WebSocketImpl);

    // The fetch example: an agent, then the tool's answer.
    assert.match(agentId, /^[0-9a-f]{32}$/);
    assert.equal(result.status, 200);
    assert.deepEqual(await result.json(), { result: 8, operation: 'add', a: 5, b: 3 });

    // The WebSocket example: the envelope it logs.
    const message = await firstReceived;
    ws.close();
    assert.equal(message.type, 'mcp_response');
    assert.deepEqual(message.result, { result: 8, operation: 'add', a: 5, b: 3 });
    assert.match(message.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

    // Both calls are in the agent's history.
    const state = await (await fetch(`http://${address}/agent/${agentId}`)).json();
    assert.deepEqual(
      state.history.map((h) => h.tool),
      ['add', 'add'],
    );
    assert.equal(logs.length, 1, `one message logged: ${JSON.stringify(logs)}`);
  } finally {
    await stopServer(child);
  }
});
