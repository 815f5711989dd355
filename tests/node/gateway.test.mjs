// The gateway as the official OpenAI Node SDK sees it: a healthy simulated provider, a `relay`
// provider with schema quirks the gateway must normalize, and an unreachable one, all behind one
// `cutover serve` on loopback.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import OpenAI from 'openai';

import { closedPort } from './support/fault_provider.mjs';
import { startGateway, startSimulator } from './support/processes.mjs';

// Fresh random secrets per run, so finding one in any output can only mean it leaked.
const clientKey = `ck-test-${randomBytes(16).toString('hex')}`;
const simulatorKey = `sk-sim-${randomBytes(16).toString('hex')}`;
const relayKey = `sk-relay-${randomBytes(16).toString('hex')}`;
const secrets = { clientKey, simulatorKey, relayKey };

const clientName = 'sdk-tests';
const prompt = 'Say hello to the gateway please';
// The simulator answers with a fixed prefix followed by the prompt's first six words.
const expectedAnswer = 'This is a simulated answer to: Say hello to the gateway please';

const suiteTimeoutMs = 90_000;
const testTimeoutMs = 20_000;


function gatewayConfig({ simulatorURL, relayURL, unreachableURL, extraRelayModel = '' }) {
  return `listen: 127.0.0.1:0
workers: 2
drain_timeout: 5s
auth:
  client_keys:
    - name: ${clientName}
      key_env: CUTOVER_TEST_CLIENT_KEY
providers:
  sim:
    base_url: ${simulatorURL}
    api_key_env: CUTOVER_TEST_SIM_KEY
    models:
      gpt-4: sim-gpt-4.1
      gpt-3.5-turbo-instruct: sim-instruct
      text-embedding-3-small: sim-embedding
  relay:
    base_url: ${relayURL}
    api_key_env: CUTOVER_TEST_RELAY_KEY
    models: {relay-gpt-4: relay-chat-model${extraRelayModel ? `, ${extraRelayModel}: relay-chat-model` : ''}}
  unreachable:
    base_url: ${unreachableURL}
    no_api_key: true
    timeouts: {connect: 2s, total: 5s}
    models: {gpt-4-unreachable: nowhere}
routes:
  - models: [gpt-4, gpt-3.5-turbo-instruct, text-embedding-3-small]
    provider: sim
  - models: [relay-gpt-4${extraRelayModel ? `, ${extraRelayModel}` : ''}]
    provider: relay
  - models: [gpt-4-unreachable]
    provider: unreachable
`;
}

function assertUsage(usage) {
  assert.ok(usage, 'usage is present');
  assert.equal(typeof usage.prompt_tokens, 'number');
  assert.equal(typeof usage.completion_tokens, 'number');
  assert.ok(usage.prompt_tokens > 0, `prompt_tokens ${usage.prompt_tokens}`);
  assert.ok(usage.completion_tokens > 0, `completion_tokens ${usage.completion_tokens}`);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
}

// Drains an SDK stream; `text` is the content assembled from the deltas.
async function collectStream(stream) {
  const chunks = [];
  let text = '';
  for await (const chunk of stream) {
    chunks.push(chunk);
    for (const choice of chunk.choices) text += choice.delta?.content ?? '';
  }
  return { chunks, text };
}

describe('cutover gateway through the OpenAI SDK', { timeout: suiteTimeoutMs }, () => {
  let workDirectory;
  let configPath;
  let configURLs;
  let simulator;
  let relay;
  let gateway;
  let client;
  // Every error the SDK raised, kept for the key-leak check.
  const errorsSeen = [];
  // Request ids the gateway answered with, and what the access log must say about them.
  const expectedLogLines = [];

  async function expectApiError(request, ErrorClass, status) {
    const error = await request.then(
      (value) => assert.fail(`expected ${ErrorClass.name}, got ${JSON.stringify(value)}`),
      (thrown) => thrown,
    );
    errorsSeen.push(error);
    assert.ok(error instanceof ErrorClass, `expected ${ErrorClass.name}, got ${error?.constructor?.name}: ${error}`);
    assert.equal(error.status, status);
    // OpenAI error schema, with the id the gateway also sends as x-request-id.
    assert.equal(typeof error.error?.message, 'string');
    assert.equal(typeof error.error?.type, 'string');
    assert.ok(error.requestID, 'x-request-id header on the error');
    assert.equal(error.error.request_id, error.requestID);
    return error;
  }

  before(async () => {
    workDirectory = await mkdtemp(path.join(os.tmpdir(), 'cutover-node-'));
    simulator = await startSimulator({
      profile: 'healthy',
      apiKeyEnv: 'CUTOVER_TEST_SIM_KEY',
      environment: { CUTOVER_TEST_SIM_KEY: simulatorKey },
    });
    relay = await startSimulator({
      profile: 'relay',
      apiKeyEnv: 'CUTOVER_TEST_RELAY_KEY',
      environment: { CUTOVER_TEST_RELAY_KEY: relayKey },
    });
    configPath = path.join(workDirectory, 'cutover.yaml');
    configURLs = {
      simulatorURL: simulator.baseURL,
      relayURL: relay.baseURL,
      unreachableURL: `http://127.0.0.1:${await closedPort()}/v1`,
    };
    await writeFile(configPath, gatewayConfig(configURLs));
    gateway = await startGateway({
      configPath,
      environment: {
        CUTOVER_TEST_CLIENT_KEY: clientKey,
        CUTOVER_TEST_SIM_KEY: simulatorKey,
        CUTOVER_TEST_RELAY_KEY: relayKey,
      },
    });
    client = new OpenAI({ baseURL: gateway.baseURL, apiKey: clientKey, maxRetries: 0, timeout: 10_000 });
  }, { timeout: 30_000 });

  after(async () => {
    await Promise.all([gateway, simulator, relay].filter(Boolean).map((child) => child.kill()));
    if (workDirectory) await rm(workDirectory, { recursive: true, force: true });
  });

  let plainAnswer;
  let plainRequestId;

  test('plain chat completion', { timeout: testTimeoutMs }, async () => {
    const { data: completion, response } = await client.chat.completions
      .create({ model: 'gpt-4', messages: [{ role: 'user', content: prompt }] })
      .withResponse();
    plainAnswer = completion;
    assert.equal(response.headers.get('x-cutover-provider'), 'sim');
    assert.ok(completion.id, 'id is present');
    assert.equal(completion.object, 'chat.completion');
    assert.equal(typeof completion.created, 'number');
    // The client-facing name, not the provider's `sim-gpt-4.1`.
    assert.equal(completion.model, 'gpt-4');
    assert.equal(completion.choices.length, 1);
    assert.equal(completion.choices[0].message.role, 'assistant');
    assert.equal(completion.choices[0].message.content, expectedAnswer);
    assert.equal(completion.choices[0].finish_reason, 'stop');
    assertUsage(completion.usage);
    plainRequestId = completion._request_id;
    expectedLogLines.push({ request_id: plainRequestId, status: 200, model: 'gpt-4', stream: false });
  });

  test('streamed chat completion without include_usage carries no usage', { timeout: testTimeoutMs }, async () => {
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'gpt-4', messages: [{ role: 'user', content: prompt }], stream: true })
      .withResponse();
    assert.equal(response.headers.get('x-cutover-provider'), 'sim');
    const { chunks, text } = await collectStream(stream);
    assert.ok(chunks.length > 2, `several chunks, got ${chunks.length}`);
    assert.equal(text, expectedAnswer);
    if (plainAnswer) assert.equal(text, plainAnswer.choices[0].message.content);
    // The gateway asked the provider for usage on its own behalf; that chunk must not show.
    for (const chunk of chunks) {
      assert.equal(chunk.usage ?? null, null, `unexpected usage in ${JSON.stringify(chunk)}`);
      assert.equal(chunk.model, 'gpt-4');
      assert.equal(chunk.object, 'chat.completion.chunk');
      assert.equal(chunk.id, chunks[0].id);
    }
    const finishReasons = chunks.flatMap((chunk) => chunk.choices.map((choice) => choice.finish_reason));
    assert.equal(finishReasons.at(-1), 'stop');
    expectedLogLines.push({
      request_id: response.headers.get('x-request-id'), status: 200, model: 'gpt-4', stream: true,
    });
  });

  test('streamed chat completion with include_usage ends with a usage chunk', { timeout: testTimeoutMs }, async () => {
    const stream = await client.chat.completions.create({
      model: 'gpt-4',
      messages: [{ role: 'user', content: prompt }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const { chunks, text } = await collectStream(stream);
    assert.equal(text, expectedAnswer);
    const last = chunks.at(-1);
    assertUsage(last.usage);
    assert.deepEqual(last.choices, []);
    if (plainAnswer) assert.deepEqual(last.usage, plainAnswer.usage);
    const chunksWithUsage = chunks.filter((chunk) => chunk.usage != null);
    assert.equal(chunksWithUsage.length, 1, 'exactly one usage chunk');
  });

  test('relay quirks are normalized in a plain completion', { timeout: testTimeoutMs }, async () => {
    const { data: completion, response } = await client.chat.completions
      .create({ model: 'relay-gpt-4', messages: [{ role: 'user', content: prompt }] })
      .withResponse();
    assert.equal(response.headers.get('x-cutover-provider'), 'relay');
    assert.ok(completion.id, 'id is present');
    assert.equal(completion.object, 'chat.completion');
    assert.equal(typeof completion.created, 'number');
    assert.equal(completion.model, 'relay-gpt-4');
    assert.equal(completion.choices[0].message.content, expectedAnswer);
    // The relay says "eos" and reports usage.generated_tokens.
    assert.equal(completion.choices[0].finish_reason, 'stop');
    assertUsage(completion.usage);
    assert.equal(completion.usage.generated_tokens, undefined);
  });

  test('relay quirks are normalized in a stream', { timeout: testTimeoutMs }, async () => {
    const stream = await client.chat.completions.create({
      model: 'relay-gpt-4',
      messages: [{ role: 'user', content: prompt }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const { chunks, text } = await collectStream(stream);
    assert.equal(text, expectedAnswer);
    for (const chunk of chunks) {
      assert.ok(chunk.id, `id in ${JSON.stringify(chunk)}`);
      assert.equal(chunk.object, 'chat.completion.chunk');
      assert.equal(typeof chunk.created, 'number');
      assert.equal(chunk.model, 'relay-gpt-4');
    }
    const finishReasons = chunks
      .flatMap((chunk) => chunk.choices.map((choice) => choice.finish_reason))
      .filter((reason) => reason != null);
    assert.deepEqual(finishReasons, ['stop']);
    const last = chunks.at(-1);
    assertUsage(last.usage);
    assert.equal(last.usage.generated_tokens, undefined);
  });

  test('models.list() names the routed, client-facing models', { timeout: testTimeoutMs }, async () => {
    const ids = [];
    for await (const model of client.models.list()) ids.push(model.id);
    assert.ok(ids.includes('gpt-4'), `gpt-4 in ${ids}`);
    assert.ok(ids.includes('relay-gpt-4'), `relay-gpt-4 in ${ids}`);
    assert.ok(!ids.includes('sim-gpt-4.1'), `provider model names stay hidden: ${ids}`);
  });

  test('embeddings', { timeout: testTimeoutMs }, async () => {
    // The SDK asks for base64 unless told otherwise; the simulator only answers with floats.
    const response = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input: prompt,
      encoding_format: 'float',
    });
    assert.equal(response.object, 'list');
    assert.equal(response.model, 'text-embedding-3-small');
    assert.equal(response.data.length, 1);
    const [embedding] = response.data;
    assert.equal(embedding.index, 0);
    assert.ok(embedding.embedding.length > 0);
    for (const value of embedding.embedding) assert.equal(typeof value, 'number');
    assert.ok(response.usage.prompt_tokens > 0);
  });

  test('legacy completions', { timeout: testTimeoutMs }, async () => {
    const completion = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt });
    assert.ok(completion.id, 'id is present');
    assert.equal(completion.object, 'text_completion');
    assert.equal(completion.model, 'gpt-3.5-turbo-instruct');
    assert.equal(completion.choices[0].text, expectedAnswer);
    assert.equal(completion.choices[0].finish_reason, 'stop');
    assertUsage(completion.usage);
  });

  test('a wrong client key raises AuthenticationError', { timeout: testTimeoutMs }, async () => {
    const stranger = new OpenAI({
      baseURL: gateway.baseURL, apiKey: 'ck-not-a-configured-key', maxRetries: 0, timeout: 10_000,
    });
    const error = await expectApiError(
      stranger.chat.completions.create({ model: 'gpt-4', messages: [{ role: 'user', content: prompt }] }),
      OpenAI.AuthenticationError, 401);
    expectedLogLines.push({ request_id: error.requestID, status: 401 });
  });

  test('an unknown model raises NotFoundError', { timeout: testTimeoutMs }, async () => {
    const error = await expectApiError(
      client.chat.completions.create({ model: 'gpt-nonexistent', messages: [{ role: 'user', content: prompt }] }),
      OpenAI.NotFoundError, 404);
    assert.equal(error.code, 'model_not_found');
  });

  test('an unreachable provider surfaces as an OpenAI-schema server error', { timeout: testTimeoutMs }, async () => {
    const error = await expectApiError(
      client.chat.completions.create({ model: 'gpt-4-unreachable', messages: [{ role: 'user', content: prompt }] }),
      OpenAI.InternalServerError, 502);
    assert.equal(error.headers.get('x-cutover-provider'), null, 'no provider served it');
  });

  test('the gateway, not the client, authenticates to the provider', { timeout: testTimeoutMs }, async () => {
    // The simulator really checks keys: the client's key, or none, is refused there directly...
    for (const authorization of [`Bearer ${clientKey}`, undefined]) {
      const direct = await fetch(`${simulator.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(authorization && { authorization }) },
        body: JSON.stringify({ model: 'sim-gpt-4.1', messages: [{ role: 'user', content: prompt }] }),
        signal: AbortSignal.timeout(10_000),
      });
      await direct.arrayBuffer();
      assert.equal(direct.status, 401, `simulator with ${authorization ? "the client's key" : 'no key'}`);
    }
    // ...so this success means the gateway replaced the client's key with the provider's.
    const completion = await client.chat.completions.create({
      model: 'gpt-4', messages: [{ role: 'user', content: prompt }],
    });
    assert.equal(completion.choices[0].message.content, expectedAnswer);
  });

  test('SIGHUP reloads the configuration and refuses a broken one', { timeout: testTimeoutMs }, async () => {
    const reloadedModel = 'relay-gpt-4-reloaded';
    await expectApiError(
      client.chat.completions.create({ model: reloadedModel, messages: [{ role: 'user', content: prompt }] }),
      OpenAI.NotFoundError, 404);
    await writeFile(configPath, gatewayConfig({ ...configURLs, extraRelayModel: reloadedModel }));
    gateway.child.kill('SIGHUP');
    const deadline = Date.now() + 5_000;
    while (!gateway.stderr.includes('configuration reloaded') && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const completion = await client.chat.completions.create({
      model: reloadedModel, messages: [{ role: 'user', content: prompt }],
    });
    assert.equal(completion.model, reloadedModel);

    await writeFile(configPath, 'providers: [this is not a valid configuration\n');
    const refusalsBefore = gateway.stderr.split('reload refused').length;
    gateway.child.kill('SIGHUP');
    const refusalDeadline = Date.now() + 5_000;
    while (gateway.stderr.split('reload refused').length === refusalsBefore && Date.now() < refusalDeadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.ok(gateway.stderr.split('reload refused').length > refusalsBefore, 'the broken file was refused');
    const still = await client.chat.completions.create({
      model: reloadedModel, messages: [{ role: 'user', content: prompt }],
    });
    assert.equal(still.model, reloadedModel, 'the running configuration stayed in force');
  });

  test('SIGTERM drains the gateway and it exits with code 0', { timeout: testTimeoutMs }, async () => {
    const { code, signal } = await gateway.stop('SIGTERM');
    assert.deepEqual({ code, signal }, { code: 0, signal: null },
      `gateway exit; stderr tail:\n${gateway.stderr.slice(-2000)}`);
  });

  test('no secret appears in gateway output or error bodies', { timeout: testTimeoutMs }, async () => {
    assert.ok(gateway.exited, 'runs after the gateway stopped, so its output is complete');
    assert.ok(errorsSeen.length >= 3, `error bodies were collected (${errorsSeen.length})`);
    const places = {
      'gateway stdout': gateway.stdout,
      'gateway stderr': gateway.stderr,
      ...Object.fromEntries(errorsSeen.map((error, index) => [
        `error ${index} (${error.status})`,
        JSON.stringify({ message: error.message, body: error.error, headers: [...(error.headers ?? [])] }),
      ])),
    };
    for (const [where, text] of Object.entries(places)) {
      for (const [name, secret] of Object.entries(secrets)) {
        assert.ok(!text.includes(secret), `${name} leaked into ${where}`);
      }
    }
  });

  test('the access log has one JSON line per answered request', { timeout: testTimeoutMs }, async () => {
    assert.ok(gateway.exited, 'runs after the gateway stopped, so the log is flushed');
    const lines = gateway.stdout.split('\n').filter((line) => line.trim() !== '');
    const records = lines.map((line) => {
      try {
        return JSON.parse(line);
      } catch {
        return assert.fail(`access log line is not JSON: ${line}`);
      }
    });
    assert.ok(expectedLogLines.length > 0);
    for (const expected of expectedLogLines) {
      const matching = records.filter((record) => record.request_id === expected.request_id);
      assert.equal(matching.length, 1, `one access log line for ${expected.request_id} (gateway exit: ` +
        `${JSON.stringify(gateway.exited)}); log:\n${gateway.stdout}`);
      assert.deepEqual(
        Object.fromEntries(Object.keys(expected).map((field) => [field, matching[0][field]])), expected);
    }
    const plain = records.find((record) => record.request_id === plainRequestId);
    assert.ok(plain, `access log line for the plain chat completion ${plainRequestId}`);
    for (const field of ['time', 'method', 'route', 'status', 'model', 'provider', 'provider_model',
      'client', 'stream', 'latency_ms', 'prompt_tokens', 'completion_tokens']) {
      assert.ok(field in plain, `field ${field} in ${JSON.stringify(plain)}`);
    }
    assert.equal(plain.provider, 'sim');
    assert.equal(plain.provider_model, 'sim-gpt-4.1');
    assert.equal(plain.client, clientName);
  });
});
