/**
 * `@sesamecare-oss/redlock`, the maintained TypeScript fork of redlock v5. Its blocking
 * acquire is `redlock.acquire([resource], duration)`, polling like v4 (`retryDelay` 200 ±
 * `retryJitter` 100, `retryCount` 10 by default). Automatic extension exists only inside
 * `redlock.using(...)`, which `hold` uses.
 */
import { Redlock } from '@sesamecare-oss/redlock';
import { singleServer } from '../lock-target.js';
import { closeIoredis, connectIoredis } from './ioredis.js';
import type { Held, LockClient, Variant } from './types.js';

const DURATION_MS = 5000;
/** The library's default `automaticExtensionThreshold`: `using` extends this long before expiry. */
const EXTENSION_THRESHOLD_MS = 500;

export const sesameRedlock: Variant = {
  id: 'sesame-redlock',
  library: '@sesamecare-oss/redlock',
  settings: 'retryCount -1; retryDelay 200, retryJitter 100 (defaults); duration 5000',
  keepAlive: { intervalMs: DURATION_MS - EXTENSION_THRESHOLD_MS, keys: 1 },
  signalsLoss: false,
  isTracklock: false,
  async create(target, namespace): Promise<LockClient> {
    const client = await connectIoredis(singleServer(target, 'sesame-redlock'));
    const redlock = new Redlock([client], { retryCount: -1 });
    redlock.on('error', () => {}); // "resource locked" on every failed attempt, by design
    return {
      async acquire(name) {
        const lock = await redlock.acquire([`${namespace}:${name}`], DURATION_MS);
        return {
          release: async () => {
            await lock.release();
          },
        };
      },
      hold(name) {
        // `using` holds the lock while the routine runs: the routine waits for release().
        return new Promise<Held>((resolve, reject) => {
          let done: () => void = () => {};
          const finished = new Promise<void>((resolveDone) => {
            done = resolveDone;
          });
          const running = redlock.using([`${namespace}:${name}`], DURATION_MS, async () => {
            resolve({
              release: async () => {
                done();
                await running;
              },
            });
            await finished;
          });
          running.catch(reject);
        });
      },
      close: () => closeIoredis(client),
    };
  },
};
