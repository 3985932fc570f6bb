/** The targets, computed from one run's numbers (never from constants). */
import { DEFAULTS } from '../../src/index.js';
import type { Results, Target, VariantResult } from './results.js';

/** Peers at their defaults, and at their fastest polling. */
const DEFAULT_PEERS = ['redlock', 'sesame-redlock', 'redis-semaphore'];
const FAST_PEERS = ['redlock-fast', 'redis-semaphore-1ms'];

export function computeTargets(results: Omit<Results, 'targets'>): Target[] {
  const targets: Target[] = [];
  const add = (target: string, value: number | undefined, limit: number | undefined) => {
    if (value === undefined || limit === undefined) return;
    targets.push({ target, value, limit: Math.round(limit * 1000) / 1000, met: value <= limit });
  };
  /** The few targets met from below. */
  const atLeast = (target: string, value: number, limit: number) => {
    targets.push({ target, value, limit, met: value >= limit });
  };
  const byId = new Map(results.variants.map((v) => [v.id, v]));
  const pingP50 = results.ping.ping?.p50;
  for (const tracklock of results.variants.filter((v) => v.library === 'tracklock')) {
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
    for (const fair of tracklock.fairness ?? []) {
      const shape = `fairness ${fair.processes} processes × ${fair.loopsPerProcess}`;
      atLeast(
        `${tracklock.id} ${shape}: least-served process / most-served ≥ ½`,
        fair.leastToMost,
        0.5,
      );
      add(`${tracklock.id} ${shape}: worst wait ≤ 1 s (ms)`, fair.wait?.max, 1000);
      if (fair.processes === 8 && fair.loopsPerProcess === 1) {
        // A fair queue of 8: the others' holds ahead of a waiter, and the handoff to it.
        const hold = fair.hold?.p50;
        const handoff = tracklock.handoff.pair?.p50;
        add(
          `${tracklock.id} ${shape}: wait p99 ≤ 8 × hold p50 + handoff p50 (ms)`,
          fair.wait?.p99,
          hold !== undefined && handoff !== undefined ? 8 * hold + handoff : undefined,
        );
      }
    }
  }
  for (const variant of results.variants) {
    for (const run of variant.throughput) {
      add(`${variant.id} lost updates, ${run.workers} workers = 0`, run.lostUpdates, 0);
    }
    for (const fair of variant.fairness ?? []) {
      const shape = `${fair.processes} processes × ${fair.loopsPerProcess}`;
      add(`${variant.id} lost updates, fairness ${shape} = 0`, fair.lostUpdates, 0);
    }
  }
  return targets;
}

function keyMajority(variant: VariantResult): number {
  const match = /keyMajority (\d+)/.exec(variant.settings);
  return Number(match?.[1] ?? DEFAULTS.keyMajority);
}
