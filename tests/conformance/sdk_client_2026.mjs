// The official TypeScript SDK 2.x client (`@modelcontextprotocol/client`, MCP 2026-07-28)
// against the server's fixtures, and with it the tasks extension's official client
// (`@modelcontextprotocol/ext-tasks`): tasks that complete, ask their client, and are
// cancelled.
//
// node sdk_client_2026.mjs MODE URL
//
// MODE is "2026-07-28" (pinned: the modern revision or nothing) or "auto" (it probes, and
// falls back to `initialize` for an older server). Runs every script over Streamable HTTP and
// prints one JSON line per script: {"script": "...", "ok": true|false, "error": "..."}.
// Exits 0 once all ran; the caller scores the lines. Every wait is bounded and ends on an
// event.

import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import {
  createTaskSessionFromClient,
  resultFromTaskOutcome
} from '@modelcontextprotocol/ext-tasks/client';

const LIMIT_MS = 20_000;
const TASKS = 'io.modelcontextprotocol/tasks';
const CAPABILITIES = { elicitation: {}, extensions: { [TASKS]: {} } };
const CLIENT_INFO = { name: 'sdk-client-2026', version: '1.0.0' };

// ext-tasks sends the tasks extension's requests through the host's own request path (the
// SDK's codecs do not know them): one POST each, with the headers the HTTP binding requires,
// answered as JSON or as an SSE stream whose answer is the message with the request's id.
function rawDispatchTo(url) {
  let next = 1;
  return async (body, options) => {
    const request = { jsonrpc: '2.0', id: `ext-tasks-${next++}`, ...body };
    const params = request.params ?? {};
    const name = params.taskId ?? params.name ?? params.uri;
    const headers = {
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
      'MCP-Protocol-Version': '2026-07-28',
      'Mcp-Method': request.method
    };
    if (typeof name === 'string') headers['Mcp-Name'] = name;
    const response = await fetch(url, {
      method: 'POST',
      headers,
      body: JSON.stringify(request),
      signal: options?.signal
    });
    const text = await response.text();
    if (!(response.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
      return JSON.parse(text);
    }
    const messages = text
      .split(/\r?\n\r?\n/)
      .map((event) =>
        event
          .split(/\r?\n/)
          .filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(5).trimStart())
          .join('\n')
      )
      .filter((data) => data.length > 0)
      .map((data) => JSON.parse(data));
    const answer = messages.find((m) => m.id === request.id && !('method' in m));
    if (answer === undefined) throw new Error(`no answer to ${request.method} in its stream`);
    return answer;
  };
}

function taskSession(client, url) {
  return createTaskSessionFromClient(client, {
    endpointId: url,
    rawDispatch: rawDispatchTo(url),
    v2RequestFraming: {
      protocolVersion: '2026-07-28',
      clientInfo: CLIENT_INFO,
      clientCapabilities: CAPABILITIES
    },
    onInputRequest: async (request) => {
      check(request.kind === 'elicitation', `asked ${JSON.stringify(request)}`);
      return { action: 'accept', content: { confirm: true } };
    }
  });
}

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
  async task_completes(client, url) {
    // A batch as a task: polled to its result, its progress in the status message.
    const session = taskSession(client, url);
    try {
      const seen = [];
      const execution = await session.callTool('process_batch', { count: 50_000 });
      const { outcome } = await execution.settle({
        onEvent: (event) => {
          if (event.type === 'task') seen.push(event.task.status);
        }
      });
      const result = resultFromTaskOutcome(outcome);
      check(result.structuredContent?.processed === 50_000, JSON.stringify(result));
      check(seen.includes('working'), `statuses ${JSON.stringify(seen)}`);
    } finally {
      await session.close();
    }
  },
  async task_asks_its_client(client, url) {
    // The task asks for a confirmation (input_required), answered with tasks/update.
    const session = taskSession(client, url);
    try {
      const execution = await session.callTool('confirm_delete', { filename: 'notes.txt' });
      const { outcome } = await execution.settle();
      const result = resultFromTaskOutcome(outcome);
      check(text(result) === 'Deleted notes.txt', JSON.stringify(result));
    } finally {
      await session.close();
    }
  },
  async task_cancelled(client, url) {
    const session = taskSession(client, url);
    try {
      const execution = await session.callTool('sleep', { ms: 300_000 });
      await execution.cancel();
      const { outcome } = await execution.settle();
      check(outcome.status === 'cancelled', `ended ${outcome.status}`);
    } finally {
      await session.close();
    }
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
    CLIENT_INFO,
    { capabilities: CAPABILITIES, versionNegotiation: { mode: negotiation } }
  );
  client.setRequestHandler('elicitation/create', async () => ({
    action: 'accept',
    content: { name: 'Ada' }
  }));
  await withLimit(client.connect(new StreamableHTTPClientTransport(new URL(url))));
  for (const [name, script] of Object.entries(scripts)) {
    let line = { script: `${name} (${mode})`, ok: true };
    try {
      await withLimit(script(client, url));
    } catch (error) {
      line = { ...line, ok: false, error: String(error?.stack ?? error) };
    }
    console.log(JSON.stringify(line));
  }
  await client.close();
}

await main(process.argv[2], process.argv[3]);
