// The admin dashboard as an operator sees it: two healthy simulated providers behind a real
// `cutover serve` with one migration in canary and live traffic, the page opened in headless
// Chromium at /dashboard#token=..., its charts drawn from the admin API, and its Pause button
// pausing the migration for real.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { chromium } from 'playwright-core';

import { startGateway, startSimulator } from '../node/support/processes.mjs';

const clientKey = `ck-test-${randomBytes(16).toString('hex')}`;
const adminToken = `admin-test-${randomBytes(16).toString('hex')}`;
const migrationName = 'gpt4o-to-candidate';
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const artifactDirectory = process.env.ARTIFACT_DIR || os.tmpdir();
const charts = ['weight', 'errors', 'latency', 'ttft', 'agreement', 'cost'];

const suiteTimeoutMs = 100_000;
const pageTimeoutMs = 20_000;

// Shadowing starts the migration; the test promotes it into its first canary stage, where it
// stays (an hour-long stage, lenient gates) while the page is looked at.
function gatewayConfig({ primaryURL, candidateURL }) {
  return `listen: 127.0.0.1:0
workers: 1
access_log: "off"
drain_timeout: 1s
auth: {client_keys: [{name: dashboard-test, key_env: CUTOVER_TEST_CLIENT_KEY}]}
admin: {listen: 127.0.0.1:0, token_env: CUTOVER_TEST_ADMIN_TOKEN}
state_store: ":memory:"
providers:
  primary:
    base_url: ${primaryURL}
    no_api_key: true
    models: {gpt-4o: primary-gpt-4o}
    prices: {primary-gpt-4o: {input: 2.5, output: 10.0}}
  candidate:
    base_url: ${candidateURL}
    no_api_key: true
    models: {gpt-4o: candidate-gpt-4o}
    prices: {candidate-gpt-4o: {input: 0.15, output: 0.6}}
routes:
  - {models: [gpt-4o], provider: primary}
migrations:
  - name: ${migrationName}
    models: [gpt-4o]
    primary: primary
    candidate: candidate
    sticky_key: header:x-user-id
    evaluation_interval: 200ms
    shadow: {sample_rate: 100%, min_duration: 1h}
    stages:
      - {weight: 50%, min_duration: 1h}
      - {weight: 100%, min_duration: 1h}
    gates:
      max_error_rate: 50%
      max_attempt_error_rate: 50%
      inconclusive_dwells_before_pause: 1000
      latency: [{measure: total, quantile: p95, max_ratio: 50}]
`;
}

// Waits until `pattern` appears in what `child` printed on stderr; returns the first group.
async function logged(child, pattern, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = pattern.exec(child.stderr);
    if (match) return match[1];
    if (child.exited || Date.now() > deadline) {
      throw new Error(`${child.label} never logged ${pattern}:\n${child.stderr}`);
    }
    await sleep(50);
  }
}

describe('admin dashboard in a browser', { timeout: suiteTimeoutMs }, () => {
  let workDirectory;
  let primary;
  let candidate;
  let gateway;
  let adminURL;
  let browser;
  let traffic;
  let trafficRunning = false;
  const trafficErrors = [];

  async function admin(pathname, { method = 'GET', body } = {}) {
    const response = await fetch(`${adminURL}${pathname}`, {
      method,
      headers: { Authorization: `Bearer ${adminToken}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json();
    assert.equal(response.status, 200, `${method} ${pathname}: ${JSON.stringify(data)}`);
    return data;
  }

  // Chat requests from twelve users until stopped; every third one streams.
  async function sendTraffic() {
    for (let i = 0; trafficRunning; ++i) {
      const stream = i % 3 === 0;
      try {
        const response = await fetch(`${gateway.baseURL}/chat/completions`, {
          method: 'POST',
          headers: {
            Authorization: `Bearer ${clientKey}`,
            'Content-Type': 'application/json',
            'x-user-id': `user-${i % 12}`,
          },
          body: JSON.stringify({
            model: 'gpt-4o',
            stream,
            messages: [{ role: 'user', content: `Summarize request number ${i % 5} for the dashboard` }],
          }),
        });
        await response.text();
        if (response.status !== 200) trafficErrors.push(`HTTP ${response.status}`);
      } catch (error) {
        trafficErrors.push(String(error));
      }
      await sleep(40);
    }
  }

  before(async () => {
    assert.ok(existsSync(chromiumPath),
      `Chromium not found at ${chromiumPath}: install the Debian package chromium (make deps) or set CHROMIUM_PATH`);
    workDirectory = await mkdtemp(path.join(os.tmpdir(), 'cutover-dashboard-'));
    primary = await startSimulator({ profile: 'healthy' });
    candidate = await startSimulator({ profile: 'healthy' });
    const configPath = path.join(workDirectory, 'cutover.yaml');
    await writeFile(configPath, gatewayConfig({ primaryURL: primary.baseURL, candidateURL: candidate.baseURL }));
    gateway = await startGateway({
      configPath,
      environment: { CUTOVER_TEST_CLIENT_KEY: clientKey, CUTOVER_TEST_ADMIN_TOKEN: adminToken },
    });
    adminURL = `http://127.0.0.1:${await logged(gateway, /admin API on 127\.0\.0\.1:(\d+)/)}`;

    trafficRunning = true;
    traffic = Promise.all([sendTraffic(), sendTraffic(), sendTraffic()]);
    await sleep(1000);  // shadow pairs first
    const shadowing = await admin(`/admin/v1/migrations/${migrationName}`);
    assert.equal(shadowing.phase, 'shadow');
    await admin(`/admin/v1/migrations/${migrationName}/promote`, {
      method: 'POST',
      body: { generation: shadowing.generation, actor: 'dashboard-test', reason: 'into canary for the test' },
    });
    await sleep(3000);  // a few series points with traffic on both sides

    browser = await chromium.launch({ executablePath: chromiumPath, headless: true });
  });

  after(async () => {
    trafficRunning = false;
    await traffic?.catch(() => {});
    await browser?.close().catch(() => {});
    await gateway?.kill();
    await primary?.kill();
    await candidate?.kill();
    if (workDirectory) await rm(workDirectory, { recursive: true, force: true });
  });

  test('the page needs no token to load but holds no data and forbids outside sources', async () => {
    const response = await fetch(`${adminURL}/dashboard`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type'), /^text\/html; charset=utf-8/);
    assert.equal(response.headers.get('cache-control'), 'no-store');
    assert.match(response.headers.get('content-security-policy'), /default-src 'self'/);
    const html = await response.text();
    assert.ok(!html.includes(migrationName), 'the shell carries no migration data');
    const api = await fetch(`${adminURL}/admin/v1/migrations`);
    assert.equal(api.status, 401, 'the API itself still needs the token');
  });

  test('the dashboard draws every chart, shows the phase, and pauses the migration', async (t) => {
    const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
    const page = await context.newPage();
    const problems = [];
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.setDefaultTimeout(pageTimeoutMs);

    const status = await admin(`/admin/v1/migrations/${migrationName}`);
    assert.equal(status.phase, 'canary');
    await page.goto(`${adminURL}/dashboard#token=${adminToken}`);
    assert.ok(!page.url().includes(adminToken), 'the token leaves the address bar');

    const phase = page.locator('[data-field="phase"]');
    await page.waitForFunction((expected) =>
      document.querySelector('[data-field="phase"]')?.textContent === expected, status.phase);
    for (const chart of charts) {
      await page.waitForFunction((name) =>
        document.querySelectorAll(`[data-chart="${name}"] .point`).length > 0, chart)
        .catch(async () => {
          const text = await page.locator(`[data-chart="${chart}"]`).textContent().catch(() => '(no chart)');
          assert.fail(`chart '${chart}' has no points: ${text}\n${problems.join('\n')}`);
        });
    }
    assert.equal(await phase.textContent(), 'canary');

    const screenshot = path.join(artifactDirectory, 'dashboard.png');
    await mkdir(artifactDirectory, { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`dashboard screenshot: ${screenshot}`);
    t.diagnostic(`dashboard screenshot: ${screenshot}`);

    await page.locator('[data-action="pause"]').click();
    await page.waitForFunction(() =>
      document.querySelector('[data-field="phase"]')?.textContent === 'paused');
    const paused = await admin(`/admin/v1/migrations/${migrationName}`);
    assert.equal(paused.phase, 'paused');
    const history = await admin(`/admin/v1/migrations/${migrationName}/history?limit=1`);
    assert.equal(history.transitions[0].trigger, 'operator:dashboard');

    assert.deepEqual(problems, [], 'no console errors or page errors');
    assert.deepEqual(trafficErrors.slice(0, 5), [], 'client traffic was answered');
    await context.close();
  });
});
