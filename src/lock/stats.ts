import type { CallCounts } from '../redis/store.js';

/** What `locker.stats()` returns: a snapshot, counted since the locker was created. */
export interface LockerStats {
  /** Locks this locker holds now. */
  readonly held: number;
  /** `withContext` / `withLock` calls that are waiting for their lock now. */
  readonly waiting: number;
  /**
   * Requests sent to Redis, by kind: `acquire` (acquire scripts: attempts, retakes, local
   * passes), `extend`, `check` (ownership reads: after invalidations, polls, watches),
   * `release` (deletions: releases, give-backs, leaving a queue), `other` (fence raises).
   * One per server a call goes to (in a cluster, one per key; a script sent again apart after
   * `TRYAGAIN` counts again, and its fence's command as `other`).
   */
  readonly calls: Readonly<CallCounts>;
  /** Invalidation pushes received for a key (the null ones of flushes and reconnects aside). */
  readonly invalidations: number;
  /**
   * Extensions that failed for some key: Redis failed or did not answer in time, or found
   * the key no longer ours.
   */
  readonly extensionsFailed: number;
  /**
   * Per server (`host:port`, as in error messages), how the locker hears of its changes:
   * `push` (invalidations) or `poll`. A server appears once its connection is ready, and
   * leaves when a failover moves the keys to another.
   */
  readonly servers: Readonly<Record<string, 'push' | 'poll'>>;
}

/** The locker's counters: integer increments where things happen, read by `snapshot`. */
export class Counters {
  readonly calls: CallCounts = { acquire: 0, extend: 0, check: 0, release: 0, other: 0 };
  waiting = 0;
  invalidations = 0;
  extensionsFailed = 0;
  readonly servers = new Map<string, 'push' | 'poll'>();

  snapshot(held: number): LockerStats {
    return {
      held,
      waiting: this.waiting,
      calls: { ...this.calls },
      invalidations: this.invalidations,
      extensionsFailed: this.extensionsFailed,
      servers: Object.fromEntries(this.servers),
    };
  }
}
