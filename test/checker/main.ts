/**
 * `npm run faults [-- --seed N] [--only text] [--kind mutex|semaphore|rw] [--limit N]`: the
 * whole fault matrix, one row per scenario (`--kind`: only that kind's rows; `--limit`: the
 * semaphore rows' limit, with 2N + 1 workers, instead of 2). Exits non-zero when a scenario
 * docs/guarantees.md calls safe shows a violation or a lost update, or a negative control shows
 * none.
 */
import { parseArgs } from 'node:util';
import { MATRIX } from './matrix.js';
import { verdict } from './report.js';
import { labelOf, type Row, runScenario } from './scenario.js';

const KINDS = ['mutex', 'semaphore', 'rw'];

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: '1' },
    only: { type: 'string' },
    kind: { type: 'string' },
    limit: { type: 'string' },
  },
});
const seed = Number(values.seed);
if (values.kind !== undefined && !KINDS.includes(values.kind)) {
  throw new TypeError(`--kind must be one of ${KINDS.join(', ')}, not ${values.kind}`);
}
const limit = values.limit === undefined ? undefined : Number(values.limit);
if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1 && limit <= 16)) {
  throw new RangeError(`--limit must be an integer from 1 to 16, not ${values.limit}`);
}
const scenarios = MATRIX.filter(
  (scenario) => values.kind === undefined || (scenario.kind ?? 'mutex') === values.kind,
).map((scenario) =>
  scenario.kind === 'semaphore' && limit !== undefined ? { ...scenario, limit } : scenario,
);
let passed = 0;
let failed = 0;
for (const scenario of scenarios) {
  if (values.only && !labelOf(scenario).includes(values.only)) continue;
  try {
    const row = await runScenario(scenario, seed);
    console.log(formatRow(row));
    if (verdict(row) === 'FAIL') failed++;
    else passed++;
  } catch (error) {
    console.log(`FAIL  ${labelOf(scenario)}: ${(error as Error).message}`);
    failed++;
  }
}
console.log(`\n${passed} passed, ${failed} failed (seed ${seed})`);
process.exitCode = failed > 0 ? 1 : 0;

function formatRow(row: Row): string {
  const aborts = Object.entries(row.aborts)
    .map(([why, n]) => `${why} ${n}`)
    .join(', ');
  // A counted lock has no counter: what it shows is how many were inside at once.
  const counted = row.kind !== 'mutex';
  return [
    verdict(row).padEnd(4),
    row.label.padEnd(62),
    `acq ${row.acquisitions}`,
    ...(counted ? [`peak ${row.peak}`] : [`incr ${row.increments}`]),
    `violations ${row.violations}`,
    ...(counted ? [`excused ${row.excused}`] : []),
    ...(counted ? [] : [`lost ${row.lostUpdates}`, `refused ${row.refused}`]),
    `gap ${row.longestGapMs} ms${row.maxGapMs === undefined ? '' : ` (max ${row.maxGapMs})`}`,
    ...(row.goWorkers > 0 ? [`go: acq ${row.go.acquisitions} incr ${row.go.increments}`] : []),
    ...(row.starved === undefined
      ? []
      : [
          `after fault: ${row.starved.length ? `worker ${row.starved.join(', ')} never got it` : 'all got it'}`,
        ]),
    `aborts: ${aborts || 'none'}`,
    `${row.seconds} s`,
    ...[...new Set(row.problems)].map((problem) => {
      const times = row.problems.filter((p) => p === problem).length;
      return `\n      ${problem}${times > 1 ? ` (${times} times)` : ''}`;
    }),
  ].join('  ');
}
