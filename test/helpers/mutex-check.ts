import type { Locker } from '../../src/index.js';
import { bound, sleep } from './wait.js';

/**
 * Two waiters per locker loop `rounds` times each over `name`: take the lock, hold it a
 * random moment (the time is the point), release. Counts the acquisitions, and the overlaps:
 * a lock taken while another is held, or whose signal aborted while held.
 */
export async function checkMutex(
  lockers: readonly Locker[],
  name: string,
  rounds: number,
  waitMs: number,
): Promise<{ acquisitions: number; overlaps: number }> {
  let holder: string | null = null;
  let overlaps = 0;
  let acquisitions = 0;
  const worker = async (locker: Locker, id: string) => {
    for (let i = 0; i < rounds; i++) {
      const lock = await locker.withContext(name, bound(waitMs));
      if (holder !== null) overlaps++;
      holder = id;
      acquisitions++;
      await sleep(Math.random() * 3);
      if (lock.signal.aborted) overlaps++;
      holder = null;
      await lock.release();
    }
  };
  await Promise.all(
    lockers.flatMap((locker, l) => [worker(locker, `${l}a`), worker(locker, `${l}b`)]),
  );
  return { acquisitions, overlaps };
}
