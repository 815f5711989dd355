// The admin dashboard as an operator sees it: two healthy simulated providers behind a real
// `cutover serve` with one migration in canary and live traffic, the page opened in headless
// Chromium at /dashboard#token=..., its charts drawn from the admin API, and its Pause button
// pausing the migration for real. A second migration's candidate reports a request quota too
// small for its next stage, and the page shows that capacity hold as a banner. A second gateway
// without migrations, a cached route and a provider reporting its quota, shows the quota and
// cache cards.
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
// Sorts after migrationName, so the page still opens on that one.
const capacityMigration = 'mini-to-limited';
// The capacity migration's candidate allows this many requests a minute; at its 20 % stage it
// takes about a fifth of the burst, well within the quota, while the next stage (100 %) would
// need the whole burst per elapsed minute: more than 80 % of the quota for minutes.
const candidateQuota = 40;
const burstRequests = 100;
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const artifactDirectory = process.env.ARTIFACT_DIR || os.tmpdir();
const charts = ['weight', 'errors', 'latency', 'ttft', 'agreement', 'cost'];

const suiteTimeoutMs = 100_000;
const gatewaySuiteTimeoutMs = 60_000;
const pageTimeoutMs = 20_000;

// Shadowing starts the migration; the test promotes it into its first canary stage, where it
// stays (an hour-long stage, lenient gates) while the page is looked at.
// The second migration starts in its 20 % canary (no shadow phase) with gates lenient enough that
// a handful of candidate requests pass them, so the capacity gate alone decides: hold.
function gatewayConfig({ primaryURL, candidateURL, limitedURL }) {
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
    models: {gpt-4o: primary-gpt-4o, gpt-4o-mini: primary-gpt-4o-mini}
    prices: {primary-gpt-4o: {input: 2.5, output: 10.0}}
  candidate:
    base_url: ${candidateURL}
    no_api_key: true
    models: {gpt-4o: candidate-gpt-4o}
    prices: {candidate-gpt-4o: {input: 0.15, output: 0.6}}
  limited:
    base_url: ${limitedURL}
    no_api_key: true
    models: {gpt-4o-mini: limited-gpt-4o-mini}
routes:
  - {models: [gpt-4o], provider: primary}
  - {models: [gpt-4o-mini], provider: primary}
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
  - name: ${capacityMigration}
    models: [gpt-4o-mini]
    primary: primary
    candidate: limited
    evaluation_interval: 200ms
    stages:
      - {weight: 20%, min_duration: 1h}
      - {weight: 100%, min_duration: 1h}
    gates:
      max_error_rate: 90%
      max_attempt_error_rate: 90%
      max_rate_limited_share: 90%
      inconclusive_dwells_before_pause: 1000
      latency: []
`;
}

// A gateway with routes only: a cached route on a provider that reports a request quota.
function cacheGatewayConfig({ limitedURL }) {
  return `listen: 127.0.0.1:0
workers: 1
access_log: "off"
drain_timeout: 1s
auth: {client_keys: [{name: dashboard-test, key_env: CUTOVER_TEST_CLIENT_KEY}]}
admin: {listen: 127.0.0.1:0, token_env: CUTOVER_TEST_ADMIN_TOKEN}
state_store: ":memory:"
providers:
  limited:
    base_url: ${limitedURL}
    no_api_key: true
    models: {cached-model: limited-model}
    prices: {limited-model: {input: 2.5, output: 10.0}}
routes:
  - {models: [cached-model], provider: limited, cache: {ttl: 10m}}
`;
}

// One chat request through `gateway`: its status, headers and body text.
async function chat(gateway, body) {
  const response = await fetch(`${gateway.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${clientKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

async function adminCall(adminURL, pathname, { method = 'GET', body } = {}) {
  const response = await fetch(`${adminURL}${pathname}`, {
    method,
    headers: { Authorization: `Bearer ${adminToken}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json();
  assert.equal(response.status, 200, `${method} ${pathname}: ${JSON.stringify(data)}`);
  return data;
}

// A browser page on the dashboard that records console errors and page errors.
async function openDashboard(browser, adminURL, hash = '') {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, locale: 'en-US' });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.setDefaultTimeout(pageTimeoutMs);
  await page.goto(`${adminURL}/dashboard#token=${adminToken}${hash}`);
  return { context, page, problems };
}

// The text of the first element `selector` matches, once `predicate` holds for it (polled in the
// page, so the dashboard's refresh loop gets its turns); fails with what it last showed.
async function waitForText(page, selector, predicate, what) {
  const deadline = Date.now() + pageTimeoutMs;
  let text = null;
  for (;;) {
    text = await page.locator(selector).first().textContent({ timeout: 1000 }).catch(() => null);
    if (text !== null && predicate(text)) return text;
    if (Date.now() > deadline) assert.fail(`${what}: ${selector} shows ${JSON.stringify(text)}`);
    await sleep(100);
  }
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
  let limited;
  let gateway;
  let adminURL;
  let browser;
  let traffic;
  let trafficRunning = false;
  const trafficErrors = [];

  const admin = (pathname, options) => adminCall(adminURL, pathname, options);

  // The capacity migration's traffic: one burst, four requests at a time.
  async function sendBurst() {
    let next = 0;
    const worker = async () => {
      while (next < burstRequests) {
        const i = next++;
        const response = await chat(gateway, {
          model: 'gpt-4o-mini',
          messages: [{ role: 'user', content: `Burst request number ${i} for the capacity gate` }],
        }).catch((error) => ({ status: String(error) }));
        if (response.status !== 200) trafficErrors.push(`gpt-4o-mini: HTTP ${response.status}`);
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
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
    limited = await startSimulator({ profile: 'healthy', options: ['--quota-requests', String(candidateQuota)] });
    const configPath = path.join(workDirectory, 'cutover.yaml');
    await writeFile(configPath, gatewayConfig({
      primaryURL: primary.baseURL, candidateURL: candidate.baseURL, limitedURL: limited.baseURL }));
    gateway = await startGateway({
      configPath,
      environment: { CUTOVER_TEST_CLIENT_KEY: clientKey, CUTOVER_TEST_ADMIN_TOKEN: adminToken },
    });
    adminURL = `http://127.0.0.1:${await logged(gateway, /admin API on 127\.0\.0\.1:(\d+)/)}`;

    trafficRunning = true;
    traffic = Promise.all([sendTraffic(), sendTraffic(), sendTraffic()]);
    const burst = sendBurst();
    await sleep(1000);  // shadow pairs first
    const shadowing = await admin(`/admin/v1/migrations/${migrationName}`);
    assert.equal(shadowing.phase, 'shadow');
    await admin(`/admin/v1/migrations/${migrationName}/promote`, {
      method: 'POST',
      body: { generation: shadowing.generation, actor: 'dashboard-test', reason: 'into canary for the test' },
    });
    await sleep(3000);  // a few series points with traffic on both sides
    await burst;

    browser = await chromium.launch({ executablePath: chromiumPath, headless: true });
  });

  after(async () => {
    trafficRunning = false;
    await traffic?.catch(() => {});
    await browser?.close().catch(() => {});
    await gateway?.kill();
    await primary?.kill();
    await candidate?.kill();
    await limited?.kill();
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
    assert.ok(await page.locator('[data-field="capacity-hold"]').isHidden(),
      'no capacity hold: this candidate reports no quota');

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

  test('a candidate whose quota cannot carry the next stage shows a capacity hold banner', async () => {
    let status;
    const deadline = Date.now() + 15_000;
    do {
      status = await admin(`/admin/v1/migrations/${capacityMigration}`);
      if (status.evaluation?.verdict === 'hold') break;
      await sleep(200);
    } while (Date.now() < deadline);
    assert.equal(status.evaluation?.verdict, 'hold', JSON.stringify(status.evaluation));
    assert.equal(status.phase, 'canary');
    const gate = status.evaluation.gates.find((g) => g.gate === 'capacity');
    assert.equal(gate.verdict, 'hold');
    assert.equal(gate.figures.requests_limit, candidateQuota);

    const { context, page, problems } = await openDashboard(browser, adminURL, `&migration=${capacityMigration}`);
    await page.waitForFunction((expected) =>
      document.querySelector('[data-field="name"]')?.textContent === expected, capacityMigration);
    const banner = await waitForText(page, '[data-field="capacity-hold"]', (text) => text.includes('needs ~'),
      'the capacity hold banner');
    assert.ok(await page.locator('[data-field="capacity-hold"]').isVisible());
    assert.match(banner, /^Capacity hold\. Holding at 20 %: next stage \(100(\.0+)?%\) needs ~\d+ req\/min, the candidate reports .*limit 40\/min/);
    // The quota card: the candidate's limit with what is left; the others report nothing.
    const requests = await waitForText(page, '[data-quota="limited/0"] [data-cell="requests"]',
      (text) => /\/ 40/.test(text), 'the candidate\'s request quota');
    assert.match(requests, /^\d+ \/ 40resets in \d+/);
    assert.equal(await page.locator('[data-quota="primary/0"] [data-cell="requests"]').textContent(), 'not reported');
    assert.equal(await page.locator('[data-quota="limited/0"] [data-cell="state"]').textContent(), 'ok');
    await page.screenshot({ path: path.join(artifactDirectory, 'dashboard-capacity-hold.png'), fullPage: true });
    assert.deepEqual(problems, [], 'no console errors or page errors');
    await context.close();
  });
});

describe('dashboard of a gateway without migrations', { timeout: gatewaySuiteTimeoutMs }, () => {
  const quota = 1000;
  const prompts = ['Name a colour', 'Name a river', 'Name a mountain'];
  let workDirectory;
  let limited;
  let gateway;
  let adminURL;
  let browser;

  before(async () => {
    assert.ok(existsSync(chromiumPath), `Chromium not found at ${chromiumPath}`);
    workDirectory = await mkdtemp(path.join(os.tmpdir(), 'cutover-dashboard-cache-'));
    limited = await startSimulator({ profile: 'fast', options: ['--quota-requests', String(quota)] });
    const configPath = path.join(workDirectory, 'cutover.yaml');
    await writeFile(configPath, cacheGatewayConfig({ limitedURL: limited.baseURL }));
    gateway = await startGateway({
      configPath,
      environment: { CUTOVER_TEST_CLIENT_KEY: clientKey, CUTOVER_TEST_ADMIN_TOKEN: adminToken },
    });
    adminURL = `http://127.0.0.1:${await logged(gateway, /admin API on 127\.0\.0\.1:(\d+)/)}`;
    // Each deterministic prompt twice: a miss, then a hit; one more without temperature 0 bypasses.
    for (const round of ['miss', 'hit']) {
      for (const content of prompts) {
        const response = await chat(gateway, { model: 'cached-model', temperature: 0, messages: [{ role: 'user', content }] });
        assert.equal(response.status, 200, response.text);
        assert.equal(response.headers.get('x-cutover-cache'), round, content);
      }
    }
    const bypassed = await chat(gateway, { model: 'cached-model', messages: [{ role: 'user', content: prompts[0] }] });
    assert.equal(bypassed.status, 200, bypassed.text);
    assert.equal(bypassed.headers.get('x-cutover-cache'), 'bypass');
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true });
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await gateway?.kill();
    await limited?.kill();
    if (workDirectory) await rm(workDirectory, { recursive: true, force: true });
  });

  test('the quota and cache cards show the provider\'s quota and the cache\'s hits and savings', async () => {
    const [{ caches }, { quotas }] = await Promise.all([
      adminCall(adminURL, '/admin/v1/cache'), adminCall(adminURL, '/admin/v1/quotas')]);
    assert.equal(caches.length, 1);
    const cache = caches[0];
    assert.deepEqual([cache.hits, cache.misses, cache.bypasses], [3, 3, 1]);
    assert.ok(cache.tokens_saved > 0 && cache.cost_saved > 0, JSON.stringify(cache));
    assert.equal(quotas[0].request_limit, quota);

    const { context, page, problems } = await openDashboard(browser, adminURL);
    await page.locator('#empty').waitFor({ state: 'visible' });
    assert.ok(await page.locator('#migration').isHidden());

    const row = '[data-cache="cached-model"]';
    await waitForText(page, `${row} [data-cell="hits"]`, (text) => text === '3', 'cache hits');
    assert.equal(await page.locator(`${row} [data-cell="misses"]`).textContent(), '3');
    assert.equal(await page.locator(`${row} [data-cell="bypasses"]`).textContent(), '1');
    assert.equal(await page.locator(`${row} [data-cell="ratio"]`).textContent(), '50.0 %');
    assert.equal(await page.locator(`${row} [data-cell="entries"]`).textContent(), '3');
    assert.equal(await page.locator(`${row} [data-cell="tokens_saved"]`).textContent(),
      cache.tokens_saved.toLocaleString('en-US'));
    assert.match(await page.locator(`${row} [data-cell="cost_saved"]`).textContent(), /^\$0\.\d+$/);
    assert.equal(await page.locator('[data-cache-total] [data-cell="hits"]').textContent(), '3');
    assert.equal(await page.locator('[data-cache-total] [data-cell="tokens_saved"]').textContent(),
      cache.tokens_saved.toLocaleString('en-US'));

    // Four requests reached the provider (three misses and the bypass): 996 of 1,000 left.
    const requests = await waitForText(page, '[data-quota="limited/0"] [data-cell="requests"]',
      (text) => text.includes('/ 1,000'), 'the request quota');
    assert.match(requests, /^996 \/ 1,000resets in \d+s$/);
    assert.match(await page.locator('[data-quota="limited/0"] [data-cell="tokens"]').textContent(), /^—$/);
    assert.equal(await page.locator('[data-quota="limited/0"] [data-cell="state"]').textContent(), 'ok');

    await mkdir(artifactDirectory, { recursive: true });
    await page.screenshot({ path: path.join(artifactDirectory, 'dashboard-gateway.png'), fullPage: true });
    assert.deepEqual(problems, [], 'no console errors or page errors');
    await context.close();
  });
});
