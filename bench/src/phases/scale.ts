/**
 * Waiting that scales (issue 13): what W waiters on one name cost the server and the handoff.
 * W clients, each its own connection, spread over the four worker processes, wait in the
 * library's blocking acquire for a name held by a client in a fifth process; all on a
 * throwaway redis-server of this phase's own, so every call counted (INFO commandstats,
 * scripts' inner calls included) is theirs.
 *
 * Per W: the calls while W wait, over a window of whole extension periods placed half a period
 * after the holder's acquisition (so it holds exactly that many of its extensions); then
 * handoff rounds: the holder releases, whichever waiter gets it holds next, and the one that
 * let go queues again, so every round is one handoff from a release with W waiting, W−1 still
 * waiting after it. Calls, and the server's CPU time (INFO cpu), are counted over the rounds.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { closeIoredis, connectIoredis } from '../adapters/ioredis.js';
import type { Variant } from '../adapters/types.js';
import { budget, type Context, freshNamespace } from '../context.js';
import { shares, startWorkers, type Worker } from '../pool.js';
import { type CrowdAcquired, now } from '../protocol.js';
import { type ServerSnapshot, serverSnapshot, snapshotDelta, startRedisServer } from '../redis.js';
import { type Summary, summarize } from '../stats.js';

/** The extension period the window is measured in, tracklock's at issue 13's settings. */
const PERIOD_MS = 250;
/** After the waiters start, before counting: every one has made its first attempt. */
export const SETTLE_MS = 200;
export const SETTLE_PER_WAITER_MS = 2;
/** Pause before each release: the waiter that queued again has made its first attempt. */
const ROUND_SETTLE_MIN_MS = 2;
const ROUND_SETTLE_SPAN_MS = 10;
const ROUND_TIMEOUT_MS = 15_000;
/** Handoffs at the start, while the processes warm up, not counted. */
const WARMUP_ROUNDS = 2;
/** File descriptors a worker needs besides its crowd's connections. */
const SPARE_FDS = 200;
const LOCK = 'scale';

export interface ScaleRun {
  readonly waiters: number;
  /** Why this W was not measured (too few file descriptors or clients allowed). */
  readonly skipped?: string;
  readonly windowMs: number;
  /** Server calls per second while W wait and the holder holds. */
  readonly callsPerSecond: number;
  /** The holder's extensions in the window; null for a library that does not extend that often. */
  readonly extensions: number | null;
  readonly callsPerExtension: number | null;
  /**
   * Waiters woken per extension, tracklock only: the scripts run in the window (EVALSHA, or EVAL
   * after a NOSCRIPT) less the holder's one extension script per extension, per extension.
   * That is a count, not an estimate: every wake-up of a waiter (an invalidation, its wake or
   * handoff key, the head's ticket it watches, or its own timer) ends in exactly one acquire
   * script, a waiter left asleep sends nothing, and the queue's bookkeeping runs inside those
   * scripts. It is not all a waiter sends, though: with the queue, the deputy follows each of
   * its attempts with a plain PTTL of the head's ticket, so that Redis tracks that key for it
   * again (a key read inside a script is tracked only if the script declares it). INFO
   * commandstats cannot tell that PTTL from the PTTLs scripts run inside, so it is not counted
   * apart: it is in callsPerExtension, with every other call of the window.
   */
  readonly wakeUpsPerExtension: number | null;
  /** Counted handoff rounds. */
  readonly handoffs: number;
  /** Over the rounds (release, the waiters' attempts, the one that let go queueing again, polls). */
  readonly callsPerHandoff: number | null;
  /** used_cpu_sys + used_cpu_user of the server over the rounds, per round. */
  readonly cpuMsPerHandoff: number | null;
  readonly handoff: Summary | null;
  /** Waiters that had not ended when the run closed (a library that cannot abort them). */
  readonly stuck: number;
}

export interface ScaleResult {
  readonly variant: Variant;
  readonly runs: ScaleRun[];
}

const round2 = (n: number) => Math.round(n * 100) / 100;

/** The soft limit on open files this process (and the workers it forked) runs with. */
function openFilesLimit(): number {
  try {
    const limits = readFileSync('/proc/self/limits', 'utf8');
    const soft = /Max open files\s+(\d+|unlimited)/.exec(limits)?.[1];
    return soft === undefined || soft === 'unlimited' ? Number.POSITIVE_INFINITY : Number(soft);
  } catch {
    return Number.POSITIVE_INFINITY; // not Linux: trust it, a failure to connect says so
  }
}

/** Why W cannot run here, or undefined. */
async function tooMany(
  admin: Redis,
  waiters: number,
  processes: number,
): Promise<string | undefined> {
  const perWorker = Math.ceil(waiters / processes) + SPARE_FDS;
  const fds = openFilesLimit();
  if (fds < perWorker) return `a worker needs ${perWorker} file descriptors, ulimit -n is ${fds}`;
  const reply = (await admin.config('GET', 'maxclients')) as string[];
  const maxclients = Number(reply[1]);
  if (maxclients < waiters + 20) return `redis-server maxclients is ${maxclients}`;
  return undefined;
}

async function measureRun(
  ctx: Context,
  holderWorker: Worker,
  url: string,
  admin: Redis,
  variant: Variant,
  waiters: number,
): Promise<ScaleRun> {
  const crowdWorkers = ctx.workers;
  const everyWorker = [holderWorker, ...crowdWorkers];
  const skipped = await tooMany(admin, waiters, crowdWorkers.length);
  const empty = {
    waiters,
    windowMs: 0,
    callsPerSecond: 0,
    extensions: null,
    callsPerExtension: null,
    wakeUpsPerExtension: null,
    handoffs: 0,
    callsPerHandoff: null,
    cpuMsPerHandoff: null,
    handoff: null,
    stuck: 0,
  };
  if (skipped) return { ...empty, skipped };
  const namespace = freshNamespace('scale');
  const handle = `scale:${variant.id}:${waiters}`;
  const open = { op: 'crowdOpen', handle, variant: variant.id, target: url, namespace } as const;
  // Client 0 is the holder, in its own process; 1…W wait, dealt out over the four.
  const counts = shares(waiters, crowdWorkers.length);
  const drainMs = 5000 + waiters * 20;
  const nextBudget = ctx.mode.scaleMaxMs + 2 * ROUND_TIMEOUT_MS + 15_000;
  try {
    let first = 1;
    await Promise.all([
      holderWorker.call({ ...open, first: 0, count: 1 }, budget(0)),
      ...crowdWorkers.map((w, i) => {
        const call = w.call({ ...open, first, count: counts[i] ?? 0 }, budget(waiters * 5));
        first += counts[i] ?? 0;
        return call;
      }),
    ]);
    const held = await holderWorker.call(
      { op: 'crowdHold', handle, name: LOCK, index: 0 },
      ROUND_TIMEOUT_MS,
    );
    await Promise.all(
      crowdWorkers.map((w) => w.call({ op: 'crowdWait', handle, name: LOCK }, budget(0))),
    );
    await sleep(SETTLE_MS + waiters * SETTLE_PER_WAITER_MS, undefined, {
      signal: ctx.interrupted,
    });

    // The window: whole periods, starting half a period after one of the holder's extensions.
    const extending = variant.keepAlive?.intervalMs === PERIOD_MS;
    const windowMs = ctx.mode.scalePeriods * PERIOD_MS;
    if (extending) {
      const since = now() - held.at;
      const start = held.at + (Math.ceil(since / PERIOD_MS - 0.5) + 0.5) * PERIOD_MS;
      await sleep(Math.max(0, start - now()), undefined, { signal: ctx.interrupted });
    }
    const windowBefore = await serverSnapshot(admin);
    const windowStart = performance.now();
    await sleep(windowMs, undefined, { signal: ctx.interrupted });
    const window = snapshotDelta(windowBefore, await serverSnapshot(admin));
    const seconds = (performance.now() - windowStart) / 1000;
    const extensions = extending ? ctx.mode.scalePeriods : null;

    // Rounds. Each process keeps one crowdNext pending: the first to answer is the winner.
    type Next = { worker: Worker; acquired: CrowdAcquired | null; error?: unknown };
    const next = new Map<Worker, Promise<Next>>();
    const arm = (worker: Worker) =>
      next.set(
        worker,
        worker.call({ op: 'crowdNext', handle }, nextBudget).then(
          (acquired): Next => ({ worker, acquired }),
          (error: unknown): Next => ({ worker, acquired: null, error }),
        ),
      );
    for (const w of everyWorker) arm(w);
    let holder = { worker: holderWorker, index: 0 };
    const samples: number[] = [];
    let rounds = 0;
    let roundsBefore: ServerSnapshot | undefined;
    const started = performance.now();
    while (samples.length < ctx.mode.scaleRounds) {
      ctx.interrupted.throwIfAborted();
      if (rounds === WARMUP_ROUNDS) roundsBefore = await serverSnapshot(admin);
      await sleep(ROUND_SETTLE_MIN_MS + Math.random() * ROUND_SETTLE_SPAN_MS);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(`scale ${variant.id} W=${waiters}: no handoff in ${ROUND_TIMEOUT_MS} ms`),
            ),
          ROUND_TIMEOUT_MS,
        );
      });
      const [released, won] = await Promise.all([
        holder.worker.call({ op: 'crowdRelease', handle, index: holder.index }, ROUND_TIMEOUT_MS),
        Promise.race([Promise.race(next.values()), timeout]).finally(() => clearTimeout(timer)),
      ]);
      if (won.error !== undefined) throw won.error;
      if (won.acquired === null) throw new Error(`scale ${variant.id}: crowd closed mid-round`);
      rounds++;
      arm(won.worker);
      // The one that let go queues again: W wait, as before this round.
      await holder.worker.call({ op: 'crowdWait', handle, name: LOCK }, ROUND_TIMEOUT_MS);
      holder = { worker: won.worker, index: won.acquired.index };
      if (rounds > WARMUP_ROUNDS) samples.push(won.acquired.at - released.at);
      if (performance.now() - started > ctx.mode.scaleMaxMs) break;
    }
    await sleep(ROUND_SETTLE_MIN_MS);
    const roundsCounted = roundsBefore && snapshotDelta(roundsBefore, await serverSnapshot(admin));
    const handoffs = samples.length;
    return {
      waiters,
      windowMs: Math.round(seconds * 1000),
      callsPerSecond: Math.round(window.calls / seconds),
      extensions,
      callsPerExtension: extensions === null ? null : round2(window.calls / extensions),
      wakeUpsPerExtension:
        extensions === null || variant.library !== 'tracklock'
          ? null
          : round2(window.scripts / extensions - 1),
      handoffs,
      callsPerHandoff:
        roundsCounted && handoffs > 0 ? round2(roundsCounted.calls / handoffs) : null,
      cpuMsPerHandoff:
        roundsCounted && handoffs > 0
          ? Math.round((roundsCounted.cpuMs / handoffs) * 1000) / 1000
          : null,
      handoff: summarize(samples),
      stuck: await closeCrowd(everyWorker, handle, drainMs),
    };
  } finally {
    // Idempotent: a run that returned has closed already, one that threw has not.
    await closeCrowd(everyWorker, handle, drainMs).catch(() => 0);
  }
}

/** Close a crowd in every worker (see the crowdClose request); the waiters left stuck. */
export async function closeCrowd(
  workers: readonly Worker[],
  handle: string,
  drainMs: number,
): Promise<number> {
  const closed = await Promise.all(
    workers.map((w) =>
      w.call({ op: 'crowdClose', handle, drainMs }, budget(drainMs)).catch(() => ({ stuck: 0 })),
    ),
  );
  return closed.reduce((sum, c) => sum + c.stuck, 0);
}

/** Progress steps: one per variant per waiter count. */
export function scaleSteps(ctx: { mode: Context['mode'] }, variants: readonly Variant[]): number {
  return variants.length * ctx.mode.scaleWaiters.length;
}

/** Every variant given, each W in the mode, on a redis-server of the phase's own. */
export async function measureScale(
  ctx: Context,
  variants: readonly Variant[],
): Promise<ScaleResult[]> {
  if (variants.length === 0) return [];
  const server = await startRedisServer();
  try {
    const admin = await connectIoredis(server.url);
    try {
      const [holderWorker] = (await startWorkers(1, 'scale-holder')) as [Worker];
      try {
        const results: ScaleResult[] = [];
        for (const variant of variants) {
          const runs: ScaleRun[] = [];
          for (const waiters of ctx.mode.scaleWaiters) {
            runs.push(await measureRun(ctx, holderWorker, server.url, admin, variant, waiters));
            ctx.progress.step(`scale ${waiters} ${variant.id}`);
          }
          results.push({ variant, runs });
        }
        return results;
      } finally {
        await holderWorker.stop();
      }
    } finally {
      await closeIoredis(admin);
    }
  } finally {
    await server.stop();
  }
}
