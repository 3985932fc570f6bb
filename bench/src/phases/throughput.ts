/**
 * Contention throughput: workers across processes loop acquire → read-modify-write of a
 * counter → release on one name for a fixed time. The counter must end at the number of
 * increments: any less is a lost update, two holders at once. The counter stays on the main
 * server wherever the locks are; calls are counted on the servers that hold the locks' keys.
 */
import type { Variant } from '../adapters/types.js';
import { budget, type Context, freshNamespace } from '../context.js';
import type { Worker } from '../pool.js';
import { type ContendResult, now } from '../protocol.js';
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
  const run = await contend(
    ctx,
    variant,
    ctx.workers.slice(0, processes),
    workerCount / processes,
    ctx.mode.throughputMs,
  );
  const acquisitions = run.perProcess.reduce((sum, r) => sum + r.acquisitions, 0);
  return {
    workers: workerCount,
    processes,
    acquisitionsPerSecond: Math.round((acquisitions / ctx.mode.throughputMs) * 1000),
    increments: run.increments,
    lostUpdates: run.lostUpdates,
    callsPerAcquisition:
      run.increments === 0 ? 0 : Math.round((run.lockCalls / run.increments) * 10) / 10,
  };
}

export interface Contention {
  /** What each process answered, in the order of the workers given. */
  readonly perProcess: ContendResult[];
  readonly increments: number;
  readonly lostUpdates: number;
  /** Calls on the servers that hold the locks' keys, the counter's taken out. */
  readonly lockCalls: number;
}

/**
 * One contention run: `loops` loops in each of `workers` (acquire → GET/SET the counter →
 * release on one name) for `durationMs`, with a client of `variant` of their own in each
 * process; the counter is checked and removed afterwards. The fairness phase runs it too.
 */
export async function contend(
  ctx: Context,
  variant: Variant,
  workers: readonly Worker[],
  loops: number,
  durationMs: number,
): Promise<Contention> {
  const namespace = freshNamespace(variant.id);
  const handle = `contend:${variant.id}:${workers.length}x${loops}`;
  const counterKey = `${namespace}:counter`;
  await Promise.all(
    workers.map((w) =>
      w.call({ op: 'open', handle, variant: variant.id, target: ctx.target, namespace }, budget(0)),
    ),
  );
  try {
    const before = await summedCommandStats(ctx.lockServers);
    const until = now() + durationMs;
    const perProcess = await Promise.all(
      workers.map((w) =>
        w.call(
          {
            op: 'contend',
            handle,
            name: 'contended',
            workers: loops,
            until,
            counterUrl: ctx.url,
            counterKey,
          },
          budget(durationMs),
        ),
      ),
    );
    const calls = total(callsBetween(before, await summedCommandStats(ctx.lockServers)));
    const counter = Number((await ctx.admin.get(counterKey)) ?? 0);
    await ctx.admin.del(counterKey);
    const increments = perProcess.reduce((sum, r) => sum + r.increments, 0);
    // The GET and SET of each increment and the final GET are the counter's, not the lock's:
    // taken out when the counter's server is one of those counted.
    const counterCalls = ctx.lockServers.includes(ctx.admin) ? 2 * increments + 1 : 0;
    return {
      perProcess,
      increments,
      lostUpdates: increments - counter,
      lockCalls: calls - counterCalls,
    };
  } finally {
    await Promise.all(
      workers.map((w) => w.call({ op: 'close', handle }, budget(0)).catch(() => {})),
    );
  }
}
