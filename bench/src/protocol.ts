/**
 * Coordinator ↔ worker messages. Every request carries an id and gets exactly one reply with
 * that id, so several can be in flight (a waiter's acquire while the holder releases).
 * Times are `performance.timeOrigin + performance.now()` in ms: a clock every process shares.
 */

export type Request =
  /**
   * Create a client of `variant` on `target` (a URL, or several servers: see lock-target.ts)
   * and keep it under `handle`. With `limit`, `variant` is a semaphore variant's id and the
   * client's locks are permits of semaphores of `limit` permits.
   */
  | {
      op: 'open';
      handle: string;
      variant: string;
      target: string;
      namespace: string;
      limit?: number;
    }
  | { op: 'close'; handle: string }
  /** Acquire `name` with the blocking acquire and keep it. */
  | { op: 'hold'; handle: string; name: string }
  /** Start the blocking acquire of `name` and answer at once; 'take' waits for it. */
  | { op: 'wait'; handle: string; name: string }
  | { op: 'take'; handle: string; name: string }
  | { op: 'release'; handle: string; name: string }
  /**
   * `slots` loops on one name: acquire, hold `holdMs`, release, wait until another slot has
   * it, again, until `until`. Every acquisition's and release's time comes back, so the
   * coordinator can merge the processes.
   */
  | {
      op: 'chain';
      handle: string;
      name: string;
      slots: number;
      holdMs: number;
      until: number;
      counterUrl: string;
      counterKey: string;
    }
  /**
   * `workers` loops of acquire → GET/SET counter → release on one name, until `until`; every
   * acquisition's wait and hold come back, for the fairness phase. With `limit` (a semaphore
   * of that many permits) the counter counts the holders instead: INCR after the acquire (a
   * reply above `limit` is one too many holders), DECR before the release.
   */
  | {
      op: 'contend';
      handle: string;
      name: string;
      workers: number;
      until: number;
      counterUrl: string;
      counterKey: string;
      limit?: number;
    }
  /** Acquire and release fresh names one after another, until `until` or `maxCycles`. */
  | { op: 'cycles'; handle: string; maxCycles: number; until: number }
  /** Hold `count` locks kept alive by the library's own mechanism. */
  | { op: 'holdMany'; handle: string; count: number }
  | { op: 'releaseMany'; handle: string }
  /** Hold `name`; answers when the library's loss signal aborts. */
  | { op: 'watchLoss'; handle: string; name: string }
  /**
   * The scale phase's crowd: `count` clients of `variant`, each its own connection, numbered
   * from `first`, kept under `handle`. With `limit`, as `open`'s: semaphore clients.
   */
  | {
      op: 'crowdOpen';
      handle: string;
      variant: string;
      target: string;
      namespace: string;
      first: number;
      count: number;
      limit?: number;
    }
  /** Client `index` of the crowd takes `name` with the blocking acquire and keeps it. */
  | { op: 'crowdHold'; handle: string; name: string; index: number }
  /** Every client of the crowd neither holding nor waiting starts the blocking acquire. */
  | { op: 'crowdWait'; handle: string; name: string }
  /** The crowd's next acquisition (at once if one is unreported); null once it closes. */
  | { op: 'crowdNext'; handle: string }
  | { op: 'crowdRelease'; handle: string; index: number }
  /**
   * Stop waiting (abort, or for a library without abort, release each acquisition at once),
   * release what is held, wait for the waiters to end, close every client.
   */
  | { op: 'crowdClose'; handle: string; drainMs: number }
  /**
   * Client heap per held lock and per waiter: hold `count` locks, then `count` waiters on
   * one name held by a second client. Run in a process of its own, which exits after it
   * (waiters of some libraries cannot be stopped).
   */
  | {
      op: 'memory';
      variant: string;
      target: string;
      namespace: string;
      count: number;
      settleMs: number;
    };

export type Op = Request['op'];

export interface HandoffEvent {
  /** When the acquire call was made: a handoff counts only to a process already waiting. */
  readonly calledAt: number;
  readonly acquiredAt: number;
  readonly releasedAt: number;
}

export interface ContendResult {
  /** Acquisitions that resolved before `until`. */
  readonly acquisitions: number;
  /** Counter increments done, including those of acquisitions that resolved after `until`. */
  readonly increments: number;
  /** Each acquisition's wait in ms, from the acquire call to its resolving (after `until` too). */
  readonly waits: number[];
  /** Each acquisition's hold in ms, from resolving to the release call: the GET and the SET. */
  readonly holds: number[];
  /** With `limit`: acquisitions whose INCR counted more holders than `limit`. */
  readonly overLimit: number;
  /** With `limit`: the most holders an INCR counted. */
  readonly mostInside: number;
}

export interface MemoryResult {
  readonly count: number;
  readonly heapPerHeldBytes: number;
  readonly heapPerWaiterBytes: number;
}

/** What each op answers with. */
export interface Replies {
  open: null;
  close: null;
  hold: { at: number };
  wait: null;
  take: { at: number };
  release: { at: number };
  chain: { events: HandoffEvent[] };
  contend: ContendResult;
  cycles: { samples: number[] };
  holdMany: null;
  releaseMany: null;
  watchLoss: { at: number; reason: string };
  memory: MemoryResult;
  crowdOpen: null;
  crowdHold: { at: number };
  crowdWait: { started: number };
  crowdNext: CrowdAcquired | null;
  crowdRelease: { at: number };
  crowdClose: { stuck: number };
}

/** One acquisition by a client of a crowd. */
export interface CrowdAcquired {
  readonly index: number;
  readonly at: number;
}

export type Envelope = { id: number } & Request;

export type Reply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: string };

/** A timestamp comparable across processes (each timeOrigin is its start on the wall clock). */
export function now(): number {
  return performance.timeOrigin + performance.now();
}
