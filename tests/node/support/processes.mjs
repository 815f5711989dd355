// Child processes for the SDK tests: the `cutover` binary run as simulated providers and as the
// gateway, each on an ephemeral loopback port read back from its own log line.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const testsDirectory = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

export const cutoverBinary = process.env.CUTOVER_BINARY
  ? path.resolve(process.env.CUTOVER_BINARY)
  : path.resolve(testsDirectory, '../../build/cutover');

// Both commands log `listening on 127.0.0.1:PORT` to stderr once their sockets accept.
const listeningLine = /listening on 127\.0\.0\.1:(\d+)/;

const startupTimeoutMs = 15_000;
const exitTimeoutMs = 15_000;

// A running `cutover` process with everything it printed kept for later inspection.
export class CutoverProcess {
  constructor(label, args, environment) {
    if (!existsSync(cutoverBinary)) {
      throw new Error(`cutover binary not found at ${cutoverBinary}; build it or set CUTOVER_BINARY`);
    }
    this.label = label;
    this.stdout = '';
    this.stderr = '';
    this.exited = null; // {code, signal} once the process is gone
    this.child = spawn(cutoverBinary, args, {
      env: { ...process.env, ...environment },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout.setEncoding('utf8');
    this.child.stderr.setEncoding('utf8');
    this.child.stdout.on('data', (text) => { this.stdout += text; });
    this.child.stderr.on('data', (text) => { this.stderr += text; });
    // 'close' rather than 'exit': by then both pipes are drained, so the output is complete.
    this.closed = new Promise((resolve) => {
      this.child.on('close', (code, signal) => {
        this.exited = { code, signal };
        resolve(this.exited);
      });
    });
    this.spawnFailure = new Promise((_, reject) => this.child.on('error', reject));
    this.spawnFailure.catch(() => {}); // observed through waitForPort
  }

  // Resolves with the port from the listening line; rejects if the process exits or stays silent.
  async waitForPort() {
    let onData;
    const found = new Promise((resolve) => {
      onData = () => {
        const match = listeningLine.exec(this.stderr);
        if (match) resolve(Number(match[1]));
      };
      this.child.stderr.on('data', onData);
      onData();
    });
    const exitedEarly = this.closed.then(({ code, signal }) => {
      throw new Error(`${this.label} exited (code ${code}, signal ${signal}) before listening:\n${this.stderr}`);
    });
    try {
      return await withTimeout(Promise.race([found, exitedEarly, this.spawnFailure]), startupTimeoutMs,
        `${this.label} did not report a listening port within ${startupTimeoutMs} ms:\n${this.stderr}`);
    } finally {
      this.child.stderr.off('data', onData);
    }
  }

  // Sends `signal` and waits, bounded, for the process to finish; returns {code, signal}.
  async stop(signal = 'SIGTERM') {
    if (this.exited) return this.exited;
    this.child.kill(signal);
    return withTimeout(this.closed, exitTimeoutMs,
      `${this.label} did not exit within ${exitTimeoutMs} ms of ${signal}:\n${this.stderr}`);
  }

  // For `after` hooks: never leaves the process behind, whatever state the tests left it in.
  async kill() {
    if (this.exited) return;
    this.child.kill('SIGKILL');
    await withTimeout(this.closed, exitTimeoutMs, `${this.label} survived SIGKILL`).catch(() => {});
  }
}

// Starts `cutover simulate provider` and waits until it accepts connections; `options` are more
// of its command-line options (say ['--quota-requests', '40']).
export async function startSimulator({ profile, apiKeyEnv, environment = {}, dialect, options = [] }) {
  const args = ['simulate', 'provider', '--address', '127.0.0.1', '--port', '0', '--profile', profile];
  if (apiKeyEnv) args.push('--api-key-env', apiKeyEnv);
  if (dialect) args.push('--dialect', dialect);
  args.push(...options);
  return startListening(new CutoverProcess(`simulator '${profile}'`, args, environment));
}

// Starts `cutover serve` on a written config file and waits until it accepts connections.
export async function startGateway({ configPath, environment = {} }) {
  return startListening(new CutoverProcess('gateway', ['serve', '-c', configPath], environment));
}

// A process that never reported its port is killed here: the caller has nothing to clean up.
async function startListening(child) {
  try {
    child.port = await child.waitForPort();
  } catch (error) {
    await child.kill();
    throw error;
  }
  child.baseURL = `http://127.0.0.1:${child.port}/v1`;
  return child;
}

export function withTimeout(promise, milliseconds, message) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), milliseconds);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}
