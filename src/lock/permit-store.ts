import { perKey } from '../redis/commands.js';
import {
  SEMAPHORE_SCRIPTS,
  type Spec,
  sharedArgs,
  type Woken,
} from '../redis/semaphore-scripts.js';
import type { KeyCheck, KeyState, KeyStore, Outcome } from '../redis/store.js';
import type { SemaphoreNames } from '../shared/keys.js';

/** One holder of a semaphore or read-write lock: where it is, and what it took. */
export interface Permit {
  readonly names: SemaphoreNames;
  readonly value: string;
  readonly spec: Spec;
  /** The semaphore's limit; none for a rw lock. */
  readonly limit: number | undefined;
  readonly validityMs: number;
}

/**
 * A holder of permits seen as the one key a `HeldLock` holds (its own key, `owns + value`):
 * extending, checking and releasing it run the semaphore's scripts, so the lock's deadline,
 * keep-alive, loss by push and end are the mutex's, unchanged. A lost permit is never taken
 * back (no retake: redis-semaphore#175). `woke` hears of the waiters each script woke (see
 * `Woken`).
 */
export function permitStore(
  store: KeyStore,
  permit: Permit,
  woke: (woken: Woken) => void,
): KeyStore {
  const keys = { own: permit.names.owns + permit.value };
  const args = sharedArgs(permit.names, permit.value, permit.spec, permit.validityMs, permit.limit);
  // The one key's outcome, as the store's operations give one per key.
  const one = <T>(reply: Promise<T>): Promise<Outcome<T>[]> =>
    perKey([keys.own], reply, (value) => value);
  const release = () =>
    one(
      store.script(SEMAPHORE_SCRIPTS.release, keys, args, 'release').then((released) => {
        woke(released.woken);
        return released.held;
      }),
    );
  const none: KeyState = { value: null, pttlMs: -2, token: undefined };
  return {
    acquire: async () => [{ status: 'fulfilled', value: none }],
    extend: () =>
      one(
        store.script(SEMAPHORE_SCRIPTS.extend, keys, args, 'extend').then((extended) => {
          if (extended.status !== 'limit') woke(extended.woken);
          return extended.status === 'extended';
        }),
      ),
    check: () =>
      one(
        store
          .script(SEMAPHORE_SCRIPTS.check, keys, args, 'check')
          .then((found): KeyCheck => ({ ours: found.held, pttlMs: found.pttlMs })),
      ),
    watch: async () => {},
    delete: release,
    release,
    leave: async () => {},
    script: (script, scriptKeys, scriptArgs, kind) =>
      store.script(script, scriptKeys, scriptArgs, kind),
    close: async () => {},
  };
}
