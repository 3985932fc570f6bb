import type { RedisClientOptions, RedisSentinelOptions } from '@redis/client';
import {
  DEFAULTS,
  describeAddress,
  type GroupOptions,
  type LockerOptions,
  MAX_KEY_MAJORITY,
  type ResolvedGroup,
  type ResolvedOptions,
  type Topology,
  type Tracking,
} from './options.js';
import { MAX_TIMER_MS } from './timing.js';

const KNOWN = new Set([
  'url',
  'client',
  'nodes',
  'cluster',
  'sentinel',
  'groups',
  'directHandoff',
  ...Object.keys(DEFAULTS),
]);

/**
 * How many key validities a queued waiter that does not listen sleeps before it looks at the
 * queue by itself (see `ResolvedOptions.backstopMs`): rarely enough that a thousand of them cost
 * the server a few calls a second.
 */
const BACKSTOP_VALIDITIES = 60;

/**
 * The options with their defaults filled in, checked at the door: a bad one throws a TypeError
 * or RangeError that names it, before anything connects.
 */
export function resolveOptions(options: LockerOptions = {}): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('createLocker: options must be an object');
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) throw new TypeError(`createLocker: unknown option "${key}"`);
  }
  const keyPrefix = options.keyPrefix ?? DEFAULTS.keyPrefix;
  if (typeof keyPrefix !== 'string' || keyPrefix === '') {
    throw new TypeError('keyPrefix must be a non-empty string');
  }
  const client = clientOptions(options);
  const topology = resolveTopology(options, client);
  const sets = nodeSets(topology);
  const shared = sharedKeyCount(sets);
  // By default one key per node (a majority of the nodes), or the fewest that every set holds.
  const keyMajority = options.keyMajority ?? Math.max(DEFAULTS.keyMajority, (shared + 1) / 2);
  if (options.keyMajority === undefined && keyMajority > MAX_KEY_MAJORITY) {
    throw new RangeError(
      `groups of ${sets.map(({ size }) => size).join(', ')} nodes can only hold each lock's keys in equal shares with a multiple of ${shared} keys, more than keyMajority's bound (${MAX_KEY_MAJORITY}) allows: use sets of one size`,
    );
  }
  checkNumber('keyMajority', keyMajority);
  if (!Number.isInteger(keyMajority) || keyMajority < 1 || keyMajority > MAX_KEY_MAJORITY) {
    throw new RangeError(
      `keyMajority must be a whole number from 1 to ${MAX_KEY_MAJORITY} (each script call loops over the lock's 2 * keyMajority - 1 keys, and Redis cannot kill a script that has written), got ${keyMajority}`,
    );
  }
  checkEqualShares(sets, shared, 2 * keyMajority - 1);
  const keyValidityMs = duration('keyValidityMs', options.keyValidityMs, DEFAULTS.keyValidityMs);
  const driftFactor = options.driftFactor ?? DEFAULTS.driftFactor;
  checkNumber('driftFactor', driftFactor);
  if (!(driftFactor >= 0 && driftFactor < 0.5)) {
    throw new RangeError(
      `driftFactor must be a number from 0 to below 0.5, got ${String(driftFactor)}`,
    );
  }
  const marginMs = Math.ceil(keyValidityMs * driftFactor) + 2;
  const extendIntervalMs = duration(
    'extendIntervalMs',
    options.extendIntervalMs,
    Math.max(1, Math.floor(keyValidityMs / 2)),
  );
  if (extendIntervalMs >= keyValidityMs - marginMs) {
    throw new RangeError(
      `extendIntervalMs (${extendIntervalMs}) must be less than keyValidityMs (${keyValidityMs}) minus the drift margin (${marginMs} ms), or the lock would expire between extensions`,
    );
  }
  if (options.directHandoff !== undefined) {
    flag('directHandoff', options.directHandoff, false);
    process.emitWarning(
      'directHandoff is ignored since tracklock 0.3: waiters queue and are handed the lock by default (see the queue option)',
      { type: 'DeprecationWarning', code: 'TRACKLOCK_DIRECT_HANDOFF' },
    );
  }
  const queue = flag('queue', options.queue, DEFAULTS.queue);
  const localHandoffs = options.localHandoffs ?? DEFAULTS.localHandoffs;
  checkNumber('localHandoffs', localHandoffs);
  if (!(localHandoffs === Infinity || (Number.isInteger(localHandoffs) && localHandoffs >= 0))) {
    throw new RangeError(
      `localHandoffs must be a whole number from 0, or Infinity, got ${String(localHandoffs)}`,
    );
  }
  return {
    client,
    topology,
    keyPrefix,
    keyValidityMs,
    extendIntervalMs,
    tryNextAfterMs: duration('tryNextAfterMs', options.tryNextAfterMs, DEFAULTS.tryNextAfterMs),
    keyMajority,
    keyCount: 2 * keyMajority - 1,
    tracking: tracking(options.tracking),
    pollIntervalMs: duration('pollIntervalMs', options.pollIntervalMs, DEFAULTS.pollIntervalMs),
    checkIntervalMs: duration('checkIntervalMs', options.checkIntervalMs, DEFAULTS.checkIntervalMs),
    noLoopTracking: flag('noLoopTracking', options.noLoopTracking, DEFAULTS.noLoopTracking),
    fallbackSetPx: flag('fallbackSetPx', options.fallbackSetPx, DEFAULTS.fallbackSetPx),
    queue,
    localHandoffs,
    maxHoldMs: checkMaxHold(options.maxHoldMs ?? DEFAULTS.maxHoldMs),
    backstopMs: Math.min(MAX_TIMER_MS, BACKSTOP_VALIDITIES * keyValidityMs),
    marginMs,
    driftFactor,
    commandTimeoutMs: duration(
      'commandTimeoutMs',
      options.commandTimeoutMs,
      DEFAULTS.commandTimeoutMs,
    ),
    connectTimeoutMs: duration(
      'connectTimeoutMs',
      options.connectTimeoutMs,
      DEFAULTS.connectTimeoutMs,
    ),
  };
}

/** A cap on holding: `Infinity` (none), or a whole number of ms, as any duration. */
export function checkMaxHold(ms: unknown): number {
  if (ms === Infinity) return ms;
  return checkDuration('maxHoldMs', ms, 1);
}

function duration(name: string, value: unknown, fallback: number): number {
  return checkDuration(name, value ?? fallback, 1);
}

/** A whole number of ms from `min` to setTimeout's largest delay, or a RangeError naming it. */
export function checkDuration(name: string, ms: unknown, min: number): number {
  checkNumber(name, ms, ' of ms');
  if (!Number.isInteger(ms) || ms < min || ms > MAX_TIMER_MS) {
    throw new RangeError(
      `${name} must be a whole number of ms from ${min} to ${MAX_TIMER_MS}, got ${String(ms)}`,
    );
  }
  return ms;
}

/**
 * A TypeError naming the option when `value` is not a number. Options often come from
 * environment variables: a string gets a message of its own.
 */
function checkNumber(name: string, value: unknown, unit = ''): asserts value is number {
  if (typeof value === 'number') return;
  const got =
    typeof value === 'string'
      ? `the string ${JSON.stringify(value)} (convert it with Number(...) first)`
      : value === null
        ? 'null'
        : `a ${typeof value}`;
  throw new TypeError(`${name} must be a number${unit}, got ${got}`);
}

function tracking(value: unknown): Tracking {
  const chosen = value ?? DEFAULTS.tracking;
  if (chosen !== 'auto' && chosen !== 'on' && chosen !== 'off') {
    throw new TypeError(`tracking must be 'auto', 'on' or 'off', got ${String(value)}`);
  }
  return chosen;
}

/**
 * `RESP` and `clientSideCache` are tracklock's: RESP3 with its router for pushes, RESP2 when
 * polling (`RESP: 3` is let through, as it was the only value once).
 */
function refuseOwnSettings(name: string, options: { RESP?: unknown; clientSideCache?: unknown }) {
  if (options.RESP !== undefined && options.RESP !== 3) {
    throw new TypeError(
      `${name}.RESP is chosen by tracklock (3 for invalidation pushes, 2 when polling: see the tracking option); leave it unset, got ${String(options.RESP)}`,
    );
  }
  if (options.clientSideCache !== undefined) {
    throw new TypeError(`${name}.clientSideCache is set by tracklock itself; leave it unset`);
  }
}

function flag(name: string, value: unknown, fallback: boolean): boolean {
  const on = value ?? fallback;
  if (typeof on !== 'boolean')
    throw new TypeError(`${name} must be a boolean, got ${String(value)}`);
  return on;
}

function clientOptions(options: LockerOptions): RedisClientOptions {
  const client = options.client ?? {};
  if (typeof client !== 'object' || client === null) {
    throw new TypeError('client must be an object of node-redis client options');
  }
  refuseOwnSettings('client', client);
  if (options.url !== undefined && typeof options.url !== 'string') {
    throw new TypeError('url must be a string such as "redis://127.0.0.1:6379"');
  }
  return options.url === undefined ? { ...client } : { ...client, url: options.url };
}

function resolveTopology(options: LockerOptions, client: RedisClientOptions): Topology {
  const chosen = (['url', 'nodes', 'cluster', 'sentinel', 'groups'] as const).filter(
    (key) => options[key] !== undefined,
  );
  if (chosen.length > 1) {
    throw new TypeError(
      `pass one of url, nodes, cluster, sentinel and groups, not ${chosen.join(' and ')}: each says where the keys live`,
    );
  }
  if (options.sentinel !== undefined) {
    if (options.client !== undefined) {
      throw new TypeError(
        'with sentinel, put client options in sentinel.nodeClientOptions (the primary) and sentinel.sentinelClientOptions (the sentinels), not client',
      );
    }
    return { kind: 'sentinel', sentinel: sentinelOptions(options.sentinel) };
  }
  if (options.nodes !== undefined) {
    return { kind: 'nodes', nodes: nodeList('nodes', options.nodes, client) };
  }
  if (options.groups !== undefined) {
    if (!Array.isArray(options.groups) || options.groups.length === 0) {
      throw new TypeError('groups must be a non-empty array of node arrays or { id, nodes }');
    }
    const groups = options.groups.map((group: unknown, g): ResolvedGroup => {
      const named = !Array.isArray(group) && typeof group === 'object' && group !== null;
      const { id, nodes } = named ? (group as GroupOptions) : { id: String(g), nodes: group };
      if (typeof id !== 'string' || id === '') {
        throw new TypeError(`groups[${g}].id must be a non-empty string`);
      }
      return { id, nodes: nodeList(`groups[${g}]`, nodes, client) };
    });
    const ids = new Set(groups.map((group) => group.id));
    if (ids.size < groups.length) throw new TypeError('groups must have distinct ids');
    return { kind: 'groups', groups };
  }
  if (options.cluster !== undefined) {
    const cluster = options.cluster;
    if (typeof cluster !== 'object' || cluster === null || !Array.isArray(cluster.rootNodes)) {
      throw new TypeError('cluster must be node-redis cluster options with a rootNodes array');
    }
    if (cluster.rootNodes.length === 0) throw new TypeError('cluster.rootNodes must not be empty');
    if (options.client !== undefined) {
      throw new TypeError('with cluster, put client options in cluster.defaults, not client');
    }
    refuseOwnSettings('cluster', cluster);
    if (/[{}]/.test(options.keyPrefix ?? '')) {
      throw new TypeError(
        'keyPrefix must not contain braces with cluster: a hashtag in it would put every key of every lock in one slot',
      );
    }
    if (cluster.useReplicas) {
      throw new TypeError(
        'cluster.useReplicas must be false (or unset): a lock reads its keys on the masters',
      );
    }
    return { kind: 'cluster', cluster };
  }
  return { kind: 'server' };
}

/** node-redis `createSentinel` options, refusing those tracklock sets itself. */
function sentinelOptions(sentinel: unknown): RedisSentinelOptions {
  if (typeof sentinel !== 'object' || sentinel === null) {
    throw new TypeError(
      'sentinel must be node-redis createSentinel options: { name, sentinelRootNodes, ... }',
    );
  }
  const given = sentinel as Partial<RedisSentinelOptions>;
  if (typeof given.name !== 'string' || given.name === '') {
    throw new TypeError(
      'sentinel.name must be the name the sentinels monitor the primary under (`sentinel monitor <name> ...`)',
    );
  }
  const roots = given.sentinelRootNodes;
  if (!Array.isArray(roots) || roots.length === 0) {
    throw new TypeError('sentinel.sentinelRootNodes must be a non-empty array of { host, port }');
  }
  roots.forEach((node: unknown, i) => {
    const { host, port } = (node ?? {}) as { host?: unknown; port?: unknown };
    if (typeof host !== 'string' || typeof port !== 'number') {
      throw new TypeError(
        `sentinel.sentinelRootNodes[${i}] must be { host, port } of a sentinel (a string and a number)`,
      );
    }
  });
  for (const [name, options] of [
    ['sentinel', given],
    ['sentinel.nodeClientOptions', given.nodeClientOptions ?? {}],
  ] as [string, { RESP?: unknown; clientSideCache?: unknown }][]) {
    refuseOwnSettings(name, options);
  }
  if (given.replicaPoolSize !== undefined && given.replicaPoolSize !== 0) {
    throw new TypeError(
      'sentinel.replicaPoolSize must be 0 (or unset): a lock reads its keys on the primary',
    );
  }
  if (given.masterPoolSize !== undefined && given.masterPoolSize !== 1) {
    throw new TypeError(
      'sentinel.masterPoolSize must be 1 (or unset): the connection that reads a key is the one that hears when it changes',
    );
  }
  if (given.maxCommandRediscovers !== undefined) {
    throw new TypeError(
      'sentinel.maxCommandRediscovers is set by tracklock itself; leave it unset',
    );
  }
  if (given.keyPrefix !== undefined) {
    throw new TypeError(
      "sentinel.keyPrefix would prefix the lock keys behind tracklock's back: use the keyPrefix option",
    );
  }
  for (const name of ['nodeClientOptions', 'sentinelClientOptions'] as const) {
    if ((given[name] as { url?: unknown } | undefined)?.url !== undefined) {
      throw new TypeError(
        `sentinel.${name}.url cannot be used: the sentinels say where the primary is (${name === 'nodeClientOptions' ? 'nodeClientOptions' : 'sentinelRootNodes'} sets the rest)`,
      );
    }
  }
  return given as RedisSentinelOptions;
}

/** Each node's client options: its own laid over the shared `client`. */
function nodeList(
  name: string,
  nodes: unknown,
  client: RedisClientOptions,
): readonly RedisClientOptions[] {
  if (!Array.isArray(nodes) || nodes.length === 0) {
    throw new TypeError(`${name} must be a non-empty array of URLs or client options`);
  }
  const resolved = nodes.map((node: unknown, i): RedisClientOptions => {
    if (typeof node === 'string') return { ...client, url: node };
    if (typeof node !== 'object' || node === null) {
      throw new TypeError(`${name}[${i}] must be a URL or node-redis client options`);
    }
    const own = clientOptions({ client: node as RedisClientOptions });
    // Laid over the shared options, socket settings too (TLS, timeouts).
    const socket = { ...client.socket, ...own.socket } as RedisClientOptions['socket'];
    return { ...client, ...own, ...(socket && { socket }) };
  });
  // Two entries for one server would give it twice the keys of the others.
  const seen = new Set<string>();
  for (const node of resolved) {
    const address = describeAddress(node);
    if (seen.has(address)) {
      throw new TypeError(`${name} lists ${address} twice: each node must be its own server`);
    }
    seen.add(address);
  }
  return resolved;
}

/** The sets of nodes whose sizes rule the number of keys: `nodes`, or each of `groups`. */
function nodeSets(topology: Topology): { readonly name: string; readonly size: number }[] {
  if (topology.kind === 'nodes') return [{ name: 'nodes', size: topology.nodes.length }];
  if (topology.kind !== 'groups') return [];
  return topology.groups.map(({ nodes }, g) => ({ name: `groups[${g}]`, size: nodes.length }));
}

/**
 * Every node of a set must hold as many of each lock's keys as every other: then a majority of
 * the keys is on a majority of the nodes, and no node's loss costs more keys than another's
 * (5 keys on 4 nodes would sit 2+1+1+1: the lock granted on 2 of 4 servers). So the number
 * of keys must be a multiple of every set's size; it is odd, so the sizes must be odd too.
 * Returns the fewest keys that do, the least common multiple of the sizes (1 without sets).
 */
function sharedKeyCount(sets: ReturnType<typeof nodeSets>): number {
  for (const { name, size } of sets) {
    if (size % 2 === 0) {
      throw new RangeError(
        `${name}: ${size} nodes cannot hold each lock's keys (an odd number, 2 * keyMajority - 1) in equal shares: use an odd number of nodes`,
      );
    }
  }
  return sets.reduce((keys, { size }) => (keys * size) / gcd(keys, size), 1);
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** `keyCount` keys must be a multiple of `shared` (see sharedKeyCount). */
function checkEqualShares(sets: ReturnType<typeof nodeSets>, shared: number, keyCount: number) {
  const set = sets.find(({ size }) => keyCount % size !== 0);
  if (!set) return;
  // The two smallest that fit, within the bound (the default fits when the sets allow any).
  const fits = [shared, 3 * shared].filter((keys) => keys <= 2 * MAX_KEY_MAJORITY - 1);
  const use = fits.map((keys) => `keyMajority ${(keys + 1) / 2} (${keys} keys)`).join(' or ');
  throw new RangeError(
    `${set.name}: ${set.size} nodes cannot hold each lock's ${keyCount} keys (2 * keyMajority - 1) in equal shares: use ${use}`,
  );
}
