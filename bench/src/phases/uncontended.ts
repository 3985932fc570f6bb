/**
 * Uncontended acquire + release on fresh names, one after another in one process: latency,
 * rate, and the calls the servers holding the keys ran per cycle (INFO commandstats, inner
 * script calls included; nothing else runs on them meanwhile).
 */
import type { Variant } from '../adapters/types.js';
import { budget, type Context, freshNamespace } from '../context.js';
import type { Worker } from '../pool.js';
import { now } from '../protocol.js';
import { callsBetween, summedCommandStats, total } from '../redis.js';
import { type Summary, summarize } from '../stats.js';

const MAX_CYCLES = 1_000_000;
const WARMUP_CYCLES = 50;

export interface UncontendedResult {
  readonly latency: Summary | null;
  readonly cyclesPerSecond: number;
  readonly callsPerCycle: number;
  /** The calls per cycle by command, e.g. `{ evalsha: 2, set: 3, get: 6 }`. */
  readonly callsByCommand: Record<string, number>;
}

export async function measureUncontended(
  ctx: Context,
  variant: Variant,
): Promise<UncontendedResult> {
  const worker = ctx.workers[0] as Worker;
  const handle = `fresh:${variant.id}`;
  const namespace = freshNamespace(variant.id);
  await worker.call(
    { op: 'open', handle, variant: variant.id, target: ctx.target, namespace },
    budget(0),
  );
  try {
    await worker.call(
      { op: 'cycles', handle, maxCycles: WARMUP_CYCLES, until: now() + 5000 },
      budget(5000),
    );
    const before = await summedCommandStats(ctx.lockServers);
    const { samples } = await worker.call(
      { op: 'cycles', handle, maxCycles: MAX_CYCLES, until: now() + ctx.mode.uncontendedMs },
      budget(ctx.mode.uncontendedMs),
    );
    const calls = callsBetween(before, await summedCommandStats(ctx.lockServers));
    const busyMs = samples.reduce((sum, ms) => sum + ms, 0);
    const perCycle = (count: number) => Math.round((count / samples.length) * 100) / 100;
    return {
      latency: summarize(samples),
      cyclesPerSecond: Math.round((samples.length / busyMs) * 1000),
      callsPerCycle: perCycle(total(calls)),
      callsByCommand: Object.fromEntries([...calls].map(([command, n]) => [command, perCycle(n)])),
    };
  } finally {
    await worker.call({ op: 'close', handle }, budget(0)).catch(() => {});
  }
}
