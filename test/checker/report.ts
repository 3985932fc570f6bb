import type { Row } from './scenario.js';

/**
 * A safe scenario must show no violation and no lost update; a negative control must show
 * some; the others (where the README says tracklock alone is not safe) are reported only.
 */
export function verdict(row: Row): 'ok' | 'FAIL' | 'seen' {
  const harm = row.violations + row.lostUpdates;
  if (row.mode === 'no-nx' || row.mode === 'no-abort') return harm > 0 ? 'ok' : 'FAIL';
  if (row.safe) return harm === 0 && row.acquisitions > 0 ? 'ok' : 'FAIL';
  return 'seen';
}
