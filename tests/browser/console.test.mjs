// The web console in a real browser (Debian's Chromium, driven by playwright-core) against
// the real binary: connect, add(5, 3) = 8, divide by zero shows the tool's error, a 50,000-
// item batch moves the progress bar and Cancel stops it, a broadcast appears, and a server
// restart (SIGKILL, then the same port and data) is survived with the session resumed.
//
// Run by `cargo xtask e2e`, with MCP_SERVER_BIN naming the server binary, E2E_DEPS the
// folder holding node_modules/playwright-core, CHROMIUM the browser, and E2E_OUT the folder
// for screenshots.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

const require = createRequire(join(resolve(process.env.E2E_DEPS ?? '.'), 'index.js'));
const { chromium } = require('playwright-core');

const OUT = resolve(process.env.E2E_OUT ?? 'target/e2e');
const STEP = 20_000; // a guard against a hang, never a synchronization device

/** Starts the server with `args`; resolves to its address and process once it listens. */
async function startServer(args) {
  const child = spawn(process.env.MCP_SERVER_BIN, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const first = await Promise.race([
    new Promise((done) => lines.once('line', done)),
    new Promise((_, fail) => child.once('exit', (code) => fail(new Error(`server exited with ${code}`)))),
  ]);
  const prefix = 'listening on http://';
  assert.ok(first.startsWith(prefix), `unexpected first line: ${first}`);
  return { address: first.slice(prefix.length), child };
}

function stopped(child, signal) {
  const exited = new Promise((done) => child.once('exit', (code, sig) => done({ code, sig })));
  child.kill(signal);
  return exited;
}

test('the console in Chromium: math, errors, progress and cancel, tasks, broadcasts, a restart', { timeout: 120_000 }, async () => {
  mkdirSync(OUT, { recursive: true });
  const data = mkdtempSync(join(tmpdir(), 'mcp-console-'));
  let server = await startServer(['--listen', '127.0.0.1:0', '--data-dir', data]);
  const address = server.address;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const problems = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    page.setDefaultTimeout(STEP);
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (/Content Security Policy|Refused to/.test(message.text())) problems.push(message.text());
    });
    const shot = (name) => page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });

    const response = await page.goto(`http://${address}/`);
    assert.equal(response.status(), 200);
    assert.match(response.headers()['content-security-policy'], /script-src 'self'/);

    // Connect.
    await page.click('#connect-button');
    await page.locator('#status[data-state=connected]').waitFor();
    assert.match(await page.textContent('#status'), /Connected to mcp-server/);
    await page.locator('#tool-list button[data-tool=process_batch]').waitFor();
    await shot('01-connected');

    // add(5, 3) is 8.
    await page.fill('#math-a', '5');
    await page.fill('#math-b', '3');
    await page.click('#math-buttons button[data-op=add]');
    await page.locator('#math-result', { hasText: '= 8' }).waitFor();
    assert.equal(await page.textContent('#math-result'), 'add(5, 3) = 8');

    // Division by zero is the tool's error, shown as one.
    await page.fill('#math-b', '0');
    await page.click('#math-buttons button[data-op=divide]');
    await page.locator('#math-result.tool-error', { hasText: 'division by zero' }).waitFor();
    await shot('02-math');

    // The form validates before sending.
    await page.click('#tool-list button[data-tool=process_batch]');
    await page.fill('#tool-form input[name=count]', '-5');
    await page.click('#run-button');
    await page.locator('#tool-form .error', { hasText: 'count must be at least 0' }).waitFor();

    // A 50,000-item batch: the bar moves, then Cancel stops it.
    await page.fill('#tool-form input[name=count]', '50000');
    await page.fill('#tool-form input[name=cost]', '1000000');
    await page.click('#run-button');
    await page.waitForFunction(() => Number(document.getElementById('operation-bar').value) > 0);
    const detail = await page.textContent('#operation-detail');
    assert.match(detail, /%.*\/ 50,000/, detail);
    await page.waitForFunction(() => /\/s/.test(document.getElementById('operation-detail').textContent));
    assert.match(await page.textContent('#operation-detail'), /ETA/);
    await shot('03-progress');
    await page.click('#cancel-button');
    await page.locator('#operation-detail', { hasText: 'Cancelled after' }).waitFor();
    await shot('04-cancelled');

    // The same tool as a task (2026-07-28, on the same socket): listed, polled to its result.
    await page.locator('#tasks:not([hidden])').waitFor();
    await page.click('#tool-list button[data-tool=process_batch]');
    await page.fill('#tool-form input[name=count]', '100000');
    await page.check('#as-task');
    await page.click('#run-button');
    await page.locator('#task-list li[data-status=completed]').waitFor();
    await page.locator('#result-body', { hasText: '"processed": 100000' }).waitFor();
    // A long one, cancelled from its row.
    await page.click('#tool-list button[data-tool=sleep]');
    await page.fill('#tool-form input[name=ms]', '300000');
    await page.check('#as-task');
    await page.click('#run-button');
    await page.locator('#task-list li[data-status=working] button').first().click();
    await page.locator('#task-list li[data-status=cancelled]').waitFor();
    await shot('04b-tasks');

    // A broadcast from an admin appears.
    const broadcast = await fetch(`http://${address}/admin/broadcast`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'maintenance at noon', level: 'warning' }),
    });
    assert.equal(broadcast.status, 200);
    await page.locator('#notifications li', { hasText: 'maintenance at noon' }).waitFor();

    // Statistics, subscribed.
    await page.click('#stats-button');
    await page.locator('#stats', { hasText: '"sessions"' }).waitFor();
    await shot('05-live');

    // Every frame is in the log, and the filter narrows it.
    await page.fill('#log-filter', 'tools/call');
    const shown = await page.locator('#log-list li:not([hidden])').count();
    assert.ok(shown >= 3, `tools/call frames shown: ${shown}`);
    await page.fill('#log-filter', '');

    // The server dies and comes back on the same port with the same data: the console
    // reconnects and resumes its session.
    const session = await page.evaluate(() => document.querySelector('#server-info dd:nth-of-type(5)').textContent);
    assert.match(session, /^[0-9a-f]{32}$/);
    await stopped(server.child, 'SIGKILL');
    await page.locator('#status[data-state=reconnecting]').waitFor();
    server = await startServer(['--listen', address, '--data-dir', data]);
    await page.locator('#status', { hasText: `session ${session.slice(0, 8)}… resumed` }).waitFor();
    await page.fill('#math-b', '3');
    await page.click('#math-buttons button[data-op=multiply]');
    await page.locator('#math-result', { hasText: '= 15' }).waitFor();
    await shot('06-resumed');
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
    await stopped(server.child, 'SIGTERM');
  }
});
