// The official TypeScript SDK 2.x client (`@modelcontextprotocol/client`, MCP 2026-07-28)
// against the server's fixtures.
//
// node sdk_client_2026.mjs MODE URL
//
// MODE is "2026-07-28" (pinned: the modern revision or nothing) or "auto" (it probes, and
// falls back to `initialize` for an older server). Runs every script over Streamable HTTP and
// prints one JSON line per script: {"script": "...", "ok": true|false, "error": "..."}.
// Exits 0 once all ran; the caller scores the lines. Every wait is bounded and ends on an
// event.

import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const LIMIT_MS = 20_000;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function text(result) {
  return result.content.find((c) => c.type === 'text')?.text ?? '';
}

const scripts = {
  async negotiated(client) {
    const version = client.getNegotiatedProtocolVersion();
    check(version === '2026-07-28', `negotiated ${version}`);
  },
  async tools(client) {
    const listed = await client.listTools();
    check(listed.tools.some((t) => t.name === 'add'), 'add not listed');
    const added = await client.callTool({ name: 'add', arguments: { a: 5, b: 3 } });
    check(added.structuredContent?.result === 8, JSON.stringify(added));
  },
  async progress(client) {
    const seen = [];
    await client.callTool(
      { name: 'test_tool_with_progress', arguments: {} },
      { onprogress: (p) => seen.push(p.progress), timeout: LIMIT_MS }
    );
    check(seen.length > 0 && seen.at(-1) === 100, `progress ${JSON.stringify(seen)}`);
  },
  async input_required(client) {
    // The tool asks the user; the client answers the input-required round and retries.
    const result = await client.callTool({
      name: 'test_input_required_result_elicitation',
      arguments: {}
    });
    check(text(result) === 'Hello, Ada!', text(result));
  },
  async subscription(client) {
    const sub = await client.listen({ resourceSubscriptions: ['mcp://server/stats'] });
    try {
      const honored = sub.honoredFilter.resourceSubscriptions ?? [];
      check(honored.includes('mcp://server/stats'), `honored ${JSON.stringify(sub.honoredFilter)}`);
    } finally {
      await sub.close();
    }
  }
};

function withLimit(promise) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${LIMIT_MS} ms`)), LIMIT_MS);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

async function main(mode, url) {
  const negotiation = mode === 'auto' ? 'auto' : { pin: mode };
  const client = new Client(
    { name: 'sdk-client-2026', version: '1.0.0' },
    { capabilities: { elicitation: {} }, versionNegotiation: { mode: negotiation } }
  );
  client.setRequestHandler('elicitation/create', async () => ({
    action: 'accept',
    content: { name: 'Ada' }
  }));
  await withLimit(client.connect(new StreamableHTTPClientTransport(new URL(url))));
  for (const [name, script] of Object.entries(scripts)) {
    let line = { script: `${name} (${mode})`, ok: true };
    try {
      await withLimit(script(client));
    } catch (error) {
      line = { ...line, ok: false, error: String(error?.stack ?? error) };
    }
    console.log(JSON.stringify(line));
  }
  await client.close();
}

await main(process.argv[2], process.argv[3]);
