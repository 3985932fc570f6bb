/**
 * `npm run soak [-- --minutes N]` (default 2; not in CI): random fault scenarios with random
 * seeds until the time is up, then many names churned by two lockers while connections are
 * killed. Reports acquisitions, violations and lost updates where docs/guarantees.md says safe,
 * leaked handles and heap growth. Exits non-zero on a violation where safe, or a leak.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { createClient } from '@redis/client';
import { createLocker } from '../../src/index.js';
import { startRedisServer } from '../helpers/redis-server.js';
import { MATRIX } from './matrix.js';
import { mulberry32 } from './random.js';
import { labelOf, runScenario } from './scenario.js';

const { values } = parseArgs({
  options: { minutes: { type: 'string', default: '2' }, seed: { type: 'string', default: '7' } },
});
const minutes = Number(values.minutes);
const random = mulberry32(Number(values.seed));
const scenarios = MATRIX.filter((scenario) => scenario.safe);
const churnMs = Math.min(60_000, minutes * 15_000);
const end = Date.now() + minutes * 60_000 - churnMs;

let runs = 0;
let acquisitions = 0;
let harm = 0;
while (Date.now() < end) {
  const scenario = scenarios[Math.floor(random() * scenarios.length)];
  if (!scenario) break;
  const seed = Math.floor(random() * 1e9);
  const row = await runScenario(scenario, seed);
  runs++;
  acquisitions += row.acquisitions;
  harm += row.violations + row.lostUpdates;
  console.log(
    `${labelOf(scenario)} seed ${seed}: acq ${row.acquisitions}, violations ${row.violations}, lost ${row.lostUpdates}`,
  );
}

const churn = await churnNames(churnMs);
console.log(
  `\nsoak: ${runs} scenario runs, ${acquisitions} acquisitions, ${harm} violations + lost updates where safe;`,
  `churn: ${churn.cycles} acquire/release cycles on ${churn.names} names, heap ${churn.heapStartMb} -> ${churn.heapEndMb} MB, handles left after close: ${churn.leftHandles.length ? churn.leftHandles.join(', ') : 'none'}`,
);
process.exitCode = harm > 0 || churn.leftHandles.length > 0 ? 1 : 0;

/** Two lockers take and release many names at random while their connections get killed. */
async function churnNames(ms: number) {
  const server = await startRedisServer();
  const baseline = process.getActiveResourcesInfo();
  const names = 1000;
  const heap = () => Math.round(process.memoryUsage().heapUsed / 1e5) / 10;
  const lockers = await Promise.all([0, 1].map(() => createLocker({ url: server.url })));
  const admin = createClient({ url: server.url });
  admin.on('error', () => {});
  await admin.connect();
  let cycles = 0;
  const heapStartMb = heap();
  const stop = Date.now() + ms;
  const killer = (async () => {
    while (Date.now() < stop) {
      await sleep(2000);
      await admin
        .sendCommand(['CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes'])
        .catch(() => {});
    }
  })();
  await Promise.all(
    Array.from({ length: 50 }, async (_, slot) => {
      const locker = lockers[slot % 2];
      while (Date.now() < stop && locker) {
        const name = `churn:${Math.floor(random() * names)}`;
        const lock = await locker
          .withContext(name, { waitTimeoutMs: 200, signal: AbortSignal.timeout(5000) })
          .catch(() => undefined);
        if (!lock) continue;
        cycles++;
        await sleep(random() * 5);
        await lock.release().catch(() => {});
      }
    }),
  );
  await killer;
  const heapEndMb = heap();
  await Promise.all(lockers.map((locker) => locker.close()));
  admin.destroy();
  await server.stop();
  await sleep(100);
  const leftHandles = process.getActiveResourcesInfo();
  for (const handle of baseline) {
    const at = leftHandles.indexOf(handle);
    if (at >= 0) leftHandles.splice(at, 1);
  }
  return { cycles, names, heapStartMb, heapEndMb, leftHandles };
}
