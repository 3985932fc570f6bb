/**
 * The "many servers" rows: tracklock with `nodes` (3 independent servers) and on a Redis Cluster
 * of 3 masters, and redlock on the same 3 servers, through the same pair handoff and throughput
 * as the main tables. Each topology's servers are throwaway ones started here, also when
 * REDIS_URL names the main server, and stopped before the next topology starts, so one never
 * idles beside another's measurement. The throughput counter stays on the main server; the
 * calls per acquisition are counted on every server that holds keys.
 */
import type { Redis } from 'ioredis';
import { startRedisCluster } from '../../../test/helpers/redis-cluster.js';
import { closeIoredis, connectIoredis } from '../adapters/ioredis.js';
import type { Topology, Variant } from '../adapters/types.js';
import type { Context } from '../context.js';
import { clusterTarget, nodesTarget } from '../lock-target.js';
import { startRedisServer } from '../redis.js';
import type { Summary } from '../stats.js';
import { pairHandoff } from './handoff.js';
import { measureThroughput, type ThroughputResult, WORKER_COUNTS } from './throughput.js';

/** What the table's "servers" column says for each topology. */
export const TOPOLOGY_LABELS: Record<Topology, string> = {
  nodes3: '3 independent servers',
  cluster3: 'cluster, 3 masters',
};

/** Progress steps per variant: the pair handoff, then one per worker count. */
export const MANY_SERVERS_STEPS = 1 + WORKER_COUNTS.length;

export interface ManyServersResult {
  readonly variant: Variant;
  readonly servers: string;
  readonly pair: Summary | null;
  readonly throughput: ThroughputResult[];
}

interface Servers {
  readonly target: string;
  /** Plain connections to every server that holds keys. */
  readonly lockServers: readonly Redis[];
  stop(): Promise<void>;
}

const START: Record<Topology, () => Promise<Servers>> = {
  async nodes3() {
    const started = await Promise.allSettled([0, 1, 2].map(() => startRedisServer()));
    const servers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const stopServers = async () => {
      await Promise.all(servers.map((server) => server.stop()));
    };
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) {
      await stopServers();
      throw failed.reason;
    }
    const urls = servers.map((server) => server.url);
    return withConnections(nodesTarget(urls), urls, stopServers);
  },
  async cluster3() {
    // Bounded: it stops whatever it started when it fails.
    const cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 0 });
    const urls = cluster.rootNodes.map((node) => node.url);
    // No replicas: every node is a master, and every master holds some of the keys.
    return withConnections(clusterTarget(urls), urls, () => cluster.stop());
  },
};

async function withConnections(
  target: string,
  urls: readonly string[],
  stopServers: () => Promise<void>,
): Promise<Servers> {
  const settled = await Promise.allSettled(urls.map((url) => connectIoredis(url)));
  const lockServers = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const stop = async () => {
    await Promise.all(lockServers.map(closeIoredis));
    await stopServers();
  };
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) {
    await stop();
    throw failed.reason;
  }
  return { target, lockServers, stop };
}

/** Every variant given (each with a topology), in the order given. */
export async function measureManyServers(
  ctx: Context,
  variants: readonly Variant[],
): Promise<ManyServersResult[]> {
  const results = new Map<string, ManyServersResult>();
  const topologies = [...new Set(variants.flatMap((v) => (v.topology ? [v.topology] : [])))];
  for (const topology of topologies) {
    ctx.interrupted.throwIfAborted();
    const servers = await START[topology]();
    try {
      const on: Context = { ...ctx, target: servers.target, lockServers: servers.lockServers };
      for (const variant of variants.filter((v) => v.topology === topology)) {
        const pair = await pairHandoff(on, variant);
        ctx.progress.step(`handoff ${variant.id}`);
        const throughput: ThroughputResult[] = [];
        for (const count of WORKER_COUNTS) {
          throughput.push(await measureThroughput(on, variant, count));
          ctx.progress.step(`throughput ${count} ${variant.id}`);
        }
        results.set(variant.id, {
          variant,
          servers: TOPOLOGY_LABELS[topology],
          pair: pair.summary,
          throughput,
        });
      }
    } finally {
      await servers.stop();
    }
  }
  return variants.flatMap((v) => results.get(v.id) ?? []);
}
