export { type AcquireOptions, createLocker, type Locker, type WaitOptions } from './lock/api.js';
export {
  type AcquireMessage,
  type AcquireMode,
  type AcquireOutcome,
  CHANNELS,
  type EndReason,
  type ExtendMessage,
  type InvalidationMessage,
  type LostMessage,
  type ReleaseMessage,
  type ReleaseOutcome,
  type ServerMessage,
} from './lock/diagnostics.js';
export type { Lock } from './lock/handle.js';
export type {
  PermitLock,
  PermitOptions,
  ReadWriteLock,
  Semaphore,
} from './lock/semaphore.js';
export type { LockerStats } from './lock/stats.js';
export {
  LimitMismatchError,
  LockError,
  type LockErrorCode,
  LockerClosedError,
  LockLostError,
  LockReleasedError,
  type Loss,
  MaxHoldError,
  NotLockedError,
  ReleaseUnconfirmedError,
  UnavailableError,
} from './shared/errors.js';
export { MAX_NAME_BYTES } from './shared/keys.js';
export { MAX_SEMAPHORE_LIMIT } from './shared/limits.js';
export {
  DEFAULTS,
  type GroupOptions,
  type LockerOptions,
  MAX_KEY_MAJORITY,
  type NodeOptions,
} from './shared/options.js';
