import type { LockerOptions } from '../shared/options.js';
import { resolveOptions } from '../shared/resolve-options.js';
import type { Lock } from './handle.js';
import { RedisLocker } from './locker.js';
import type { ReadWriteLock, Semaphore } from './semaphore.js';
import type { LockerStats } from './stats.js';

/** Options of one acquisition. */
export interface AcquireOptions {
  /**
   * Aborting it while waiting rejects the call with its reason (nothing of the attempt stays
   * in Redis); aborting it while the lock is held aborts the lock's signal and releases it.
   */
  signal?: AbortSignal;
  /** The cap on holding this lock, in ms, over the locker's `maxHoldMs`. */
  maxHoldMs?: number;
}

/** Options of an acquisition that may wait (`withContext`, `withLock`). */
export interface WaitOptions extends AcquireOptions {
  /**
   * Give up waiting after this many ms and reject with `NotLockedError`; the first attempt
   * always completes, so 0 means "try once" (unless another waiter of this locker is ahead). Unlike an `AbortSignal.timeout` passed as
   * `signal`, it does not limit how long the lock is held.
   */
  waitTimeoutMs?: number;
}

/** A distributed lock client on one Redis connection. Create it with {@link createLocker}. */
export interface Locker {
  /**
   * How this locker hears that a lock's keys changed: `'push'`, by invalidation pushes (a
   * waiter retries at once, a holder re-checks at once), or `'poll'`, because the options said
   * `tracking: 'off'` or a server refused pushes: waiters retry within `pollIntervalMs`, and
   * holders read their keys every `checkIntervalMs`.
   */
  readonly mode: 'push' | 'poll';
  /** Wait until the lock is ours. */
  withContext(name: string, options?: WaitOptions): Promise<Lock>;
  /** Take the lock if it is free now, else reject with `NotLockedError`. Never waits. */
  tryWithContext(name: string, options?: AcquireOptions): Promise<Lock>;
  /** Take the lock whoever holds it: the holder's signal aborts with `LockLostError`. */
  forceWithContext(name: string, options?: AcquireOptions): Promise<Lock>;
  /**
   * Wait for the lock, run `fn` with its signal, release it, and return what `fn` returned.
   * Rethrows what `fn` throws; if the lock ended before `fn` returned (even when `fn` ignored
   * its signal), rejects with the end's reason: `LockLostError`, `MaxHoldError`,
   * `LockerClosedError`, or the caller's signal's reason.
   */
  withLock<T>(
    name: string,
    fn: (signal: AbortSignal, lock: Lock) => T | PromiseLike<T>,
    options?: WaitOptions,
  ): Promise<T>;
  /**
   * The semaphore `name`: at most `limit` permits held at once, by any lockers, waiters served
   * in arrival order (docs/semaphores.md). Every locker must give a name the same `limit`
   * (else `LimitMismatchError`). One server, sentinel or cluster; a `TypeError` with `nodes` or
   * `groups`, whose majority cannot count N holders.
   */
  semaphore(name: string, options: { readonly limit: number }): Semaphore;
  /**
   * The read-write lock `name`: many readers at once, or one writer; waiters served in arrival
   * order, so a queued writer stops later readers. Topologies as `semaphore`.
   */
  readWriteLock(name: string): ReadWriteLock;
  /**
   * A snapshot of what this locker holds, waits for and sent, counted since it was created:
   * cheap (integer counters), for health checks and metrics. See docs/diagnostics.md.
   */
  stats(): LockerStats;
  /**
   * Abort every held signal (`LockerClosedError`), reject every waiter, delete the keys best
   * effort and close the connection; bounded by `commandTimeoutMs`. Idempotent.
   */
  close(): Promise<void>;
}

/** Connect to Redis and return a {@link Locker}. Rejects within `connectTimeoutMs`. */
export async function createLocker(options?: LockerOptions): Promise<Locker> {
  const resolved = resolveOptions(options);
  const locker = new RedisLocker(resolved);
  await locker.connect();
  return locker;
}
