import type { ResolvedGroup, ResolvedOptions } from '../shared/options.js';
import { ClusterStore } from './cluster.js';
import { Groups } from './groups.js';
import { NodesStore } from './nodes.js';
import { ServerStore, type StoreEvents } from './server.js';
import type { KeyStore, Placement } from './store.js';

/** Connect to wherever the options say the keys live. */
export async function connectPlacement(
  options: ResolvedOptions,
  events: StoreEvents,
): Promise<Placement> {
  const { topology } = options;
  switch (topology.kind) {
    case 'server':
      return everyName(await ServerStore.connect(options, events));
    case 'nodes':
      return everyName(await NodesStore.connect(options, topology.nodes, events));
    case 'cluster': {
      const store = await ClusterStore.connect(options, topology.cluster, events);
      return { ...everyName(store), checkName: (name) => store.checkName(name) };
    }
    case 'groups': {
      // Every set must be usable: each serves its share of the names.
      const stores = await Promise.allSettled(
        topology.groups.map(({ nodes }) => NodesStore.connect(options, nodes, events)),
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
          store: (store as PromiseFulfilledResult<NodesStore>).value,
        })),
      );
    }
  }
}

/** The one store that holds every name's keys. */
function everyName(store: KeyStore): Placement {
  return {
    storeFor: () => store,
    checkName: () => {},
    close: (timeoutMs) => store.close(timeoutMs),
  };
}
