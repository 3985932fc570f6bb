/**
 * `redis-semaphore`'s `Mutex`: `mutex.acquire()` polls `SET NX` every `retryInterval` ms
 * (default 10) until `acquireTimeout` (default 10 s), and refreshes a held lock every
 * `lockTimeout × 0.8` ms by itself.
 */
import { Mutex } from 'redis-semaphore';
import { singleServer } from '../lock-target.js';
import { closeIoredis, connectIoredis } from './ioredis.js';
import type { LockClient, Variant } from './types.js';

/** The library's default: the refresh interval follows from it. */
const LOCK_TIMEOUT_MS = 10_000;

function variant(id: string, settings: string, retryInterval: number | undefined): Variant {
  return {
    id,
    library: 'redis-semaphore',
    settings,
    keepAlive: { intervalMs: LOCK_TIMEOUT_MS * 0.8, keys: 1 },
    signalsLoss: false,
    isTracklock: false,
    async create(target, namespace): Promise<LockClient> {
      const client = await connectIoredis(singleServer(target, 'redis-semaphore'));
      const acquire = async (name: string, signal?: AbortSignal) => {
        // A waiter that gives up after 10 s would fail a long contention run, not measure it.
        const mutex = new Mutex(client, `${namespace}:${name}`, {
          acquireTimeout: 60_000,
          ...(retryInterval === undefined ? {} : { retryInterval }),
          onLockLost: () => {}, // the default throws an uncaught error in a refresh timer
        });
        await mutex.acquire(signal);
        return { release: () => mutex.release() };
      };
      return { acquire, hold: (name) => acquire(name), close: () => closeIoredis(client) };
    },
  };
}

export const semaphoreDefault = variant(
  'redis-semaphore',
  'Mutex; retryInterval 10, lockTimeout 10000 (defaults); acquireTimeout 60000',
  undefined,
);

/** Timers in Node have 1 ms resolution: this is as fast as it polls. */
export const semaphoreFast = variant(
  'redis-semaphore-1ms',
  'Mutex; retryInterval 1; lockTimeout 10000 (default); acquireTimeout 60000',
  1,
);
