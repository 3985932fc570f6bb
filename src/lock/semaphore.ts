import { checkName } from '../shared/keys.js';
import { checkLimit, checkPermits } from '../shared/limits.js';
import type { AcquireOptions, WaitOptions } from './api.js';
import type { Lock } from './handle.js';
import type { PermitRequest } from './semaphores.js';
import { withLock } from './with-lock.js';

/** How many permits one call of a semaphore takes (1 … its `limit`; 1 by default). */
export interface PermitOptions {
  permits?: number;
}

/**
 * Take and hold permits: a semaphore's (N holders at once), or one side of a read-write lock.
 * Each call resolves to the mutex's {@link Lock} handle: its signal aborts when the permits are
 * lost, and `release()` gives them back.
 */
export interface PermitLock<Extra = object> {
  /** The name given to `locker.semaphore()` or `locker.readWriteLock()`. */
  readonly name: string;
  /** Wait for the permits, in arrival order (fair), as `locker.withContext` waits. */
  withContext(options?: WaitOptions & Extra): Promise<Lock>;
  /** Take the permits if they are free and nobody waits for them, else reject with `NotLockedError`. */
  tryWithContext(options?: AcquireOptions & Extra): Promise<Lock>;
  /** `withContext`, run `fn` with the signal, release: as `locker.withLock`. */
  withLock<T>(
    fn: (signal: AbortSignal, lock: Lock) => T | PromiseLike<T>,
    options?: WaitOptions & Extra,
  ): Promise<T>;
}

/** A semaphore: at most `limit` permits held at once (see `locker.semaphore()`). */
export interface Semaphore extends PermitLock<PermitOptions> {
  readonly limit: number;
}

/** A read-write lock: many readers at once, or one writer (see `locker.readWriteLock()`). */
export interface ReadWriteLock {
  readonly name: string;
  /** Shared: held with other readers, never with a writer. */
  readonly read: PermitLock;
  /** Exclusive: held alone. */
  readonly write: PermitLock;
}

/** Takes permits for the public objects: the locker's semaphores. */
export type Take = (request: PermitRequest) => Promise<Lock>;

/** The three calls of a `PermitLock` on `name`, from how one call takes its permits. */
function permitLock<Extra>(
  name: string,
  call: (mode: 'wait' | 'try', options: (WaitOptions & Extra) | undefined) => Promise<Lock>,
): PermitLock<Extra> {
  const withContext = (options?: WaitOptions & Extra) => call('wait', options);
  return {
    name,
    withContext,
    tryWithContext: (options?: AcquireOptions & Extra) => call('try', options),
    withLock: <T>(
      fn: (signal: AbortSignal, lock: Lock) => T | PromiseLike<T>,
      options?: WaitOptions & Extra,
    ) =>
      withLock({ withContext: (_, o) => withContext(o as WaitOptions & Extra) }, name, fn, options),
  };
}

/** A semaphore `name` of `limit` permits on `take`. */
export function createSemaphore(take: Take, name: string, limit: number): Semaphore {
  checkName(name);
  checkLimit(limit);
  const calls = permitLock<PermitOptions>(name, async (mode, options) => {
    const permits = options?.permits ?? 1;
    checkPermits(permits, limit);
    return take({ kind: 's', name, spec: String(permits), limit, mode, options });
  });
  return Object.freeze({ ...calls, limit });
}

/** A read-write lock `name` on `take`. */
export function createReadWriteLock(take: Take, name: string): ReadWriteLock {
  checkName(name);
  const side = (spec: 'r' | 'w'): PermitLock =>
    Object.freeze(
      permitLock(name, (mode, options) =>
        take({ kind: 'rw', name, spec, limit: undefined, mode, options }),
      ),
    );
  return Object.freeze({ name, read: side('r'), write: side('w') });
}
