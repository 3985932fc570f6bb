/** tracklock itself, through its public API only (the library's source, run by tsx). */
import { createLocker, DEFAULTS } from '../../../src/index.js';
import type { Held, LockClient, Variant } from './types.js';

function variant(keyMajority: number, directHandoff = false): Variant {
  return {
    id: `tracklock-m${keyMajority}${directHandoff ? '-direct' : ''}`,
    library: 'tracklock',
    settings: `keyMajority ${keyMajority}${directHandoff ? ', directHandoff' : ''}, other options default`,
    keepAlive: { intervalMs: DEFAULTS.extendIntervalMs, keys: 2 * keyMajority - 1 },
    signalsLoss: true,
    isTracklock: true,
    async create(url, namespace): Promise<LockClient> {
      const locker = await createLocker({ url, keyPrefix: namespace, keyMajority, directHandoff });
      const acquire = async (name: string, signal?: AbortSignal): Promise<Held> => {
        const lock = await locker.withContext(name, signal ? { signal } : {});
        return {
          lost: lock.signal,
          release: async () => {
            await lock.release();
          },
        };
      };
      // A held lock extends itself: holding is acquiring.
      return { acquire, hold: (name) => acquire(name), close: () => locker.close() };
    },
  };
}

export const tracklockM1 = variant(1);
export const tracklockM2 = variant(2);
export const tracklockM2Direct = variant(2, true);

/** tracklock's key layout (README, "How it works"): what the loss phase deletes. */
export function tracklockKeys(namespace: string, name: string, keyMajority: number): string[] {
  return Array.from({ length: 2 * keyMajority - 1 }, (_, i) => `${namespace}:${i}:${name}`);
}
