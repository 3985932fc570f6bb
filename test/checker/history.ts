/** What a run's log says: the figures of one row of the fault matrix. */
import type { Step } from './store.js';
import type { WorkerReport } from './worker.js';

export interface Figures {
  readonly acquisitions: number;
  /** Writes the store accepted, per the workers. */
  readonly increments: number;
  /** Accepted writes whose read came before another worker's write: two holders at once. */
  readonly violations: number;
  /** Increments the counter does not show. */
  readonly lostUpdates: number;
  /** Stale tokens refused by the fenced store. */
  readonly refused: number;
  /** Sections cut short by the signal, by reason. */
  readonly aborts: Record<string, number>;
  /** The longest time, in ms, between one section's end and the next one's start. */
  readonly longestGapMs: number;
  /** Acquisitions and accepted writes of the workers that speak Go's protocol. */
  readonly go: { readonly acquisitions: number; readonly increments: number };
}

/**
 * The workers among `running` that entered no critical section at or after `sinceUs` (the
 * store's clock, µs): those the run left behind once its fault was over.
 */
export function starvedSince(
  steps: readonly Step[],
  sinceUs: number,
  running: readonly number[],
): number[] {
  const entered = new Set(
    steps.filter((step) => step.kind === 'enter' && step.at >= sinceUs).map((step) => step.worker),
  );
  return running.filter((worker) => !entered.has(worker));
}

/**
 * The report of a worker that was killed, from the store's log: its sections entered (a lower
 * bound on its acquisitions: one that aborted before entering left no step), its writes the
 * store accepted, its refusals, and its aborts by reason (a section it was killed in was closed
 * as 'killed' by the coordinator).
 */
export function reportFromLog(
  steps: readonly Step[],
  worker: number,
  protocol: WorkerReport['protocol'],
): WorkerReport {
  const own = steps.filter((step) => step.worker === worker);
  const aborts: Record<string, number> = {};
  for (const step of own) {
    if (step.kind === 'abort' && step.detail !== 'refused') {
      aborts[step.detail] = (aborts[step.detail] ?? 0) + 1;
    }
  }
  return {
    protocol,
    acquisitions: own.filter((step) => step.kind === 'enter').length,
    increments: own.filter((step) => step.kind === 'write' || step.kind === 'stale').length,
    refused: own.filter((step) => step.kind === 'refused').length,
    aborts,
  };
}

export function analyse(
  steps: readonly Step[],
  counter: number,
  reports: readonly WorkerReport[],
): Figures {
  const increments = reports.reduce((sum, r) => sum + r.increments, 0);
  const aborts: Record<string, number> = {};
  for (const report of reports) {
    for (const [why, count] of Object.entries(report.aborts))
      aborts[why] = (aborts[why] ?? 0) + count;
  }
  const inside = new Set<number>();
  let emptySince: number | undefined;
  let longestGap = 0;
  for (const step of steps) {
    if (step.kind === 'enter') {
      if (inside.size === 0 && emptySince !== undefined) {
        longestGap = Math.max(longestGap, step.at - emptySince);
      }
      inside.add(step.worker);
    } else if (step.kind === 'exit' || step.kind === 'abort') {
      inside.delete(step.worker);
      if (inside.size === 0) emptySince = step.at;
    }
  }
  return {
    acquisitions: reports.reduce((sum, r) => sum + r.acquisitions, 0),
    increments,
    violations: steps.filter((step) => step.kind === 'stale').length,
    lostUpdates: increments - counter,
    refused: steps.filter((step) => step.kind === 'refused').length,
    aborts,
    longestGapMs: Math.round(longestGap / 1000),
    go: {
      acquisitions: sumOf(reports, 'go', 'acquisitions'),
      increments: sumOf(reports, 'go', 'increments'),
    },
  };
}

function sumOf(
  reports: readonly WorkerReport[],
  protocol: WorkerReport['protocol'],
  figure: 'acquisitions' | 'increments',
): number {
  return reports
    .filter((report) => report.protocol === protocol)
    .reduce((sum, report) => sum + report[figure], 0);
}
