import { createCluster, type RedisClusterOptions, RootNodesUnavailableError } from '@redis/client';
import slotOf from 'cluster-key-slot';
import { LockError } from '../shared/errors.js';
import { hashtag, slotFenceKey } from '../shared/keys.js';
import { describeAddress, type ResolvedOptions } from '../shared/options.js';
import { settleWithin } from '../shared/timing.js';
import { nodeDefaults } from './cluster-defaults.js';
import { LockCommands } from './commands.js';
import {
  type Connection,
  type ConnectionEvents,
  cannotServe,
  checkServer,
  connectError,
  pushOrPoll,
  Refusals,
  withinConnectTimeout,
} from './connect.js';
import { SplitStore } from './split.js';
import type { CallCounts } from './store.js';
import { InvalidationRouter, trackingOptions } from './tracking.js';

/**
 * A Redis Cluster through node-redis' cluster client: each key goes, in a call of its own, to
 * the master of its slot (node-redis follows MOVED and ASK and refreshes the slot map after a
 * failover), and the connection that served the key's read is the one that tracks it. One
 * router hears the invalidations of every node connection.
 */
export class ClusterConnection implements Connection {
  /** Each lock's keys, one call per key, over commands that route each to its master. */
  readonly ops: SplitStore;
  readonly #cluster: Cluster;

  private constructor(cluster: Cluster, options: ResolvedOptions, calls: CallCounts) {
    // `false`: reads go to the master too, the connection that hears about the key's writes.
    const commands = new LockCommands(
      (args, firstKey) => cluster.sendCommand(firstKey, false, args),
      (keys) => slotFenceKey(keys[0] as string),
      'raised, apart on TRYAGAIN',
      options,
      calls,
    );
    this.ops = new SplitStore((key) => ({ ops: commands, group: key, key }), options.keyMajority);
    this.#cluster = cluster;
  }

  /**
   * Connect within connectTimeoutMs; with tracking 'auto', over RESP2 without tracking (the
   * locker polls) when the nodes refuse pushes.
   */
  static connect(
    options: ResolvedOptions,
    cluster: RedisClusterOptions,
    events: ConnectionEvents,
  ): Promise<ClusterConnection> {
    return pushOrPoll(options, describeRoots(cluster), events, (resolved, push) =>
      ClusterConnection.#connect(resolved, cluster, events, push),
    );
  }

  static async #connect(
    options: ResolvedOptions,
    cluster: RedisClusterOptions,
    events: ConnectionEvents,
    push: boolean,
  ): Promise<ClusterConnection> {
    const client = newCluster(
      cluster,
      push ? new InvalidationRouter(options.noLoopTracking, events.invalidated) : undefined,
    );
    const refusals = new Refusals();
    client.on('error', (error: Error) => refusals.heard(error));
    // Node connections that are up, by address. An error alone does not say the connection
    // dropped (a failed PING does not): reconnecting does, or an error that leaves the node's
    // client not ready (its reconnect strategy gave up). A client that node-redis closes
    // itself (a master demoted by a failover) is no drop: its keys are on the new master.
    const up = new Set<string>();
    /** The masters the lock logic was told of, by address: a node-ready of one is a reconnect. */
    const served = new Set<string>();
    /** The masters at connect are checked and told of: until then, a node-ready tells nothing. */
    let checked = false;
    const mode = push ? 'push' : 'poll';
    const down = (node: NodeAddress) => {
      if (!up.delete(address(node))) return;
      // The keys whose master's connection is down now (the slot map is not yet refreshed).
      events.dropped((key) => !client.slots[slotOf(key)]?.master.client?.isReady);
    };
    client.on('node-reconnecting', down).on('node-error', (error: Error, node: NodeAddress) => {
      refusals.heard(error);
      if (!clientAt(client, node)?.isReady) down(node);
    });
    // A node connection that (re)connects tracks nothing yet, and missed what changed meanwhile.
    client.on('node-ready', (node: NodeAddress) => {
      const at = address(node);
      up.add(at);
      if (checked) {
        // After a failover (node-redis has read the slot map again and connected to the new
        // master): the masters that no longer serve leave, a new one joins.
        const masters = new Set(client.masters.map((master) => master.address));
        for (const gone of served) {
          if (masters.has(gone)) continue;
          served.delete(gone);
          events.retired(gone);
        }
        if (masters.has(at)) {
          events.serving(at, mode, served.has(at));
          served.add(at);
        }
      }
      events.invalidated(null);
    });
    const connected = (async () => {
      await client.connect();
      await Promise.all(
        client.masters.map(async (master) => {
          const node = await client.nodeClient(master);
          await checkServer((args) => node.sendCommand(args), options, master.address);
          served.add(master.address);
          events.serving(master.address, mode, false);
        }),
      );
      checked = true;
    })();
    connected.catch(() => {}); // a refusal may settle the race first
    const ready = Promise.race([connected, refusals.refused]);
    ready.catch(() => {}); // the race reports it
    try {
      await withinConnectTimeout(ready, options.connectTimeoutMs, () => refusals.lastError);
    } catch (error) {
      client.destroy();
      // node-redis tries each root node once, and says only that none would do: the error of
      // the last one says why (refused, credentials, not Redis).
      const roots = describeRoots(cluster);
      const { lastError } = refusals;
      if (error instanceof RootNodesUnavailableError && lastError) {
        if (cannotServe(lastError)) throw connectError(lastError, options.connectTimeoutMs, roots);
        throw new LockError(
          'ERR_CONNECT',
          `could not reach any root node of the Redis Cluster (${roots}): ${lastError.message}`,
          { cause: lastError },
        );
      }
      throw connectError(error, options.connectTimeoutMs, roots);
    }
    return new ClusterConnection(client, options, events.calls);
  }

  async close(timeoutMs: number): Promise<void> {
    // close() forgets the node connections at once, but each keeps its socket until its node
    // answers what is pending, and a frozen node never does: destroy them when time is up.
    const clients = [...this.#cluster.nodeByAddress.values()].flatMap((node) => [
      node.client,
      'pubSub' in node ? node.pubSub?.client : undefined,
    ]);
    if (this.#cluster.isOpen) await settleWithin(this.#cluster.close(), timeoutMs);
    if (this.#cluster.isOpen) this.#cluster.destroy();
    for (const client of clients) client?.destroy();
    this.#cluster.removeAllListeners();
  }
}

/**
 * A name with a `{hashtag}` would put every key of the lock in one slot, on one master: the
 * keys would share that master's fate, and the majority would protect nothing. And a key's
 * fence lives in the key's slot by taking the key as its hashtag, which braces would break.
 * (keyPrefix has no `{`.)
 */
export function checkClusterName(name: string): void {
  if (/[{}]/.test(name)) {
    const tag = hashtag(name);
    throw new TypeError(
      `lock name "${name}" has braces${tag === undefined ? '' : `, and the hashtag {${tag}}`}: in a cluster a hashtag would put every key of the lock in one slot, on one master, and the key majority would protect nothing; leave braces out of names`,
    );
  }
}

/** The cluster client: RESP3 with `router` hearing every node's pushes, or RESP2 (polling). */
function newCluster(cluster: RedisClusterOptions, router: InvalidationRouter | undefined) {
  return createCluster({
    ...cluster,
    // A master that is down fails its keys at once instead of holding up the majority, and the
    // slot map is read again 100 ms after a node connection drops (node-redis waits 5 s), so
    // that a failover is followed quickly.
    defaults: { disableOfflineQueue: true, ...nodeDefaults(cluster) },
    topologyRefreshOnReconnectionAttemptStrategy:
      cluster.topologyRefreshOnReconnectionAttemptStrategy ?? 100,
    useReplicas: false,
    ...trackingOptions(router),
  });
}

type Cluster = ReturnType<typeof newCluster>;

/** What node-redis' cluster events say of a node. */
interface NodeAddress {
  readonly host: string;
  readonly port: number;
}

const address = (node: NodeAddress) => `${node.host}:${node.port}`;

/** The cluster's client of the node at `node` (the address it connects to), if it has one. */
function clientAt(cluster: Cluster, node: NodeAddress) {
  return [...cluster.masters, ...cluster.replicas].find(({ client }) => {
    const socket = client?.options?.socket as Partial<NodeAddress> | undefined;
    return socket?.host === node.host && socket?.port === node.port;
  })?.client;
}

function describeRoots(cluster: RedisClusterOptions): string {
  return cluster.rootNodes.map((node) => describeAddress(node)).join(', ');
}
