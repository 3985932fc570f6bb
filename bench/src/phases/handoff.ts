/**
 * Handoff latency: the holder in one process calls release while another process waits in the
 * library's blocking acquire; the time from the release call to the acquire resolving, on the
 * clock both processes share.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Variant } from '../adapters/types.js';
import { budget, type Context, freshNamespace } from '../context.js';
import type { Worker } from '../pool.js';
import type { HandoffEvent } from '../protocol.js';
import { now } from '../protocol.js';
import { callsBetween, summedCommandStats, total } from '../redis.js';
import { type Summary, summarize } from '../stats.js';

/**
 * Pause between the waiter's call and the release: at least long enough for its first
 * attempt to fail. Random over a span longer than redis-semaphore's and redlock-fast's
 * polling period, so the release lands at a random phase of a poller's cycle (a fixed pause
 * would measure the same point of the cycle every round).
 */
export const SETTLE_MIN_MS = 2;
export const SETTLE_SPAN_MS = 20;
export const ROUND_TIMEOUT_MS = 10_000;
/** How long each of the many waiters holds the lock before it lets the next one in. */
const CHAIN_HOLD_MS = 1;
/** Handoffs at the start of a many-waiter run, while processes warm up, not counted. */
const CHAIN_WARMUP = 5;
const LOCK = 'handoff';

export interface HandoffResult {
  readonly summary: Summary | null;
  /** The raw samples in ms, for the CDF chart. */
  readonly samples: number[];
}

export interface PairHandoffResult extends HandoffResult {
  /**
   * Server calls (scripts' inner calls included, INFO left out) over the counted rounds, per
   * round, on every server that holds keys: the waiter's first attempt, whatever it polls in
   * the pause before the release (2–22 ms, 12 on average), the release, the attempts it wakes
   * and what the new holder sends on taking it. null: no round was counted.
   */
  readonly callsPerHandoff: number | null;
}

/** Two processes pass one lock back and forth; each round the previous waiter is the holder. */
export async function pairHandoff(ctx: Context, variant: Variant): Promise<PairHandoffResult> {
  const [a, b] = ctx.workers as [Worker, Worker];
  const namespace = freshNamespace(variant.id);
  const handle = `pair:${variant.id}`;
  const open = { op: 'open', handle, variant: variant.id, target: ctx.target, namespace } as const;
  await Promise.all([a.call(open, budget(0)), b.call(open, budget(0))]);
  try {
    await a.call({ op: 'hold', handle, name: LOCK }, ROUND_TIMEOUT_MS);
    const result = await countedRounds(ctx, (i) =>
      i % 2 === 0 ? round(a, b, handle) : round(b, a, handle),
    );
    // Whoever holds it now lets go, so closing does not wait on anything.
    const last = result.rounds % 2 === 0 ? a : b;
    await last.call({ op: 'release', handle, name: LOCK }, ROUND_TIMEOUT_MS).catch(() => {});
    return result;
  } finally {
    await Promise.all(
      [a, b].map((w) => w.call({ op: 'close', handle }, budget(0)).catch(() => {})),
    );
  }
}

/**
 * Handoff rounds as the mode sizes them: `round(i)` runs round i and answers its sample in ms.
 * Warm-up (JIT, script cache, connection buffers) is a few rounds, or a fifth of the time cap
 * for the slow pollers, whose rounds take hundreds of ms; then counted rounds until the mode's
 * number or its time cap, with the server calls on every server that holds keys counted over
 * them (between rounds, when nobody waits).
 */
export async function countedRounds(
  ctx: Context,
  round: (index: number) => Promise<number>,
): Promise<PairHandoffResult & { readonly rounds: number }> {
  const samples: number[] = [];
  const started = performance.now();
  const { handoffRounds, handoffMaxMs, handoffWarmupRounds } = ctx.mode;
  let rounds = 0;
  let warm = true;
  /** Calls before the first counted round. */
  let before: Map<string, number> | undefined;
  while (samples.length < handoffRounds) {
    ctx.interrupted.throwIfAborted();
    const elapsed = performance.now() - started;
    if (warm && (rounds >= handoffWarmupRounds || elapsed > handoffMaxMs / 5)) warm = false;
    if (!warm && before === undefined) before = await summedCommandStats(ctx.lockServers);
    const ms = await round(rounds);
    rounds++;
    if (warm) continue;
    samples.push(ms);
    if (performance.now() - started > handoffMaxMs) break;
  }
  const calls = before && total(callsBetween(before, await summedCommandStats(ctx.lockServers)));
  return {
    rounds,
    summary: summarize(samples),
    samples,
    callsPerHandoff:
      calls === undefined || samples.length === 0
        ? null
        : Math.round((calls / samples.length) * 10) / 10,
  };
}

async function round(holder: Worker, waiter: Worker, handle: string): Promise<number> {
  await waiter.call({ op: 'wait', handle, name: LOCK }, ROUND_TIMEOUT_MS);
  await sleep(SETTLE_MIN_MS + Math.random() * SETTLE_SPAN_MS);
  const [released, taken] = await Promise.all([
    holder.call({ op: 'release', handle, name: LOCK }, ROUND_TIMEOUT_MS),
    waiter.call({ op: 'take', handle, name: LOCK }, ROUND_TIMEOUT_MS),
  ]);
  return taken.at - released.at;
}

/**
 * `waiters` + 1 loops spread over the four processes, each taking the lock, holding it 1 ms,
 * letting go and queueing again once another has it: every handoff is from a release to the
 * next acquisition, whichever process made it, with `waiters` waiting.
 */
export async function chainHandoff(
  ctx: Context,
  variant: Variant,
  waiters: number,
): Promise<HandoffResult> {
  const namespace = freshNamespace(variant.id);
  const handle = `chain:${variant.id}`;
  const workers = ctx.workers;
  await Promise.all(
    workers.map((w) =>
      w.call({ op: 'open', handle, variant: variant.id, target: ctx.target, namespace }, budget(0)),
    ),
  );
  try {
    // One slot holds (and then sits out until another has the lock) while `waiters` wait.
    const slots = waiters + 1;
    const until = now() + ctx.mode.multiMs;
    const results = await Promise.all(
      workers.map((w, i) =>
        w.call(
          {
            op: 'chain',
            handle,
            name: LOCK,
            slots: Math.floor(slots / workers.length) + (i < slots % workers.length ? 1 : 0),
            holdMs: CHAIN_HOLD_MS,
            until,
            counterUrl: ctx.url,
            counterKey: `${namespace}:acquisitions`,
          },
          budget(ctx.mode.multiMs),
        ),
      ),
    );
    const events: HandoffEvent[] = results.flatMap((r) => r.events);
    events.sort((x, y) => x.acquiredAt - y.acquiredAt);
    const samples: number[] = [];
    for (let i = CHAIN_WARMUP + 1; i < events.length; i++) {
      const previous = events[i - 1] as HandoffEvent;
      const next = events[i] as HandoffEvent;
      // Only a waiter that was waiting when the lock was let go makes a handoff.
      if (next.calledAt < previous.releasedAt) samples.push(next.acquiredAt - previous.releasedAt);
    }
    await ctx.admin.del(`${namespace}:acquisitions`);
    return { summary: summarize(samples), samples };
  } finally {
    await Promise.all(
      workers.map((w) => w.call({ op: 'close', handle }, budget(0)).catch(() => {})),
    );
  }
}
