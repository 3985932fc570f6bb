export {
  LockError,
  type LockErrorCode,
  LockerClosedError,
  LockLostError,
  LockReleasedError,
  type Loss,
  NotLockedError,
  ReleaseUnconfirmedError,
  UnavailableError,
} from './errors.js';
export { MAX_NAME_BYTES } from './keys.js';
export type { Lock } from './lock.js';
export { type AcquireOptions, createLocker, type Locker, type WaitOptions } from './locker.js';
export {
  DEFAULTS,
  type GroupOptions,
  type LockerOptions,
  MAX_KEY_MAJORITY,
  type NodeOptions,
} from './options.js';
