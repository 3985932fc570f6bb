/**
 * `redlock` v4 (mike-marcacci/node-redlock), still the most installed Redis lock on npm. Its
 * blocking acquire is `redlock.lock(resource, ttl)`, which polls every `retryDelay` ± a random
 * `retryJitter` ms, `retryCount` times; its README documents `retryCount: -1` for "retry until
 * acquired", which is what a caller that waits needs (the default 10 gives up after ~2 s).
 * It has no automatic extension: a lock held past its TTL needs `lock.extend` calls.
 */
import Redlock from 'redlock';
import { closeIoredis, connectIoredis } from './ioredis.js';
import type { LockClient, Variant } from './types.js';

/** The TTL passed to every `lock` call: tracklock's default key validity. */
export const REDLOCK_TTL_MS = 5000;

function variant(id: string, settings: string, options: Redlock.Options): Variant {
  return {
    id,
    library: 'redlock',
    settings,
    signalsLoss: false,
    isTracklock: false,
    async create(url, namespace): Promise<LockClient> {
      const client = await connectIoredis(url);
      // @types/redlock describes the ioredis 4 signatures; v4 calls `evalsha(hash, [args], cb)`,
      // which ioredis 6 still accepts (it flattens arrays and takes callbacks).
      const compatible = client as unknown as Redlock.CompatibleRedisClient;
      const redlock = new Redlock([compatible], { retryCount: -1, ...options });
      redlock.on('clientError', () => {}); // counted as failed attempts; the phase bounds them
      return {
        async acquire(name) {
          const lock = await redlock.lock(`${namespace}:${name}`, REDLOCK_TTL_MS);
          return { release: () => lock.unlock() };
        },
        close: () => closeIoredis(client),
      };
    },
  };
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
