import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { analyse, countCrowds, reportFromLog } from './checker/history.js';
import { SUBSET } from './checker/matrix.js';
import { verdict } from './checker/report.js';
import { labelOf, runScenario } from './checker/scenario.js';
import { closeKilled, openStore, readStore, type Step } from './checker/store.js';
import { startRedisServer } from './helpers/redis-server.js';

// The mutual-exclusion checker on a seeded subset of the fault matrix (`npm run faults` runs
// all of it): worker processes share a lock and a read-modify-write counter in a store
// of its own. The negative controls, broken locks, must show violations: the checker can fail.
const test = suite('checker');

for (const scenario of SUBSET) {
  test(labelOf(scenario), async () => {
    const row = await runScenario(scenario, 1);
    const figures = `violations ${row.violations}, lost ${row.lostUpdates}, acquisitions ${row.acquisitions}, refused ${row.refused}, peak ${row.peak}`;
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

test('the store finds a semaphore past its limit, a read beside a writer and a write beside a reader crowded', async () => {
  const store = await startRedisServer();
  const workers = await Promise.all([0, 1, 2].map((id) => openStore(store.url, id, false)));
  const [a, b, c] = workers as [(typeof workers)[0], (typeof workers)[0], (typeof workers)[0]];
  try {
    assert.is(await a.enter('permit', 2, 1n), false);
    assert.is(await b.enter('permit', 2, 2n), false);
    assert.is(await c.enter('permit', 2, 3n), true);
    // An exit or an abort leaves: there is room again.
    await c.note('abort', 'lost');
    await b.note('exit');
    assert.is(await b.enter('permit', 2, 4n), false);
    await a.note('exit');
    await b.note('exit');
    assert.is(await a.enter('write', 1, 5n), false);
    assert.is(await b.enter('read', 1, 6n), true);
    await a.note('exit');
    assert.is(await c.enter('read', 1, 7n), false);
    assert.is(await a.enter('write', 1, 8n), true);
    const { steps } = await readStore(store.url);
    assert.equal(
      steps.filter((step) => step.kind === 'crowded').map((step) => step.worker),
      [2, 1, 0],
    );
  } finally {
    await Promise.all(workers.map((worker) => worker.close()));
    await store.stop();
  }
});

test('a crowded enter is a violation when the sections crowding it reach their exit, and excused when one aborts', () => {
  let at = 0;
  const step = (worker: number, kind: Step['kind'], detail = ''): Step => ({
    at: at++,
    worker,
    kind,
    detail,
  });
  // Limit 1: worker 1 enters beside worker 0; both go on to their exit.
  const both = [
    step(0, 'enter', 'permit 1'),
    step(1, 'crowded'),
    step(1, 'enter', 'permit 2'),
    step(0, 'exit'),
    step(1, 'exit'),
  ];
  assert.equal(countCrowds(both, 1), { violations: 1, excused: 0 });
  // Worker 0 had lost the lock: its abort reached the store after worker 1 entered.
  const late = [
    step(0, 'enter', 'permit 1'),
    step(1, 'crowded'),
    step(1, 'enter', 'permit 2'),
    step(0, 'abort', 'ERR_LOCK_LOST disconnected'),
    step(1, 'exit'),
  ];
  assert.equal(countCrowds(late, 1), { violations: 0, excused: 1 });
  // A write beside a reader that completes; a read beside a writer that completes.
  const rw = [
    step(0, 'enter', 'read 1'),
    step(1, 'crowded'),
    step(1, 'enter', 'write 2'),
    step(2, 'crowded'),
    step(2, 'enter', 'read 3'),
    step(0, 'exit'),
    step(1, 'exit'),
    step(2, 'exit'),
  ];
  assert.equal(countCrowds(rw, 1), { violations: 2, excused: 0 });
});

test.run();
