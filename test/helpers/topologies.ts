import { createCluster } from '@redis/client';
import type { LockerOptions } from '../../src/index.js';
import { connect, keysOf } from './redis.js';
import { startRedisCluster } from './redis-cluster.js';
import { type RedisServer, startRedisServer } from './redis-server.js';

/** Servers started for a test, arranged as one of the topologies tracklock supports. */
export interface Topology {
  /** Where the keys live: `url`, `nodes`, `cluster` or `groups`. */
  readonly options: LockerOptions;
  /** Every server that may hold keys. */
  readonly servers: readonly RedisServer[];
  /** How many keys of lock `name` are set where they live (3 once a lock has settled). */
  keysSet(name: string): Promise<number>;
  /** Delete these keys wherever they live, as another client would. */
  deleteKeys(keys: readonly string[]): Promise<void>;
  stop(): Promise<void>;
}

export interface TopologyKind {
  readonly label: string;
  start(): Promise<Topology>;
}

async function plainServers(count: number) {
  const servers = await Promise.all(Array.from({ length: count }, () => startRedisServer()));
  return {
    servers,
    keysSet: async (name: string) => {
      let count = 0;
      for (const server of servers) {
        const client = await connect(server.url);
        // Nodes name their key of a lock alike (`rueidislock:0:name` on each of 3 nodes).
        count += (await client.keys(`rueidislock:[0-9]*:${name}`)).length;
        client.destroy();
      }
      return count;
    },
    deleteKeys: async (keys: readonly string[]) => {
      for (const server of servers) {
        const client = await connect(server.url);
        await client.del([...keys]);
        client.destroy();
      }
    },
    stop: async () => {
      for (const server of servers) server.resume();
      await Promise.all(servers.map((server) => server.stop()));
    },
  };
}

export const TOPOLOGIES: readonly TopologyKind[] = [
  {
    label: 'one server',
    async start() {
      const set = await plainServers(1);
      return { ...set, options: { url: set.servers[0]?.url as string } };
    },
  },
  {
    label: '3 nodes',
    async start() {
      const set = await plainServers(3);
      return { ...set, options: { nodes: set.servers.map((server) => server.url) } };
    },
  },
  {
    label: '2 groups of 3 nodes',
    async start() {
      const set = await plainServers(6);
      const urls = set.servers.map((server) => server.url);
      return { ...set, options: { groups: [urls.slice(0, 3), urls.slice(3)] } };
    },
  },
  {
    label: 'cluster of 3 masters',
    async start() {
      const cluster = await startRedisCluster({ masters: 3 });
      return {
        options: { cluster: { rootNodes: cluster.rootNodes } },
        servers: cluster.servers,
        keysSet: async (name: string) => {
          const client = createCluster({ rootNodes: cluster.rootNodes });
          client.on('error', () => {});
          await client.connect();
          let count = 0;
          for (const key of keysOf(name)) count += await client.exists(key);
          client.destroy();
          return count;
        },
        deleteKeys: async (keys: readonly string[]) => {
          const client = createCluster({ rootNodes: cluster.rootNodes });
          client.on('error', () => {});
          await client.connect();
          for (const key of keys) await client.del(key);
          client.destroy();
        },
        stop: async () => {
          for (const server of cluster.servers) server.resume();
          await cluster.stop();
        },
      };
    },
  },
];
