// The official TypeScript SDK's client against the server's conformance fixtures.
//
// node sdk_client.mjs ws|http URL
//
// Runs every script over one transport (WebSocketClientTransport or
// StreamableHTTPClientTransport) and prints one JSON line per script:
// {"script": "...", "ok": true|false, "error": "..."}. Exits 0 once all ran; the caller
// scores the lines. Every wait is bounded, and ends on an event.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { WebSocketClientTransport } from '@modelcontextprotocol/sdk/client/websocket.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

const [transportName, url] = process.argv.slice(2);
const LIMIT_MS = 20_000;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function within(promise, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${LIMIT_MS} ms`)), LIMIT_MS);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

async function connect() {
  const client = new Client(
    { name: 'ts-sdk-script', version: '1.0.0' },
    { capabilities: { sampling: {}, elicitation: {} } },
  );
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => ({
    role: 'assistant',
    content: { type: 'text', text: `echo: ${request.params.messages[0].content.text}` },
    model: 'script-model',
    stopReason: 'endTurn',
  }));
  client.setRequestHandler(ElicitRequestSchema, async () => ({
    action: 'accept',
    content: { username: 'script', email: 'script@example.com' },
  }));
  const transport =
    transportName === 'ws'
      ? new WebSocketClientTransport(new URL(url))
      : new StreamableHTTPClientTransport(new URL(url));
  await within(client.connect(transport), 'connect');
  return client;
}

const text = (result) => result.content.find((c) => c.type === 'text')?.text ?? '';

const scripts = {
  async initialize(client) {
    const version = client.getServerVersion();
    check(version?.name === 'mcp-server', `server name ${version?.name}`);
    check(client.getServerCapabilities()?.prompts, 'no prompts capability');
  },
  async tools(client) {
    const { tools } = await within(client.listTools(), 'tools/list');
    const names = tools.map((t) => t.name);
    for (const name of ['add', 'test_simple_text', 'test_sampling']) {
      check(names.includes(name), `${name} not listed`);
    }
    const added = await within(client.callTool({ name: 'add', arguments: { a: 5, b: 3 } }), 'add');
    check(added.structuredContent?.result === 8, `add gave ${JSON.stringify(added)}`);
    const simple = await within(client.callTool({ name: 'test_simple_text', arguments: {} }), 'text');
    check(text(simple) === 'This is a simple text response for testing.', text(simple));
  },
  async progress(client) {
    const seen = [];
    await within(
      client.callTool({ name: 'test_tool_with_progress', arguments: {} }, undefined, {
        onprogress: (p) => seen.push(p.progress),
      }),
      'progress',
    );
    // The server sends 0, 50 and 100, then the answer. This SDK handles notifications a
    // microtask later than responses, so a final progress that arrives together with the
    // answer can reach a handler already removed: 100 is not required.
    const prefix = JSON.stringify(seen.slice(0, 2)) === '[0,50]';
    check(prefix && seen.length <= 3 && (seen.length < 3 || seen[2] === 100), `progress ${JSON.stringify(seen)}`);
  },
  async cancellation(client) {
    const controller = new AbortController();
    const call = client.callTool({ name: 'sleep', arguments: { ms: 60_000 } }, undefined, {
      signal: controller.signal,
      onprogress: () => {},
    });
    // Cancel once the call is known to run: its resource lists it.
    for (;;) {
      const { resources } = await within(client.listResources(), 'resources/list');
      if (resources.some((r) => r.name.startsWith('sleep'))) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    controller.abort('script cancels');
    const outcome = await within(call.then(() => 'answered', () => 'aborted'), 'abort');
    check(outcome === 'aborted', 'the cancelled call was answered');
    // The server stopped it: the session's calls drain to none running.
    for (;;) {
      const stats = await within(client.readResource({ uri: 'mcp://server/stats' }), 'stats');
      if (JSON.parse(stats.contents[0].text).inflightRequests === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  },
  async logging(client) {
    const logs = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => logs.push(n.params.data));
    await within(client.setLoggingLevel('debug'), 'logging/setLevel');
    await within(client.callTool({ name: 'test_tool_with_logging', arguments: {} }), 'logging');
    const expected = ['Tool execution started', 'Tool processing data', 'Tool execution completed'];
    check(expected.every((m) => logs.includes(m)), `logs ${JSON.stringify(logs)}`);
  },
  async resources(client) {
    const { resources } = await within(client.listResources(), 'resources/list');
    check(resources.some((r) => r.uri === 'test://static-text'), 'static text not listed');
    const read = await within(client.readResource({ uri: 'test://template/42/data' }), 'read');
    check(JSON.parse(read.contents[0].text).id === '42', JSON.stringify(read));
    const binary = await within(client.readResource({ uri: 'test://static-binary' }), 'binary');
    check(binary.contents[0].blob?.length > 0, 'no blob');
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, () => {});
    await within(client.subscribeResource({ uri: 'test://watched-resource' }), 'subscribe');
    await within(client.unsubscribeResource({ uri: 'test://watched-resource' }), 'unsubscribe');
  },
  async prompts(client) {
    const { prompts } = await within(client.listPrompts(), 'prompts/list');
    check(prompts.length >= 4, `${prompts.length} prompts`);
    const prompt = await within(
      client.getPrompt({ name: 'test_prompt_with_arguments', arguments: { arg1: 'a', arg2: 'b' } }),
      'prompts/get',
    );
    check(JSON.stringify(prompt.messages).includes("arg1='a'"), JSON.stringify(prompt));
    const completion = await within(
      client.complete({
        ref: { type: 'ref/prompt', name: 'test_prompt_with_arguments' },
        argument: { name: 'arg1', value: 'par' },
      }),
      'completion/complete',
    );
    check(completion.completion.values.includes('paris'), JSON.stringify(completion));
  },
  async sampling(client) {
    const result = await within(
      client.callTool({ name: 'test_sampling', arguments: { prompt: 'hello' } }),
      'sampling',
    );
    check(text(result) === 'LLM response: echo: hello', text(result));
  },
  async elicitation(client) {
    const result = await within(
      client.callTool({ name: 'test_elicitation', arguments: { message: 'who?' } }),
      'elicitation',
    );
    check(text(result).includes('action=accept'), text(result));
    check(text(result).includes('script@example.com'), text(result));
  },
};

let client;
try {
  client = await connect();
} catch (e) {
  for (const script of Object.keys(scripts)) {
    console.log(JSON.stringify({ script, ok: false, error: `connect: ${e.message}` }));
  }
  process.exit(0);
}
for (const [script, run] of Object.entries(scripts)) {
  try {
    await run(client);
    console.log(JSON.stringify({ script, ok: true }));
  } catch (e) {
    console.log(JSON.stringify({ script, ok: false, error: String(e?.message ?? e) }));
  }
}
await client.close();
process.exit(0);
