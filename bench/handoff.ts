/**
 * Handoff benchmark: how long after one process releases a lock does another process that is
 * already waiting for it hold it? Compared with the floor, a bare PING round trip.
 *
 *   node --import tsx bench/handoff.ts [--rounds N]
 *
 * Uses REDIS_URL when set; otherwise a throwaway redis-server on a free port.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createClient } from '@redis/client';
import { startRedisServer } from '../test/helpers/redis-server.js';
// Types only: importing the worker's code would run it here.
import type { Command, Reply, WorkerEnv } from './handoff-worker.js';

const DEFAULT_ROUNDS = 300;
/** Rounds run and thrown away first: JIT, script cache, connection buffers. */
const WARMUP_ROUNDS = 100;
const PING_WARMUP = 200;
const PING_SAMPLES = 2000;
/**
 * PINGs sent after the same pause as a handoff round: the round trip of a process (and a
 * server) that was idle, which is what every leg of a handoff pays. Shown for context.
 */
const IDLE_PING_SAMPLES = 300;
/**
 * Pause between the waiter's call and the release: long enough for its first attempt to fail
 * and for it to go to sleep, so what is measured is the wake-up by invalidation.
 */
const SETTLE_MS = 5;
/** A round takes a few ms (SETTLE_MS and one handoff): one this slow means something is stuck. */
const ROUND_TIMEOUT_MS = 5000;
/** Forking a worker loads tsx and connects to Redis. */
const STARTUP_TIMEOUT_MS = 15_000;
const PING_TIMEOUT_MS = 30_000;
const SHUTDOWN_TIMEOUT_MS = 3000;
const WORKER_PATH = fileURLToPath(new URL('./handoff-worker.ts', import.meta.url));

/**
 * Aborted by SIGINT or SIGTERM: the run then fails like any other, so its finally blocks still
 * stop the workers and the redis-server (a signal's default action would skip them).
 */
const interrupted = new AbortController();
for (const name of ['SIGINT', 'SIGTERM'] as const) {
  process.once(name, () => interrupted.abort(new Error(`interrupted by ${name}`)));
}

/** A deadline that an interruption also ends. */
function deadline(ms: number): AbortSignal {
  return AbortSignal.any([AbortSignal.timeout(ms), interrupted.signal]);
}

/** Why `signal` aborted, in words. */
function abortMessage(signal: AbortSignal): string {
  const reason: unknown = signal.reason;
  if (reason instanceof Error && reason.name !== 'TimeoutError') return reason.message;
  return 'timed out';
}

type ReplyOf<T extends Reply['type']> = Extract<Reply, { type: T }>;

/** A forked worker and the messages it has sent that nobody has read yet. */
class Worker {
  readonly name: string;
  readonly #child: ChildProcess;
  readonly #inbox: Reply[] = [];
  /** Why the worker can no longer answer, once it exited or its channel failed. */
  #gone: string | undefined;
  #notify: (() => void) | undefined;
  readonly #exited: Promise<void>;

  constructor(name: string, url: string, keyPrefix: string) {
    this.name = name;
    // Not argv: a URL may hold a password, and argv is public in `ps`.
    const env: WorkerEnv = { HANDOFF_REDIS_URL: url, HANDOFF_KEY_PREFIX: keyPrefix };
    this.#child = fork(WORKER_PATH, [], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, ...env },
    });
    this.#exited = new Promise((resolve) => this.#child.once('exit', () => resolve()));
    this.#child.on('message', (reply: Reply) => {
      this.#inbox.push(reply);
      this.#notify?.();
    });
    this.#child.once('exit', (code, signal) => {
      this.#gone ??= `worker ${name} exited (code ${code}, signal ${signal})`;
      this.#notify?.();
    });
    this.#child.on('error', (error) => {
      this.#gone ??= `worker ${name}: ${error.message}`;
      this.#notify?.();
    });
  }

  send(command: Command): void {
    if (!this.#child.connected) throw new Error(this.#gone ?? `worker ${this.name} disconnected`);
    this.#child.send(command);
  }

  /** The next message, which must be `type`; a worker's 'error' message fails the run. */
  async receive<T extends Reply['type']>(type: T, signal: AbortSignal): Promise<ReplyOf<T>> {
    const reply = await this.#next(type, signal);
    if (reply.type === 'error') throw new Error(`worker ${this.name} failed: ${reply.message}`);
    if (reply.type !== type) {
      throw new Error(`worker ${this.name} sent '${reply.type}' where '${type}' was expected`);
    }
    return reply as ReplyOf<T>;
  }

  /** Ask the worker to close its locker, then make sure the process is gone. Never rejects. */
  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const closed = await this.#closeLocker().then(
      () => true,
      (error: unknown) => {
        console.error(`worker ${this.name} did not close cleanly: ${String(error)}`);
        return false;
      },
    );
    // A worker that did not answer (hung, stopped) would not heed the disconnect either.
    if (closed && this.#child.connected) this.#child.disconnect();
    if (!closed || !(await this.#exitsWithin(SHUTDOWN_TIMEOUT_MS))) {
      this.#child.kill('SIGKILL');
      await this.#exited;
    }
  }

  async #exitsWithin(ms: number): Promise<boolean> {
    // Cancelled once settled: a pending timer would hold the coordinator open for `ms`.
    const cancel = new AbortController();
    const timeout = sleep(ms, false, { signal: cancel.signal }).catch(() => false);
    const exited = await Promise.race([this.#exited.then(() => true), timeout]);
    cancel.abort();
    return exited;
  }

  async #closeLocker(): Promise<void> {
    // Not `deadline`: an interrupted run must still close the lockers.
    const signal = AbortSignal.timeout(SHUTDOWN_TIMEOUT_MS);
    this.send({ type: 'close' });
    // On a failed run the inbox may still hold anything (a late 'acquired', the waiter's
    // rejection): skip to the answer to 'close'.
    for (;;) {
      const reply = await this.#next('closed', signal);
      if (reply.type === 'closed') return;
    }
  }

  async #next(expected: string, signal: AbortSignal): Promise<Reply> {
    for (;;) {
      const reply = this.#inbox.shift();
      if (reply) return reply;
      if (this.#gone) throw new Error(`${this.#gone} while '${expected}' was expected`);
      if (signal.aborted) {
        throw new Error(
          `${abortMessage(signal)} waiting for '${expected}' from worker ${this.name}`,
        );
      }
      await this.#changed(signal);
    }
  }

  /** Resolves on the next message, exit or abort; the caller looks at which. */
  #changed(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.#notify = undefined;
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.#notify = done;
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

/** Reject with a message naming `what` if `work` takes longer than `ms`. */
async function within<T>(ms: number, what: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function parseRounds(): number {
  const { values } = parseArgs({ options: { rounds: { type: 'string' } }, strict: true });
  if (values.rounds === undefined) return DEFAULT_ROUNDS;
  const rounds = Number(values.rounds);
  if (!/^\d+$/.test(values.rounds) || rounds < 1) {
    throw new RangeError(`--rounds must be a positive whole number, got "${values.rounds}"`);
  }
  return rounds;
}

interface PingResult {
  readonly samples: number[];
  readonly idleSamples: number[];
  readonly version: string;
}

/** A plain RESP3 connection, like the locker's, minus its tracking. */
function pingClient(url: string) {
  return createClient({ url, RESP: 3 });
}

/** Sequential PINGs on one connection: the round trip no handoff can beat. */
async function measurePing(url: string): Promise<PingResult> {
  const client = pingClient(url);
  client.on('error', () => {}); // a failure shows up as a rejected command or the deadline
  try {
    await within(STARTUP_TIMEOUT_MS, `connecting to ${redact(url)}`, client.connect());
    return await within(PING_TIMEOUT_MS, 'the PING loop', pingLoop(client));
  } finally {
    // destroy, not close: after a timeout a PING may never be answered.
    if (client.isOpen) client.destroy();
  }
}

async function pingLoop(client: ReturnType<typeof pingClient>): Promise<PingResult> {
  const info = String(await client.sendCommand(['INFO', 'server']));
  const version = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
  for (let i = 0; i < PING_WARMUP; i++) await client.ping();
  const samples: number[] = [];
  for (let i = 0; i < PING_SAMPLES; i++) {
    interrupted.signal.throwIfAborted();
    const start = performance.now();
    await client.ping();
    samples.push(performance.now() - start);
  }
  const idleSamples: number[] = [];
  for (let i = 0; i < IDLE_PING_SAMPLES; i++) {
    interrupted.signal.throwIfAborted();
    await sleep(SETTLE_MS);
    const start = performance.now();
    await client.ping();
    idleSamples.push(performance.now() - start);
  }
  return { samples, idleSamples, version };
}

/**
 * Two workers pass the lock back and forth; each round the previous waiter is the holder.
 * Returns the measured rounds' latencies in ms.
 */
async function measureHandoff(url: string, rounds: number): Promise<number[]> {
  // A fresh prefix per run: a shared REDIS_URL may hold keys of other runs or users.
  const keyPrefix = `bench${randomBytes(6).toString('hex')}`;
  const a = new Worker('A', url, keyPrefix);
  const b = new Worker('B', url, keyPrefix);
  try {
    const startup = deadline(STARTUP_TIMEOUT_MS);
    await Promise.all([a.receive('ready', startup), b.receive('ready', startup)]);
    a.send({ type: 'hold' });
    await a.receive('held', deadline(ROUND_TIMEOUT_MS));
    const samples: number[] = [];
    for (let i = 0; i < WARMUP_ROUNDS + rounds; i++) {
      const [holder, waiter] = i % 2 === 0 ? [a, b] : [b, a];
      const ms = await handoffRound(i, holder, waiter);
      if (i >= WARMUP_ROUNDS) samples.push(ms);
    }
    return samples;
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
}

async function handoffRound(round: number, holder: Worker, waiter: Worker): Promise<number> {
  const signal = deadline(ROUND_TIMEOUT_MS);
  try {
    waiter.send({ type: 'wait' });
    await waiter.receive('waiting', signal);
    await sleep(SETTLE_MS); // short enough not to need the deadline
    holder.send({ type: 'release' });
    const [released, acquired] = await Promise.all([
      holder.receive('released', signal),
      waiter.receive('acquired', signal),
    ]);
    if (!released.held) throw new Error(`worker ${holder.name} had lost the lock before release`);
    return acquired.at - released.at;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`handoff round ${round} (${holder.name} to ${waiter.name}): ${message}`, {
      cause: error,
    });
  }
}

/** Nearest-rank percentile of ascending `sorted`: the smallest sample with p% at or below it. */
function percentile(sorted: readonly number[], p: number): number {
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  const value = sorted[rank - 1];
  if (value === undefined) throw new RangeError('percentile of no samples');
  return value;
}

function ascending(samples: readonly number[]): number[] {
  return [...samples].sort((x, y) => x - y);
}

/** Microseconds are the most a JS timer pair across processes can claim. */
function round3(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** A URL fit to print: without its password. */
function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparsable REDIS_URL)';
  }
}

function report(ping: PingResult, handoff: readonly number[], server: string): void {
  const pings = ascending(ping.samples);
  const idlePings = ascending(ping.idleSamples);
  const handoffs = ascending(handoff);
  const result = {
    rounds: handoffs.length,
    pingP50Ms: round3(percentile(pings, 50)),
    pingP99Ms: round3(percentile(pings, 99)),
    idlePingP50Ms: round3(percentile(idlePings, 50)),
    idlePingP99Ms: round3(percentile(idlePings, 99)),
    handoffP50Ms: round3(percentile(handoffs, 50)),
    handoffP90Ms: round3(percentile(handoffs, 90)),
    handoffP99Ms: round3(percentile(handoffs, 99)),
    handoffMaxMs: round3(percentile(handoffs, 100)),
    ratioP50: Math.round((percentile(handoffs, 50) / percentile(pings, 50)) * 100) / 100,
    ratioIdleP50: Math.round((percentile(handoffs, 50) / percentile(idlePings, 50)) * 100) / 100,
  };
  const cell = (ms: number | undefined) => (ms === undefined ? '-' : ms.toFixed(3)).padStart(9);
  const row = (label: string, cells: (number | undefined)[]) =>
    console.log(label.padEnd(10) + cells.map(cell).join(''));
  console.log(
    `tracklock handoff: ${result.rounds} rounds after ${WARMUP_ROUNDS} warm-up; ${PING_SAMPLES} PINGs; Redis ${ping.version} (${server})`,
  );
  console.log(
    `${'ms'.padEnd(10)}${['p50', 'p90', 'p99', 'max'].map((h) => h.padStart(9)).join('')}`,
  );
  row('PING', [result.pingP50Ms, undefined, result.pingP99Ms, undefined]);
  row(`PING idle`, [result.idlePingP50Ms, undefined, result.idlePingP99Ms, undefined]);
  row('handoff', [
    result.handoffP50Ms,
    result.handoffP90Ms,
    result.handoffP99Ms,
    result.handoffMaxMs,
  ]);
  console.log(
    `handoff p50 / PING p50: ${result.ratioP50.toFixed(2)}x; / PING-after-${SETTLE_MS}-ms-idle p50: ${result.ratioIdleP50.toFixed(2)}x`,
  );
  const negative = handoffs.filter((ms) => ms < 0).length;
  if (negative > 0) {
    // Each process's timeOrigin is read from the wall clock at its start; a step of that
    // clock in between shows up as an offset between the two workers' timestamps.
    console.log(`warning: ${negative} negative samples: the workers' clocks disagree`);
  }
  console.log(`RESULT ${JSON.stringify(result)}`);
}

async function main(): Promise<void> {
  const rounds = parseRounds();
  const given = process.env.REDIS_URL || undefined;
  if (given !== undefined) return run(given, redact(given), rounds);
  const server = await startRedisServer();
  try {
    await run(server.url, 'throwaway redis-server', rounds);
  } finally {
    await server.stop();
  }
}

async function run(url: string, server: string, rounds: number): Promise<void> {
  const ping = await measurePing(url);
  const handoff = await measureHandoff(url, rounds);
  report(ping, handoff, server);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exitCode = 1;
});
