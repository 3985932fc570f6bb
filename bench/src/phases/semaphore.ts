/**
 * Semaphores (issue 16): tracklock's `locker.semaphore(name, { limit })` against
 * redis-semaphore's `Semaphore`, each client its own connection in one of the four processes.
 *
 * - **handoff**: `limit` clients hold every permit and one more waits, in a process apart from
 *   the holder that lets go next (the one that has held longest); the time from that release
 *   call to the waiter's acquire resolving, on the clock the processes share. The one that let
 *   go waits next, so every round starts with every permit held and one waiter. Limit 1 (a
 *   mutex's handoff) and limit 4. Server calls over the counted rounds, per round.
 * - **throughput**: the contention loop on a semaphore of 4 permits at 1, 4 and 16 workers
 *   over up to four processes, with a count of the holders inside (INCR after the acquire,
 *   DECR before the release) in place of the mutex's counter: an INCR above 4 is one holder
 *   too many.
 * - **cost**: on a server of the phase's own, four clients (one per process) hold all 4
 *   permits for the whole measurement while 1, then 16 clients wait; server calls per second
 *   (INFO commandstats, scripts' inner calls included) over whole extension periods of
 *   tracklock's. A poller's cost grows with its waiters; a queue whose head alone is woken
 *   should not.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { DEFAULTS } from '../../../src/index.js';
import { closeIoredis, connectIoredis } from '../adapters/ioredis.js';
import type { SemaphoreVariant } from '../adapters/types.js';
import { budget, type Context, freshNamespace } from '../context.js';
import { SMOKE_SEMAPHORE_WINDOW_MS } from '../modes.js';
import { shares, type Worker } from '../pool.js';
import { onOwnServer, serverSnapshot, snapshotDelta } from '../redis.js';
import type { Summary } from '../stats.js';
import { countedRounds, ROUND_TIMEOUT_MS, SETTLE_MIN_MS, SETTLE_SPAN_MS } from './handoff.js';
import { closeCrowd, SETTLE_MS, SETTLE_PER_WAITER_MS } from './scale.js';
import { measureThroughput, type ThroughputResult, WORKER_COUNTS } from './throughput.js';

export const HANDOFF_LIMITS = [1, 4] as const;
/** The permits of the throughput and cost runs. */
export const SEMAPHORE_LIMIT = 4;
export const COST_WAITERS = [1, 16] as const;
/** A window starts no nearer than this share of a period to a holder's extension. */
const EDGE_MARGIN = 0.1;
const DRAIN_MS = 5000;
const LOCK = 'sem';

export interface SemaphoreHandoff {
  readonly limit: number;
  readonly summary: Summary | null;
  /** Server calls over the counted rounds, per round (the settle pause's polling included). */
  readonly callsPerHandoff: number | null;
}

export interface SemaphoreCostRun {
  readonly waiters: number;
  readonly windowMs: number;
  /** Every call the server ran (scripts' inner calls included), per second. */
  readonly callsPerSecond: number;
  /** Script calls (EVALSHA, EVAL): requests that each ran a script. */
  readonly scriptsPerSecond: number;
  /** The server's used_cpu_sys + used_cpu_user, ms per second. */
  readonly cpuMsPerSecond: number;
  /** Calls per second by command (scripts' inner calls included), for the JSON. */
  readonly callsPerSecondByCommand: Record<string, number>;
}

export interface SemaphoreCost {
  readonly limit: number;
  /** Clients holding one permit each, for the whole measurement. */
  readonly holders: number;
  readonly runs: SemaphoreCostRun[];
  /** Waiters that had not ended when the run closed (a library that cannot abort them). */
  readonly stuck: number;
}

export interface SemaphoreResult {
  readonly variant: SemaphoreVariant;
  readonly handoff: SemaphoreHandoff[];
  /** At limit {@link SEMAPHORE_LIMIT}, by worker count. */
  readonly throughput: ThroughputResult[];
  readonly cost: SemaphoreCost;
}

/** Progress steps: per variant, each handoff limit, each worker count, and the cost. */
export function semaphoreSteps(variants: readonly SemaphoreVariant[]): number {
  return variants.length * (HANDOFF_LIMITS.length + WORKER_COUNTS.length + 1);
}

/** Every variant given: handoff and throughput on the run's server, cost on one of its own. */
export async function measureSemaphores(
  ctx: Context,
  variants: readonly SemaphoreVariant[],
): Promise<SemaphoreResult[]> {
  const results: SemaphoreResult[] = [];
  for (const variant of variants) {
    const handoffs: SemaphoreHandoff[] = [];
    for (const limit of HANDOFF_LIMITS) {
      handoffs.push(await handoff(ctx, variant, limit));
      ctx.progress.step(`semaphore handoff, limit ${limit}, ${variant.id}`);
    }
    const throughput: ThroughputResult[] = [];
    for (const count of WORKER_COUNTS) {
      throughput.push(await measureThroughput(ctx, variant, count, SEMAPHORE_LIMIT));
      ctx.progress.step(`semaphore throughput ${count} ${variant.id}`);
    }
    const cost = await onOwnServer(async (url) => {
      const admin = await connectIoredis(url);
      try {
        return await measureCost(ctx, variant, url, admin);
      } finally {
        await closeIoredis(admin);
      }
    });
    ctx.progress.step(`semaphore cost ${variant.id}`);
    results.push({ variant, handoff: handoffs, throughput, cost });
  }
  return results;
}

/**
 * The crowd's clients dealt over the workers, numbered from `first` in blocks: which worker
 * has which client, after opening them.
 */
async function openClients(
  ctx: Context,
  workers: readonly Worker[],
  open: { handle: string; variant: string; target: string; namespace: string; limit: number },
  first: number,
  count: number,
  workerOf: Map<number, Worker>,
): Promise<void> {
  const counts = shares(count, workers.length);
  let next = first;
  await Promise.all(
    workers.map((w, i) => {
      const n = counts[i] ?? 0;
      for (let index = next; index < next + n; index++) workerOf.set(index, w);
      const call = w.call({ op: 'crowdOpen', ...open, first: next, count: n }, budget(n * 5));
      next += n;
      return call;
    }),
  );
  ctx.interrupted.throwIfAborted();
}

/** `limit` + 1 clients pass the permits round: see the file's comment. */
async function handoff(
  ctx: Context,
  variant: SemaphoreVariant,
  limit: number,
): Promise<SemaphoreHandoff> {
  const workers = ctx.workers;
  const handle = `semaphore-handoff:${variant.id}:${limit}`;
  const open = {
    handle,
    variant: variant.id,
    target: ctx.target,
    namespace: freshNamespace(variant.id),
    limit,
  };
  const workerOf = new Map<number, Worker>();
  const at = (index: number) => workerOf.get(index) as Worker;
  try {
    await openClients(ctx, workers, open, 0, limit + 1, workerOf);
    // Clients 0 … limit − 1 hold, in that order: the first is the one that has held longest.
    const holders: number[] = [];
    for (let index = 0; index < limit; index++) {
      await at(index).call({ op: 'crowdHold', handle, name: LOCK, index }, ROUND_TIMEOUT_MS);
      holders.push(index);
    }
    let waiter = limit;
    await at(waiter).call({ op: 'crowdWait', handle, name: LOCK }, ROUND_TIMEOUT_MS);
    const { summary, callsPerHandoff } = await countedRounds(ctx, async () => {
      // The longest holder in another process than the waiter's lets go.
      const position = holders.findIndex((index) => at(index) !== at(waiter));
      const [releaser] = holders.splice(position, 1) as [number];
      await sleep(SETTLE_MIN_MS + Math.random() * SETTLE_SPAN_MS);
      const [released, acquired] = await Promise.all([
        at(releaser).call({ op: 'crowdRelease', handle, index: releaser }, ROUND_TIMEOUT_MS),
        at(waiter).call({ op: 'crowdNext', handle }, ROUND_TIMEOUT_MS),
      ]);
      if (acquired?.index !== waiter) {
        throw new Error(`semaphore handoff ${variant.id}: client ${waiter} did not acquire`);
      }
      holders.push(waiter);
      // The one that let go waits next, once the permit it freed is taken.
      await at(releaser).call({ op: 'crowdWait', handle, name: LOCK }, ROUND_TIMEOUT_MS);
      waiter = releaser;
      return acquired.at - released.at;
    });
    return { limit, summary, callsPerHandoff };
  } finally {
    await closeCrowd(workers, handle, DRAIN_MS);
  }
}

/** Holders of every permit for the whole run, 1 then 16 waiters: see the file's comment. */
async function measureCost(
  ctx: Context,
  variant: SemaphoreVariant,
  url: string,
  admin: Redis,
): Promise<SemaphoreCost> {
  const workers = ctx.workers;
  const handle = `semaphore-cost:${variant.id}`;
  const open = {
    handle,
    variant: variant.id,
    target: url,
    namespace: freshNamespace(variant.id),
    limit: SEMAPHORE_LIMIT,
  };
  const workerOf = new Map<number, Worker>();
  const periodMs = DEFAULTS.extendIntervalMs;
  const periods = ctx.mode.semaphoreCostPeriods;
  const windowMs = periods === 0 ? SMOKE_SEMAPHORE_WINDOW_MS : periods * periodMs;
  try {
    await openClients(ctx, workers, open, 0, SEMAPHORE_LIMIT, workerOf);
    const held = await Promise.all(
      [...workerOf].map(([index, w]) =>
        w.call({ op: 'crowdHold', handle, name: LOCK, index }, ROUND_TIMEOUT_MS),
      ),
    );
    const heldAt = Math.max(...held.map((h) => h.at));
    const runs: SemaphoreCostRun[] = [];
    let clients = SEMAPHORE_LIMIT;
    for (const waiters of COST_WAITERS) {
      const more = waiters - (clients - SEMAPHORE_LIMIT);
      await openClients(ctx, workers, open, clients, more, workerOf);
      clients += more;
      // Every client neither holding nor waiting starts: the new ones.
      await Promise.all(
        workers.map((w) => w.call({ op: 'crowdWait', handle, name: LOCK }, budget(0))),
      );
      await sleep(SETTLE_MS + waiters * SETTLE_PER_WAITER_MS, undefined, {
        signal: ctx.interrupted,
      });
      await clearOfExtensions(heldAt, variant.keepAliveMs, ctx.interrupted);
      const before = await serverSnapshot(admin);
      const start = performance.now();
      await sleep(windowMs, undefined, { signal: ctx.interrupted });
      const window = snapshotDelta(before, await serverSnapshot(admin));
      const seconds = (performance.now() - start) / 1000;
      runs.push({
        waiters,
        windowMs: Math.round(seconds * 1000),
        callsPerSecond: Math.round(window.calls / seconds),
        scriptsPerSecond: Math.round(window.scripts / seconds),
        cpuMsPerSecond: Math.round((window.cpuMs / seconds) * 10) / 10,
        callsPerSecondByCommand: Object.fromEntries(
          [...window.byCommand].map(([command, n]) => [
            command,
            Math.round((n / seconds) * 10) / 10,
          ]),
        ),
      });
    }
    const stuck = await closeCrowd(workers, handle, DRAIN_MS);
    return { limit: SEMAPHORE_LIMIT, holders: SEMAPHORE_LIMIT, runs, stuck };
  } finally {
    // Idempotent: a run that returned has closed already, one that threw has not.
    await closeCrowd(workers, handle, DRAIN_MS);
  }
}

/**
 * Wait, if need be, until the holders' next extension is at least a tenth of a period away:
 * a window of whole periods then holds exactly that many extensions of each holder (they took
 * their permits together, at `heldAt`, and extend every `periodMs` from then).
 */
async function clearOfExtensions(
  heldAt: number,
  periodMs: number,
  signal: AbortSignal,
): Promise<void> {
  const phase = ((performance.timeOrigin + performance.now() - heldAt) % periodMs) / periodMs;
  const waitShare =
    phase < EDGE_MARGIN
      ? EDGE_MARGIN - phase
      : phase > 1 - EDGE_MARGIN
        ? 1 + EDGE_MARGIN - phase
        : 0;
  await sleep(waitShare * periodMs, undefined, { signal });
}
