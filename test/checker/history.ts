/** What a run's log says: the figures of one row of the fault matrix. */
import type { Role, Step } from './store.js';
import type { WorkerReport } from './worker.js';

export interface Figures {
  readonly acquisitions: number;
  /** Writes the store accepted, per the workers. */
  readonly increments: number;
  /**
   * Accepted writes whose read came before another worker's write: two holders at once; for a
   * counted lock, enters that found it crowded by sections that went on to their exit
   * (`countCrowds`).
   */
  readonly violations: number;
  /**
   * A counted lock's enters the store found crowded only by sections that ended in an abort
   * (`countCrowds`).
   */
  readonly excused: number;
  /** Increments the counter does not show. */
  readonly lostUpdates: number;
  /** Stale tokens refused by the fenced store. */
  readonly refused: number;
  /** Sections cut short by the signal, by reason. */
  readonly aborts: Record<string, number>;
  /** The longest time, in ms, between one section's end and the next one's start. */
  readonly longestGapMs: number;
  /** The most workers inside a section at once. */
  readonly peak: number;
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

/**
 * A counted lock's crowded enters (store.ts logs 'crowded' just before the 'enter' of one that
 * finds more inside than the lock allows), judged as a mutex's write is: by what the sections
 * went on to do. A section that ended in an abort was a holder that learnt the lock had gone
 * and stopped, as the mutex's holder that looks before its write and does not write; the store
 * hears of the abort by a note that races the lock's own release of what it held (and loses
 * when its process is scheduled out just then), so it may still count the holder when the next
 * one enters. An enter is a violation when it is crowded by sections that reached their exit,
 * its own among them (`excused` otherwise). `limit`: a semaphore's.
 */
export function countCrowds(
  steps: readonly Step[],
  limit: number,
): { violations: number; excused: number } {
  // How each section ends: the next 'exit' or 'abort' of its worker (none: as an exit).
  const completes = new Map<number, boolean>();
  const next = new Map<number, boolean>();
  for (let i = steps.length - 1; i >= 0; i--) {
    const step = steps[i] as Step;
    if (step.kind === 'exit' || step.kind === 'abort') next.set(step.worker, step.kind === 'exit');
    else if (step.kind === 'enter') completes.set(i, next.get(step.worker) ?? true);
  }
  const inside = new Map<number, { role: Role; completes: boolean }>();
  let violations = 0;
  let excused = 0;
  steps.forEach((step, i) => {
    if (step.kind === 'enter') {
      const role = step.detail.split(' ')[0] as Role;
      inside.set(step.worker, { role, completes: completes.get(i) ?? true });
    } else if (step.kind === 'exit' || step.kind === 'abort') {
      inside.delete(step.worker);
    } else if (step.kind === 'crowded') {
      const entering = steps[i + 1];
      const others = [...inside.values()].filter((section) => section.completes);
      const role = entering?.detail.split(' ')[0] as Role;
      const count = (r: Role) => others.filter((section) => section.role === r).length;
      const crowded =
        completes.get(i + 1) !== false &&
        (role === 'permit'
          ? count('permit') + 1 > limit
          : role === 'read'
            ? count('write') > 0
            : others.length > 0);
      if (crowded) violations++;
      else excused++;
    }
  });
  return { violations, excused };
}

export function analyse(
  steps: readonly Step[],
  counter: number,
  reports: readonly WorkerReport[],
  limit = 1,
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
  let peak = 0;
  for (const step of steps) {
    if (step.kind === 'enter') {
      if (inside.size === 0 && emptySince !== undefined) {
        longestGap = Math.max(longestGap, step.at - emptySince);
      }
      inside.add(step.worker);
      peak = Math.max(peak, inside.size);
    } else if (step.kind === 'exit' || step.kind === 'abort') {
      inside.delete(step.worker);
      if (inside.size === 0) emptySince = step.at;
    }
  }
  const crowds = countCrowds(steps, limit);
  return {
    acquisitions: reports.reduce((sum, r) => sum + r.acquisitions, 0),
    increments,
    violations: steps.filter((step) => step.kind === 'stale').length + crowds.violations,
    excused: crowds.excused,
    lostUpdates: increments - counter,
    refused: steps.filter((step) => step.kind === 'refused').length,
    aborts,
    longestGapMs: Math.round(longestGap / 1000),
    peak,
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
