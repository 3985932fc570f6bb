import type { RedisClientOptions } from '@redis/client';
import { LockError } from '../shared/errors.js';
import { lockKey, parseKey } from '../shared/keys.js';
import type { ResolvedOptions } from '../shared/options.js';
import { settleWithin } from '../shared/timing.js';
import {
  type Connection,
  type ConnectionEvents,
  connectError,
  withinConnectTimeout,
} from './connect.js';
import { ServerConnection } from './server.js';
import { SplitStore } from './split.js';

/**
 * Independent Redis servers, as in Redlock: each node holds `k = keyCount / n` of every lock's
 * keys, and each node has its own connection, which tracks the keys it reads. The lock needs a
 * majority of keys across nodes, so it outlives the loss of the nodes holding a minority of
 * them.
 *
 * The lock logic counts `keyCount` keys; its key `i` is key `floor(i / n)` on this process's
 * node `i mod n`. So every node holds keys `0` … `k - 1` of each lock, whatever this process
 * calls it: two processes that reach a node through different addresses (an IP against a DNS
 * name, a proxy), or list the nodes in different orders, still contend for the same keys.
 */
export class NodesConnection implements Connection {
  /** Each lock's keys spread over the nodes' commands. */
  readonly ops: SplitStore;
  readonly #nodes: readonly ServerConnection[];

  private constructor(nodes: readonly ServerConnection[], options: ResolvedOptions) {
    const prefix = options.keyPrefix;
    const n = nodes.length;
    this.ops = new SplitStore((key) => {
      const { index, name } = parseKey(prefix, key) as { index: number; name: string };
      const node = nodes[index % n] as ServerConnection;
      return { ops: node.ops, group: node, key: lockKey(prefix, Math.floor(index / n), name) };
    }, options.keyMajority);
    this.#nodes = nodes;
  }

  /**
   * Connect to every node at once; resolve as soon as the nodes that are up hold a majority of
   * each lock's keys. The others keep connecting in the background and join when they come up.
   * A node that is down fails its commands at once (no offline queue) rather than hold up an
   * acquisition, unless the client options say otherwise.
   */
  static async connect(
    options: ResolvedOptions,
    clients: readonly RedisClientOptions[],
    events: ConnectionEvents,
  ): Promise<NodesConnection> {
    const nodes = clients.map((client, j) =>
      ServerConnection.start(
        { ...options, client: { disableOfflineQueue: true, ...client } },
        nodeEvents(events, options.keyPrefix, j, clients.length),
        true,
      ),
    );
    const started = performance.now();
    const joined = new Set<ServerConnection>();
    for (const node of nodes)
      node.ready.then(
        () => joined.add(node),
        () => {},
      );
    try {
      await withinConnectTimeout(
        majorityReady(nodes, options),
        options.connectTimeoutMs,
        () => new Error(describeDown(nodes)),
      );
    } catch (error) {
      const down = describeDown(nodes);
      for (const node of nodes) node.destroy();
      if (error instanceof NodeRefusedError) {
        // Answers decided it, not the clock. An old server says so by itself (its code is
        // ERR_SERVER_VERSION); otherwise name each node that is not up, with its reason.
        const refusal = connectError(error.cause, options.connectTimeoutMs, error.address);
        if (!(refusal instanceof LockError) || refusal.code !== 'ERR_CONNECT') throw refusal;
        throw new LockError(
          'ERR_CONNECT',
          `too few Redis nodes can serve locks to hold a majority of ${options.keyCount} keys: ${down}`,
          { cause: refusal },
        );
      }
      throw new LockError(
        'ERR_CONNECT',
        `could not reach enough Redis nodes to hold a majority of ${options.keyCount} keys within connectTimeoutMs (${options.connectTimeoutMs} ms): ${down}`,
        { cause: error },
      );
    }
    // Give the other nodes as long again to come up, so that on healthy nodes the first locks
    // get every key, not only a majority (the nodes connect in parallel and come up within a
    // moment of each other); one that is down or frozen holds createLocker up no longer.
    const tookMs = performance.now() - started;
    await settleWithin(
      Promise.allSettled(nodes.map((node) => node.ready)),
      Math.min(tookMs, options.connectTimeoutMs - tookMs),
    );
    for (const node of nodes) {
      const late = !joined.has(node);
      node.ready.then(
        // A node that joins late: waiters that could not reach a majority retry now.
        () => {
          if (late) events.invalidated(null);
        },
        (error: unknown) => {
          node.destroy();
          process.emitWarning(
            `Redis node ${node.address} cannot serve locks, tracklock goes on without it: ${error instanceof Error ? error.message : String(error)}`,
            { code: 'TRACKLOCK_NODE' },
          );
        },
      );
    }
    return new NodesConnection(nodes, options);
  }

  async close(timeoutMs: number): Promise<void> {
    await Promise.all(this.#nodes.map((node) => node.close(timeoutMs)));
  }
}

/**
 * Node `j`'s events, its keys named as the lock logic counts them (see NodesConnection), and
 * its dropped connection as the loss of the lock keys `i` on it (`i mod n = j`).
 */
function nodeEvents(
  events: ConnectionEvents,
  prefix: string,
  j: number,
  n: number,
): ConnectionEvents {
  return {
    polling: events.polling,
    serving: events.serving,
    retired: events.retired,
    calls: events.calls,
    dropped: () => events.dropped((key) => (parseKey(prefix, key)?.index ?? -1) % n === j),
    invalidated: (key) => {
      const parsed = key === null ? undefined : parseKey(prefix, key);
      events.invalidated(parsed ? lockKey(prefix, parsed.index * n + j, parsed.name) : key);
    },
  };
}

/** Resolves once the ready nodes hold `keyMajority` of the keys; rejects once they cannot. */
function majorityReady(
  nodes: readonly ServerConnection[],
  options: ResolvedOptions,
): Promise<void> {
  const { keyCount, keyMajority } = options;
  const keysOn = (set: ReadonlySet<number>) =>
    Array.from({ length: keyCount }, (_, i) => i % nodes.length).filter((n) => set.has(n)).length;
  const up = new Set<number>();
  const refused = new Set<number>();
  return new Promise((resolve, reject) => {
    nodes.forEach((node, n) => {
      node.ready.then(
        () => {
          up.add(n);
          if (keysOn(up) >= keyMajority) resolve();
        },
        (error: unknown) => {
          refused.add(n);
          if (keyCount - keysOn(refused) < keyMajority) {
            reject(new NodeRefusedError(node.address, error));
          }
        },
      );
    });
  });
}

/**
 * A node that answered but cannot serve locks (refused the credentials, or pushes under
 * tracking 'on'; does not speak RESP, or TLS does not trust it; failed a check).
 */
class NodeRefusedError extends Error {
  readonly address: string;
  constructor(address: string, cause: unknown) {
    super(`Redis node ${address} cannot serve locks`, { cause });
    this.address = address;
  }
}

function describeDown(nodes: readonly ServerConnection[]): string {
  return nodes
    .filter((node) => !node.up)
    .map((node) => `${node.address} (${node.lastError?.message ?? 'no answer'})`)
    .join(', ');
}
