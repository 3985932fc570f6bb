import type { RedisClientOptions, RedisClusterOptions, RedisSentinelOptions } from '@redis/client';

/** One Redis server of several: a `redis://` URL, or node-redis client options. */
export type NodeOptions = string | RedisClientOptions;

/** One set of `groups`, with an id of its own. */
export interface GroupOptions {
  /** The set's identity in the rendezvous hashing: any string, the same in every process. */
  readonly id: string;
  readonly nodes: readonly NodeOptions[];
}

/** Options of {@link createLocker}. Every field is optional; defaults are in {@link DEFAULTS}. */
export interface LockerOptions {
  /**
   * The Redis server, as a `redis://` or `rediss://` URL. Overrides `client.url`.
   * @default node-redis' own default, 'redis://localhost:6379'
   */
  url?: string;
  /**
   * Options for node-redis' `createClient` (TLS, auth, socket, reconnect strategy…).
   * tracklock sets `RESP` (3, or 2 when polling) and its own `clientSideCache`; passing
   * either is an error.
   * @default {} (node-redis' own defaults)
   */
  client?: RedisClientOptions;
  /**
   * Independent Redis servers (Redlock), an odd number of them: each holds the same keys of
   * every lock (so which address reaches a node does not matter), over its own connection.
   * Each entry is a URL or client options (laid over `client`). `keyMajority` defaults to one
   * key per node, so the lock outlives the loss of a minority of them; the number of nodes
   * must divide `2 * keyMajority - 1`. Not with `url`, `cluster`, `sentinel` or `groups`.
   * @default none: one server, at `url`
   */
  nodes?: readonly NodeOptions[];
  /**
   * A Redis Cluster: node-redis `createCluster` options (`rootNodes`, `defaults` for every node
   * connection…). tracklock sets `RESP` (3, or 2 when polling), its `clientSideCache` and
   * `useReplicas: false`. Lock names must not contain a `{hashtag}`. Not with `url`, `client`,
   * `nodes`, `sentinel` or `groups`.
   * @default none: one server, at `url`
   */
  cluster?: RedisClusterOptions;
  /**
   * A primary found through Redis Sentinel: node-redis `createSentinel` options (`name`,
   * `sentinelRootNodes`, `nodeClientOptions` for the connection to the primary,
   * `sentinelClientOptions`…). Every key of every lock is on the primary, and the locker
   * follows it on a failover: a lock held then is lost (its signal aborts), waiters are served
   * by the new primary (see docs/topologies.md for what a failover can cost). tracklock sets
   * `RESP` (3, or 2 when polling), its `clientSideCache`, `masterPoolSize: 1` and
   * `replicaPoolSize: 0`. Not with
   * `url`, `client`, `nodes`, `cluster` or `groups`.
   * @default none: one server, at `url`
   */
  sentinel?: RedisSentinelOptions;
  /**
   * Several independent sets of `nodes`; each lock name lives on one set, chosen by rendezvous
   * hashing of the name with each set's id, so adding a set moves about 1/n of the names. A
   * set is an array of nodes, whose id is its position in `groups` ('0', '1', …), or
   * `{ id, nodes }` with an id of your own. Every process must give the sets the same ids.
   * Not with `url`, `nodes`, `cluster` or `sentinel`.
   * @default none: one server, at `url`
   */
  groups?: readonly (readonly NodeOptions[] | GroupOptions)[];
  /**
   * Keys are `${keyPrefix}:${i}:${name}`. The default matches Go's rueidislock, so Go and Node
   * services contend for the same locks.
   * @default 'rueidislock'
   */
  keyPrefix?: string;
  /**
   * How long each key lives without an extension, in ms; the lock extends it while held.
   * @default 5000
   */
  keyValidityMs?: number;
  /**
   * How often a held lock extends its keys, in ms. Must leave room before the keys expire:
   * less than `keyValidityMs` minus the drift margin.
   * @default keyValidityMs / 2
   */
  extendIntervalMs?: number;
  /**
   * Pause before a waiter tries again after an attempt that Redis failed or did not answer,
   * in ms; it doubles with each consecutive failure, up to `keyValidityMs`. (A waiter whose
   * attempt found the lock held does not poll: it retries when Redis says a key changed.)
   * @default 20
   */
  tryNextAfterMs?: number;
  /**
   * The lock needs `keyMajority` of `2 * keyMajority - 1` keys; at most {@link MAX_KEY_MAJORITY}.
   * @default 2, or with `nodes` / `groups` one key per node (sets of different sizes: the
   *   fewest keys each set holds in equal shares)
   */
  keyMajority?: number;
  /**
   * How waiters and holders learn that a key changed. `'on'`: invalidation pushes (RESP3 and
   * `CLIENT TRACKING`), refusing a server that cannot send them. `'off'`: polling, over RESP2,
   * on any server. `'auto'`: pushes where the server allows them, else polling, with one
   * warning (`TRACKLOCK_POLLING`) that names why; `locker.mode` says which it got.
   * @default 'auto'
   */
  tracking?: 'auto' | 'on' | 'off';
  /**
   * When polling (see `tracking`): the longest a waiter sleeps between attempts, in ms (the
   * first pauses are shorter: 2 ms doubling, with jitter, never past the holder's expiry).
   * @default 100
   */
  pollIntervalMs?: number;
  /**
   * When polling: how often a held lock reads its keys, in ms, to notice between extensions
   * that it was taken (forced, deleted, flushed, evicted). Each read is one script call.
   * @default 500
   */
  checkIntervalMs?: number;
  /**
   * Track keys with `CLIENT TRACKING ON OPTOUT NOLOOP`, so the locker's own writes do not echo
   * back as invalidations. Every RESP3 server accepts NOLOOP; it covers writes made inside
   * scripts from Redis 7.0.5 on, below that an extension costs one extra `GET` per key.
   * @default true
   */
  noLoopTracking?: boolean;
  /**
   * Use relative expiries (`SET … PX`, `PEXPIRE`) instead of absolute ones (`PXAT`,
   * `PEXPIREAT`): needed below Redis 6.2, and immune to a client clock that differs from the
   * server's. Absolute expiries are what Go's rueidislock writes.
   * @default false
   */
  fallbackSetPx?: boolean;
  /**
   * Waiters queue on the server, one entry per locker and name, and are served in arrival
   * order: only the first listens to the lock's keys, and on one server a release hands the
   * keys straight to it (two one-way trips instead of four). With `nodes`, `cluster` or
   * `groups` the queue lives on key 0's server and orders who listens and tries; while that
   * server fails, waiters race. `false`: every waiting locker listens to the keys and races
   * for them (0.2's behaviour). See docs/how-it-works.md.
   * @default true
   */
  queue?: boolean;
  /**
   * How many times in a row a released lock may pass straight to another waiter of the same
   * locker (one round trip, nobody else woken) before it goes back to the queue, so that other
   * processes are not starved. `0` never passes; `Infinity` always does when a local waiter
   * is there (throughput over fairness).
   * @default 8
   */
  localHandoffs?: number;
  /**
   * How long a lock may be held, in ms, counted from when it was taken: then it stops
   * extending, its signal aborts with `MaxHoldError` and its keys are let go of, so that a
   * stuck holder cannot keep the lock for ever. Each call may set its own. `Infinity`: no cap.
   * @default Infinity
   */
  maxHoldMs?: number;
  /** @deprecated Since 0.3 waiters queue by default (see `queue`); this option is ignored. */
  directHandoff?: boolean;
  /**
   * Share of `keyValidityMs`, plus 2 ms, by which the lock's signal aborts before its keys can
   * expire on the server: covers clock drift between client and server and timer lateness.
   * @default 0.01
   */
  driftFactor?: number;
  /**
   * How long one Redis request (acquire, check, extend, release) may go unanswered before its
   * outcome is treated as unknown, in ms.
   * @default 1000
   */
  commandTimeoutMs?: number;
  /**
   * How long `createLocker` may take to connect before it rejects, in ms.
   * @default 5000
   */
  connectTimeoutMs?: number;
}

/** Every default, in one place. `extendIntervalMs` is half of `keyValidityMs` when that is set. */
export const DEFAULTS = Object.freeze({
  keyPrefix: 'rueidislock',
  keyValidityMs: 5000,
  extendIntervalMs: 2500,
  tryNextAfterMs: 20,
  keyMajority: 2,
  tracking: 'auto',
  pollIntervalMs: 100,
  checkIntervalMs: 500,
  noLoopTracking: true,
  fallbackSetPx: false,
  queue: true,
  localHandoffs: 8,
  maxHoldMs: Infinity,
  driftFactor: 0.01,
  commandTimeoutMs: 1000,
  connectTimeoutMs: 5000,
});

/**
 * The largest `keyMajority`. Every script call loops over the lock's `2 * keyMajority - 1`
 * keys; Redis cannot kill a script that has written, so a typo (100000) would block a shared
 * server for minutes. 32 (63 keys) is far more than any deployment needs.
 */
export const MAX_KEY_MAJORITY = 32;

/** Options after defaults and validation; what the rest of the library reads. */
export interface ResolvedOptions {
  /** The one server's client options; with `nodes` or `groups`, what each node's are laid over. */
  readonly client: RedisClientOptions;
  readonly topology: Topology;
  readonly keyPrefix: string;
  readonly keyValidityMs: number;
  readonly extendIntervalMs: number;
  readonly tryNextAfterMs: number;
  readonly keyMajority: number;
  readonly keyCount: number;
  readonly tracking: Tracking;
  readonly pollIntervalMs: number;
  readonly checkIntervalMs: number;
  readonly noLoopTracking: boolean;
  readonly fallbackSetPx: boolean;
  /** Waiters queue (the `queue` option). */
  readonly queue: boolean;
  readonly localHandoffs: number;
  /** The locker's cap on holding (see the option); a call may set its own. */
  readonly maxHoldMs: number;
  /**
   * How long a queued waiter that is not listening sleeps before it looks at the queue by
   * itself: only if both listeners vanished at once, or the queue was lost without a flush.
   */
  readonly backstopMs: number;
  /** How much earlier than the server the lock's signal aborts, in ms. */
  readonly marginMs: number;
  /** The share of a key's remaining time kept as margin (see `marginMs`). */
  readonly driftFactor: number;
  readonly commandTimeoutMs: number;
  readonly connectTimeoutMs: number;
}

/** The `tracking` option: pushes, polling, or the best the server allows. */
export type Tracking = 'auto' | 'on' | 'off';

/** Where the keys live. */
export type Topology =
  | { readonly kind: 'server' }
  | { readonly kind: 'nodes'; readonly nodes: readonly RedisClientOptions[] }
  | { readonly kind: 'cluster'; readonly cluster: RedisClusterOptions }
  | { readonly kind: 'sentinel'; readonly sentinel: RedisSentinelOptions }
  | { readonly kind: 'groups'; readonly groups: readonly ResolvedGroup[] };

export interface ResolvedGroup {
  readonly id: string;
  readonly nodes: readonly RedisClientOptions[];
}

/** `host:port` (or the URL) a client connects to, without credentials. */
export function describeAddress(client: RedisClientOptions): string {
  const socket = client.socket as { host?: string; port?: number; path?: string } | undefined;
  if (socket?.path) return socket.path;
  if (client.url) {
    try {
      const url = new URL(client.url);
      return `${url.hostname}:${url.port || 6379}`;
    } catch {
      return 'the Redis server';
    }
  }
  return `${socket?.host ?? 'localhost'}:${socket?.port ?? 6379}`;
}
