// A fake OpenAI-compatible provider that misbehaves on purpose, for the fault matrix
// (tests/node/fault_matrix.test.mjs) and the soak (bench/soak.sh).
//
// It serves POST /v1/chat/completions on a loopback port over a raw `net` (or `tls`) server with
// its own minimal HTTP/1.1 framing, so that every scenario controls exactly which bytes go out:
// chunked or Content-Length or close-delimited bodies, resets before or after the first byte,
// stalls, malformed JSON and SSE. Plain answers are one JSON object; `stream: true` answers are
// SSE (`data: {...}\n\n` chunks, a usage chunk when stream_options.include_usage, `data: [DONE]`).
//
// Random decisions are reproducible. Each attempt draws one number in [0, 1):
//   - from a per-request generator when the request names itself: a user message containing
//     `[fault-key:K]` gets the draw mulberry32(hash(seed, K, n)) for its n-th attempt, so a
//     request sees the same decisions in the same order whether the SDK retries it directly or
//     the gateway retries it, and however concurrent requests interleave;
//   - otherwise from the instance's own mulberry32(seed) stream, in arrival order.
// Time-based scenarios (quota, flapping) start their clock at the instance's first attempt.
//
// Control endpoints (never counted as attempts): GET /_fault/stats, POST /_fault/scenario?name=X
// (also `provider.setScenario(name)`), used by bench/soak.sh to switch faults at run time.
//
// Standalone: node fault_provider.mjs [--port 0] [--scenario healthy] [--seed 1] [--tls-dir DIR]
// logs `fault provider listening on 127.0.0.1:PORT` to stderr and runs until SIGTERM/SIGINT.
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

// Every scenario: what happens to an attempt. `applies` limits a fault to plain or streamed
// requests (the other kind is answered healthily); `p` is the share of attempts that fail.
export const scenarios = {
  healthy: { describe: 'answers everything' },
  rate_limit_10_retry_after: { describe: '429 on 10 % of attempts, Retry-After: 1', fault: 'status', status: 429, p: 0.1, retryAfter: '1' },
  rate_limit_50_retry_after: { describe: '429 on 50 % of attempts, Retry-After: 1', fault: 'status', status: 429, p: 0.5, retryAfter: '1' },
  rate_limit_90_retry_after: { describe: '429 on 90 % of attempts, Retry-After: 1', fault: 'status', status: 429, p: 0.9, retryAfter: '1' },
  rate_limit_10_no_header: { describe: '429 on 10 % of attempts, no retry header', fault: 'status', status: 429, p: 0.1 },
  rate_limit_50_no_header: { describe: '429 on 50 % of attempts, no retry header', fault: 'status', status: 429, p: 0.5 },
  rate_limit_90_no_header: { describe: '429 on 90 % of attempts, no retry header', fault: 'status', status: 429, p: 0.9 },
  quota_exhausted: { describe: 'every attempt 429 with Retry-After for quotaMs, then healthy', fault: 'quota', quotaMs: 3000 },
  error_500_30: { describe: '500 on 30 % of attempts', fault: 'status', status: 500, p: 0.3 },
  error_503_30: { describe: '503 on 30 % of attempts', fault: 'status', status: 503, p: 0.3 },
  error_500_100: { describe: '500 on every attempt', fault: 'status', status: 500, p: 1 },
  error_503_100: { describe: '503 on every attempt', fault: 'status', status: 503, p: 1 },
  reset_before_first_byte_30: { describe: 'TCP reset before the first byte on 30 % of attempts', fault: 'reset', p: 0.3 },
  reset_mid_stream: { describe: 'TCP reset after a few SSE events (plain: half the body) on 50 %', fault: 'reset_mid', p: 0.5 },
  stall_mid_stream: { describe: 'silence after a few SSE events (plain: half the body), socket kept open, on 50 %', fault: 'stall_mid', p: 0.5 },
  slow_first_byte: { describe: 'the response header only after delayMs', fault: 'slow', delayMs: 3000 },
  malformed_json: { describe: 'plain: 200 with a truncated JSON body', fault: 'malformed_json', applies: 'plain' },
  malformed_sse: { describe: 'stream: a data line that is not JSON among the events', fault: 'malformed_sse', applies: 'stream' },
  stream_without_done: { describe: 'stream: every event but no [DONE], chunked terminator, then close', fault: 'no_done', applies: 'stream' },
  sse_content_length: { describe: 'stream: framed with Content-Length instead of chunked, kept alive', fault: 'content_length', applies: 'stream' },
  sse_close_delimited: { describe: 'stream: no length, not chunked, Connection: close, ends by closing', fault: 'close_delimited', applies: 'stream' },
  sse_crlf: { describe: 'stream: \\r\\n line endings', fault: 'crlf', applies: 'stream' },
  sse_no_trailing_blank: { describe: 'stream: the final event lacks its trailing blank line', fault: 'no_trailing_blank', applies: 'stream' },
  json_to_stream: { describe: 'stream: a plain application/json completion instead of SSE', fault: 'json_to_stream', applies: 'stream' },
  huge_answer: { describe: 'a 20 MB answer (plain and streamed)', fault: 'huge', bytes: 20 * 1024 * 1024 },
  flapping: { describe: 'healthy for periodMs, then 503 for periodMs, and so on', fault: 'flapping', periodMs: 2000 },
};

export const errorMarker = 'fake provider:';

// mulberry32: a small, fast, seedable generator; enough for fault decisions.
export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// FNV-1a over a string, for deriving per-request seeds.
function hash32(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

// The answer every healthy attempt gives, split into stream deltas.
const answerPieces = ['The', ' fault', ' matrix', ' answer', ' arrives', ' whole,', ' in', ' twelve',
  ' pieces', ' or', ' not', ' at all.'];
export const answerText = answerPieces.join('');

// A big answer as deltas of 64 KiB, deterministic text.
function hugePieces(bytes) {
  const unit = 'lorem ipsum dolor sit amet, consectetur adipiscing elit. ';
  const pieceBytes = 64 * 1024;
  const piece = unit.repeat(Math.ceil(pieceBytes / unit.length)).slice(0, pieceBytes);
  const pieces = [];
  for (let left = bytes; left > 0; left -= pieceBytes) pieces.push(left >= pieceBytes ? piece : piece.slice(0, left));
  return pieces;
}

// What a client should end up with, per scenario.
export function expectedContent(scenarioName, { hugeBytes } = {}) {
  const scenario = scenarios[scenarioName] ?? {};
  return scenario.fault === 'huge' ? hugePieces(hugeBytes ?? scenario.bytes).join('') : answerText;
}

const reasons = { 200: 'OK', 404: 'Not Found', 405: 'Method Not Allowed', 400: 'Bad Request', 429: 'Too Many Requests',
  500: 'Internal Server Error', 503: 'Service Unavailable' };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class SocketGone extends Error {}

// Writes, waiting for the socket to drain when its buffer is full; throws once the peer left.
async function send(socket, data) {
  if (socket.destroyed || !socket.writable) throw new SocketGone();
  if (socket.write(data)) return;
  await new Promise((resolve, reject) => {
    const settle = (error) => {
      socket.off('drain', onDrain);
      socket.off('close', onClose);
      if (error) reject(error);
      else resolve();
    };
    const onDrain = () => settle();
    const onClose = () => settle(new SocketGone());
    socket.on('drain', onDrain);
    socket.on('close', onClose);
  });
}

function head(status, headers) {
  let text = `HTTP/1.1 ${status} ${reasons[status] ?? 'Status'}\r\n`;
  for (const [name, value] of Object.entries(headers)) text += `${name}: ${value}\r\n`;
  return `${text}\r\n`;
}

// One HTTP/1.1 request from the front of `buffer`, or null while incomplete.
function parseRequest(buffer) {
  const headerEnd = buffer.indexOf('\r\n\r\n');
  if (headerEnd < 0) return null;
  const lines = buffer.subarray(0, headerEnd).toString('latin1').split('\r\n');
  const [method, target] = lines[0].split(' ');
  const headers = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let position = headerEnd + 4;
  if ((headers['transfer-encoding'] ?? '').toLowerCase().includes('chunked')) {
    const parts = [];
    for (;;) {
      const lineEnd = buffer.indexOf('\r\n', position);
      if (lineEnd < 0) return null;
      const size = parseInt(buffer.subarray(position, lineEnd).toString('latin1'), 16);
      position = lineEnd + 2;
      if (size === 0) {
        // Trailers (none expected) end with an empty line.
        for (;;) {
          const end = buffer.indexOf('\r\n', position);
          if (end < 0) return null;
          const empty = end === position;
          position = end + 2;
          if (empty) break;
        }
        return { method, target, headers, body: Buffer.concat(parts), consumed: position };
      }
      if (buffer.length < position + size + 2) return null;
      parts.push(buffer.subarray(position, position + size));
      position += size + 2;
    }
  }
  const length = Number(headers['content-length'] ?? 0);
  if (buffer.length < position + length) return null;
  return { method, target, headers, body: buffer.subarray(position, position + length), consumed: position + length };
}

export class FaultProvider {
  constructor({ scenario = 'healthy', seed = 1, tlsOptions = null, hugeBytes } = {}) {
    this.seed = seed >>> 0;
    this.tlsOptions = tlsOptions;
    this.hugeBytes = hugeBytes;
    this.sockets = new Set();
    this.attempts = 0; // chat completion requests received (plus failed TLS handshakes)
    this.tlsHandshakeFailures = 0;
    this.connections = 0;
    this.log = []; // {n, at_ms, key, key_attempt, stream, draw, action}
    this.perKeyAttempts = new Map();
    this.setScenario(scenario);
  }

  setScenario(name) {
    if (!scenarios[name]) throw new Error(`unknown fault scenario '${name}'`);
    this.scenarioName = name;
    this.scenario = { ...scenarios[name] };
    if (this.scenario.fault === 'huge' && this.hugeBytes) this.scenario.bytes = this.hugeBytes;
    this.random = mulberry32(this.seed);
    this.clockStart = null;
    this.perKeyAttempts.clear();
  }

  async start(port = 0, host = '127.0.0.1') {
    const onSocket = (socket) => this.#serve(socket);
    if (this.tlsOptions) {
      this.server = tls.createServer(this.tlsOptions, onSocket);
      this.server.on('tlsClientError', (_error, socket) => {
        this.tlsHandshakeFailures++;
        this.attempts++;
        socket?.destroy();
      });
    } else {
      this.server = net.createServer(onSocket);
    }
    // Raw TCP connections, TLS included: tracked so that close() ends every one (stalls too).
    this.server.on('connection', (socket) => {
      this.connections++;
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, resolve);
    });
    this.port = this.server.address().port;
    this.baseURL = `${this.tlsOptions ? 'https' : 'http'}://127.0.0.1:${this.port}/v1`;
    return this;
  }

  async close() {
    if (!this.server) return;
    const closed = new Promise((resolve) => this.server.close(resolve));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  stats() {
    return { scenario: this.scenarioName, attempts: this.attempts, connections: this.connections,
      tls_handshake_failures: this.tlsHandshakeFailures };
  }

  // One draw per attempt: per request key when the request names one, else in arrival order.
  #draw(key) {
    if (key === undefined) return { draw: this.random(), keyAttempt: undefined };
    const n = (this.perKeyAttempts.get(key) ?? 0) + 1;
    this.perKeyAttempts.set(key, n);
    return { draw: mulberry32(hash32(`${this.seed}/${key}/${n}`))(), keyAttempt: n };
  }

  #serve(socket) {
    socket.setNoDelay(true);
    socket.on('error', () => {});
    let buffer = Buffer.alloc(0);
    let busy = false;
    const pump = async () => {
      if (busy) return;
      busy = true;
      try {
        for (;;) {
          const request = parseRequest(buffer);
          if (!request) break;
          buffer = buffer.subarray(request.consumed);
          const keepOpen = await this.#respond(socket, request);
          if (!keepOpen) {
            if (!socket.destroyed) socket.end();
            return;
          }
        }
      } catch (error) {
        if (!(error instanceof SocketGone)) {
          process.stderr.write(`fault provider: ${error.stack ?? error}\n`);
        }
        socket.destroy();
      } finally {
        busy = false;
      }
    };
    socket.on('data', (chunk) => {
      buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk;
      pump();
    });
  }

  // Answers one request; resolves true when the connection may serve another one.
  async #respond(socket, request) {
    const url = new URL(request.target, 'http://fault.invalid');
    const clientWantsClose = (request.headers.connection ?? '').toLowerCase() === 'close';
    if (url.pathname === '/_fault/stats') {
      await this.#sendJson(socket, 200, this.stats(), {}, clientWantsClose);
      return !clientWantsClose;
    }
    if (url.pathname === '/_fault/scenario' && request.method === 'POST') {
      try {
        this.setScenario(url.searchParams.get('name') ?? '');
        await this.#sendJson(socket, 200, this.stats(), {}, clientWantsClose);
      } catch (error) {
        await this.#sendJson(socket, 400, { error: { message: String(error.message) } }, {}, clientWantsClose);
      }
      return !clientWantsClose;
    }
    if (url.pathname === '/v1/models' && request.method === 'GET') {
      await this.#sendJson(socket, 200, { object: 'list', data: [] }, {}, clientWantsClose);
      return !clientWantsClose;
    }
    if (url.pathname !== '/v1/chat/completions' || request.method !== 'POST') {
      await this.#sendJson(socket, 404, errorBody(`${errorMarker} no route for ${request.method} ${url.pathname}`,
        'invalid_request_error', 'not_found'), {}, clientWantsClose);
      return !clientWantsClose;
    }

    let body;
    try {
      body = JSON.parse(request.body.toString('utf8'));
    } catch {
      await this.#sendJson(socket, 400, errorBody(`${errorMarker} the request body is not JSON`,
        'invalid_request_error', 'bad_json'), {}, clientWantsClose);
      return !clientWantsClose;
    }
    const stream = body.stream === true;
    const includeUsage = stream && body.stream_options?.include_usage === true;
    const key = requestKey(body);

    this.attempts++;
    const n = this.attempts;
    const now = Date.now();
    if (this.clockStart === null) this.clockStart = now;
    const { draw, keyAttempt } = this.#draw(key);
    const action = this.#decide(draw, stream, now - this.clockStart);
    this.log.push({ n, at_ms: now - this.clockStart, key, key_attempt: keyAttempt, stream, draw, action: action.type });

    const answer = this.#answer(body, stream, includeUsage);
    switch (action.type) {
      case 'status': {
        const headers = { ...(action.retryAfter !== undefined && { 'retry-after': action.retryAfter }) };
        const type = action.status === 429 ? 'requests' : 'server_error';
        const code = action.status === 429 ? 'rate_limit_exceeded' : 'server_error';
        await this.#sendJson(socket, action.status,
          errorBody(`${errorMarker} ${action.status} on attempt ${n}`, type, code), headers, clientWantsClose);
        return !clientWantsClose;
      }
      case 'reset':
        socket.resetAndDestroy();
        return false;
      case 'reset_mid':
      case 'stall_mid': {
        if (stream) {
          await send(socket, head(200, { 'content-type': 'text/event-stream', 'transfer-encoding': 'chunked' }));
          for (const event of answer.events.slice(0, 4)) await send(socket, chunk(sseEvent(event)));
        } else {
          const text = JSON.stringify(answer.completion);
          await send(socket, head(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }));
          await send(socket, text.slice(0, Math.floor(text.length / 2)));
        }
        if (action.type === 'reset_mid') {
          await sleep(20); // let those bytes leave before the reset
          socket.resetAndDestroy();
        } else if (!socket.destroyed) {
          await once(socket, 'close'); // silence, until the peer gives up (or close())
        }
        return false;
      }
      case 'slow': {
        const gone = once(socket, 'close').then(() => true);
        if (await Promise.race([sleep(action.delayMs).then(() => false), gone])) return false;
        break;
      }
      default:
        break;
    }
    return this.#sendAnswer(socket, answer, stream, action.type, clientWantsClose);
  }

  // The fault for one attempt, from its draw and the time since the first attempt.
  #decide(draw, stream, elapsedMs) {
    const s = this.scenario;
    if (!s.fault) return { type: 'ok' };
    if (s.applies === 'plain' && stream) return { type: 'ok' };
    if (s.applies === 'stream' && !stream) return { type: 'ok' };
    switch (s.fault) {
      case 'status':
        return draw < s.p ? { type: 'status', status: s.status, retryAfter: s.retryAfter } : { type: 'ok' };
      case 'quota': {
        const left = s.quotaMs - elapsedMs;
        return left > 0 ? { type: 'status', status: 429, retryAfter: String(Math.ceil(left / 1000)) } : { type: 'ok' };
      }
      case 'flapping':
        return Math.floor(elapsedMs / s.periodMs) % 2 === 1 ? { type: 'status', status: 503 } : { type: 'ok' };
      case 'reset':
      case 'reset_mid':
      case 'stall_mid':
        return draw < s.p ? { type: s.fault } : { type: 'ok' };
      case 'slow':
        return { type: 'slow', delayMs: s.delayMs };
      default:
        return { type: s.fault };
    }
  }

  #answer(body, stream, includeUsage) {
    const model = typeof body.model === 'string' ? body.model : 'fake-model';
    const id = `chatcmpl-fault-${this.attempts}`;
    const created = Math.floor(Date.now() / 1000);
    const pieces = this.scenario.fault === 'huge' ? hugePieces(this.scenario.bytes) : answerPieces;
    const promptTokens = Math.max(1, Math.ceil(JSON.stringify(body.messages ?? '').length / 4));
    const usage = { prompt_tokens: promptTokens, completion_tokens: pieces.length, total_tokens: promptTokens + pieces.length };
    const completion = {
      id, object: 'chat.completion', created, model,
      choices: [{ index: 0, message: { role: 'assistant', content: pieces.join(''), refusal: null }, logprobs: null, finish_reason: 'stop' }],
      usage,
    };
    if (!stream) return { completion };
    const base = { id, object: 'chat.completion.chunk', created, model };
    const events = [{ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] }];
    for (const piece of pieces) events.push({ ...base, choices: [{ index: 0, delta: { content: piece }, logprobs: null, finish_reason: null }] });
    events.push({ ...base, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }] });
    if (includeUsage) events.push({ ...base, choices: [], usage });
    return { completion, events };
  }

  // The answer itself, with the framing quirks of the scenario; true when kept alive.
  async #sendAnswer(socket, answer, stream, fault, clientWantsClose) {
    if (!stream) {
      if (fault === 'malformed_json') {
        const text = '{"id": "x", "choi';
        await send(socket, head(200, { 'content-type': 'application/json', 'content-length': text.length, ...closeHeader(clientWantsClose) }));
        await send(socket, text);
        return !clientWantsClose;
      }
      await this.#sendJson(socket, 200, answer.completion, {}, clientWantsClose);
      return !clientWantsClose;
    }
    if (fault === 'json_to_stream') {
      await this.#sendJson(socket, 200, answer.completion, {}, clientWantsClose);
      return !clientWantsClose;
    }
    const newline = fault === 'crlf' ? '\r\n' : '\n';
    const texts = answer.events.map((event) => sseEvent(event, newline));
    if (fault === 'malformed_sse') texts.splice(3, 0, `data: {"id": "x", "choi${newline}${newline}`);
    if (fault !== 'no_done') {
      texts.push(fault === 'no_trailing_blank' ? `data: [DONE]${newline}` : `data: [DONE]${newline}${newline}`);
    }
    const sseHeaders = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };

    if (fault === 'content_length') {
      const text = texts.join('');
      await send(socket, head(200, { ...sseHeaders, 'content-length': Buffer.byteLength(text), ...closeHeader(clientWantsClose) }));
      await send(socket, text);
      return !clientWantsClose;
    }
    if (fault === 'close_delimited') {
      await send(socket, head(200, { ...sseHeaders, connection: 'close' }));
      for (const text of texts) await send(socket, text);
      return false; // the close delimits the body
    }
    const closeAfter = fault === 'no_done' || clientWantsClose;
    await send(socket, head(200, { ...sseHeaders, 'transfer-encoding': 'chunked', ...closeHeader(closeAfter) }));
    for (const text of texts) await send(socket, chunk(text));
    await send(socket, '0\r\n\r\n');
    return !closeAfter;
  }

  async #sendJson(socket, status, object, headers, close) {
    const text = JSON.stringify(object);
    await send(socket, head(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text),
      ...headers, ...closeHeader(close) }));
    await send(socket, text);
  }
}

function closeHeader(close) {
  return close ? { connection: 'close' } : {};
}

function chunk(text) {
  return `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;
}

function sseEvent(object, newline = '\n') {
  return `data: ${JSON.stringify(object)}${newline}${newline}`;
}

function errorBody(message, type, code) {
  return { error: { message, type, param: null, code } };
}

// `[fault-key:K]` in any message's text names the request for per-request decisions.
function requestKey(body) {
  for (const message of Array.isArray(body.messages) ? body.messages : []) {
    const text = typeof message?.content === 'string' ? message.content : JSON.stringify(message?.content ?? '');
    const match = /\[fault-key:([^\]]+)\]/.exec(text);
    if (match) return match[1];
  }
  return undefined;
}

export async function startFaultProvider(options = {}) {
  const provider = new FaultProvider(options);
  return provider.start(options.port ?? 0);
}

// A self-signed certificate for 127.0.0.1, made with openssl in a fresh temp directory: valid
// for the name, trusted by nobody. Returns {key, cert, directory, cleanup()}.
export async function selfSignedCertificate() {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'fault-tls-'));
  const keyPath = path.join(directory, 'key.pem');
  const certPath = path.join(directory, 'cert.pem');
  await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
    '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1'], { timeout: 15_000 });
  return {
    key: await readFile(keyPath), cert: await readFile(certPath), directory,
    cleanup: () => rm(directory, { recursive: true, force: true }),
  };
}

// An ephemeral loopback port that nothing listens on any more: connecting to it is refused.
export async function closedPort() {
  const server = net.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const option = (name, fallback) => {
    const index = args.indexOf(`--${name}`);
    return index >= 0 ? args[index + 1] : fallback;
  };
  let tlsOptions = null;
  const tlsDir = option('tls-dir');
  if (tlsDir) tlsOptions = { key: await readFile(path.join(tlsDir, 'key.pem')), cert: await readFile(path.join(tlsDir, 'cert.pem')) };
  const provider = await startFaultProvider({
    port: Number(option('port', '0')), scenario: option('scenario', 'healthy'), seed: Number(option('seed', '1')), tlsOptions,
  });
  process.stderr.write(`fault provider listening on 127.0.0.1:${provider.port}\n`);
  const stop = async () => {
    await provider.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
