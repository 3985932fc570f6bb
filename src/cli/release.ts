import { WatchError } from '@redis/client';
import { confirm } from './confirm.js';
import { EXIT } from './exit-codes.js';
import type { Place, Places } from './places.js';
import { say } from './say.js';
import { formatStatus, readStatus } from './status.js';

/** How often a deletion is tried again when the holder touched its keys (an extension) meanwhile. */
const WATCH_TRIES = 5;

/**
 * `release --force`: delete lock `name`'s keys, as an operator's last resort for a stuck lock.
 * Its holder's signal aborts (by the invalidation push, or at its next extension at the
 * latest). Only the keys are deleted, and only while no other value took them: the
 * fence stays, so the next holder's token is still greater than the stuck holder's, and the
 * queue stays, so its head (which listens to the keys) takes the lock next, in arrival order.
 * Resolves with the exit status.
 */
export async function forceRelease(name: string, places: Places, yes: boolean): Promise<number> {
  if (!yes && !process.stdin.isTTY) {
    say('release --force deletes the keys of whoever holds the lock: confirm it with --yes');
    say('(stdin is not a terminal, so tracklock cannot ask)');
    return EXIT.usage;
  }
  const status = await readStatus(name, places);
  const present = status.keys.filter((key) => key.value !== null);
  if (present.length === 0) {
    say(`lock "${name}" has no keys: nothing to release`);
    return 0;
  }
  if (!yes) {
    process.stderr.write(`${formatStatus(status)}\n`);
    if (!(await confirm(`Delete the ${present.length} keys of lock "${name}"? [y/N] `))) {
      say('nothing deleted');
      return 1;
    }
  }
  // Each key may still hold what it was shown with, or be gone (expired), or, for a held lock,
  // hold its holder (a slow node's key it took since). Any other value may be a new holder's.
  const shown = new Map(status.keys.map(({ index, value }) => [index, value]));
  const allowed = (index: number, value: string | null) =>
    value === null || value === shown.get(index) || value === status.holder;
  let deleted = 0;
  for (const place of places.places) {
    const outcome = await deleteSeen(place, allowed);
    if (outcome === 'changed') {
      say(`lock "${name}" changed on ${place.server} since it was read: run the command again`);
      return 1;
    }
    deleted += outcome;
  }
  const tokens = status.fences.flatMap(({ token }) => (token === null ? [] : [BigInt(token)]));
  const fence = tokens.reduce<bigint | undefined>(
    (a, b) => (a === undefined || b > a ? b : a),
    undefined,
  );
  say(
    `deleted ${deleted} keys of lock "${name}"; left the fence${fence ? ` (token ${fence})` : ''} and the queue`,
  );
  return 0;
}

/**
 * Delete `place`'s lock keys if each holds a value it is `allowed` (WATCH, compare, MULTI DEL):
 * never the keys of a holder that took the lock after they were shown. Plain commands, no
 * script. Resolves with how many were deleted, or 'changed'.
 */
async function deleteSeen(
  place: Place,
  allowed: (index: number, value: string | null) => boolean,
): Promise<number | 'changed'> {
  const keys = place.keys.map(({ key }) => key);
  const { client, within } = place;
  for (let i = 0; i < WATCH_TRIES; i++) {
    await within(client.watch(keys));
    const now = await within(client.mGet(keys));
    if (now.some((value, i) => !allowed(place.keys[i]?.index ?? -1, value))) {
      await within(client.unwatch());
      return 'changed';
    }
    try {
      const [count] = await within(client.multi().del(keys).exec());
      return Number(count);
    } catch (error) {
      // An extension touched a key between WATCH and EXEC: its value is the same, try again.
      if (!(error instanceof WatchError)) throw error;
    }
  }
  return 'changed';
}
