import type { HeldLock } from './lock.js';

/**
 * What `withContext` and friends resolve to: a `[signal, release]` tuple that also has named
 * members and works with `await using`.
 */
export type Lock = readonly [signal: AbortSignal, release: () => Promise<boolean>] & {
  /** Aborts when the lock is no longer yours; its `reason` says why. */
  readonly signal: AbortSignal;
  /** The lock's name. */
  readonly name: string;
  /**
   * The fencing token: greater than every earlier holder's token for this name (see
   * docs/fencing.md for the conditions). Pass it with each write to a resource that
   * keeps the highest token it has seen and refuses smaller ones: a holder that was paused
   * past its lock is then refused. Locks handed over or passed on have one too.
   */
  readonly token: bigint | undefined;
  /**
   * Abort the signal and delete the keys. Idempotent. Resolves `true` when the lock was still
   * held, `false` when it had already ended (lost, aborted by the parent signal, or closed);
   * rejects with `ReleaseUnconfirmedError` when Redis did not confirm the deletion in time.
   */
  release(): Promise<boolean>;
  /** `release()`, for `await using`; an unconfirmed deletion is not thrown (the keys expire). */
  [Symbol.asyncDispose](): Promise<void>;
};

/** Wrap a held lock in the public tuple-shaped handle. */
export function createHandle(lock: HeldLock): Lock {
  const release = () => lock.release();
  const handle: unknown[] = [lock.signal, release];
  Object.defineProperties(handle, {
    signal: { value: lock.signal, enumerable: true },
    name: { value: lock.name, enumerable: true },
    token: { value: lock.token, enumerable: true },
    release: { value: release },
    [Symbol.asyncDispose]: {
      value: async () => {
        await release().catch((error: unknown) => {
          if ((error as { code?: string }).code !== 'ERR_RELEASE_UNCONFIRMED') throw error;
        });
      },
    },
  });
  return Object.freeze(handle) as unknown as Lock;
}
