import type { Place, Places } from './places.js';

/** One of the lock's keys as Redis has it now. */
export interface KeyState {
  readonly key: string;
  /** The key's index in the lock: the locker counts keys 0 … keyCount-1 over all servers. */
  readonly index: number;
  readonly server: string;
  /** The value of the attempt that holds the key; null when the key does not exist. */
  readonly value: string | null;
  /** PTTL: ms left; null when the key does not exist, -1 when it has no expiry. */
  readonly ttlMs: number | null;
}

/** What `tracklock status --json` prints. */
export interface LockStatus {
  readonly name: string;
  readonly keyCount: number;
  readonly keyMajority: number;
  /** Whether `keyMajority` keys hold one value: someone holds the lock. */
  readonly held: boolean;
  /** That value, or null. */
  readonly holder: string | null;
  readonly keys: readonly KeyState[];
  /** The fencing token last drawn, per server (a string: it outgrows a JSON number). */
  readonly fences: readonly {
    readonly server: string;
    readonly key: string;
    readonly token: string | null;
    readonly ttlMs: number | null;
  }[];
  /** The queue of waiters, per server: in arrival order, with the time (server ms) and role. */
  readonly queue: readonly {
    readonly server: string;
    readonly key: string;
    readonly waiters: readonly {
      readonly value: string;
      readonly since: number;
      readonly role: string | null;
    }[];
  }[];
}

/**
 * Read lock `name` with plain commands, one MULTI per server so each server's part is one
 * moment: GET and PTTL of each key and of the fence, the queue's sorted set and roles hash.
 */
export async function readStatus(name: string, { places, keyCount, keyMajority }: Places) {
  const read = await Promise.all(places.map((place) => readPlace(place)));
  const keys = read.flatMap((each) => each.keys).sort((a, b) => a.index - b.index);
  const counts = new Map<string, number>();
  for (const { value } of keys) {
    if (value !== null) counts.set(value, (counts.get(value) ?? 0) + 1);
  }
  const holder = [...counts].find(([, count]) => count >= keyMajority)?.[0] ?? null;
  const status: LockStatus = {
    name,
    keyCount,
    keyMajority,
    held: holder !== null,
    holder,
    keys,
    fences: read.map((each) => each.fence),
    queue: read.map((each) => each.queue),
  };
  return status;
}

async function readPlace(place: Place) {
  const { client, server, queue } = place;
  const multi = client.multi();
  for (const { key } of place.keys) multi.get(key).pTTL(key);
  const replies = (await place.within(
    multi
      .get(place.fence)
      .pTTL(place.fence)
      .zRangeWithScores(queue.queueKey, 0, -1)
      .hGetAll(queue.rolesKey)
      .exec(),
  )) as unknown[];
  const value = (at: number) => (replies[at] ?? null) as string | null;
  const ttl = (at: number) => {
    const pttl = Number(replies[at]);
    return pttl === -2 ? null : pttl;
  };
  const keys = place.keys.map(({ key, index }, i) => ({
    key,
    index,
    server,
    value: value(2 * i),
    ttlMs: ttl(2 * i + 1),
  }));
  const at = 2 * place.keys.length;
  const roles = (replies[at + 3] ?? {}) as Record<string, string>;
  const entries = (replies[at + 2] ?? []) as { value: string; score: number }[];
  return {
    keys,
    fence: { server, key: place.fence, token: value(at), ttlMs: ttl(at + 1) },
    queue: {
      server,
      key: queue.queueKey,
      waiters: entries.map((entry) => ({
        value: entry.value,
        since: entry.score,
        role: roles[entry.value] ?? null,
      })),
    },
  };
}

/** `status` for a person: one line per key, then the fence and the queue. */
export function formatStatus(status: LockStatus): string {
  const lines = [
    status.held
      ? `lock "${status.name}": held by ${status.holder}`
      : `lock "${status.name}": free (no value holds ${status.keyMajority} of its ${status.keyCount} keys)`,
  ];
  for (const key of status.keys) {
    const held = key.value === null ? 'absent' : `${key.value}  ttl ${ttlText(key.ttlMs)}`;
    lines.push(`  key   ${key.key}  on ${key.server}: ${held}`);
  }
  for (const fence of status.fences) {
    const token = fence.token === null ? 'none drawn' : `token ${fence.token}`;
    lines.push(`  fence ${fence.key}  on ${fence.server}: ${token}  ttl ${ttlText(fence.ttlMs)}`);
  }
  for (const queue of status.queue) {
    if (queue.waiters.length === 0) continue;
    lines.push(`  queue ${queue.key}  on ${queue.server}: ${queue.waiters.length} waiting`);
    for (const [i, waiter] of queue.waiters.entries()) {
      const since = new Date(waiter.since).toISOString();
      lines.push(`    ${i + 1}. ${waiter.value}  since ${since}  ${waiter.role ?? ''}`.trimEnd());
    }
  }
  return lines.join('\n');
}

function ttlText(ttlMs: number | null): string {
  if (ttlMs === null) return '-';
  return ttlMs === -1 ? 'none (no expiry)' : `${ttlMs} ms`;
}
