import { createClient } from '@redis/client';
import { startRedisServer } from './redis-server.js';

export type Client = Awaited<ReturnType<typeof connect>>;

/** A Redis for tests that only read and write keys; `stop` tears down what was started. */
export interface TestRedis {
  readonly url: string;
  stop(): Promise<void>;
}

/**
 * REDIS_URL when set; else a testcontainers Redis when a Docker engine answers; else a local
 * `redis-server` child process. Tests that pause, kill, flush or count commands use
 * `startRedisServer` directly: they need a server process of their own.
 */
export async function provideRedis(): Promise<TestRedis> {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, stop: async () => {} };
  if (await dockerEngine()) {
    const { GenericContainer } = await import('testcontainers');
    const container = await new GenericContainer('redis:7-alpine').withExposedPorts(6379).start();
    return {
      url: `redis://${container.getHost()}:${container.getMappedPort(6379)}`,
      stop: async () => {
        await container.stop();
      },
    };
  }
  const server = await startRedisServer();
  return { url: server.url, stop: () => server.stop() };
}

let engine: Promise<boolean> | undefined;

/** Whether a Docker engine answers; asked once per test run. */
function dockerEngine(): Promise<boolean> {
  engine ??= import('testcontainers')
    .then(({ getContainerRuntimeClient }) => getContainerRuntimeClient())
    .then(
      () => true,
      () => false,
    );
  return engine;
}

/** A plain client for the test itself, to look at and tamper with the lock's keys. */
export async function connect(url: string) {
  const client = createClient({ url });
  client.on('error', () => {});
  await client.connect();
  return client;
}

/** Total calls of one command on the server since its start (INFO commandstats). */
export async function calls(client: Client, command: string): Promise<number> {
  const info = String(await client.sendCommand(['INFO', 'commandstats']));
  const match = new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info);
  return match ? Number(match[1]) : 0;
}

/** Resolve when `predicate` holds, polling every 5 ms; reject when `signal` aborts. */
export async function until(
  predicate: () => boolean | Promise<boolean>,
  signal: AbortSignal,
): Promise<void> {
  while (!(await predicate())) {
    signal.throwIfAborted();
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Resolve with the signal's abort reason; reject if it has not aborted within `ms`. */
export function abortedWithin(signal: AbortSignal, ms: number): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`signal did not abort within ${ms} ms`)), ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve(signal.reason);
      },
      { once: true },
    );
  });
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What the tests need of a lock and a locker (the library's own types, kept loose here). */
interface Held {
  readonly name: string;
  readonly signal: AbortSignal;
}
interface Contender {
  tryWithContext(name: string): Promise<unknown>;
}

/**
 * For `rounds` times 300 ms: `lock` stays held, and `other` cannot take it. (A lock kept
 * through a fault by extensions, or not at all.)
 */
export async function stillHeldAgainst(lock: Held, other: Contender, rounds: number) {
  for (let i = 0; i < rounds; i++) {
    await sleep(300);
    if (lock.signal.aborted) throw new Error(`lock aborted: ${String(lock.signal.reason)}`);
    const attempt = await other.tryWithContext(lock.name).then(
      () => 'taken',
      (error: { code?: string }) => error.code,
    );
    if (attempt !== 'ERR_NOT_LOCKED') throw new Error(`another locker tried and got ${attempt}`);
  }
}
