import type { Locker } from '../../src/index.js';
import { sleep } from './wait.js';

/**
 * `callers` calls of `withLock` on semaphore `name` (limit `limit`) spread over `lockers` in
 * turn, each holding a moment (waiting up to 60 s): the most that were inside at once.
 */
export async function mostAtOnce(
  lockers: readonly Locker[],
  name: string,
  limit: number,
  callers: number,
): Promise<number> {
  let inside = 0;
  let most = 0;
  await Promise.all(
    Array.from({ length: callers }, (_, i) =>
      (lockers[i % lockers.length] as Locker).semaphore(name, { limit }).withLock(
        async (signal) => {
          inside++;
          most = Math.max(most, inside);
          await sleep(5);
          signal.throwIfAborted();
          inside--;
        },
        { waitTimeoutMs: 60_000 },
      ),
    ),
  );
  return most;
}
