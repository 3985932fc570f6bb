/**
 * Contention throughput: workers across processes loop acquire → read-modify-write of a
 * counter → release on one name for a fixed time. The counter must end at the number of
 * increments: any less is a lost update, two holders at once. The counter stays on the main
 * server wherever the locks are; calls are counted on the servers that hold the locks' keys.
 */
import type { SemaphoreVariant, Variant } from '../adapters/types.js';
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
  /** A semaphore's run only: acquisitions that found more than `limit` holders inside. */
  readonly overLimit?: number;
  /** A semaphore's run only: the most holders inside at once. */
  readonly mostInside?: number;
}

/** `workerCount` loops over up to four processes; with `limit`, on a semaphore variant's permits. */
export async function measureThroughput(
  ctx: Context,
  variant: Variant | SemaphoreVariant,
  workerCount: number,
  limit?: number,
): Promise<ThroughputResult> {
  const processes = Math.min(workerCount, ctx.workers.length);
  const run = await contend(
    ctx,
    variant,
    ctx.workers.slice(0, processes),
    workerCount / processes,
    ctx.mode.throughputMs,
    limit,
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
    ...(limit === undefined ? {} : { overLimit: run.overLimit, mostInside: run.mostInside }),
  };
}

export interface Contention {
  /** What each process answered, in the order of the workers given. */
  readonly perProcess: ContendResult[];
  readonly increments: number;
  /** A mutex's: increments the counter lacks at the end. 0 for a semaphore's run. */
  readonly lostUpdates: number;
  /** A semaphore's: acquisitions that found more than `limit` holders inside. */
  readonly overLimit: number;
  /** A semaphore's: the most holders inside at once; 0 for a mutex's run. */
  readonly mostInside: number;
  /** Calls on the servers that hold the locks' keys, the counter's taken out. */
  readonly lockCalls: number;
}

/**
 * One contention run: `loops` loops in each of `workers` (acquire → GET/SET the counter →
 * release on one name) for `durationMs`, with a client of `variant` of their own in each
 * process; the counter is checked and removed afterwards. The fairness phase runs it too, and
 * the semaphore phase with `limit`: a semaphore variant's permits, the counter counting the
 * holders inside (INCR, DECR) instead.
 */
export async function contend(
  ctx: Context,
  variant: Variant | SemaphoreVariant,
  workers: readonly Worker[],
  loops: number,
  durationMs: number,
  limit?: number,
): Promise<Contention> {
  const namespace = freshNamespace(variant.id);
  const handle = `contend:${variant.id}:${workers.length}x${loops}`;
  const counterKey = `${namespace}:counter`;
  const semaphore = limit === undefined ? {} : { limit };
  await Promise.all(
    workers.map((w) =>
      w.call(
        { op: 'open', handle, variant: variant.id, target: ctx.target, namespace, ...semaphore },
        budget(0),
      ),
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
            ...semaphore,
          },
          budget(durationMs),
        ),
      ),
    );
    const calls = total(callsBetween(before, await summedCommandStats(ctx.lockServers)));
    const counter = Number((await ctx.admin.get(counterKey)) ?? 0);
    await ctx.admin.del(counterKey);
    const increments = perProcess.reduce((sum, r) => sum + r.increments, 0);
    // The GET and SET (or INCR and DECR) of each increment and the final GET are the
    // counter's, not the lock's: taken out when the counter's server is one of those counted.
    const counterCalls = ctx.lockServers.includes(ctx.admin) ? 2 * increments + 1 : 0;
    return {
      perProcess,
      increments,
      lostUpdates: limit === undefined ? increments - counter : 0,
      overLimit: perProcess.reduce((sum, r) => sum + r.overLimit, 0),
      mostInside: Math.max(...perProcess.map((r) => r.mostInside)),
      lockCalls: calls - counterCalls,
    };
  } finally {
    await Promise.all(
      workers.map((w) => w.call({ op: 'close', handle }, budget(0)).catch(() => {})),
    );
  }
}
