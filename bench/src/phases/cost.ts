/**
 * What locks cost a Redis server, each library on a server of its own (so every command
 * counted is that library's) watched with MONITOR, which tells a client's requests from the
 * calls its scripts make: commands per acquire/release cycle, and per second while holding 1
 * and 1,000 locks idle.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Variant } from '../adapters/types.js';
import { budget, type Context, freshNamespace } from '../context.js';
import { SMOKE_IDLE_WINDOW_MS } from '../modes.js';
import type { Worker } from '../pool.js';
import { now } from '../protocol.js';
import { monitor, onOwnServer } from '../redis.js';

const CYCLES = 200;
export const IDLE_LOCK_COUNTS = [1, 1000] as const;

export interface CycleCost {
  readonly requestsPerCycle: number;
  /** Requests plus the calls scripts made: what the server ran. */
  readonly callsPerCycle: number;
  readonly requestsByCommand: Record<string, number>;
}

export interface IdleCost {
  readonly locks: number;
  readonly windowMs: number;
  readonly requestsPerSecond: number;
  readonly callsPerSecond: number;
  readonly requestsPerSecondPerLock: number;
  readonly requestsByCommand: Record<string, number>;
}

export interface CostResult {
  readonly cycle: CycleCost;
  /** Absent for a library that does not keep a held lock alive by itself. */
  readonly idle: IdleCost[] | null;
}

const round2 = (n: number) => Math.round(n * 100) / 100;

async function cycleCost(worker: Worker, variant: Variant): Promise<CycleCost> {
  return onOwnServer(async (url) => {
    const handle = `cost:${variant.id}`;
    await worker.call(
      { op: 'open', handle, variant: variant.id, target: url, namespace: freshNamespace('c') },
      budget(0),
    );
    try {
      // Warm: script loading (a first EVAL, SCRIPT LOAD) is a one-off, not a per-cycle cost.
      await worker.call({ op: 'cycles', handle, maxCycles: 5, until: now() + 5000 }, budget(5000));
      const watch = await monitor(url);
      watch.begin();
      const { samples } = await worker.call(
        { op: 'cycles', handle, maxCycles: CYCLES, until: now() + 30_000 },
        budget(30_000),
      );
      const seen = await watch.stop();
      const per = (n: number) => round2(n / samples.length);
      return {
        requestsPerCycle: per(seen.requests),
        callsPerCycle: per(seen.requests + seen.inner),
        requestsByCommand: Object.fromEntries(
          Object.entries(seen.byCommand).map(([command, n]) => [command, per(n)]),
        ),
      };
    } finally {
      await worker.call({ op: 'close', handle }, budget(0)).catch(() => {});
    }
  });
}

async function idleCost(
  ctx: Context,
  worker: Worker,
  variant: Variant,
  locks: number,
): Promise<IdleCost> {
  const intervalMs = variant.keepAlive?.intervalMs ?? 0;
  // The window starts half a period after the last lock was taken and lasts whole periods,
  // so it holds exactly that many extensions of every lock, whatever their phase.
  const offsetMs = ctx.mode.idlePeriods === 0 ? 0 : intervalMs / 2;
  const windowMs =
    ctx.mode.idlePeriods === 0 ? SMOKE_IDLE_WINDOW_MS : ctx.mode.idlePeriods * intervalMs;
  return onOwnServer(async (url) => {
    const handle = `idle:${variant.id}:${locks}`;
    await worker.call(
      { op: 'open', handle, variant: variant.id, target: url, namespace: freshNamespace('i') },
      budget(0),
    );
    // Watched from before the locks are taken: a polling lock keeps the server busy, and a
    // MONITOR started then sees lines before ioredis is ready for them (see monitor()).
    const watch = await monitor(url);
    try {
      await worker.call({ op: 'holdMany', handle, count: locks }, budget(10_000));
      await sleep(offsetMs, undefined, { signal: ctx.interrupted });
      watch.begin();
      const start = performance.now();
      await sleep(windowMs, undefined, { signal: ctx.interrupted });
      const seen = await watch.stop();
      const seconds = (performance.now() - start) / 1000;
      await worker.call({ op: 'releaseMany', handle }, budget(10_000));
      return {
        locks,
        windowMs: Math.round(seconds * 1000),
        requestsPerSecond: round2(seen.requests / seconds),
        callsPerSecond: round2((seen.requests + seen.inner) / seconds),
        requestsPerSecondPerLock: round2(seen.requests / seconds / locks),
        requestsByCommand: Object.fromEntries(
          Object.entries(seen.byCommand).map(([command, n]) => [command, round2(n / seconds)]),
        ),
      };
    } finally {
      await watch.stop();
      await worker.call({ op: 'close', handle }, budget(0)).catch(() => {});
    }
  });
}

/**
 * Every variant at once, each on its own servers: the windows overlap, the counts do not. Then
 * the polling ones, one at a time: their count is of reads their timers make, which fall
 * behind in a worker busy taking another variant's 1,000 locks.
 */
export async function measureCost(
  ctx: Context,
  variants: readonly Variant[],
): Promise<Map<string, CostResult>> {
  const results = new Map<string, CostResult>();
  await costOf(
    ctx,
    variants.filter((variant) => !variant.polls),
    results,
  );
  for (const variant of variants.filter((v) => v.polls)) await costOf(ctx, [variant], results);
  return results;
}

async function costOf(
  ctx: Context,
  variants: readonly Variant[],
  results: Map<string, CostResult>,
): Promise<void> {
  await Promise.all(
    variants.map(async (variant, i) => {
      const worker = ctx.workers[i % ctx.workers.length] as Worker;
      const [cycle, idle] = await Promise.all([
        cycleCost(worker, variant),
        variant.keepAlive
          ? Promise.all(
              IDLE_LOCK_COUNTS.filter((locks) => !variant.polls || locks === 1).map((locks) =>
                idleCost(ctx, worker, variant, locks),
              ),
            )
          : Promise.resolve(null),
      ]);
      results.set(variant.id, { cycle, idle });
      ctx.progress.step(`cost: ${variant.id} done`);
    }),
  );
}
