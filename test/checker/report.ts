import type { Row } from './scenario.js';
import type { Mode } from './worker.js';

/** The broken locks (worker.ts), which must show violations. */
const NEGATIVE_CONTROLS: readonly Mode[] = ['no-nx', 'no-abort', 'no-count', 'no-writer-check'];

/**
 * A safe scenario must show no violation and no lost update; a negative control must show
 * some; the others (where docs/guarantees.md says tracklock alone is not safe) are reported only.
 */
export function verdict(row: Row): 'ok' | 'FAIL' | 'seen' {
  const harm = row.violations > 0 || row.lostUpdates !== 0;
  if (NEGATIVE_CONTROLS.includes(row.mode)) return harm ? 'ok' : 'FAIL';
  // A row that says what its fault must do to a holder (leave it stale for the fenced store
  // to refuse, or abort it) shows that the fault landed.
  const tested =
    (!row.expectRefused || row.refused > 0) &&
    (row.expectAbort === undefined || (row.aborts[row.expectAbort] ?? 0) > 0);
  // A row with Go workers shows that they got the lock too; a row with a bound on the gap,
  // that the others went on without the worker its fault took out; a row that asks for it,
  // that every worker still running got the lock again after the fault; a counted lock that
  // must be seen shared, that two were inside at once.
  const moving =
    (row.goWorkers === 0 || row.go.increments > 0) &&
    (row.maxGapMs === undefined || row.longestGapMs <= row.maxGapMs) &&
    (row.starved === undefined || row.starved.length === 0) &&
    (!row.expectShared || row.peak >= 2) &&
    row.problems.length === 0;
  if (row.safe) return !harm && row.acquisitions > 0 && tested && moving ? 'ok' : 'FAIL';
  return 'seen';
}
