/**
 * Contention throughput: workers across processes loop acquire → read-modify-write of a
 * counter → release on one name for a fixed time. The counter must end at the number of
 * increments: any less is a lost update, two holders at once. The counter stays on the main
 * server wherever the locks are; calls are counted on the servers that hold the locks' keys.
 */
import type { Variant } from '../adapters/types.js';
import { budget, type Context, freshNamespace } from '../context.js';
import { now } from '../protocol.js';
import { callsBetween, summedCommandStats, total } from '../redis.js';

export const WORKER_COUNTS = [1, 4, 16] as const;

export interface ThroughputResult {
  readonly workers: number;
  readonly processes: number;
  readonly acquisitionsPerSecond: number;
  readonly increments: number;
  readonly lostUpdates: number;
  /** Server calls per acquisition, the counter's GET and SET left out: polling shows here. */
  readonly callsPerAcquisition: number;
}

export async function measureThroughput(
  ctx: Context,
  variant: Variant,
  workerCount: number,
): Promise<ThroughputResult> {
  const processes = Math.min(workerCount, ctx.workers.length);
  const workers = ctx.workers.slice(0, processes);
  const namespace = freshNamespace(variant.id);
  const handle = `contend:${variant.id}:${workerCount}`;
  const counterKey = `${namespace}:counter`;
  await Promise.all(
    workers.map((w) =>
      w.call({ op: 'open', handle, variant: variant.id, target: ctx.target, namespace }, budget(0)),
    ),
  );
  try {
    const before = await summedCommandStats(ctx.lockServers);
    const start = now();
    const until = start + ctx.mode.throughputMs;
    const results = await Promise.all(
      workers.map((w) =>
        w.call(
          {
            op: 'contend',
            handle,
            name: 'contended',
            workers: workerCount / processes,
            until,
            counterUrl: ctx.url,
            counterKey,
          },
          budget(ctx.mode.throughputMs),
        ),
      ),
    );
    const calls = total(callsBetween(before, await summedCommandStats(ctx.lockServers)));
    const counter = Number((await ctx.admin.get(counterKey)) ?? 0);
    await ctx.admin.del(counterKey);
    const acquisitions = results.reduce((sum, r) => sum + r.acquisitions, 0);
    const increments = results.reduce((sum, r) => sum + r.increments, 0);
    // The GET and SET of each increment and the final GET are the counter's, not the lock's:
    // taken out when the counter's server is one of those counted.
    const counterCalls = ctx.lockServers.includes(ctx.admin) ? 2 * increments + 1 : 0;
    return {
      workers: workerCount,
      processes,
      acquisitionsPerSecond: Math.round((acquisitions / ctx.mode.throughputMs) * 1000),
      increments,
      lostUpdates: increments - counter,
      callsPerAcquisition:
        increments === 0 ? 0 : Math.round(((calls - counterCalls) / increments) * 10) / 10,
    };
  } finally {
    await Promise.all(
      workers.map((w) => w.call({ op: 'close', handle }, budget(0)).catch(() => {})),
    );
  }
}
