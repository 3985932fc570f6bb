import { LockLostError, LockReleasedError } from '../shared/errors.js';
import type { Locker, WaitOptions } from './api.js';
import type { Lock } from './handle.js';

/**
 * `Locker.withLock` for any locker: wait for the lock, run `fn` with its signal, release it.
 * It needs nothing but the public `withContext`.
 */
export async function withLock<T>(
  locker: Pick<Locker, 'withContext'>,
  name: string,
  fn: (signal: AbortSignal, lock: Lock) => T | PromiseLike<T>,
  options?: WaitOptions,
): Promise<T> {
  if (typeof fn !== 'function') throw new TypeError('withLock: fn must be a function');
  const lock = await locker.withContext(name, options);
  let result: T;
  try {
    result = await fn(lock.signal, lock);
  } catch (error) {
    await lock.release().catch(() => {});
    throw error;
  }
  // The work ran under the lock: an unconfirmed deletion must not turn it into a failure
  // (a caller would retry work that is done). The keys expire by themselves.
  const held = await lock.release().catch(() => true);
  if (!held) {
    // The lock ended before fn did: lost, closed or aborted (its reason says which), or
    // released although Redis had already let it go.
    const reason: unknown = lock.signal.reason;
    throw reason instanceof LockReleasedError ? new LockLostError(name, 'changed') : reason;
  }
  return result;
}
