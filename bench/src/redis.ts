/** The Redis side of the harness: servers to run against, and what they count. */
import { once } from 'node:events';
import type { Redis } from 'ioredis';
import { type RedisServer, startRedisServer } from '../../test/helpers/redis-server.js';

export type { RedisServer };
export { startRedisServer };

/** `work` on a throwaway redis-server of its own, stopped afterwards. */
export async function onOwnServer<T>(work: (url: string) => Promise<T>): Promise<T> {
  const server = await startRedisServer();
  try {
    return await work(server.url);
  } finally {
    await server.stop();
  }
}

/** Calls per command name since the server started (INFO commandstats). */
export async function commandStats(client: Redis): Promise<Map<string, number>> {
  const info = await client.info('commandstats');
  return new Map(
    [...info.matchAll(/cmdstat_([^:]+):calls=(\d+)/g)].map((m) => [m[1] as string, Number(m[2])]),
  );
}

/** Calls per command summed over several servers: every server a lock's keys are on. */
export async function summedCommandStats(clients: readonly Redis[]): Promise<Map<string, number>> {
  const sum = new Map<string, number>();
  for (const stats of await Promise.all(clients.map(commandStats))) {
    for (const [command, calls] of stats) sum.set(command, (sum.get(command) ?? 0) + calls);
  }
  return sum;
}

/** Calls per command between two snapshots, without the INFO calls that took them. */
export function callsBetween(
  before: Map<string, number>,
  after: Map<string, number>,
): Map<string, number> {
  const calls = new Map<string, number>();
  for (const [command, count] of after) {
    const delta = count - (before.get(command) ?? 0);
    if (command !== 'info' && delta > 0) calls.set(command, delta);
  }
  return calls;
}

export function total(calls: Map<string, number>): number {
  let sum = 0;
  for (const count of calls.values()) sum += count;
  return sum;
}

/** What a server has run so far: calls per command, and its CPU time. */
export interface ServerSnapshot {
  readonly calls: Map<string, number>;
  readonly cpuSeconds: number;
}

export async function serverSnapshot(admin: Redis): Promise<ServerSnapshot> {
  const calls = await commandStats(admin);
  const cpu = await admin.info('cpu');
  const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(cpu)?.[1] ?? 0);
  return { calls, cpuSeconds: field('used_cpu_sys') + field('used_cpu_user') };
}

/** What a server ran between two snapshots, without the INFO calls that took them. */
export function snapshotDelta(before: ServerSnapshot, after: ServerSnapshot) {
  const calls = callsBetween(before.calls, after.calls);
  return {
    calls: total(calls),
    byCommand: calls,
    /** Script calls: only a client sends them, a script cannot call another. */
    scripts: (calls.get('evalsha') ?? 0) + (calls.get('eval') ?? 0),
    cpuMs: (after.cpuSeconds - before.cpuSeconds) * 1000,
  };
}

export async function serverVersion(client: Redis): Promise<string> {
  const info = await client.info('server');
  return /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
}

/** A URL fit to print: without its password. */
export function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparsable REDIS_URL)';
  }
}

/** Commands a server ran while a MONITOR connection watched, split by who sent them. */
export interface Monitored {
  /** Sent by clients: one per request, a script call counts once. */
  readonly requests: number;
  /** Run by scripts on the server (MONITOR's "lua" source). */
  readonly inner: number;
  /** Requests by command name. */
  readonly byCommand: Record<string, number>;
}

/**
 * Watch every command `url`'s server runs from `begin()` until `stop()`. MONITOR costs the
 * server time, so it is used only on the cost phase's own servers, never while latency is
 * measured. Start it while the server is quiet: see below.
 */
export async function monitor(url: string): Promise<{ begin(): void; stop(): Promise<Monitored> }> {
  const { connectIoredis, closeIoredis } = await import('./adapters/ioredis.js');
  const client = await connectIoredis(url);
  // What client.monitor() does, with the error listener in place before the connection. Lines
  // that come with MONITOR's OK, before ioredis marks the connection as monitoring, read to it
  // as replies to nothing, an error event that ended the process (the server was busy with a
  // polling lock's reads): callers start the monitor on a quiet server, and this listener
  // keeps a stray line from ending the run.
  const watcher = client.duplicate({ monitor: true, lazyConnect: true });
  watcher.on('error', () => {});
  const monitoring = once(watcher, 'monitoring');
  await watcher.connect();
  await monitoring;
  // The plain connection's own QUIT at the end is ours, not the library's.
  const own = `:${client.stream?.localPort}`;
  let requests = 0;
  let inner = 0;
  let counting = false;
  let stopped: Promise<Monitored> | undefined;
  const byCommand: Record<string, number> = {};
  watcher.on('monitor', (_time: string, args: string[], source: string) => {
    if (!counting || source.endsWith(own)) return;
    if (source === 'lua') {
      inner++;
      return;
    }
    requests++;
    const command = (args[0] ?? '?').toLowerCase();
    byCommand[command] = (byCommand[command] ?? 0) + 1;
  });
  // MONITOR shows a command once it has run: let the last replies' commands arrive.
  return {
    begin: () => {
      counting = true;
    },
    // Once, whoever calls it (a phase's finally too).
    stop: () => {
      stopped ??= (async () => {
        await new Promise((resolve) => setTimeout(resolve, 50));
        watcher.disconnect();
        await closeIoredis(client);
        return { requests, inner, byCommand };
      })();
      return stopped;
    },
  };
}
