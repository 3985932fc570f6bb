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
  };
}
