/**
 * The one small interface every library is driven through, so that each phase of the
 * benchmark runs the same code for all of them and only the library's own calls differ.
 */

/** A lock this process holds. */
export interface Held {
  /** Let go; resolves once the library says the lock is released. */
  release(): Promise<void>;
  /**
   * Aborts when the library finds the lock lost while held; only libraries that offer such a
   * signal set it (the loss-detection phase runs only for them).
   */
  readonly lost?: AbortSignal;
}

/** One library client (its own connection) in one process, as one service would have. */
export interface LockClient {
  /** The library's own documented blocking acquire: resolves once the lock is ours. */
  acquire(name: string, signal?: AbortSignal): Promise<Held>;
  /**
   * Acquire and keep the lock alive by the library's own mechanism for as long as it is held
   * (absent when the library has none: the lock then expires after its TTL).
   */
  hold?(name: string): Promise<Held>;
  /** Close the connection; best effort, bounded by the caller. */
  close(): Promise<void>;
}

/** What a variant tells the report about how it keeps a held lock alive. */
export interface KeepAlive {
  /** How often a held lock is extended, in ms. */
  readonly intervalMs: number;
  /** Keys written per lock: the cost bound of the issue is per key. */
  readonly keys: number;
}

/**
 * Servers a variant of the "many servers" table runs on, started for that phase only:
 * `nodes3` three independent redis-servers, `cluster3` a Redis Cluster of three masters.
 */
export type Topology = 'nodes3' | 'cluster3';

/** One library at one setting: a row of every table (or, with a topology, of "many servers"). */
export interface Variant {
  /** Stable id used in results and IPC. */
  readonly id: string;
  /** The npm package (and version, filled in by the report). */
  readonly library: string;
  /** The settings, in the words of the library's README. */
  readonly settings: string;
  readonly keepAlive?: KeepAlive;
  /**
   * Set for a lock that polls (tracklock's `tracking: 'off'`): a held lock reads its keys every
   * `intervalMs` on a timer of its own, so holding many at once costs that many timers and
   * reads. The cost phase holds one only, and the memory phase leaves it out: at 1,000 or
   * 10,000 locks they would measure how far a saturated process falls behind.
   */
  readonly polls?: { readonly intervalMs: number };
  /** Whether the library signals a loss of a held lock (tracklock's `lock.signal`). */
  readonly signalsLoss: boolean;
  /** Is this tracklock, whose targets are checked? */
  readonly isTracklock: boolean;
  /** Absent: one server, the main tables. Set: the servers it needs, see {@link Topology}. */
  readonly topology?: Topology;
  /**
   * A client on `target` (a URL, or several servers: see lock-target.ts); every name it locks
   * is put under `namespace` so runs and phases on a shared server never meet.
   */
  create(target: string, namespace: string): Promise<LockClient>;
}

/**
 * A semaphore of one library at one setting: a row of the semaphore tables (issue 16). Its
 * clients' `acquire(name)` takes one permit of the semaphore `name` of `limit` permits.
 */
export interface SemaphoreVariant {
  /** Stable id used in results, IPC and `--only`. */
  readonly id: string;
  readonly library: string;
  /** The settings, in the words of the library's README. */
  readonly settings: string;
  /** Is this tracklock, whose targets are checked? */
  readonly isTracklock: boolean;
  /** How often a held permit is extended, in ms: the cost window is whole periods of it. */
  readonly keepAliveMs: number;
  create(target: string, namespace: string, limit: number): Promise<LockClient>;
}
