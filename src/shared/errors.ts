/** Stable codes carried by every {@link LockError}. */
export type LockErrorCode =
  | 'ERR_NOT_LOCKED'
  | 'ERR_LOCK_LOST'
  | 'ERR_LOCK_RELEASED'
  | 'ERR_MAX_HOLD'
  | 'ERR_LOCKER_CLOSED'
  | 'ERR_RELEASE_UNCONFIRMED'
  | 'ERR_UNAVAILABLE'
  | 'ERR_CONNECT'
  | 'ERR_SERVER_VERSION'
  | 'ERR_LIMIT_MISMATCH';

/** Base class of every error tracklock throws or aborts a signal with. Switch on `code`. */
export class LockError extends Error {
  readonly code: LockErrorCode;

  constructor(code: LockErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** `tryWithContext` found the lock held by someone else, or `waitTimeoutMs` ran out. */
export class NotLockedError extends LockError {
  readonly lockName: string;
  constructor(lockName: string, waitedMs?: number) {
    const when = waitedMs === undefined ? '' : ` for all of waitTimeoutMs (${waitedMs} ms)`;
    super('ERR_NOT_LOCKED', `lock "${lockName}" is held by another owner${when}`);
    this.lockName = lockName;
  }
}

/** How a held lock stopped being ours. */
export type Loss = 'changed' | 'expired' | 'disconnected';

/**
 * The lock's signal aborts with this when fewer than a majority of its keys are still ours:
 * deleted, overwritten or forced by someone else (`changed`), or not extended in time
 * (`expired`: the local timer fired before Redis could let the keys go), or on a server whose
 * connection dropped (`disconnected`: the server may have restarted without them).
 */
export class LockLostError extends LockError {
  readonly lockName: string;
  /** How it was lost (named so, not `reason`, to stay apart from the signal's own `reason`). */
  readonly loss: Loss;
  constructor(lockName: string, loss: Loss) {
    const why = {
      changed: 'its keys were deleted or overwritten',
      expired: 'its keys were not extended in time',
      disconnected:
        'the connection to the server of its keys dropped, and a restart may have lost them',
    }[loss];
    super('ERR_LOCK_LOST', `lock "${lockName}" was lost: ${why}`);
    this.lockName = lockName;
    this.loss = loss;
  }
}

/** The lock's signal aborts with this when `release()` is called. */
export class LockReleasedError extends LockError {
  constructor(lockName: string) {
    super('ERR_LOCK_RELEASED', `lock "${lockName}" was released`);
  }
}

/**
 * The lock's signal aborts with this when it has been held for `maxHoldMs`: it stops
 * extending and lets go of its keys, so that a stuck holder cannot keep the lock for ever.
 */
export class MaxHoldError extends LockError {
  readonly lockName: string;
  readonly maxHoldMs: number;
  constructor(lockName: string, maxHoldMs: number) {
    super(
      'ERR_MAX_HOLD',
      `lock "${lockName}" was held for maxHoldMs (${maxHoldMs} ms) and let go of`,
    );
    this.lockName = lockName;
    this.maxHoldMs = maxHoldMs;
  }
}

/** Held signals abort, and waiting or later calls reject, with this once `close()` was called. */
export class LockerClosedError extends LockError {
  constructor() {
    super('ERR_LOCKER_CLOSED', 'the locker is closed');
  }
}

/**
 * `release()` could not confirm that Redis deleted the keys (Redis did not answer in time).
 * The lock's signal has aborted all the same; the keys expire by themselves within
 * `keyValidityMs`.
 */
export class ReleaseUnconfirmedError extends LockError {
  constructor(lockName: string, cause: unknown) {
    super(
      'ERR_RELEASE_UNCONFIRMED',
      `lock "${lockName}" was released locally, but Redis did not confirm the deletion of its keys; they expire within keyValidityMs`,
      { cause },
    );
  }
}

/** Redis did not answer an acquisition in time, or failed it (`cause` has the client's error). */
export class UnavailableError extends LockError {
  constructor(message: string, cause: unknown) {
    super('ERR_UNAVAILABLE', message, { cause });
  }
}

/**
 * A semaphore's call found the semaphore in use with another `limit` (another locker, or this
 * one with another `locker.semaphore()`): nothing was written. Every locker must give one name
 * one limit; a new limit is taken once every holder of the old one is gone.
 */
export class LimitMismatchError extends LockError {
  readonly lockName: string;
  /** The limit this call gave. */
  readonly limit: number;
  /** The limit the semaphore's holders use, as Redis stores it. */
  readonly stored: number;
  constructor(lockName: string, limit: number, stored: number) {
    super(
      'ERR_LIMIT_MISMATCH',
      `semaphore "${lockName}" is in use with limit ${stored}, not ${limit}: every locker must give a name the same limit`,
    );
    this.lockName = lockName;
    this.limit = limit;
    this.stored = stored;
  }
}
