import type { QueueNames } from '../shared/keys.js';
import type { Given, Layout, Script } from './lua.js';

/**
 * The seam between the lock logic and Redis. The lock speaks in keys and per-key outcomes;
 * a store decides which server each key lives on: one server, independent nodes (Redlock),
 * or a Redis Cluster, each a connection of its own (server.ts, nodes.ts, cluster.ts) built
 * into the same `KeyStore` (topology.ts).
 */

/** The operations on a lock's keys, without the connection's life cycle. */
export interface KeyOps {
  /**
   * Try to take every key (see `Take`) in one round trip; one outcome per key. With `queue`,
   * a waiter behind the queue's head only keeps its place, and one that falls short of the
   * majority queues. Where the keys are on several servers, `turn` says which to ask (see
   * `Turn`); one server ignores it.
   */
  acquire(
    keys: readonly string[],
    value: string,
    take: Take,
    queue?: QueueKeys,
    turn?: Turn,
  ): Promise<Outcome<KeyState>[]>;
  /**
   * Extend every key that still holds `value`; `true` per key extended. With the holder's
   * `token`, also raise the fence on servers that drew a smaller one.
   */
  extend(keys: readonly string[], value: string, token?: bigint): Promise<Outcome<boolean>[]>;
  /** Read each key (which also re-registers it for invalidations): is it ours, and its TTL. */
  check(keys: readonly string[], value: string): Promise<Outcome<KeyCheck>[]>;
  /**
   * Read `key` (its PTTL), so that its change is pushed to this connection. `beside`: the lock
   * key whose server holds it (a queue's keys live beside key 0), when it is not one itself.
   */
  watch(key: string, beside?: string): Promise<void>;
  /** Delete every key that still holds `value` (raising the fence first, as `extend`). */
  delete(keys: readonly string[], value: string, token?: bigint): Promise<Outcome<boolean>[]>;
  /**
   * Let go of a lock, or of a place in its queue: with `queue`, leave the queue and hand every
   * key on to its head if all are still ours (and the head can take them); else as `delete`.
   */
  release(
    keys: readonly string[],
    value: string,
    queue?: QueueKeys,
    token?: bigint,
  ): Promise<Outcome<boolean>[]>;
  /**
   * Leave the queue without touching the lock's keys (`keys`: only the queue's server, key
   * 0's, is asked): where the keys are on several servers, the script that queued a waiter
   * cannot see whether its attempt got the majority, so the waiter leaves once it has.
   */
  leave(keys: readonly string[], value: string, queue: QueueKeys): Promise<void>;
  /**
   * Run one script of a semaphore or read-write lock (see semaphore-scripts.ts), whose keys
   * share one slot, on the server that holds them: bounded by `commandTimeoutMs`, counted as a
   * call of `kind`.
   */
  script<K extends Layout, A extends Layout, R>(
    script: Script<K, A, R>,
    keys: Given<K>,
    args: Given<A>,
    kind: keyof CallCounts,
  ): Promise<R>;
}

/** What the lock logic holds: the operations, and the close of the connections behind them. */
export interface KeyStore extends KeyOps {
  /** Close the connections, waiting at most `timeoutMs` for pending replies. */
  close(timeoutMs: number): Promise<void>;
}

/** Events the stores report to the lock logic. */
export interface StoreEvents {
  /** A tracked key changed (or `null`: anything may have changed, e.g. after a reconnect). */
  invalidated(key: string | null): void;
  /**
   * A connection of `store` (the very one its placement hands out) dropped, so the keys it
   * served (those `served` accepts) may be gone: a server that restarted without persistence
   * lost them, and a waiter that reconnects first can take them.
   */
  dropped(store: KeyStore, served: (key: string) => boolean): void;
  /**
   * A server refused invalidation pushes, and is polled instead (with `tracking: 'auto'`):
   * `reason` says which server and why.
   */
  polling(reason: string): void;
  /**
   * A server's connection is ready (at connect, and `reconnect` after a drop), followed by
   * `mode`: pushes, or polling. `address` names the server as error messages do.
   */
  serving(address: string, mode: 'push' | 'poll', reconnect: boolean): void;
  /** A server no longer serves the locker's keys (a failover moved them): forget it. */
  retired(address: string): void;
  /** Where the connections count the requests they send (see `Locker.stats`). */
  readonly calls: CallCounts;
}

/**
 * Requests sent to Redis, by what they do (one per server a call goes to; in a cluster, one per
 * key): acquire scripts
 * (attempts, retakes, local passes), extensions, ownership reads (checks, polls, watches),
 * deletions (releases, give-backs, leaving a queue), and fence raises.
 */
export interface CallCounts {
  acquire: number;
  extend: number;
  check: number;
  release: number;
  other: number;
}

/**
 * How an attempt takes the keys: only `free` ones (NX), whatever holds them (`force`), or only
 * those that hold `from` (a holder passing its lock to a waiter of its own process).
 */
export type Take = 'free' | 'force' | { readonly from: string };

/**
 * A name's queue of waiters (see QUEUE in scripts.ts): its sorted set, its roles hash, and the
 * prefixes of the waiters' own keys.
 */
export type QueueKeys = QueueNames;

/**
 * Where a lock's keys are on several servers, which of them a queued waiter's attempt asks.
 * The queue lives on key 0's server, beside it; a release there cannot hand every key over,
 * so the queue orders who listens to the keys and tries them.
 * * `all`: every key (the head, or a waiter whose place is not known yet), the queue's part on
 *   key 0's server; decided once that server has answered too (or failed).
 * * `queue`: only the queue's server, touching no key (a waiter behind the head).
 * * `race`: every key, decided on the majority without waiting for the queue's server, which
 *   failed the waiter's last attempt (down, frozen): the waiter races as without a queue.
 */
export type Turn = 'all' | 'queue' | 'race';

/** A queued waiter's place, as its last attempt found it. */
export interface QueueState {
  /** `head` listens to the keys, `deputy` to the head's ticket, `queued` only to its wake key. */
  readonly role: 'head' | 'deputy' | 'queued';
  /** The attempt renewed the waiter's ticket (its deadline counts from the attempt). */
  readonly renewed: boolean;
  /** For the deputy: the head's value, whose ticket it watches. */
  readonly watching: string | undefined;
  /**
   * For the deputy, the PTTL of the head's ticket; for a waiter further back, the shortest
   * PTTL of a listener's ticket set by its promoter (not yet answered); -2 when none.
   */
  readonly watchMs: number;
  /** For the head: the fencing token a release that hands it the keys gives it. */
  readonly token: bigint | undefined;
  /**
   * The waiter was not in the queue when the attempt ran (new, or dropped: a release that
   * handed it the keys drops it), so no handoff to it came after the attempt.
   */
  readonly joined: boolean;
  /** Its place: 0 for the head. */
  readonly rank: number;
}

/** What an acquire attempt found at one key. */
export interface KeyState {
  /** The key's value after the attempt (ours when we took it), or `null` when it is absent. */
  readonly value: string | null;
  /** Its remaining time to live in ms (-2 absent, -1 no expiry). */
  readonly pttlMs: number;
  /** The fencing token drawn on this key's server, when a key there became ours. */
  readonly token: bigint | undefined;
  /** With the queue: the waiter's place, when it did not get the keys. */
  readonly queue?: QueueState | undefined;
}

/** What an ownership check found at one key. */
export interface KeyCheck {
  /** It holds our value. */
  readonly ours: boolean;
  /** Its remaining time to live in ms (-2 absent, -1 no expiry). */
  readonly pttlMs: number;
}

/**
 * One key's outcome: its reply (`fulfilled`), the error that stands for it (`rejected`: the
 * server failed or did not answer in time), or, with several servers, `pending`: the majority
 * was decided before this key's server answered, and `later` settles when it does.
 */
export type Outcome<T> = Settled<T> | Pending<T>;

export type Settled<T> = PromiseSettledResult<T>;

export interface Pending<T> {
  readonly status: 'pending';
  readonly later: Promise<Settled<T>>;
}

/** The outcome once its server has answered (or timed out): a pending one's later reply. */
export function settled<T>(outcome: Outcome<T>): Promise<Settled<T>> {
  return outcome.status === 'pending' ? outcome.later : Promise.resolve(outcome);
}

/** Wall-clock expiry argument and its command names, per the fallbackSetPx choice. */
export interface ExpiryMode {
  /** `true`: PX / PEXPIRE (relative); `false`: PXAT / PEXPIREAT (absolute, Go's choice). */
  readonly relative: boolean;
  readonly validityMs: number;
}

export function expiryArgs(mode: ExpiryMode, command: 'set' | 'expire'): [string, string] {
  const at = String(mode.relative ? mode.validityMs : Date.now() + mode.validityMs);
  if (command === 'set') return [at, mode.relative ? 'PX' : 'PXAT'];
  return [at, mode.relative ? 'PEXPIRE' : 'PEXPIREAT'];
}

/** Where each lock's keys live: one store for every name, or one of several chosen by name. */
export interface Placement {
  storeFor(name: string): KeyStore;
  /** Throws a TypeError for a name this placement cannot serve well. */
  checkName(name: string): void;
  close(timeoutMs: number): Promise<void>;
}
