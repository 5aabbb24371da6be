// The real server for the JavaScript tests: started on port 0 from MCP_SERVER_BIN, and the
// WebSocket class a browser has (Node 22's global, or `ws` from JS_DEPS on Node 20).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

export const WebSocketImpl =
  globalThis.WebSocket ?? createRequire(join(resolve(process.env.JS_DEPS ?? here), 'index.js'))('ws').WebSocket;

/** Starts the server on port 0 with `args`; resolves to its address and process once it listens. */
export async function startServer(args = []) {
  const binary = process.env.MCP_SERVER_BIN;
  assert.ok(binary, 'MCP_SERVER_BIN names the server binary');
  const child = spawn(binary, ['--listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const [first] = await Promise.race([
    new Promise((resolve) => lines.once('line', (line) => resolve([line]))),
    new Promise((_, reject) => child.once('exit', (code) => reject(new Error(`server exited with ${code}`)))),
  ]);
  const prefix = 'listening on http://';
  assert.ok(first.startsWith(prefix), `unexpected first line: ${first}`);
  return { address: first.slice(prefix.length), child };
}

/** Stops the server with SIGTERM; it must exit cleanly. */
export async function stopServer(child) {
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  assert.equal(await exited, 0, 'the server exits cleanly on SIGTERM');
}
