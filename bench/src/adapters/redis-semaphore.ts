/**
 * `redis-semaphore`'s `Mutex`: `mutex.acquire()` polls `SET NX` every `retryInterval` ms
 * (default 10) until `acquireTimeout` (default 10 s), and refreshes a held lock every
 * `lockTimeout × 0.8` ms by itself. Its `Semaphore` (issue 16's rows) polls the same way, with
 * a script that drops the expired members of one sorted set and adds its own while `ZCARD` is
 * below the limit; release is a `ZREM`.
 */
import type { Redis } from 'ioredis';
import { type LockOptions, Mutex, Semaphore } from 'redis-semaphore';
import { singleServer } from '../lock-target.js';
import { closeIoredis, connectIoredis } from './ioredis.js';
import type { LockClient, SemaphoreVariant, Variant } from './types.js';

/** The library's default: the refresh interval follows from it. */
const LOCK_TIMEOUT_MS = 10_000;

function options(retryInterval: number | undefined): LockOptions {
  return {
    // A waiter that gives up after 10 s would fail a long contention run, not measure it.
    acquireTimeout: 60_000,
    ...(retryInterval === undefined ? {} : { retryInterval }),
    onLockLost: () => {}, // the default throws an uncaught error in a refresh timer
  };
}

/** One connection; every acquisition is a lock object of its own (one identifier, one holder). */
async function connect(
  target: string,
  lockOf: (client: Redis, name: string) => Mutex | Semaphore,
): Promise<LockClient> {
  const client = await connectIoredis(singleServer(target, 'redis-semaphore'));
  const acquire = async (name: string, signal?: AbortSignal) => {
    const lock = lockOf(client, name);
    await lock.acquire(signal);
    return { release: () => lock.release() };
  };
  return { acquire, hold: (name) => acquire(name), close: () => closeIoredis(client) };
}

function variant(id: string, settings: string, retryInterval: number | undefined): Variant {
  return {
    id,
    library: 'redis-semaphore',
    settings,
    keepAlive: { intervalMs: LOCK_TIMEOUT_MS * 0.8, keys: 1 },
    signalsLoss: false,
    isTracklock: false,
    create: (target, namespace) =>
      connect(
        target,
        (client, name) => new Mutex(client, `${namespace}:${name}`, options(retryInterval)),
      ),
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

function semaphoreVariant(
  id: string,
  settings: string,
  retryInterval: number | undefined,
): SemaphoreVariant {
  return {
    id,
    library: 'redis-semaphore',
    settings,
    isTracklock: false,
    keepAliveMs: LOCK_TIMEOUT_MS * 0.8,
    create: (target, namespace, limit) =>
      connect(
        target,
        (client, name) =>
          new Semaphore(client, `${namespace}:${name}`, limit, options(retryInterval)),
      ),
  };
}

/** The semaphore rows: the library's `Semaphore` at its default polling and at its fastest. */
export const semaphoreSemDefault = semaphoreVariant(
  'redis-semaphore-sem',
  'Semaphore; retryInterval 10, lockTimeout 10000 (defaults); acquireTimeout 60000',
  undefined,
);

export const semaphoreSemFast = semaphoreVariant(
  'redis-semaphore-sem-1ms',
  'Semaphore; retryInterval 1; lockTimeout 10000 (default); acquireTimeout 60000',
  1,
);
