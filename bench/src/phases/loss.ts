/**
 * Loss detection: someone else DELs a majority of a held lock's keys; how long until the
 * holder's signal aborts? Only tracklock has such a signal; the peers learn of a loss at
 * their next extension at best. Pushing, tracklock hears of it from the DEL's invalidation;
 * polling, at its next read of the keys, within `pollIntervalMs`.
 */
import { tracklockKeys } from '../adapters/tracklock.js';
import type { Variant } from '../adapters/types.js';
import { budget, type Context, freshNamespace } from '../context.js';
import type { Worker } from '../pool.js';
import { now } from '../protocol.js';
import { type Summary, summarize } from '../stats.js';

const ROUND_TIMEOUT_MS = 10_000;

export async function measureLoss(ctx: Context, variant: Variant): Promise<Summary | null> {
  // 2M - 1 keys: M of them is a majority. On the main server whatever `ctx.target` says:
  // `ctx.admin` deletes the keys there.
  const keyMajority = ((variant.keepAlive?.keys ?? 1) + 1) / 2;
  const worker = ctx.workers[0] as Worker;
  const handle = `loss:${variant.id}`;
  const namespace = freshNamespace(variant.id);
  await worker.call(
    { op: 'open', handle, variant: variant.id, target: ctx.url, namespace },
    budget(0),
  );
  try {
    const samples: number[] = [];
    for (let i = 0; i < ctx.mode.lossRounds; i++) {
      ctx.interrupted.throwIfAborted();
      const name = `lost${i}`;
      await worker.call({ op: 'hold', handle, name }, ROUND_TIMEOUT_MS);
      const lost = worker.call({ op: 'watchLoss', handle, name }, ROUND_TIMEOUT_MS);
      // Let 'watchLoss' reach the worker first, so its reply time is the abort's, not the IPC's;
      // a polling lock reads its keys on a timer started when it was taken: a random pause
      // over one period lands the DEL at a random phase of it (a fixed one would measure the
      // same point of the cycle every round, its last: the timer started just before).
      const phaseMs = variant.polls ? Math.random() * variant.polls.intervalMs : 0;
      await new Promise((resolve) => setTimeout(resolve, 2 + phaseMs));
      const keys = tracklockKeys(namespace, name, keyMajority).slice(0, keyMajority);
      const at = now();
      await ctx.admin.del(...keys);
      samples.push((await lost).at - at);
      await worker.call({ op: 'release', handle, name }, ROUND_TIMEOUT_MS);
    }
    return summarize(samples);
  } finally {
    await worker.call({ op: 'close', handle }, budget(0)).catch(() => {});
  }
}
