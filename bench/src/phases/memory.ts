/**
 * Client memory per held lock and per waiter: a fresh process per library (heap deltas after
 * a full GC), on a server of its own, which exits afterwards since some libraries' waiters
 * cannot be stopped.
 */
import type { Variant } from '../adapters/types.js';
import { budget, type Context, freshNamespace } from '../context.js';
import { Worker } from '../pool.js';
import type { MemoryResult } from '../protocol.js';
import { startRedisServer } from '../redis.js';

/** Processes at once: heap sizes do not care about a busy CPU, the run's length does. */
const CONCURRENCY = 2;

export async function measureMemory(
  ctx: Context,
  variants: readonly Variant[],
): Promise<Map<string, MemoryResult>> {
  const results = new Map<string, MemoryResult>();
  // A polling lock's timers would flood a process holding 10,000 (Variant.polls).
  const queue = variants.filter((variant) => !variant.polls);
  const lane = async () => {
    for (let variant = queue.shift(); variant; variant = queue.shift()) {
      ctx.interrupted.throwIfAborted();
      results.set(variant.id, await measureOne(ctx, variant));
      ctx.progress.step(`memory: ${variant.id} done`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  return results;
}

async function measureOne(ctx: Context, variant: Variant): Promise<MemoryResult> {
  const server = await startRedisServer();
  const worker = new Worker(`memory-${variant.id}`, { exposeGc: true });
  try {
    await worker.ready;
    const settleMs = ctx.mode.memorySettleMs;
    return await worker.call(
      {
        op: 'memory',
        variant: variant.id,
        target: server.url,
        namespace: freshNamespace('m'),
        count: ctx.mode.memoryCount,
        settleMs,
      },
      budget(settleMs + 10_000),
    );
  } finally {
    await worker.stop();
    await server.stop();
  }
}
