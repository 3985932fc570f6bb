/**
 * `npm run faults [-- --seed N] [--only text]`: the whole fault matrix, one row per scenario.
 * Exits non-zero when a scenario docs/guarantees.md calls safe shows a violation or a lost update, or
 * a negative control shows none.
 */
import { parseArgs } from 'node:util';
import { MATRIX } from './matrix.js';
import { verdict } from './report.js';
import { type Row, runScenario } from './scenario.js';

const { values } = parseArgs({
  options: { seed: { type: 'string', default: '1' }, only: { type: 'string' } },
});
const seed = Number(values.seed);
let passed = 0;
let failed = 0;
for (const scenario of MATRIX) {
  if (values.only && !scenario.name.includes(values.only)) continue;
  try {
    const row = await runScenario(scenario, seed);
    console.log(formatRow(row));
    if (verdict(row) === 'FAIL') failed++;
    else passed++;
  } catch (error) {
    console.log(`FAIL  ${scenario.name} [${scenario.mode}]: ${(error as Error).message}`);
    failed++;
  }
}
console.log(`\n${passed} passed, ${failed} failed (seed ${seed})`);
process.exitCode = failed > 0 ? 1 : 0;

function formatRow(row: Row): string {
  const aborts = Object.entries(row.aborts)
    .map(([why, n]) => `${why} ${n}`)
    .join(', ');
  return [
    verdict(row).padEnd(4),
    `${row.scenario} [${row.mode}]`.padEnd(62),
    `acq ${row.acquisitions}`,
    `incr ${row.increments}`,
    `violations ${row.violations}`,
    `lost ${row.lostUpdates}`,
    `refused ${row.refused}`,
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
