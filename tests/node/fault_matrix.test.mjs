// The fault matrix (issue #11): every scenario of tests/node/support/fault_provider.mjs played
// with the official OpenAI SDK (default retries) twice, at the same time: directly against one
// fake provider, and through a fresh `cutover serve` in front of a second fake provider with the
// same seed. Requests name themselves (`[fault-key:K]` in the prompt), so both providers make the
// same decision for the same request's n-th attempt, whoever retries it and however concurrent
// requests interleave. A third fake provider, always healthy, is the fallback in the `+fallback`
// rows.
//
// Per scenario and side it records successes (complete content only), failures by status and
// error class, SDK attempts, provider attempts, hangs, and silently truncated streams; then it
// checks, through the gateway: the gateway still runs and /healthz answers; no request hangs; no
// stream or answer the SDK accepted is incomplete; every failure is an OpenAI-schema error with
// a request id (the gateway's own errors carry it in the body too); at most 3 provider attempts
// per SDK attempt; at least as many successes as direct (where the direct side could succeed);
// with a healthy fallback, no client error at all. Every violated check is listed, not just the
// first; the table is printed at the end (and written to FAULT_MATRIX_REPORT when set).
//
// Short form (ctest node.fault_matrix): N=20 per side, a third streamed (stream-only faults: all
// streamed). Long form: bench/fault_matrix.sh. Environment:
//   FAULT_MATRIX_N             requests per side (default 20)
//   FAULT_MATRIX_CONCURRENCY   requests in flight per side (default: per scenario, 5 to 20)
//   FAULT_MATRIX_RATE          start at most this many requests per second (default: unpaced,
//                              except `flapping`, 4/s)
//   FAULT_MATRIX_SCENARIOS     comma-separated row names to run (default: all)
//   FAULT_MATRIX_SEED          seed of the fake providers (default 1)
//   FAULT_MATRIX_HANG_MS       a request still unfinished after this long is a hang (default 15000)
//   FAULT_MATRIX_SDK_TIMEOUT_MS  the SDK client's timeout option (default 10000)
//   FAULT_MATRIX_HUGE_MB       size of the huge answer (default 20)
//   FAULT_MATRIX_REPORT        write {label, rows} as JSON to this file
//   FAULT_MATRIX_LABEL         a label for the report
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import OpenAI from 'openai';

import {
  closedPort, errorMarker, expectedContent, selfSignedCertificate, startFaultProvider,
} from './support/fault_provider.mjs';
import { startGateway, withTimeout } from './support/processes.mjs';

const env = process.env;
const numberFrom = (name, fallback) => (env[name] !== undefined && env[name] !== '' ? Number(env[name]) : fallback);
const requestsPerSide = numberFrom('FAULT_MATRIX_N', 20);
const concurrencyOverride = numberFrom('FAULT_MATRIX_CONCURRENCY', 0);
const rateOverride = numberFrom('FAULT_MATRIX_RATE', 0);
const seed = numberFrom('FAULT_MATRIX_SEED', 1);
const hangMsDefault = numberFrom('FAULT_MATRIX_HANG_MS', 15_000);
const sdkTimeoutMs = numberFrom('FAULT_MATRIX_SDK_TIMEOUT_MS', 10_000);
const hugeBytes = Math.round(numberFrom('FAULT_MATRIX_HUGE_MB', 20) * 1024 * 1024);
const selected = (env.FAULT_MATRIX_SCENARIOS ?? '').split(',').map((name) => name.trim()).filter(Boolean);

const clientKey = `ck-fault-${randomBytes(12).toString('hex')}`;
const model = 'gpt-4o';
const maxProviderAttemptsPerClientAttempt = 3; // the gateway's default retry.max_attempts

// The rows. `scenario` defaults to the name; `provider`: 'fault' (default), 'refused' (nothing
// listens) or 'tls' (a healthy fault provider behind a self-signed certificate); `streamShare`:
// 1 = every request streamed, else a third; `n`: a cap on requests per side; `timeouts`: the
// faulty provider's gateway timeouts; `neverWorseExempt`: why "through >= direct" does not apply;
// `clockMargin`: the share of N by which a wall-clock scenario may miss "through >= direct";
// `throughStatuses`: the only failure classes allowed through the gateway.
const matrix = [
  { name: 'healthy' },
  { name: 'rate_limit_10_retry_after', concurrency: 10 },
  { name: 'rate_limit_50_retry_after', concurrency: 10 },
  { name: 'rate_limit_90_retry_after', concurrency: 10 },
  { name: 'rate_limit_10_no_header', concurrency: 10 },
  { name: 'rate_limit_50_no_header', concurrency: 10 },
  { name: 'rate_limit_90_no_header', concurrency: 10 },
  { name: 'quota_exhausted', concurrency: 10 },
  { name: 'error_500_30' },
  { name: 'error_503_30' },
  { name: 'error_500_100', concurrency: 10 },
  { name: 'error_503_100', concurrency: 10 },
  { name: 'reset_before_first_byte_30' },
  { name: 'reset_mid_stream' },
  // Direct, the SDK waits forever on a silent body (its timeout stops at the headers), so its
  // hangs are expected there; everything runs at once to pay the hang guard only once.
  { name: 'stall_mid_stream', concurrency: 20, hangMs: 8_000, timeouts: { idle: '1s' } },
  {
    name: 'slow_first_byte', concurrency: 20, timeouts: { first_byte: '1s' },
    neverWorseExempt: 'the gateway is configured with first_byte 1s, below the provider\'s 3 s',
    throughStatuses: ['504'],
  },
  { name: 'malformed_json' },
  { name: 'malformed_sse', streamShare: 1 },
  { name: 'stream_without_done', streamShare: 1 },
  { name: 'sse_content_length', streamShare: 1 },
  { name: 'sse_close_delimited', streamShare: 1 },
  { name: 'sse_crlf', streamShare: 1 },
  { name: 'sse_no_trailing_blank', streamShare: 1 },
  { name: 'json_to_stream', streamShare: 1 },
  // The fake provider builds the 20 MB answer before its first byte, which takes seconds on a
  // loaded machine (a sanitizer build beside it): the row is about size, not first-byte timing
  // (8 s stays under the SDK's own 10 s, so a late answer is still the gateway's 504).
  { name: 'huge_answer', n: 3, concurrency: 3, timeouts: { first_byte: '8s', idle: '5s', total: '60s' } },
  // Healthy or failing by the wall clock (2 s each), not by the request's key: the two sides'
  // attempts land in different phases, so "never worse" holds within a margin of 15 %, not exactly.
  { name: 'flapping', rate: 4, clockMargin: 0.15 },
  { name: 'connection_refused', scenario: 'healthy', provider: 'refused', concurrency: 10 },
  { name: 'tls_wrong_cert', scenario: 'healthy', provider: 'tls', concurrency: 10 },
  // With a healthy fallback provider the client must see no error at all.
  { name: 'error_503_100+fallback', scenario: 'error_503_100', fallback: true, concurrency: 10 },
  { name: 'rate_limit_90_retry_after+fallback', scenario: 'rate_limit_90_retry_after', fallback: true, concurrency: 10 },
  { name: 'reset_before_first_byte_30+fallback', scenario: 'reset_before_first_byte_30', fallback: true },
  { name: 'connection_refused+fallback', scenario: 'healthy', provider: 'refused', fallback: true, concurrency: 10 },
];

const rows = selected.length ? matrix.filter((row) => selected.includes(row.name)) : matrix;
const unknown = selected.filter((name) => !matrix.some((row) => row.name === name));
if (unknown.length) throw new Error(`FAULT_MATRIX_SCENARIOS names unknown rows: ${unknown.join(', ')}`);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function gatewayConfig({ faultyURL, fallbackURL, timeouts }) {
  const t = { connect: '1s', first_byte: '2s', idle: '2s', total: '30s', ...timeouts };
  return `listen: 127.0.0.1:0
workers: 1
drain_timeout: 2s
state_store: ":memory:"
auth:
  client_keys:
    - name: fault-matrix
      key_env: CUTOVER_FAULT_CLIENT_KEY
providers:
  faulty:
    base_url: ${faultyURL}
    no_api_key: true
    models: {${model}: ${model}}
    timeouts: {connect: ${t.connect}, first_byte: ${t.first_byte}, idle: ${t.idle}, total: ${t.total}}
${fallbackURL ? `  backup:
    base_url: ${fallbackURL}
    no_api_key: true
    models: {${model}: ${model}}
    timeouts: {connect: 1s, first_byte: 2s, idle: 2s, total: 30s}
` : ''}routes:
  - models: [${model}]
    provider: faulty
${fallbackURL ? '    fallback: [backup]\n' : ''}`;
}

// The failure class of an error the SDK raised, as the table shows it.
function failureClass(error) {
  if (error instanceof OpenAI.APIUserAbortError) return 'hang';
  if (error instanceof OpenAI.APIConnectionTimeoutError) return 'sdk_timeout';
  if (error instanceof OpenAI.APIConnectionError) return 'connection_error';
  if (error instanceof OpenAI.APIError) {
    const code = error.code ?? error.error?.code;
    if (error.status === undefined) return `stream_error${code ? `:${code}` : ''}`;
    return `${error.status}${code ? `:${code}` : ''}`;
  }
  if (error instanceof SyntaxError) return 'bad_json';
  if (error?.message === 'terminated' || error?.cause?.code === 'UND_ERR_SOCKET') return 'terminated';
  return error?.name ?? 'error';
}

// Why an error the gateway answered is not in OpenAI's schema with a request id, or null.
function schemaProblem(error) {
  if (!(error instanceof OpenAI.APIError) || error instanceof OpenAI.APIConnectionError) {
    return `not an OpenAI API error: ${error?.name}: ${String(error?.message).slice(0, 120)}`;
  }
  const body = error.error;
  if (typeof body?.message !== 'string' || typeof body?.type !== 'string') {
    return `no {error: {message, type}} body: ${JSON.stringify(body)?.slice(0, 160)}`;
  }
  if (!error.requestID) return 'no x-request-id header';
  const passedThrough = body.message.startsWith(errorMarker);
  if (!passedThrough && body.request_id !== error.requestID) {
    return `the gateway's error has request_id ${body.request_id}, header ${error.requestID}`;
  }
  return null;
}

// Plays `count` requests on one side; resolves with one record per request.
async function playSide({ baseURL, count, concurrency, rate, streamShare, hangMs, expected }) {
  let sdkAttempts = 0;
  const client = new OpenAI({
    baseURL, apiKey: clientKey, timeout: sdkTimeoutMs, logLevel: 'off',
    fetch: (url, init) => {
      sdkAttempts++;
      return fetch(url, init);
    },
  });
  const records = new Array(count);
  let next = 0;
  const started = Date.now();
  const worker = async () => {
    while (next < count) {
      const index = next++;
      if (rate > 0) {
        const due = started + (index * 1000) / rate;
        if (due > Date.now()) await sleep(due - Date.now());
      }
      const stream = streamShare >= 1 || index % 3 === 2;
      records[index] = await playRequest(client, { index, stream, includeUsage: stream && index % 2 === 0, hangMs, expected });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { records, sdkAttempts: () => sdkAttempts };
}

async function playRequest(client, { index, stream, includeUsage, hangMs, expected }) {
  const controller = new AbortController();
  const messages = [{ role: 'user', content: `Fault matrix request ${index} [fault-key:${index}]` }];
  const record = { index, stream, outcome: null, ms: 0 };
  const t0 = performance.now();
  const work = (async () => {
    if (!stream) {
      const completion = await client.chat.completions.create({ model, messages }, { signal: controller.signal });
      return completion.choices?.[0]?.message?.content;
    }
    const events = await client.chat.completions.create(
      { model, messages, stream: true, ...(includeUsage && { stream_options: { include_usage: true } }) },
      { signal: controller.signal });
    let text = '';
    for await (const event of events) {
      for (const choice of event.choices ?? []) text += choice.delta?.content ?? '';
    }
    return text;
  })();
  work.catch(() => {}); // a hung request's late rejection is not an unhandled one
  let timer;
  const guard = new Promise((resolve) => {
    timer = setTimeout(() => {
      controller.abort();
      // The abort should end it; if the SDK does not listen, the hang is still reported.
      setTimeout(() => resolve({ hang: true }), 2_000).unref();
    }, hangMs);
  });
  try {
    const result = await Promise.race([work.then((content) => ({ content })), guard]);
    // An aborted stream ends quietly in the SDK (it returns what it had): still a hang.
    if (result.hang || controller.signal.aborted) {
      record.outcome = 'hang';
    } else if (result.content === expected) {
      record.outcome = 'ok';
    } else {
      const content = result.content ?? '';
      record.outcome = expected.startsWith(content) ? 'truncated' : 'wrong_content';
      record.detail = `${content.length} of ${expected.length} characters`;
    }
  } catch (error) {
    record.outcome = controller.signal.aborted ? 'hang' : failureClass(error);
    record.error = error;
  } finally {
    clearTimeout(timer);
    record.ms = Math.round(performance.now() - t0);
  }
  return record;
}

function summarize(records) {
  const outcomes = {};
  for (const record of records) outcomes[record.outcome] = (outcomes[record.outcome] ?? 0) + 1;
  return { ok: outcomes.ok ?? 0, outcomes };
}

const formatOutcomes = (outcomes) => Object.entries(outcomes).filter(([name]) => name !== 'ok')
  .sort(([a], [b]) => a.localeCompare(b)).map(([name, count]) => `${name}×${count}`).join(' ') || '-';

const results = [];

function table(resultRows) {
  const lines = [
    '| scenario | direct ok/N | through ok/N | direct failures | through failures | SDK attempts direct/through | provider attempts direct/through | checks |',
    '|---|---:|---:|---|---|---:|---:|---|',
  ];
  for (const r of resultRows) {
    const upstream = `${r.direct.providerAttempts}/${r.through.providerAttempts}${r.fallbackAttempts !== undefined ? ` (+${r.fallbackAttempts} fallback)` : ''}`;
    lines.push(`| ${r.name} | ${r.direct.ok}/${r.n} | ${r.through.ok}/${r.n} | ${formatOutcomes(r.direct.outcomes)} | ${formatOutcomes(r.through.outcomes)} | ${r.direct.sdkAttempts}/${r.through.sdkAttempts} | ${upstream} | ${r.violations.length ? `FAIL: ${r.violations.map((v) => v.check).join(', ')}` : 'pass'} |`);
  }
  return lines.join('\n');
}

describe('fault matrix: the OpenAI SDK directly and through cutover', () => {
  let workDirectory;
  let certificate;

  before(async () => {
    workDirectory = await mkdtemp(path.join(os.tmpdir(), 'cutover-fault-'));
    if (rows.some((row) => row.provider === 'tls')) certificate = await selfSignedCertificate();
  });

  after(async () => {
    if (workDirectory) await rm(workDirectory, { recursive: true, force: true });
    if (certificate) await certificate.cleanup();
    if (!results.length) return;
    const label = env.FAULT_MATRIX_LABEL ?? 'short form';
    const text = table(results);
    console.log(`\nfault matrix (${label}; seed ${seed})\n${text}\n`);
    for (const r of results) {
      for (const v of r.violations) console.log(`  FAIL ${r.name}: ${v.check}: ${v.message}`);
      if (r.gatewayLog) console.log(`  FAIL ${r.name}: (${r.gatewayLog})`);
    }
    if (env.FAULT_MATRIX_REPORT) {
      writeFileSync(env.FAULT_MATRIX_REPORT, JSON.stringify({
        label, seed, requestsPerSide, table: text,
        rows: results.map(({ name, n, direct, through, fallbackAttempts, violations, gatewayLog, settings }) => ({
          name, n, direct, through, fallbackAttempts, settings, violations, gatewayLog,
        })),
      }, null, 2));
    }
  });

  for (const row of rows) {
    const scenarioName = row.scenario ?? row.name;
    const n = Math.min(requestsPerSide, row.n ?? Infinity);
    const concurrency = concurrencyOverride || row.concurrency || 5;
    const rate = rateOverride || row.rate || 0;
    const hangMs = row.hangMs && !env.FAULT_MATRIX_HANG_MS ? row.hangMs : hangMsDefault;
    const streamShare = row.streamShare ?? 1 / 3;
    // Bounded however the scenario goes: every wave of requests may take the hang guard.
    const testTimeout = Math.ceil(n / concurrency) * (hangMs + 3_000) + (rate ? (n * 1000) / rate : 0) + 30_000;

    test(row.name, { timeout: testTimeout }, async () => {
      const providers = [];
      let gateway;
      try {
        const faultOptions = { scenario: scenarioName, seed, hugeBytes };
        let directURL;
        let throughURL;
        let directProvider = null;
        let throughProvider = null;
        if (row.provider === 'refused') {
          directURL = `http://127.0.0.1:${await closedPort()}/v1`;
          throughURL = `http://127.0.0.1:${await closedPort()}/v1`;
        } else {
          const tlsOptions = row.provider === 'tls' ? { key: certificate.key, cert: certificate.cert } : null;
          directProvider = await startFaultProvider({ ...faultOptions, tlsOptions });
          throughProvider = await startFaultProvider({ ...faultOptions, tlsOptions });
          providers.push(directProvider, throughProvider);
          directURL = directProvider.baseURL;
          throughURL = throughProvider.baseURL;
        }
        let fallbackProvider = null;
        if (row.fallback) {
          fallbackProvider = await startFaultProvider({ scenario: 'healthy', seed });
          providers.push(fallbackProvider);
        }
        const configPath = path.join(workDirectory, `${row.name.replace(/[^a-z0-9_]+/gi, '_')}.yaml`);
        await writeFile(configPath, gatewayConfig({ faultyURL: throughURL, fallbackURL: fallbackProvider?.baseURL, timeouts: row.timeouts }));
        gateway = await startGateway({ configPath, environment: { CUTOVER_FAULT_CLIENT_KEY: clientKey } });

        const expected = expectedContent(scenarioName, { hugeBytes });
        const side = { count: n, concurrency, rate, streamShare, hangMs, expected };
        const [direct, through] = await Promise.all([
          playSide({ ...side, baseURL: directURL }),
          playSide({ ...side, baseURL: gateway.baseURL }),
        ]);

        // The gateway is alive and answers its health check.
        const violations = [];
        const check = (name, ok, message) => { if (!ok) violations.push({ check: name, message }); };
        let health = 'no answer';
        try {
          const response = await fetch(`http://127.0.0.1:${gateway.port}/healthz`, { signal: AbortSignal.timeout(5_000) });
          health = `${response.status} ${await response.text()}`;
        } catch (error) {
          health = `failed: ${error.message}`;
        }
        check('alive', gateway.exited === null,
          `the gateway exited ${JSON.stringify(gateway.exited)}; stderr tail:\n${gateway.stderr.slice(-1500)}`);
        check('healthz', health.startsWith('200'), `/healthz: ${health}`);

        const directSummary = summarize(direct.records);
        const throughSummary = summarize(through.records);
        const throughFailures = through.records.filter((r) => r.outcome !== 'ok');

        const hangs = throughFailures.filter((r) => r.outcome === 'hang');
        check('no_hang', hangs.length === 0,
          `${hangs.length} requests through the gateway did not finish within ${hangMs} ms (indexes ${hangs.map((r) => r.index).join(', ')})`);

        const truncated = throughFailures.filter((r) => r.outcome === 'truncated' || r.outcome === 'wrong_content');
        check('no_silent_truncation', truncated.length === 0,
          `${truncated.length} answers the SDK accepted were incomplete: ${truncated.slice(0, 3).map((r) => `#${r.index}${r.stream ? ' (stream)' : ''} ${r.outcome} ${r.detail}`).join('; ')}`);

        const schemaProblems = throughFailures.filter((r) => r.error && r.outcome !== 'hang').map((r) => ({ r, problem: schemaProblem(r.error) }))
          .filter(({ problem }) => problem);
        check('openai_error_schema', schemaProblems.length === 0,
          `${schemaProblems.length} errors not in OpenAI's schema with a request id: ${schemaProblems.slice(0, 3).map(({ r, problem }) => `#${r.index} ${r.outcome}: ${problem}`).join('; ')}`);

        const throughSdk = through.sdkAttempts();
        const throughUpstream = throughProvider?.attempts ?? 0;
        check('bounded_attempts', throughUpstream <= maxProviderAttemptsPerClientAttempt * throughSdk,
          `${throughUpstream} provider attempts for ${throughSdk} SDK attempts (at most ${maxProviderAttemptsPerClientAttempt} each)`);
        if (fallbackProvider) {
          check('bounded_fallback_attempts', fallbackProvider.attempts <= maxProviderAttemptsPerClientAttempt * throughSdk,
            `${fallbackProvider.attempts} fallback attempts for ${throughSdk} SDK attempts`);
          check('fallback_hides_errors', throughSummary.ok === n,
            `with a healthy fallback ${n - throughSummary.ok} of ${n} requests failed: ${formatOutcomes(throughSummary.outcomes)}`);
        }
        if (!row.neverWorseExempt && directSummary.ok > 0) {
          const margin = Math.ceil((row.clockMargin ?? 0) * n);
          check('never_worse_than_direct', throughSummary.ok + margin >= directSummary.ok,
            `${throughSummary.ok}/${n} succeeded through the gateway, ${directSummary.ok}/${n} directly` +
            (margin ? ` (margin ${margin} for a wall-clock scenario)` : ''));
        }
        if (row.throughStatuses) {
          const others = throughFailures.filter((r) => !row.throughStatuses.some((status) => r.outcome.startsWith(status)));
          check('expected_statuses', others.length === 0,
            `failures other than ${row.throughStatuses.join(', ')}: ${formatOutcomes(summarize(others).outcomes)}`);
        }

        // The gateway's own complaints, to explain a failed check.
        const gatewayErrors = gateway.stderr.split('\n').filter((line) => / (error|critical) /.test(line));
        const gatewayLog = violations.length && gatewayErrors.length
          ? `${gatewayErrors.length} error lines in the gateway's log, the last: ${gatewayErrors.at(-1)}` : undefined;

        results.push({
          name: row.name, n,
          settings: { scenario: scenarioName, concurrency, rate, streamShare, hangMs, timeouts: row.timeouts ?? null },
          direct: { ...directSummary, sdkAttempts: direct.sdkAttempts(), providerAttempts: directProvider?.attempts ?? 0 },
          through: { ...throughSummary, sdkAttempts: throughSdk, providerAttempts: throughUpstream },
          fallbackAttempts: fallbackProvider?.attempts,
          violations,
          gatewayLog,
        });
        if (violations.length) {
          assert.fail(`${row.name}: ${violations.length} check(s) failed\n${violations.map((v) => `- ${v.check}: ${v.message}`).join('\n')}${gatewayLog ? `\n(${gatewayLog})` : ''}`);
        }
      } finally {
        await Promise.all([
          gateway ? withTimeout(gateway.kill(), 20_000, 'gateway kill').catch(() => {}) : null,
          ...providers.map((provider) => provider.close()),
        ]);
      }
    });
  }
});
