import type { ResolvedGroup, ResolvedOptions } from '../shared/options.js';
import { ClusterConnection, checkClusterName } from './cluster.js';
import type { Connection, ConnectionEvents } from './connect.js';
import { Groups } from './groups.js';
import { NodesConnection } from './nodes.js';
import { SentinelConnection } from './sentinel.js';
import { ServerConnection } from './server.js';
import type { KeyStore, Placement, StoreEvents } from './store.js';

/** Connect to wherever the options say the keys live. */
export async function connectPlacement(
  options: ResolvedOptions,
  events: StoreEvents,
): Promise<Placement> {
  const { topology } = options;
  switch (topology.kind) {
    case 'server':
      return everyName(await open(events, (on) => ServerConnection.connect(options, on)));
    case 'nodes':
      return everyName(
        await open(events, (on) => NodesConnection.connect(options, topology.nodes, on)),
      );
    case 'cluster': {
      const store = await open(events, (on) =>
        ClusterConnection.connect(options, topology.cluster, on),
      );
      return { ...everyName(store), checkName: checkClusterName };
    }
    case 'sentinel':
      return everyName(
        await open(events, (on) => SentinelConnection.connect(options, topology.sentinel, on)),
      );
    case 'groups': {
      // Every set must be usable: each serves its share of the names.
      const stores = await Promise.allSettled(
        topology.groups.map(({ nodes }) =>
          open(events, (on) => NodesConnection.connect(options, nodes, on)),
        ),
      );
      const failed = stores.find((store) => store.status === 'rejected');
      if (failed) {
        await Promise.all(
          stores.map((store) => (store.status === 'fulfilled' ? store.value.close(0) : undefined)),
        );
        throw failed.reason;
      }
      return new Groups(
        stores.map((store, g) => ({
          id: (topology.groups[g] as ResolvedGroup).id,
          store: (store as PromiseFulfilledResult<KeyStore>).value,
        })),
      );
    }
  }
}

/**
 * The `KeyStore` the lock logic holds, built the same way on every topology's connection: its
 * operations, and its close. A connection's dropped keys are reported with this very object,
 * which the lock logic compares with what the placement hands out.
 */
async function open(
  events: StoreEvents,
  connect: (events: ConnectionEvents) => Promise<Connection>,
): Promise<KeyStore> {
  let store: KeyStore | undefined;
  const connection = await connect({
    invalidated: events.invalidated,
    polling: events.polling,
    serving: events.serving,
    retired: events.retired,
    calls: events.calls,
    // Before the store exists, no lock holds its keys.
    dropped: (served) => {
      if (store) events.dropped(store, served);
    },
  });
  const { ops } = connection;
  // One object per connection (its identity is what `dropped` names), forwarding to the
  // operations: a class instance, whose methods a spread would not copy.
  store = {
    acquire: (keys, value, take, queue, turn) => ops.acquire(keys, value, take, queue, turn),
    extend: (keys, value, token) => ops.extend(keys, value, token),
    check: (keys, value) => ops.check(keys, value),
    watch: (key, beside) => ops.watch(key, beside),
    delete: (keys, value, token) => ops.delete(keys, value, token),
    release: (keys, value, queue, token) => ops.release(keys, value, queue, token),
    leave: (keys, value, queue) => ops.leave(keys, value, queue),
    script: (script, keys, args, kind) => ops.script(script, keys, args, kind),
    close: (timeoutMs) => connection.close(timeoutMs),
  };
  return store;
}

/** The one store that holds every name's keys. */
function everyName(store: KeyStore): Placement {
  return {
    storeFor: () => store,
    checkName: () => {},
    close: (timeoutMs) => store.close(timeoutMs),
  };
}
