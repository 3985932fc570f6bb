import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { SUBSET } from './checker/matrix.js';
import { verdict } from './checker/report.js';
import { runScenario } from './checker/scenario.js';

// The mutual-exclusion checker on a seeded subset of the fault matrix (`npm run faults` runs
// all of it): three worker processes share a lock and a read-modify-write counter in a store
// of its own. The negative controls, broken locks, must show violations: the checker can fail.
const test = suite('checker');

for (const scenario of SUBSET) {
  test(`${scenario.name} [${scenario.mode}]`, async () => {
    const row = await runScenario(scenario, 1);
    const figures = `violations ${row.violations}, lost ${row.lostUpdates}, acquisitions ${row.acquisitions}, refused ${row.refused}`;
    assert.is(verdict(row), 'ok', figures);
  });
}

test.run();
