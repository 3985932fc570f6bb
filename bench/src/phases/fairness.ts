/**
 * Fairness: the contention loop (acquire → GET/SET a counter → release on one name) with every
 * acquisition's wait, from the acquire call to its resolving, and every process's count of
 * acquisitions. Throughput alone hides starvation: a lock that keeps handing itself to the
 * same process can be fast while another process waits the whole run. Two shapes, as issue 13
 * asks: 4 processes × 4 loops (the throughput phase's 16 workers, run longer) and 8 processes
 * × 1 loop, which needs four worker processes more than the run keeps: started here, once.
 */
import type { Variant } from '../adapters/types.js';
import type { Context } from '../context.js';
import { startWorkers, type Worker } from '../pool.js';
import { type Summary, summarize } from '../stats.js';
import { contend } from './throughput.js';

/** Processes × loops per process. */
export const FAIRNESS_SHAPES = [
  { processes: 4, loops: 4 },
  { processes: 8, loops: 1 },
] as const;

export interface FairnessResult {
  readonly processes: number;
  readonly loopsPerProcess: number;
  readonly durationMs: number;
  readonly acquisitionsPerSecond: number;
  /** Acquisitions that resolved within the run, per process, in process order. */
  readonly perProcess: number[];
  /** The least-served process's count over the most-served's: 1 is even, 0 is starvation. */
  readonly leastToMost: number;
  /** Every acquisition's wait, those that resolved after the run's end included. */
  readonly wait: Summary | null;
  /** From resolving to the release call: the GET and SET the lock protects. */
  readonly hold: Summary | null;
  readonly lostUpdates: number;
}

/** Each variant of the mode's list that this run includes, in both shapes; by variant id. */
export async function measureFairness(
  ctx: Context,
  variants: readonly Variant[],
): Promise<Map<string, FairnessResult[]>> {
  const results = new Map<string, FairnessResult[]>();
  if (variants.length === 0) return results;
  const most = Math.max(...FAIRNESS_SHAPES.map((s) => s.processes));
  const extra = await startWorkers(Math.max(0, most - ctx.workers.length), 'f');
  try {
    const workers = [...ctx.workers, ...extra];
    for (const variant of variants) {
      const rows: FairnessResult[] = [];
      for (const shape of FAIRNESS_SHAPES) {
        ctx.interrupted.throwIfAborted();
        rows.push(await measureShape(ctx, variant, workers.slice(0, shape.processes), shape.loops));
        ctx.progress.step(`fairness ${shape.processes}×${shape.loops} ${variant.id}`);
      }
      results.set(variant.id, rows);
    }
  } finally {
    await Promise.all(extra.map((w) => w.stop()));
  }
  return results;
}

async function measureShape(
  ctx: Context,
  variant: Variant,
  workers: readonly Worker[],
  loops: number,
): Promise<FairnessResult> {
  const durationMs = ctx.mode.fairnessMs;
  const run = await contend(ctx, variant, workers, loops, durationMs);
  const perProcess = run.perProcess.map((r) => r.acquisitions);
  const least = Math.min(...perProcess);
  const most = Math.max(...perProcess);
  return {
    processes: workers.length,
    loopsPerProcess: loops,
    durationMs,
    acquisitionsPerSecond: Math.round((perProcess.reduce((a, b) => a + b, 0) / durationMs) * 1000),
    perProcess,
    leastToMost: most === 0 ? 0 : Math.round((least / most) * 1000) / 1000,
    wait: summarize(run.perProcess.flatMap((r) => r.waits)),
    hold: summarize(run.perProcess.flatMap((r) => r.holds)),
    lostUpdates: run.lostUpdates,
  };
}
