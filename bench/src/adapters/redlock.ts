/**
 * `redlock` v4 (mike-marcacci/node-redlock), still the most installed Redis lock on npm. Its
 * blocking acquire is `redlock.lock(resource, ttl)`, which polls every `retryDelay` ± a random
 * `retryJitter` ms, `retryCount` times; its README documents `retryCount: -1` for "retry until
 * acquired", which is what a caller that waits needs (the default 10 gives up after ~2 s).
 * It has no automatic extension: a lock held past its TTL needs `lock.extend` calls. On several
 * independent servers it is the Redlock algorithm proper: one ioredis client per server, and a
 * lock needs a majority of them.
 */
import type { Redis } from 'ioredis';
import Redlock from 'redlock';
import { parseLockTarget } from '../lock-target.js';
import { closeIoredis, connectIoredis } from './ioredis.js';
import type { LockClient, Topology, Variant } from './types.js';

/** The TTL passed to every `lock` call: tracklock's default key validity. */
export const REDLOCK_TTL_MS = 5000;

function variant(
  id: string,
  settings: string,
  options: Redlock.Options,
  topology?: Topology,
): Variant {
  return {
    id,
    library: 'redlock',
    settings,
    signalsLoss: false,
    isTracklock: false,
    ...(topology ? { topology } : {}),
    async create(target, namespace): Promise<LockClient> {
      const clients = await connectAll(serverUrls(target));
      // @types/redlock describes the ioredis 4 signatures; v4 calls `evalsha(hash, [args], cb)`,
      // which ioredis 6 still accepts (it flattens arrays and takes callbacks).
      const compatible = clients as unknown as Redlock.CompatibleRedisClient[];
      const redlock = new Redlock(compatible, { retryCount: -1, ...options });
      redlock.on('clientError', () => {}); // counted as failed attempts; the phase bounds them
      return {
        async acquire(name) {
          const lock = await redlock.lock(`${namespace}:${name}`, REDLOCK_TTL_MS);
          return { release: () => lock.unlock() };
        },
        close: async () => {
          await Promise.all(clients.map(closeIoredis));
        },
      };
    },
  };
}

/** One server, or each of several independent ones; a cluster is no place for Redlock. */
function serverUrls(target: string): readonly string[] {
  const parsed = parseLockTarget(target);
  if (parsed.kind === 'server') return [parsed.url];
  if (parsed.kind === 'nodes') return parsed.urls;
  throw new TypeError(`redlock runs on independent servers, not on a cluster: ${target}`);
}

/** Connect to every server; if one fails, none is left open. */
async function connectAll(urls: readonly string[]): Promise<Redis[]> {
  const settled = await Promise.allSettled(urls.map((url) => connectIoredis(url)));
  const clients = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) {
    await Promise.all(clients.map(closeIoredis));
    throw failed.reason;
  }
  return clients;
}

export const redlockDefault = variant(
  'redlock',
  'retryCount -1; retryDelay 200, retryJitter 100 (defaults); ttl 5000',
  {},
);

/** What a user tuning for latency would set: polling as often as redis-semaphore's default. */
export const redlockFast = variant(
  'redlock-fast',
  'retryCount -1, retryDelay 10, retryJitter 5; ttl 5000',
  { retryDelay: 10, retryJitter: 5 },
);

/** The same two settings on three independent servers: the "many servers" table. */
export const redlockNodes3 = variant(
  'redlock-nodes3',
  'retryCount -1; retryDelay 200, retryJitter 100 (defaults); ttl 5000',
  {},
  'nodes3',
);

export const redlockFastNodes3 = variant(
  'redlock-fast-nodes3',
  'retryCount -1, retryDelay 10, retryJitter 5; ttl 5000',
  { retryDelay: 10, retryJitter: 5 },
  'nodes3',
);
