// Every official SDK in, any provider out (issue #13): the Anthropic SDK and the OpenAI SDK's
// chat and Responses clients, each against a native-Anthropic simulated provider and an
// OpenAI-compatible one, through one `cutover serve` on loopback.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';

import { startGateway, startSimulator } from './support/processes.mjs';

const clientKey = `ck-test-${randomBytes(16).toString('hex')}`;
const anthropicKey = `sk-ant-${randomBytes(16).toString('hex')}`;
const relayKey = `sk-relay-${randomBytes(16).toString('hex')}`;
const secrets = [clientKey, anthropicKey, relayKey];

const prompt = 'Say hello to the gateway please';
// The simulator answers with a fixed prefix followed by the prompt's first six words.
const expectedAnswer = 'This is a simulated answer to: Say hello to the gateway please';
// With a system prompt (or instructions) of 'Be brief.', which the simulator reads first.
const expectedBriefAnswer = 'This is a simulated answer to: Be brief. Say hello to the';
// A 1×1 transparent PNG.
const pixelPng = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=';
const weatherTool = {
  name: 'get_weather',
  description: 'The weather in a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};

const testTimeoutMs = 30_000;

function gatewayConfig({ anthropicURL, relayURL, accessLog }) {
  return `listen: 127.0.0.1:0
workers: 2
drain_timeout: 5s
access_log: ${accessLog}
auth:
  client_keys:
    - name: sdk-tests
      key_env: CUTOVER_TEST_CLIENT_KEY
providers:
  anthropic:
    dialect: anthropic
    base_url: ${anthropicURL}
    api_key_env: CUTOVER_TEST_ANTHROPIC_KEY
    retry: {max_attempts: 2, backoff_base: 10ms, backoff_max: 50ms}
    models: {claude-sonnet: claude-sonnet-4-5-20250929}
  relay:
    base_url: ${relayURL}
    api_key_env: CUTOVER_TEST_RELAY_KEY
    retry: {max_attempts: 2, backoff_base: 10ms, backoff_max: 50ms}
    models: {claude-relay: claude-sonnet-4.5, gpt-4: sim-gpt-4.1}
routes:
  - models: [claude-sonnet]
    provider: anthropic
  - models: [claude-relay, gpt-4]
    provider: relay
`;
}

// The Anthropic SDK's view of a route: the same calls against both kinds of provider.
const anthropicRoutes = [
  { model: 'claude-sonnet', provider: 'anthropic', label: 'native Anthropic provider' },
  { model: 'claude-relay', provider: 'relay', label: 'OpenAI-compatible relay' },
];

async function expectError(request, ErrorClass, status) {
  const error = await request.then(
    (value) => assert.fail(`expected ${ErrorClass.name}, got ${JSON.stringify(value)}`),
    (thrown) => thrown,
  );
  assert.ok(error instanceof ErrorClass, `expected ${ErrorClass.name}, got ${error?.constructor?.name}: ${error}`);
  assert.equal(error.status, status);
  return error;
}

function header(error, name) {
  return typeof error.headers?.get === 'function' ? error.headers.get(name) : error.headers?.[name];
}

describe('official SDKs across dialects', { timeout: 240_000 }, () => {
  let workDirectory;
  let accessLog;
  let nativeProvider;
  let relay;
  let gateway;
  let anthropic;
  let openai;
  const errorsSeen = [];

  before(async () => {
    workDirectory = await mkdtemp(path.join(os.tmpdir(), 'cutover-dialects-'));
    accessLog = path.join(workDirectory, 'access.log');
    nativeProvider = await startSimulator({
      profile: 'healthy', dialect: 'anthropic', apiKeyEnv: 'CUTOVER_TEST_ANTHROPIC_KEY',
      environment: { CUTOVER_TEST_ANTHROPIC_KEY: anthropicKey },
    });
    relay = await startSimulator({
      profile: 'healthy', apiKeyEnv: 'CUTOVER_TEST_RELAY_KEY',
      environment: { CUTOVER_TEST_RELAY_KEY: relayKey },
    });
    const configPath = path.join(workDirectory, 'cutover.yaml');
    await writeFile(configPath, gatewayConfig({
      anthropicURL: nativeProvider.baseURL, relayURL: relay.baseURL, accessLog,
    }));
    gateway = await startGateway({
      configPath,
      environment: {
        CUTOVER_TEST_CLIENT_KEY: clientKey,
        CUTOVER_TEST_ANTHROPIC_KEY: anthropicKey,
        CUTOVER_TEST_RELAY_KEY: relayKey,
      },
    });
    const root = `http://127.0.0.1:${gateway.port}`;
    anthropic = new Anthropic({ baseURL: root, apiKey: clientKey, maxRetries: 0, timeout: 20_000 });
    openai = new OpenAI({ baseURL: gateway.baseURL, apiKey: clientKey, maxRetries: 0, timeout: 20_000 });
  }, { timeout: 30_000 });

  after(async () => {
    await Promise.all([gateway, nativeProvider, relay].filter(Boolean).map((child) => child.kill()));
    if (workDirectory) await rm(workDirectory, { recursive: true, force: true });
  });

  for (const route of anthropicRoutes) {
    describe(`Anthropic SDK, ${route.label}`, () => {
      test('plain message', { timeout: testTimeoutMs }, async () => {
        const { data: message, response } = await anthropic.messages
          .create({ model: route.model, max_tokens: 256, messages: [{ role: 'user', content: prompt }] })
          .withResponse();
        assert.equal(response.headers.get('x-cutover-provider'), route.provider);
        assert.equal(message.type, 'message');
        assert.equal(message.role, 'assistant');
        assert.equal(message.model, route.model);
        assert.match(message.id, /^msg_/);
        assert.equal(message.content.length, 1);
        assert.equal(message.content[0].type, 'text');
        assert.equal(message.content[0].text, expectedAnswer);
        assert.equal(message.stop_reason, 'end_turn');
        assert.ok(message.usage.input_tokens > 0, JSON.stringify(message.usage));
        assert.ok(message.usage.output_tokens > 0, JSON.stringify(message.usage));
      });

      test('system prompt, x-api-key and a query string', { timeout: testTimeoutMs }, async () => {
        const response = await fetch(`http://127.0.0.1:${gateway.port}/v1/messages?beta=true`, {
          method: 'POST',
          headers: { 'x-api-key': clientKey, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
          body: JSON.stringify({
            model: route.model, max_tokens: 64, system: [{ type: 'text', text: 'Be brief.', cache_control: { type: 'ephemeral' } }],
            messages: [{ role: 'user', content: [{ type: 'text', text: prompt }] }],
          }),
        });
        assert.equal(response.status, 200, await response.clone().text());
        const message = await response.json();
        assert.equal(message.content[0].type, 'text');
        assert.ok(message.content[0].text.startsWith('This is a simulated answer to:'), message.content[0].text);
      });

      test('streamed message', { timeout: testTimeoutMs }, async () => {
        const stream = anthropic.messages.stream({
          model: route.model, max_tokens: 256, messages: [{ role: 'user', content: prompt }],
        });
        const types = [];
        for await (const event of stream) types.push(event.type);
        const message = await stream.finalMessage();
        assert.equal(types[0], 'message_start');
        assert.equal(types.at(-1), 'message_stop');
        assert.ok(types.includes('content_block_delta'), types.join(','));
        assert.equal(message.content[0].text, expectedAnswer);
        assert.equal(message.stop_reason, 'end_turn');
        assert.equal(message.model, route.model);
        assert.ok(message.usage.output_tokens > 0, JSON.stringify(message.usage));
      });

      for (const streamed of [false, true]) {
        test(`tool use round trip${streamed ? ', streamed' : ''}`, { timeout: testTimeoutMs }, async () => {
          const messages = [{ role: 'user', content: 'What is the weather in Paris today?' }];
          const request = { model: route.model, max_tokens: 256, tools: [weatherTool], messages };
          const first = streamed
            ? await anthropic.messages.stream(request).finalMessage()
            : await anthropic.messages.create(request);
          assert.equal(first.stop_reason, 'tool_use');
          const call = first.content.find((block) => block.type === 'tool_use');
          assert.ok(call, JSON.stringify(first.content));
          assert.equal(call.name, 'get_weather');
          assert.match(call.id, /^[a-zA-Z0-9_-]+$/);
          assert.equal(typeof call.input.city, 'string');
          messages.push({ role: 'assistant', content: first.content });
          messages.push({ role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: 'sunny and 21 degrees' }] });
          const second = streamed
            ? await anthropic.messages.stream(request).finalMessage()
            : await anthropic.messages.create(request);
          assert.equal(second.stop_reason, 'end_turn');
          assert.equal(second.content[0].text, 'Tool said: sunny and 21 degrees');
        });
      }

      test('an image', { timeout: testTimeoutMs }, async () => {
        const message = await anthropic.messages.create({
          model: route.model, max_tokens: 64,
          messages: [{ role: 'user', content: [
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: pixelPng } },
            { type: 'text', text: 'Describe this picture' },
          ] }],
        });
        assert.equal(message.content[0].type, 'text');
        assert.ok(message.content[0].text.startsWith('This is a simulated answer to:'), message.content[0].text);
      });

      test('429 with retry-after', { timeout: testTimeoutMs }, async () => {
        const error = await expectError(anthropic.messages.create({
          model: route.model, max_tokens: 16, messages: [{ role: 'user', content: 'please [simulate:429]' }],
        }), Anthropic.RateLimitError, 429);
        errorsSeen.push(error);
        assert.equal(error.error.type, 'error');
        assert.equal(error.error.error.type, 'rate_limit_error');
        assert.ok(Number(header(error, 'retry-after')) >= 1, `retry-after ${header(error, 'retry-after')}`);
      });

      test('529 overloaded', { timeout: testTimeoutMs }, async () => {
        const error = await expectError(anthropic.messages.create({
          model: route.model, max_tokens: 16, messages: [{ role: 'user', content: 'please [simulate:529]' }],
        }), Anthropic.APIError, 529);
        errorsSeen.push(error);
        assert.equal(error.error.error.type, 'overloaded_error');
      });
    });
  }

  test('Anthropic SDK: a wrong key is a 401 in Anthropic\'s schema', { timeout: testTimeoutMs }, async () => {
    const stranger = new Anthropic({ baseURL: `http://127.0.0.1:${gateway.port}`, apiKey: 'not-a-key', maxRetries: 0 });
    const error = await expectError(stranger.messages.create({
      model: 'claude-sonnet', max_tokens: 16, messages: [{ role: 'user', content: prompt }],
    }), Anthropic.AuthenticationError, 401);
    errorsSeen.push(error);
    assert.equal(error.error.type, 'error');
    assert.equal(error.error.error.type, 'authentication_error');
  });

  test('Anthropic SDK: a request without max_tokens is a 400 naming it', { timeout: testTimeoutMs }, async () => {
    const response = await fetch(`http://127.0.0.1:${gateway.port}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': clientKey, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'claude-relay', messages: [{ role: 'user', content: prompt }] }),
    });
    assert.equal(response.status, 400);
    const body = await response.json();
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'invalid_request_error');
    assert.match(body.error.message, /max_tokens/);
  });

  test('count_tokens: counted by a native provider, 404 elsewhere', { timeout: testTimeoutMs }, async () => {
    const counted = await anthropic.messages.countTokens({
      model: 'claude-sonnet', messages: [{ role: 'user', content: prompt }],
    });
    assert.ok(counted.input_tokens > 0, JSON.stringify(counted));
    const error = await expectError(anthropic.messages.countTokens({
      model: 'claude-relay', messages: [{ role: 'user', content: prompt }],
    }), Anthropic.NotFoundError, 404);
    assert.equal(error.error.error.type, 'not_found_error');
  });

  test('OpenAI chat client against a native Anthropic provider', { timeout: testTimeoutMs }, async () => {
    const completion = await openai.chat.completions.create({
      model: 'claude-sonnet', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: prompt }],
    });
    assert.equal(completion.object, 'chat.completion');
    assert.equal(completion.model, 'claude-sonnet');
    assert.equal(completion.choices[0].message.content, expectedBriefAnswer);
    assert.equal(completion.choices[0].finish_reason, 'stop');
    assert.equal(completion.usage.total_tokens, completion.usage.prompt_tokens + completion.usage.completion_tokens);

    const stream = await openai.chat.completions.create({
      model: 'claude-sonnet', messages: [{ role: 'user', content: prompt }], stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage = null;
    for await (const chunk of stream) {
      for (const choice of chunk.choices) text += choice.delta?.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, expectedAnswer);
    assert.ok(usage?.completion_tokens > 0, JSON.stringify(usage));
  });

  test('OpenAI chat client: a tool call round trip through a native Anthropic provider', { timeout: testTimeoutMs }, async () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: weatherTool.input_schema } }];
    const messages = [{ role: 'user', content: 'What is the weather in Paris today?' }];
    const first = await openai.chat.completions.create({ model: 'claude-sonnet', messages, tools });
    assert.equal(first.choices[0].finish_reason, 'tool_calls');
    const call = first.choices[0].message.tool_calls[0];
    assert.equal(call.function.name, 'get_weather');
    assert.equal(typeof JSON.parse(call.function.arguments).city, 'string');
    messages.push(first.choices[0].message);
    messages.push({ role: 'tool', tool_call_id: call.id, content: 'rainy' });
    const second = await openai.chat.completions.create({ model: 'claude-sonnet', messages, tools });
    assert.equal(second.choices[0].message.content, 'Tool said: rainy');
  });

  for (const model of ['gpt-4', 'claude-sonnet']) {
    describe(`OpenAI Responses client, model ${model}`, () => {
      test('plain', { timeout: testTimeoutMs }, async () => {
        const response = await openai.responses.create({ model, input: prompt, instructions: 'Be brief.' });
        assert.equal(response.object, 'response');
        assert.equal(response.status, 'completed');
        assert.equal(response.model, model);
        assert.equal(response.output_text, expectedBriefAnswer);
        assert.equal(response.store, false);
        assert.ok(response.usage.input_tokens > 0 && response.usage.output_tokens > 0, JSON.stringify(response.usage));
      });

      test('streamed', { timeout: testTimeoutMs }, async () => {
        const stream = await openai.responses.create({ model, input: prompt, stream: true });
        const types = [];
        let text = '';
        let completed;
        let sequence = -1;
        for await (const event of stream) {
          types.push(event.type);
          assert.ok(event.sequence_number > sequence, `sequence ${event.sequence_number} after ${sequence}`);
          sequence = event.sequence_number;
          if (event.type === 'response.output_text.delta') text += event.delta;
          if (event.type === 'response.completed') completed = event.response;
        }
        assert.equal(types[0], 'response.created');
        assert.equal(types.at(-1), 'response.completed');
        assert.equal(text, expectedAnswer);
        assert.equal(completed.status, 'completed');
        assert.ok(completed.usage.output_tokens > 0, JSON.stringify(completed.usage));
      });

      test('a function-call round trip', { timeout: testTimeoutMs }, async () => {
        const tools = [{ type: 'function', name: 'get_weather', parameters: weatherTool.input_schema, strict: false }];
        const input = [{ role: 'user', content: 'What is the weather in Paris today?' }];
        const first = await openai.responses.create({ model, input, tools });
        const call = first.output.find((item) => item.type === 'function_call');
        assert.ok(call, JSON.stringify(first.output));
        assert.equal(call.name, 'get_weather');
        assert.equal(typeof JSON.parse(call.arguments).city, 'string');
        input.push(call);
        input.push({ type: 'function_call_output', call_id: call.call_id, output: 'foggy' });
        const second = await openai.responses.create({ model, input, tools });
        assert.equal(second.output_text, 'Tool said: foggy');
      });
    });
  }

  test('Responses: what needs server state is a 400 naming the field', { timeout: testTimeoutMs }, async () => {
    const error = await expectError(openai.responses.create({
      model: 'gpt-4', input: prompt, previous_response_id: 'resp_123',
    }), OpenAI.BadRequestError, 400);
    assert.match(error.message, /previous_response_id/);
    const stored = await fetch(`${gateway.baseURL}/responses/resp_123`, { headers: { authorization: `Bearer ${clientKey}` } });
    assert.equal(stored.status, 404);
  });

  test('no provider key in any error or in the access log', { timeout: testTimeoutMs }, async () => {
    const seen = errorsSeen.map((error) => `${error.message} ${JSON.stringify(error.error)}`).join('\n');
    const log = await readFile(accessLog, 'utf8').catch(() => '');
    for (const secret of secrets) {
      assert.ok(!seen.includes(secret), 'a key leaked into an error');
      assert.ok(!log.includes(secret), 'a key leaked into the access log');
      assert.ok(!gateway.stderr.includes(secret), 'a key leaked into the gateway log');
    }
  });
});
