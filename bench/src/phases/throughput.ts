/**
 * Contention throughput: workers across processes loop acquire → read-modify-write of a
 * counter → release on one name for a fixed time. The counter must end at the number of
 * increments: any less is a lost update, two holders at once.
 */
import type { Variant } from '../adapters/types.js';
import { budget, type Context, freshNamespace } from '../context.js';
import { now } from '../protocol.js';
import { callsBetween, commandStats, total } from '../redis.js';

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
      w.call({ op: 'open', handle, variant: variant.id, url: ctx.url, namespace }, budget(0)),
    ),
  );
  try {
    const before = await commandStats(ctx.admin);
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
    const calls = total(callsBetween(before, await commandStats(ctx.admin)));
    const counter = Number((await ctx.admin.get(counterKey)) ?? 0);
    await ctx.admin.del(counterKey);
    const acquisitions = results.reduce((sum, r) => sum + r.acquisitions, 0);
    const increments = results.reduce((sum, r) => sum + r.increments, 0);
    return {
      workers: workerCount,
      processes,
      acquisitionsPerSecond: Math.round((acquisitions / ctx.mode.throughputMs) * 1000),
      increments,
      lostUpdates: increments - counter,
      // The GET and SET of each increment and the final GET are the counter's, not the lock's.
      callsPerAcquisition:
        increments === 0 ? 0 : Math.round(((calls - 2 * increments - 1) / increments) * 10) / 10,
    };
  } finally {
    await Promise.all(
      workers.map((w) => w.call({ op: 'close', handle }, budget(0)).catch(() => {})),
    );
  }
}
