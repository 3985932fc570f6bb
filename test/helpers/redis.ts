import { createClient } from '@redis/client';
import { sleep } from './wait.js';

export type Client = Awaited<ReturnType<typeof connect>>;

/**
 * A Redis for tests that only read and write keys: tracklock/testing's `startRedis` (REDIS_URL
 * when set, else a container when a Docker engine answers, else a local `redis-server`), so that
 * every test run uses it. Tests that pause, kill, flush or count commands use `startRedisServer`:
 * they need a server process of their own.
 */
export { startRedis as provideRedis, type TestRedis } from '../../src/testing/index.js';

/** A plain client for the test itself, to look at and tamper with the lock's keys. */
export async function connect(url: string) {
  const client = createClient({ url });
  client.on('error', () => {});
  await client.connect();
  return client;
}

/** `commands` on the server at `url` over a connection of their own (no redirection): the last reply. */
export async function on(url: string, ...commands: string[][]): Promise<unknown> {
  const client = await connect(url);
  try {
    let reply: unknown;
    for (const command of commands) reply = await client.sendCommand(command);
    return reply;
  } finally {
    client.destroy();
  }
}

/** Total calls of one command on the server since its start (INFO commandstats). */
export async function calls(client: Client, command: string): Promise<number> {
  const info = String(await client.sendCommand(['INFO', 'commandstats']));
  const match = new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info);
  return match ? Number(match[1]) : 0;
}

/**
 * The keys of lock `name` under the default prefix, `rueidislock:i:name` for i < `count`:
 * spelled out here rather than taken from src/, so that the tests check the layout.
 */
export const keysOf = (name: string, count = 3) =>
  Array.from({ length: count }, (_, i) => `rueidislock:${i}:${name}`);

/** With direct handoff, how many waiters are queued for `name` (default prefix). */
export async function queued(client: Client, name: string): Promise<number> {
  return client.zCard(`rueidislock:q:${name}`);
}

/** Scripts (EVALSHA) run so far, summed over the servers at `urls`. */
export async function scriptsOn(urls: readonly string[]): Promise<number> {
  const counts = await Promise.all(
    urls.map(async (url) => {
      const client = await connect(url);
      try {
        return await calls(client, 'evalsha');
      } finally {
        client.destroy();
      }
    }),
  );
  return counts.reduce((sum, count) => sum + count, 0);
}

/**
 * Counts the scripts run on `urls` from now on: a waiter's first attempt runs as many as the
 * holder's acquisition did, once that has settled.
 */
export async function scriptCounter(urls: readonly string[]): Promise<() => Promise<number>> {
  const start = await scriptsOn(urls);
  return async () => (await scriptsOn(urls)) - start;
}

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
    await sleep(300); // a window, not a wait: the lock must stay held all through it
    if (lock.signal.aborted) throw new Error(`lock aborted: ${String(lock.signal.reason)}`);
    const attempt = await other.tryWithContext(lock.name).then(
      () => 'taken',
      (error: { code?: string }) => error.code,
    );
    if (attempt !== 'ERR_NOT_LOCKED') throw new Error(`another locker tried and got ${attempt}`);
  }
}
