// The console: connects, shows the server and its tools, runs them with live progress and
// cancellation (or as tasks, polled and cancellable), shows notifications and the
// statistics resource, and logs every frame.

import { McpSession } from './mcp.js';
import { toolForm } from './forms.js';

const $ = (id) => document.getElementById(id);
const MATH = ['add', 'subtract', 'multiply', 'divide', 'power', 'modulo', 'sqrt'];
const STATS_URI = 'mcp://server/stats';
const LOG_LIMIT = 2000;

let session = null;
let tools = [];
let running = null; // {id, name, started, first, cancelled}
let statsSubscribed = false;
const taskTools = new Map(); // tool name -> 'optional' | 'required'
const followed = new Map(); // task id -> its list item

// ---- connection ---------------------------------------------------------------------

$('url').value = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/mcp`;

$('connect').addEventListener('submit', async (event) => {
  event.preventDefault();
  if (session) session.close();
  session = new McpSession({ url: $('url').value, token: $('token').value });
  session.addEventListener('status', ({ detail }) => showStatus(detail.state, detail.text));
  session.addEventListener('frame', ({ detail }) => logFrame(detail));
  session.addEventListener('notification', ({ detail }) => notification(detail.message));
  $('connect-button').disabled = true;
  try {
    const result = await session.connect();
    $('disconnect-button').disabled = false;
    showServer(result);
    await loadTools();
  } catch (error) {
    showStatus('error', `Cannot connect: ${error.message}`);
    session = null;
  } finally {
    $('connect-button').disabled = false;
  }
});

$('disconnect-button').addEventListener('click', () => {
  session?.close();
  session = null;
  $('disconnect-button').disabled = true;
  for (const id of ['server', 'math', 'tools', 'live']) $(id).hidden = true;
});

function showStatus(state, text) {
  const status = $('status');
  status.dataset.state = state;
  status.textContent = text;
}

function showServer(result) {
  const info = $('server-info');
  info.replaceChildren();
  const rows = [
    ['Name', `${result.serverInfo.title || result.serverInfo.name} (${result.serverInfo.name})`],
    ['Version', result.serverInfo.version],
    ['Protocol', result.protocolVersion],
    ['Capabilities', Object.keys(result.capabilities || {}).join(', ') || 'none'],
    ['Session', session.sessionId || 'not resumable'],
  ];
  if (result.instructions) rows.push(['Instructions', result.instructions]);
  for (const [name, value] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = name;
    const dd = document.createElement('dd');
    dd.textContent = value;
    info.append(dt, dd);
  }
  for (const id of ['server', 'tools', 'live']) $(id).hidden = false;
}

// ---- tools --------------------------------------------------------------------------

async function loadTools() {
  tools = [];
  let cursor;
  do {
    const page = await session.request('tools/list', cursor ? { cursor } : {}).promise;
    tools.push(...page.tools);
    cursor = page.nextCursor;
  } while (cursor);
  const list = $('tool-list');
  list.replaceChildren();
  for (const tool of tools) {
    const item = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = tool.name;
    button.dataset.tool = tool.name;
    button.addEventListener('click', () => chooseTool(tool, button));
    item.append(button);
    list.append(item);
  }
  const buttons = $('math-buttons');
  buttons.replaceChildren();
  for (const name of MATH) {
    if (!tools.some((t) => t.name === name)) continue;
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = name;
    button.dataset.op = name;
    button.addEventListener('click', () => math(name));
    buttons.append(button);
  }
  $('math').hidden = buttons.childElementCount === 0;
  // Which tools run as tasks: a 2026-07-28 `tools/list` says (a 2025 session is not told).
  taskTools.clear();
  try {
    let cursor;
    do {
      const page = await session.modernRequest('tools/list', cursor ? { cursor } : {}).promise;
      for (const tool of page.tools) {
        if (tool.execution?.taskSupport) taskTools.set(tool.name, tool.execution.taskSupport);
      }
      cursor = page.nextCursor;
    } while (cursor);
  } catch {
    // A server of the 2025 revisions only: no tasks.
  }
  $('tasks').hidden = taskTools.size === 0;
}

function chooseTool(tool, button) {
  for (const b of $('tool-list').querySelectorAll('button')) b.removeAttribute('aria-current');
  button.setAttribute('aria-current', 'true');
  const form = toolForm(tool, (args) => ($('as-task')?.checked ? runTask(tool.name, args) : runTool(tool.name, args)));
  const support = taskTools.get(tool.name);
  if (support) {
    const label = document.createElement('label');
    label.className = 'inline';
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.id = 'as-task';
    box.checked = support === 'required';
    box.disabled = support === 'required';
    label.append(box, ' Run as a task');
    form.querySelector('#run-button').before(label);
  }
  $('tool-panel').replaceChildren(form);
}

// ---- tasks ---------------------------------------------------------------------------

/** Starts a call as a task: it is listed, polled, and can be cancelled. */
async function runTask(name, args) {
  try {
    const created = await session.modernRequest('tools/call', { name, arguments: args }).promise;
    if (created.resultType !== 'task') {
      showResult(created);
      return;
    }
    follow(created.taskId, `${name} ${JSON.stringify(args)}`, created);
  } catch (error) {
    showError(error);
  }
}

/** Lists task `id` and polls it until it ends, at the interval the server suggests. */
async function follow(id, label, first) {
  if (followed.has(id)) return;
  const item = document.createElement('li');
  item.dataset.task = id;
  const name = document.createElement('span');
  name.textContent = `${label} · ${id.slice(0, 8)}…`;
  const bar = document.createElement('progress');
  bar.max = 1;
  const status = document.createElement('span');
  status.className = 'task-status';
  const cancel = document.createElement('button');
  cancel.type = 'button';
  cancel.textContent = 'Cancel';
  cancel.addEventListener('click', async () => {
    cancel.disabled = true;
    try {
      await session.modernRequest('tasks/cancel', { taskId: id }).promise;
    } catch (error) {
      status.textContent = `cannot cancel: ${error.message}`;
    }
  });
  item.append(name, bar, status, cancel);
  $('task-list').prepend(item);
  followed.set(id, item);
  let task = first;
  for (;;) {
    if (task) {
      item.dataset.status = task.status;
      const message = task.statusMessage && task.statusMessage !== task.status ? `: ${task.statusMessage}` : '';
      status.textContent = `${task.status}${message}`;
      const progress = task._meta?.['mcp-server/progress'];
      if (progress?.total) {
        bar.max = progress.total;
        bar.value = progress.progress;
      }
      if (['completed', 'failed', 'cancelled'].includes(task.status)) {
        cancel.disabled = true;
        bar.max = 1;
        bar.value = task.status === 'completed' ? 1 : bar.value;
        if (task.status === 'completed') showResult(task.result);
        if (task.status === 'failed') showError(task.error);
        return;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(200, task?.pollIntervalMs ?? 1000)));
    try {
      task = await session.modernRequest('tasks/get', { taskId: id }).promise;
    } catch (error) {
      if (error.code === -32602) {
        status.textContent = 'unknown: it expired, or it is not yours';
        cancel.disabled = true;
        return;
      }
      // Not reachable now (the session reconnects): poll again.
      task = null;
    }
  }
}

$('task-follow').addEventListener('submit', (event) => {
  event.preventDefault();
  const id = $('task-id').value.trim();
  if (/^[0-9a-f]{32}$/.test(id)) follow(id, 'task', null);
});

async function math(op) {
  const a = Number($('math-a').value);
  const b = Number($('math-b').value);
  const out = $('math-result');
  if (!Number.isFinite(a) || (op !== 'sqrt' && !Number.isFinite(b))) {
    out.textContent = 'a and b must be numbers';
    out.className = 'tool-error';
    return;
  }
  const args = op === 'sqrt' ? { a } : { a, b };
  try {
    const result = await session.request('tools/call', { name: op, arguments: args }).promise;
    const text = result.content?.find((c) => c.type === 'text')?.text ?? '';
    if (result.isError) {
      out.className = 'tool-error';
      out.textContent = text;
    } else {
      out.className = '';
      out.textContent = `${op}(${op === 'sqrt' ? a : `${a}, ${b}`}) = ${result.structuredContent?.result ?? text}`;
    }
  } catch (error) {
    out.className = 'tool-error';
    out.textContent = error.message;
  }
}

/** Runs a tool with a progress token: the progress section shows it live. */
async function runTool(name, args) {
  if (running) session.cancel(running.id, 'replaced by another call');
  const { id, promise } = session.request('tools/call', { name, arguments: args }, { onProgress: (p) => progress(id, p) });
  running = { id, name, started: performance.now(), first: null, last: null };
  $('operation').hidden = false;
  $('operation-name').textContent = `${name} ${JSON.stringify(args)}`;
  $('operation-bar').removeAttribute('value');
  $('operation-detail').textContent = 'Started…';
  $('cancel-button').disabled = false;
  try {
    const result = await promise;
    if (running?.id === id) finish(`Done in ${seconds(performance.now() - running.started)}`);
    showResult(result);
  } catch (error) {
    if (error.cancelled) {
      const at = running?.last ? ` after ${formatCount(running.last.progress)}${running.last.total ? ` of ${formatCount(running.last.total)}` : ''}` : '';
      if (running?.id === id) finish(`Cancelled${at}`);
      return;
    }
    if (running?.id === id) finish(`Failed: ${error.message}`);
    showError(error);
  }
}

function progress(id, p) {
  if (!running || running.id !== id) return;
  const now = performance.now();
  running.first ??= { at: now, progress: p.progress };
  running.last = p;
  const bar = $('operation-bar');
  if (p.total) {
    bar.max = p.total;
    bar.value = p.progress;
  }
  const parts = [];
  if (p.total) parts.push(`${Math.floor((100 * p.progress) / p.total)}%`, `${formatCount(p.progress)} / ${formatCount(p.total)}`);
  else parts.push(formatCount(p.progress));
  const elapsed = (now - running.first.at) / 1000;
  const rate = elapsed > 0 ? (p.progress - running.first.progress) / elapsed : 0;
  if (rate > 0) {
    parts.push(`${formatCount(Math.round(rate))}/s`);
    if (p.total) parts.push(`ETA ${Math.max(0, (p.total - p.progress) / rate).toFixed(1)} s`);
  }
  if (p.message) parts.push(p.message);
  $('operation-detail').textContent = parts.join(' · ');
}

function finish(summary) {
  $('operation-detail').textContent = summary;
  $('cancel-button').disabled = true;
  running = null;
}

$('cancel-button').addEventListener('click', () => {
  if (running) session.cancel(running.id);
});

function showResult(result) {
  const body = $('result-body');
  body.replaceChildren();
  $('result').hidden = false;
  for (const content of result.content || []) {
    const p = document.createElement('p');
    if (content.type === 'text') p.textContent = content.text;
    else p.textContent = `[${content.type}${content.mimeType ? ` ${content.mimeType}` : ''}]`;
    if (result.isError) p.className = 'tool-error';
    body.append(p);
  }
  if (result.structuredContent !== undefined && !result.isError) {
    const pre = document.createElement('pre');
    pre.className = 'json';
    pre.textContent = JSON.stringify(result.structuredContent, null, 2);
    body.append(pre);
  }
}

function showError(error) {
  $('result').hidden = false;
  const p = document.createElement('p');
  p.className = 'tool-error';
  p.textContent = `Error ${error.code ?? ''}: ${error.message}`;
  $('result-body').replaceChildren(p);
}

// ---- live data ----------------------------------------------------------------------

function notification(message) {
  if (message.method === 'notifications/resources/updated' && message.params?.uri === STATS_URI) {
    readStats();
    return;
  }
  const item = document.createElement('li');
  if (message.method === 'notifications/message') {
    const level = document.createElement('span');
    level.className = 'level';
    level.textContent = message.params.level;
    const data = message.params.data;
    const text = typeof data === 'string' ? data : data?.message ?? JSON.stringify(data);
    item.append(level, `${message.params.logger ? `${message.params.logger}: ` : ''}${text}`);
  } else {
    item.textContent = `${message.method} ${JSON.stringify(message.params ?? {})}`;
  }
  const list = $('notifications');
  list.prepend(item);
  while (list.childElementCount > 200) list.lastElementChild.remove();
}

$('stats-button').addEventListener('click', async () => {
  if (!session) return;
  statsSubscribed = !statsSubscribed;
  $('stats-button').textContent = statsSubscribed ? 'Unsubscribe' : 'Subscribe';
  await session.request(statsSubscribed ? 'resources/subscribe' : 'resources/unsubscribe', { uri: STATS_URI }).promise;
  if (statsSubscribed) await readStats();
});

async function readStats() {
  const result = await session.request('resources/read', { uri: STATS_URI }).promise;
  const text = result.contents?.[0]?.text ?? '';
  try {
    $('stats').textContent = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    $('stats').textContent = text;
  }
}

// ---- message log --------------------------------------------------------------------

let paused = false;
let hidden = 0;

function logFrame({ direction, text, time }) {
  if (paused) {
    hidden++;
    $('log-count').textContent = `paused: ${hidden} not shown`;
    return;
  }
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    value = text;
  }
  const item = document.createElement('li');
  item.className = `dir-${direction}`;
  const meta = document.createElement('div');
  meta.className = 'meta';
  const arrow = document.createElement('span');
  arrow.className = 'arrow';
  arrow.textContent = direction === 'out' ? '→ sent' : direction === 'in' ? '← received' : '• info';
  const when = document.createElement('time');
  when.dateTime = time.toISOString();
  when.textContent = time.toISOString().slice(11, 23);
  const what = document.createElement('span');
  what.textContent = summary(value);
  meta.append(when, arrow, what);
  const pre = document.createElement('pre');
  pre.textContent = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  item.append(meta, pre);
  item.dataset.search = text.toLowerCase();
  applyFilter(item);
  const list = $('log-list');
  list.prepend(item);
  while (list.childElementCount > LOG_LIMIT) list.lastElementChild.remove();
  $('log-count').textContent = `${list.childElementCount} messages`;
}

function summary(value) {
  if (typeof value !== 'object' || value === null) return 'text';
  if (value.method) return `${value.method}${value.id !== undefined ? ` #${value.id}` : ''}`;
  if (value.id !== undefined) return `${value.error ? 'error' : 'result'} #${value.id}`;
  return Object.keys(value).join(', ');
}

function applyFilter(item) {
  const filter = $('log-filter').value.trim().toLowerCase();
  item.hidden = filter !== '' && !item.dataset.search.includes(filter);
}

$('log-filter').addEventListener('input', () => {
  for (const item of $('log-list').children) applyFilter(item);
});

$('log-pause').addEventListener('click', () => {
  paused = !paused;
  hidden = 0;
  $('log-pause').setAttribute('aria-pressed', String(paused));
  $('log-pause').textContent = paused ? 'Resume' : 'Pause';
  if (!paused) $('log-count').textContent = `${$('log-list').childElementCount} messages`;
});

$('log-clear').addEventListener('click', () => {
  $('log-list').replaceChildren();
  $('log-count').textContent = '0 messages';
});

// ---- formatting ---------------------------------------------------------------------

function formatCount(n) {
  return Number(n).toLocaleString('en-US');
}

function seconds(ms) {
  return `${(ms / 1000).toFixed(2)} s`;
}
