// An MCP session over WebSocket for the browser: requests with progress, cancellation,
// and reconnection with backoff that resumes the session after the last message received
// (the server's `resume` capability), so nothing is missed and nothing is seen twice.
//
// Events (EventTarget): `status` {state, text}, `notification` {message}, `frame`
// {direction: 'out' | 'in' | 'info', text, time}.

const PROTOCOL_VERSION = '2025-11-25';
const MODERN_VERSION = '2026-07-28';
export const TASKS_EXTENSION = 'io.modelcontextprotocol/tasks';
const MAX_DELAY_MS = 10_000;

export class McpSession extends EventTarget {
  constructor({ url, token }) {
    super();
    this.url = url;
    this.token = token || '';
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject, onProgress, method}
    this.queue = []; // texts waiting for a connection
    this.sessionId = null;
    this.lastSeq = 0;
    this.closedByUser = false;
    this.attempt = 0;
    this.initialized = null;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  status(state, text) {
    this.state = state;
    this.emit('status', { state, text });
  }

  /** Opens the connection and initializes a new session; resolves to the server's answer. */
  async connect() {
    this.closedByUser = false;
    this.status('connecting', `Connecting to ${this.url}…`);
    await this.open();
    const result = await this.initialize(false);
    this.status('connected', `Connected to ${result.serverInfo.name} ${result.serverInfo.version}`);
    return result;
  }

  /** A WebSocket to the endpoint; the token rides in the subprotocol list. */
  open() {
    return new Promise((resolve, reject) => {
      const protocols = ['mcp'];
      if (this.token) protocols.push(`mcp.auth.${this.token}`);
      let ws;
      try {
        ws = new WebSocket(this.url, protocols);
      } catch (e) {
        reject(e);
        return;
      }
      let opened = false;
      ws.onopen = () => {
        opened = true;
        this.ws = ws;
        resolve();
      };
      ws.onmessage = (event) => this.receive(event.data);
      ws.onclose = (event) => {
        if (!opened) {
          reject(new Error(`the server refused the connection (close ${event.code})`));
          return;
        }
        if (this.ws !== ws) return;
        if (this.reconnecting) {
          // An attempt's connection closed before its initialize was answered.
          this.ws = null;
          for (const [id, pending] of this.pending) {
            if (pending.method !== 'initialize') continue;
            this.pending.delete(id);
            pending.reject(new Error(`the connection closed (${event.code})`));
          }
          return;
        }
        this.dropped(event);
      };
    });
  }

  /** Sends `initialize` (resuming when asked) and waits for its answer. */
  initialize(resume) {
    const message = {
      jsonrpc: '2.0',
      id: `initialize-${this.nextId++}`,
      method: 'initialize',
      params: {
        protocolVersion: PROTOCOL_VERSION,
        capabilities: { experimental: { resume: resume ? { lastSeq: this.lastSeq } : {} } },
        clientInfo: { name: 'mcp-console', version: '1' },
      },
    };
    if (resume) message.mcpSessionId = this.sessionId;
    return new Promise((resolve, reject) => {
      this.pending.set(message.id, {
        method: 'initialize',
        onProgress: null,
        resolve: (result, raw) => {
          if (!resume) {
            this.sessionId = raw.mcpSessionId || null;
            this.lastSeq = 0;
          }
          this.initialized = result;
          this.write({ jsonrpc: '2.0', method: 'notifications/initialized' });
          this.flush();
          resolve(result);
        },
        reject,
      });
      this.write(message);
    });
  }

  write(message) {
    const text = JSON.stringify(message);
    this.emit('frame', { direction: 'out', text, time: new Date() });
    this.ws.send(text);
  }

  /** Sends now when connected, or after the resume. */
  send(message) {
    if (this.state === 'connected' && this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.write(message);
    } else {
      this.queue.push(message);
    }
  }

  flush() {
    const queued = this.queue;
    this.queue = [];
    for (const message of queued) this.write(message);
  }

  /** A request; resolves to its result, rejects with its error. */
  request(method, params = {}, { onProgress } = {}) {
    const id = this.nextId++;
    const message = { jsonrpc: '2.0', id, method, params: { ...params } };
    if (onProgress) message.params._meta = { progressToken: id };
    const promise = new Promise((resolve, reject) => {
      this.pending.set(id, { method, onProgress, resolve, reject });
    });
    this.send(message);
    return { id, promise };
  }

  /**
   * A request of MCP 2026-07-28 on the same socket (the server decides the era per
   * request): its `_meta` says the revision and declares the tasks extension.
   */
  modernRequest(method, params = {}) {
    const meta = {
      'io.modelcontextprotocol/protocolVersion': MODERN_VERSION,
      'io.modelcontextprotocol/clientCapabilities': { extensions: { [TASKS_EXTENSION]: {} } },
      'io.modelcontextprotocol/clientInfo': { name: 'mcp-console', version: '1' },
    };
    return this.request(method, { ...params, _meta: meta });
  }

  notify(method, params) {
    this.send({ jsonrpc: '2.0', method, params });
  }

  /** Asks the server to stop request `id`; its promise rejects with `cancelled`. */
  cancel(id, reason = 'cancelled by the user') {
    const pending = this.pending.get(id);
    this.pending.delete(id);
    this.notify('notifications/cancelled', { requestId: id, reason });
    if (pending) {
      const error = new Error('cancelled');
      error.cancelled = true;
      pending.reject(error);
    }
  }

  receive(text) {
    this.emit('frame', { direction: 'in', text, time: new Date() });
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof message.seq === 'number') {
      // Seen before the connection dropped: nothing twice.
      if (message.seq <= this.lastSeq) return;
      this.lastSeq = message.seq;
    }
    if (message.id !== undefined && message.method === undefined) {
      const pending = this.pending.get(message.id);
      if (!pending) return;
      this.pending.delete(message.id);
      if (message.error) {
        const error = new Error(message.error.message);
        error.code = message.error.code;
        error.data = message.error.data;
        pending.reject(error);
      } else {
        pending.resolve(message.result, message);
      }
      return;
    }
    if (message.method === 'notifications/progress') {
      const pending = this.pending.get(message.params?.progressToken);
      if (pending?.onProgress) pending.onProgress(message.params);
      return;
    }
    if (message.id !== undefined) {
      // A request from the server: this console answers pings only.
      const answer = message.method === 'ping'
        ? { jsonrpc: '2.0', id: message.id, result: {} }
        : { jsonrpc: '2.0', id: message.id, error: { code: -32601, message: `the console does not handle ${message.method}` } };
      this.write(answer);
      return;
    }
    this.emit('notification', { message });
  }

  /** The connection dropped: reconnect with backoff and resume. */
  async dropped(event) {
    this.ws = null;
    if (this.closedByUser) {
      this.status('disconnected', 'Disconnected');
      return;
    }
    // Requests not yet answered stay pending: their answers come with the resume.
    this.reconnecting = true;
    try {
      await this.reconnect(event);
    } finally {
      this.reconnecting = false;
    }
  }

  async reconnect(event) {
    for (this.attempt = 1; !this.closedByUser; this.attempt++) {
      const delay = Math.min(MAX_DELAY_MS, 250 * 2 ** (this.attempt - 1)) * (1 + Math.random() / 2);
      this.status('reconnecting', `Connection lost (close ${event.code}); reconnecting in ${(delay / 1000).toFixed(1)} s (attempt ${this.attempt})…`);
      this.emit('frame', { direction: 'info', text: JSON.stringify({ reconnecting: { attempt: this.attempt, delayMs: Math.round(delay) } }), time: new Date() });
      await new Promise((resolve) => setTimeout(resolve, delay));
      if (this.closedByUser) return;
      try {
        await this.open();
      } catch {
        continue;
      }
      try {
        if (!this.sessionId) throw Object.assign(new Error('not resumable'), { code: -32003 });
        await this.initialize(true);
        this.status('connected', `Reconnected: session ${this.sessionId.slice(0, 8)}… resumed after message ${this.lastSeq}`);
        return;
      } catch (error) {
        if (error.code !== -32003) {
          this.ws?.close();
          continue;
        }
        // The session is gone: what was running is lost; start a new one.
        this.failAll(`the session could not be resumed (${error.message})`);
        try {
          await this.initialize(false);
          this.status('connected', 'Reconnected with a new session: the previous one could not be resumed');
          return;
        } catch {
          this.ws?.close();
        }
      }
    }
  }

  failAll(why) {
    for (const [id, pending] of this.pending) {
      if (pending.method === 'initialize') continue;
      this.pending.delete(id);
      pending.reject(new Error(why));
    }
  }

  close() {
    this.closedByUser = true;
    for (const [id, pending] of this.pending) {
      if (pending.method === 'tools/call') this.cancel(id, 'the console disconnected');
    }
    this.failAll('disconnected');
    if (this.ws) this.ws.close(1000, 'console closed');
    this.status('disconnected', 'Disconnected');
  }
}
