import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { analyse, reportFromLog } from './checker/history.js';
import { SUBSET } from './checker/matrix.js';
import { verdict } from './checker/report.js';
import { runScenario } from './checker/scenario.js';
import { closeKilled, openStore, readStore } from './checker/store.js';
import { startRedisServer } from './helpers/redis-server.js';

// The mutual-exclusion checker on a seeded subset of the fault matrix (`npm run faults` runs
// all of it): worker processes share a lock and a read-modify-write counter in a store
// of its own. The negative controls, broken locks, must show violations: the checker can fail.
const test = suite('checker');

for (const scenario of SUBSET) {
  test(`${scenario.name} [${scenario.mode}]`, async () => {
    const row = await runScenario(scenario, 1);
    const figures = `violations ${row.violations}, lost ${row.lostUpdates}, acquisitions ${row.acquisitions}, refused ${row.refused}`;
    assert.is(verdict(row), 'ok', figures);
  });
}

test('a killed worker\u2019s open section is closed, and its figures come from the log', async () => {
  const store = await startRedisServer();
  try {
    // Worker 1 completes a section and is "killed" inside its second, after its read.
    const worker = await openStore(store.url, 1, false);
    await worker.note('enter');
    const first = await worker.read(undefined);
    assert.ok(first);
    assert.ok(await worker.write(first.counter + 1, first.writes, undefined));
    await worker.note('exit');
    await worker.note('enter');
    await worker.read(undefined);
    await worker.close();
    assert.is(await closeKilled(store.url, 1, 10_000), true);
    const { steps, counter } = await readStore(store.url);
    const report = reportFromLog(steps, 1, 'tracklock');
    assert.equal(report, {
      protocol: 'tracklock',
      acquisitions: 2,
      increments: 1,
      refused: 0,
      aborts: { killed: 1 },
    });
    const figures = analyse(steps, counter, [report]);
    assert.is(figures.lostUpdates, 0);
    // The section it died in is closed: a later one opens after a gap, not inside it.
    assert.is(steps.at(-1)?.kind, 'abort');
    // Closed once: a second look finds it outside any section.
    assert.is(await closeKilled(store.url, 1, 10_000), false);
  } finally {
    await store.stop();
  }
});

test.run();
