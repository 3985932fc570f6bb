/** The issue's targets, computed from one run's numbers (never from constants). */
import { DEFAULTS } from '../../src/index.js';
import type { Results, Target, VariantResult } from './results.js';

/** Peers at their defaults, and at their fastest polling. */
const DEFAULT_PEERS = ['redlock', 'sesame-redlock', 'redis-semaphore'];
const FAST_PEERS = ['redlock-fast', 'redis-semaphore-1ms'];

/** Issue 13's rows: tracklock at its defaults (waiters queue), and at the scale settings. */
const DEFAULTS_ID = 'tracklock-m2';
const SCALE_ID = 'tracklock-scale';
/** The floor and the poller issue 13 measures the handoff against. */
const FLOOR_ID = 'bare-node-redis';
const FAST_POLLER_ID = 'redis-semaphore-1ms';
/** Issue 16's rows: tracklock's semaphore, and redis-semaphore's at its default polling. */
const SEMAPHORE_ID = 'tracklock-sem';
const SEMAPHORE_POLLER_ID = 'redis-semaphore-sem';
/** tracklock at its defaults, pushing: what the polling rows (issue 14) stand beside. */
export const PUSH_ID = DEFAULTS_ID;

/** A polling row (issue 14): `tracking: 'off'`. */
export const isPolling = (id: string) => /^tracklock-.*-poll\d*$/.test(id);

/** Contention worker counts issue 13 compares with the best peer's. */
const CONTENDED_WORKERS = [4, 16];

/** How a measured value must stand to its limit. */
type Bound = '≤' | '<' | '≥';

const round3 = (n: number) => Math.round(n * 1000) / 1000;

export function computeTargets(results: Omit<Results, 'targets'>): Target[] {
  const targets: Target[] = [];
  const push = (
    target: string,
    value: number | null | undefined,
    limit: number | null | undefined,
    bound: Bound = '≤',
    issue13?: string,
  ) => {
    if (value == null || limit == null || !Number.isFinite(limit)) return;
    const met = bound === '≤' ? value <= limit : bound === '<' ? value < limit : value >= limit;
    const [shown, bar] = [round3(value), round3(limit)];
    targets.push({
      target,
      value: shown,
      limit: bar,
      met,
      ...(issue13 ? { issue13: `${issue13}: ${shown} ${bound} ${bar}` } : {}),
    });
  };
  const add = (target: string, value: number | undefined, limit: number | undefined) =>
    push(target, value, limit);
  /** The few targets met from below. */
  const atLeast = (target: string, value: number, limit: number, issue13?: string) =>
    push(target, value, limit, '≥', issue13);
  // First, so that the report's line of them follows the issue's order; fairness comes last.
  issue13Targets(results, push);
  const byId = new Map(results.variants.map((v) => [v.id, v]));
  const pingP50 = results.ping.ping?.p50;
  // The handoff and idle targets are the push design's: polling trades them away by design
  // (a retry within pollIntervalMs, a read per pollIntervalMs), so its rows only report.
  for (const tracklock of results.variants.filter(
    (v) => v.library === 'tracklock' && !isPolling(v.id),
  )) {
    const p50 = tracklock.handoff.pair?.p50;
    add(`${tracklock.id} handoff p50 ≤ 4 × PING p50 (ms)`, p50, pingP50 && 4 * pingP50);
    add(`${tracklock.id} handoff p99 ≤ 1 ms`, tracklock.handoff.pair?.p99, 1);
    for (const [peers, factor] of [
      [DEFAULT_PEERS, 10],
      [FAST_PEERS, 3],
    ] as const) {
      for (const id of peers) {
        const peer = byId.get(id)?.handoff.pair?.p50;
        add(`${tracklock.id} handoff p50 ≤ ${id} p50 / ${factor} (ms)`, p50, peer && peer / factor);
      }
    }
    const keys = 2 * keyMajority(tracklock) - 1;
    const bound = (keys * 1000) / DEFAULTS.extendIntervalMs;
    for (const idle of tracklock.cost.idle ?? []) {
      add(
        `${tracklock.id} idle requests/s per lock, ${idle.locks} held ≤ (2M−1)·1000/extendIntervalMs`,
        idle.requestsPerSecondPerLock,
        bound,
      );
    }
    // Issue 13's own line reports these for tracklock at its defaults.
    const issue13 = tracklock.id === DEFAULTS_ID;
    for (const fair of tracklock.fairness ?? []) {
      const shape = `fairness ${fair.processes} processes × ${fair.loopsPerProcess}`;
      const short = `${fair.processes}×${fair.loopsPerProcess}`;
      atLeast(
        `${tracklock.id} ${shape}: least-served process / most-served ≥ ½`,
        fair.leastToMost,
        0.5,
        issue13 ? `fairness ${short} least/most` : undefined,
      );
      push(
        `${tracklock.id} ${shape}: worst wait ≤ 1 s (ms)`,
        fair.wait?.max,
        1000,
        '≤',
        issue13 ? `fairness ${short} worst wait (ms)` : undefined,
      );
      if (fair.processes === 8 && fair.loopsPerProcess === 1) {
        // A fair queue of 8: the others' holds ahead of a waiter, and the handoff to it.
        const hold = fair.hold?.p50;
        const handoff = tracklock.handoff.pair?.p50;
        push(
          `${tracklock.id} ${shape}: wait p99 ≤ 8 × hold p50 + handoff p50 (ms)`,
          fair.wait?.p99,
          hold !== undefined && handoff !== undefined ? 8 * hold + handoff : undefined,
          '≤',
          issue13 ? `8×1 wait p99 against 8 × hold p50 + handoff p50 (ms)` : undefined,
        );
      }
    }
  }
  for (const variant of [...results.variants, ...(results.contention ?? [])]) {
    for (const run of variant.throughput) {
      add(`${variant.id} lost updates, ${run.workers} workers = 0`, run.lostUpdates, 0);
    }
  }
  for (const variant of results.variants) {
    for (const fair of variant.fairness ?? []) {
      const shape = `${fair.processes} processes × ${fair.loopsPerProcess}`;
      add(`${variant.id} lost updates, fairness ${shape} = 0`, fair.lostUpdates, 0);
    }
  }
  semaphoreTargets(results, push);
  return targets;
}

/**
 * Issue 16's: no semaphore lets more holders in than its limit, and the cost of tracklock's
 * waiters does not grow with them as a poller's does: its server calls per second with the
 * most waiters measured are at most twice those with one, and below redis-semaphore's at its
 * default polling.
 */
function semaphoreTargets(
  results: Omit<Results, 'targets'>,
  push: (
    target: string,
    value: number | null | undefined,
    limit: number | null | undefined,
  ) => void,
): void {
  const rows = results.semaphore ?? [];
  for (const row of rows) {
    for (const run of row.throughput) {
      push(`${row.id} over limit, ${run.workers} workers = 0`, run.overLimit, 0);
    }
  }
  const tracklock = rows.find((r) => r.id === SEMAPHORE_ID);
  const one = tracklock?.cost.runs.find((run) => run.waiters === 1);
  const most = tracklock?.cost.runs.at(-1);
  if (!one || !most || most.waiters <= 1) return;
  const w = `${most.waiters} waiting ÷ 1`;
  push(
    `${SEMAPHORE_ID} semaphore cost: server calls/s, ${w} ≤ 2`,
    one.callsPerSecond > 0 ? most.callsPerSecond / one.callsPerSecond : null,
    2,
  );
  const poller = rows.find((r) => r.id === SEMAPHORE_POLLER_ID)?.cost.runs.at(-1);
  push(
    `${SEMAPHORE_ID} semaphore cost: server calls/s, ${most.waiters} waiting ≤ ${SEMAPHORE_POLLER_ID}'s`,
    most.callsPerSecond,
    poller?.waiters === most.waiters ? poller.callsPerSecond : null,
  );
}

/**
 * Issue 13's targets besides fairness (added with tracklock's other fairness targets; each
 * `issue13` label is completed with the value, the bound and the limit): what W
 * waiters cost, the handoff against the floor and the fastest poller, and contention against
 * the peers. Each is left out when the run did not measure both sides.
 */
function issue13Targets(
  results: Omit<Results, 'targets'>,
  push: (
    target: string,
    value: number | null | undefined,
    limit: number | null | undefined,
    bound: Bound,
    issue13: string,
  ) => void,
): void {
  const scale = results.scale?.find((r) => r.id === SCALE_ID);
  const measured = scale?.runs.filter((run) => !run.skipped) ?? [];
  const one = measured.find((run) => run.waiters === 1);
  const most = measured.at(-1);
  if (one && most && most.waiters > 1) {
    const w = `W=${most.waiters.toLocaleString('en-US')} ÷ W=1`;
    for (const [what, field] of [
      ['extension', 'callsPerExtension'],
      ['handoff', 'callsPerHandoff'],
    ] as const) {
      const [top, base] = [most[field], one[field]];
      push(
        `${SCALE_ID} scale: server calls per ${what}, ${w} ≤ 2`,
        top !== null && base ? top / base : null,
        2,
        '≤',
        `scale calls per ${what}, ${w}`,
      );
    }
  }

  const byId = new Map(results.variants.map((v) => [v.id, v]));
  const tracklock = byId.get(DEFAULTS_ID);
  if (!tracklock) return;
  const p50 = tracklock.handoff.pair?.p50;
  for (const id of [FLOOR_ID, FAST_POLLER_ID]) {
    push(
      `${DEFAULTS_ID} handoff p50 ≤ ${id} p50 (ms)`,
      p50,
      byId.get(id)?.handoff.pair?.p50,
      '≤',
      `handoff p50 against ${id}'s (ms)`,
    );
  }
  push(
    `${DEFAULTS_ID} server calls per pair handoff < ${FAST_POLLER_ID}'s`,
    tracklock.handoff.callsPerHandoff,
    byId.get(FAST_POLLER_ID)?.handoff.callsPerHandoff,
    '<',
    `calls per handoff against ${FAST_POLLER_ID}'s`,
  );

  // The locks users would pick instead: neither tracklock nor the bare floor.
  const peers = results.variants.filter(
    (v) => v.library !== 'tracklock' && !v.id.startsWith('bare-'),
  );
  for (const workers of CONTENDED_WORKERS) {
    const rate = (v: VariantResult) =>
      v.throughput.find((t) => t.workers === workers)?.acquisitionsPerSecond;
    const best = peers
      .map((v) => ({ id: v.id, rate: rate(v) }))
      .filter((p): p is { id: string; rate: number } => p.rate !== undefined)
      .sort((a, b) => b.rate - a.rate)[0];
    push(
      `${DEFAULTS_ID} contention acq/s, ${workers} workers ≥ the best peer's (${best?.id})`,
      rate(tracklock),
      best?.rate,
      '≥',
      `acq/s at ${workers} workers against the best peer's (${best?.id})`,
    );
  }
}

function keyMajority(variant: VariantResult): number {
  const match = /keyMajority (\d+)/.exec(variant.settings);
  return Number(match?.[1] ?? DEFAULTS.keyMajority);
}
