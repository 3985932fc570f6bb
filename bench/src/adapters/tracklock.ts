/** tracklock itself, through its public API only (the library's source, run by tsx). */
import { subscribe, tracingChannel, unsubscribe } from 'node:diagnostics_channel';
import { CHANNELS, createLocker, DEFAULTS, type LockerOptions } from '../../../src/index.js';
import { parseLockTarget } from '../lock-target.js';
import type { Held, LockClient, SemaphoreVariant, Topology, Variant } from './types.js';

interface Setting {
  readonly id: string;
  readonly settings: string;
  /** Absent: the library's default for the topology. */
  readonly keyMajority?: number;
  /** Absent: the default, waiters queue (on one server). */
  readonly queue?: boolean;
  readonly localHandoffs?: number;
  readonly topology?: Topology;
  readonly keyValidityMs?: number;
  readonly extendIntervalMs?: number;
  /**
   * Set: `tracking: 'off'`, the locker polls, its waiters at this `pollIntervalMs` and its held
   * locks at this `checkIntervalMs` (absent: their defaults).
   */
  readonly poll?: { readonly pollIntervalMs?: number; readonly checkIntervalMs?: number };
  /**
   * Set: while the locker lives, its process subscribes to every tracklock diagnostics
   * channel, with a handler that only counts (what publishing costs once someone listens).
   */
  readonly traced?: boolean;
}

function variant(setting: Setting): Variant {
  const {
    keyMajority,
    queue,
    localHandoffs,
    topology,
    keyValidityMs,
    extendIntervalMs,
    poll,
    traced,
  } = setting;
  // With 3 nodes the default is a majority of them, 2; a cluster keeps the plain default, 2.
  const keys = 2 * (keyMajority ?? DEFAULTS.keyMajority) - 1;
  return {
    id: setting.id,
    library: 'tracklock',
    settings: setting.settings,
    keepAlive: { intervalMs: extendIntervalMs ?? DEFAULTS.extendIntervalMs, keys },
    // What a held lock's reads are timed by: where the loss phase drops its DEL.
    ...(poll ? { polls: { intervalMs: poll.checkIntervalMs ?? DEFAULTS.checkIntervalMs } } : {}),
    signalsLoss: true,
    isTracklock: true,
    ...(topology ? { topology } : {}),
    async create(target, namespace): Promise<LockClient> {
      const unsubscribe = traced ? subscribeToAll() : undefined;
      const locker = await createLocker({
        ...where(target),
        keyPrefix: namespace,
        ...(keyMajority === undefined ? {} : { keyMajority }),
        ...(queue === undefined ? {} : { queue }),
        ...(localHandoffs === undefined ? {} : { localHandoffs }),
        ...(keyValidityMs === undefined ? {} : { keyValidityMs }),
        ...(extendIntervalMs === undefined ? {} : { extendIntervalMs }),
        ...(poll === undefined ? {} : { tracking: 'off', ...poll }),
      });
      // A polling row that pushed would measure the wrong thing.
      if (locker.mode !== (poll ? 'poll' : 'push')) {
        await locker.close();
        throw new Error(`${setting.id}: the locker is in ${locker.mode} mode`);
      }
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
      const close = async () => {
        await locker.close();
        unsubscribe?.();
        // A traced row that heard nothing (not even its server's connect) measured nothing.
        if (traced && heard === 0) throw new Error(`${setting.id}: no diagnostics event heard`);
      };
      return { acquire, hold: (name) => acquire(name), close };
    },
  };
}

/** Events heard by the subscribers of `traced` lockers: the handlers' only work. */
let heard = 0;

/** Subscribe a counting handler to every tracklock channel; returns the unsubscribe. */
function subscribeToAll(): () => void {
  const count = () => {
    heard++;
  };
  const tracing = [CHANNELS.acquire, CHANNELS.release].map((name) => tracingChannel(name));
  const events = { start: count, end: count, asyncStart: count, asyncEnd: count, error: count };
  const plain = [CHANNELS.lost, CHANNELS.extend, CHANNELS.invalidation, CHANNELS.server];
  for (const channel of tracing) channel.subscribe(events);
  for (const name of plain) subscribe(name, count);
  return () => {
    for (const channel of tracing) channel.unsubscribe(events);
    for (const name of plain) unsubscribe(name, count);
  };
}

/** The option that says where the keys live. */
function where(target: string): LockerOptions {
  const parsed = parseLockTarget(target);
  switch (parsed.kind) {
    case 'server':
      return { url: parsed.url };
    case 'nodes':
      return { nodes: parsed.urls };
    case 'cluster':
      return { cluster: { rootNodes: parsed.rootNodes.map((url) => ({ url })) } };
  }
}

/** On one server, at `keyMajority` M: waiters queue unless the id says otherwise. */
export const tracklockM1 = variant({
  id: 'tracklock-m1',
  settings: 'keyMajority 1, other options default (waiters queue)',
  keyMajority: 1,
});

export const tracklockM2 = variant({
  id: 'tracklock-m2',
  settings: 'keyMajority 2, other options default (waiters queue)',
  keyMajority: 2,
});

/**
 * The defaults row with a subscriber on every diagnostics channel (issue 15): its handoff and
 * idle cost beside tracklock-m2's, from the same run, show what publishing costs.
 */
export const tracklockM2Traced = variant({
  id: 'tracklock-m2-traced',
  settings:
    'keyMajority 2, other options default, a counting subscriber on every tracklock diagnostics channel',
  keyMajority: 2,
  traced: true,
});

/** The old waiting beside the new, at the same settings otherwise. */
export const tracklockM2Race = variant({
  id: 'tracklock-m2-race',
  settings:
    "keyMajority 2, queue false (0.2's behaviour: every waiter listens to the keys and races), other options default",
  keyMajority: 2,
  queue: false,
});

/**
 * The contention table only: a released lock always passes to a waiter of the same process
 * when there is one, throughput bought with fairness, which the fairness table would only
 * show starving (the option's documented trade).
 */
export const tracklockM2LocalInf = variant({
  id: 'tracklock-m2-local-inf',
  settings:
    'keyMajority 2, localHandoffs Infinity (throughput over fairness), other options default',
  keyMajority: 2,
  localHandoffs: Number.POSITIVE_INFINITY,
});

/**
 * Polling (issue 14): no invalidation pushes, as on a server that refuses `CLIENT TRACKING`. A
 * waiter at the queue's head (and the deputy) attempts 2 ms after its last, doubling to
 * `pollIntervalMs`; a held lock reads its keys every `checkIntervalMs` to notice a loss
 * between extensions.
 */
export const tracklockM2Poll = variant({
  id: 'tracklock-m2-poll',
  settings:
    "keyMajority 2, tracking 'off' (polling; pollIntervalMs 100 and checkIntervalMs 500, their defaults), other options default",
  keyMajority: 2,
  poll: {},
});

/** The polling knobs turned down: faster handoffs and loss detection, more reads. */
export const tracklockM2Poll10 = variant({
  id: 'tracklock-m2-poll10',
  settings:
    "keyMajority 2, tracking 'off', pollIntervalMs 10, checkIntervalMs 10, other options default",
  keyMajority: 2,
  poll: { pollIntervalMs: 10, checkIntervalMs: 10 },
});

/** The "many servers" table: every option at its default, only where the keys live differs. */
export const tracklockNodes3 = variant({
  id: 'tracklock-nodes3',
  settings:
    'nodes (3 URLs); keyMajority 2 (default with 3 nodes), other options default (waiters queue beside key 0; no handoff across servers)',
  topology: 'nodes3',
});

export const tracklockCluster3 = variant({
  id: 'tracklock-cluster3',
  settings:
    'cluster (3 root nodes); keyMajority 2, other options default (waiters queue beside key 0; no handoff across servers)',
  topology: 'cluster3',
});

/**
 * The scale table (issue 13's measurements): short keys, so a window of a few seconds holds
 * many extensions, each of which invalidates the keys the listening waiters track: with the
 * queue (the default) only the head's, racing (0.2's behaviour) every waiter's.
 */
export const tracklockScale = variant({
  id: 'tracklock-scale',
  settings:
    'keyValidityMs 1000, extendIntervalMs 250; keyMajority 2 and other options default (waiters queue)',
  keyValidityMs: 1000,
  extendIntervalMs: 250,
});

export const tracklockScaleRace = variant({
  id: 'tracklock-scale-race',
  settings:
    "keyValidityMs 1000, extendIntervalMs 250, queue false (0.2's behaviour: every waiter listens to the keys and races); keyMajority 2 and other options default",
  keyValidityMs: 1000,
  extendIntervalMs: 250,
  queue: false,
});

/**
 * The semaphore rows (issue 16): `locker.semaphore(name, { limit })` with every option at its
 * default; waiters queue in arrival order and only the head is woken, by push, when it fits.
 */
export const tracklockSemaphore: SemaphoreVariant = {
  id: 'tracklock-sem',
  library: 'tracklock',
  settings: 'semaphore(name, { limit }), one permit per acquisition; other options default',
  isTracklock: true,
  keepAliveMs: DEFAULTS.extendIntervalMs,
  async create(target, namespace, limit): Promise<LockClient> {
    const locker = await createLocker({ ...where(target), keyPrefix: namespace });
    const semaphores = new Map<string, ReturnType<typeof locker.semaphore>>();
    const acquire = async (name: string, signal?: AbortSignal): Promise<Held> => {
      let semaphore = semaphores.get(name);
      if (!semaphore) {
        semaphore = locker.semaphore(name, { limit });
        semaphores.set(name, semaphore);
      }
      const lock = await semaphore.withContext(signal ? { signal } : {});
      return {
        lost: lock.signal,
        release: async () => {
          await lock.release();
        },
      };
    };
    // A held permit extends itself: holding is acquiring.
    return { acquire, hold: (name) => acquire(name), close: () => locker.close() };
  },
};

/** tracklock's key layout (docs/how-it-works.md): what the loss phase deletes. */
export function tracklockKeys(namespace: string, name: string, keyMajority: number): string[] {
  return Array.from({ length: 2 * keyMajority - 1 }, (_, i) => `${namespace}:${i}:${name}`);
}
