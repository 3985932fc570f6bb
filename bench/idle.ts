/**
 * What holding locks costs Redis: hold N locks (default 1) with default options for a while
 * (default 10 s) and print the commands the server ran per second, from INFO commandstats.
 *
 *   node --import tsx bench/idle.ts [--locks N] [--seconds S]
 *
 * Uses REDIS_URL when set (the counts then include everyone else's traffic); otherwise a
 * throwaway redis-server on a free port.
 */
import { parseArgs } from 'node:util';
import { createClient } from '@redis/client';
import { createLocker, DEFAULTS } from '../src/index.js';
import { startRedisServer } from '../test/helpers/redis-server.js';

const { values } = parseArgs({
  options: { locks: { type: 'string', default: '1' }, seconds: { type: 'string', default: '10' } },
  strict: true,
});
const locks = Number(values.locks);
const seconds = Number(values.seconds);
if (!Number.isInteger(locks) || locks < 1 || locks > 100_000)
  throw new RangeError('--locks: 1 to 100000');
if (!(seconds > 0 && seconds <= 600)) throw new RangeError('--seconds: above 0, at most 600');

/** Calls per command name since the server started. */
async function commandStats(client: {
  sendCommand(args: string[]): Promise<unknown>;
}): Promise<Map<string, number>> {
  const info = String(await client.sendCommand(['INFO', 'commandstats']));
  return new Map(
    [...info.matchAll(/cmdstat_([^:]+):calls=(\d+)/g)].map((m) => [m[1] as string, Number(m[2])]),
  );
}

const server = process.env.REDIS_URL ? undefined : await startRedisServer();
const url = process.env.REDIS_URL ?? (server?.url as string);
const client = createClient({ url });
client.on('error', () => {});
const locker = await createLocker({ url, keyPrefix: `idle${process.pid}` });
try {
  await client.connect();
  const held = await Promise.all(
    Array.from({ length: locks }, (_, i) => locker.withContext(`lock${i}`)),
  );
  const before = await commandStats(client);
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const after = await commandStats(client);
  const lost = held.filter((lock) => lock.signal.aborted).length;
  await Promise.all(held.map((lock) => lock.release()));
  // The INFO calls of this script are not the lock's.
  const rows = [...after]
    .map(
      ([command, calls]) =>
        [command, calls - (before.get(command) ?? 0) - (command === 'info' ? 1 : 0)] as const,
    )
    .filter(([, calls]) => calls > 0);
  const sent = rows.filter(([command]) => ['evalsha', 'eval', 'mget'].includes(command));
  const perSecond = (calls: number) => (calls / seconds).toFixed(2);
  console.log(
    `holding ${locks} lock(s) for ${seconds} s, extendIntervalMs ${DEFAULTS.extendIntervalMs}, keyMajority ${DEFAULTS.keyMajority}; ${lost} lost`,
  );
  for (const [command, calls] of rows)
    console.log(
      `  ${command.padEnd(12)} ${String(calls).padStart(8)} calls  ${perSecond(calls).padStart(9)}/s`,
    );
  const sentCalls = sent.reduce((sum, [, calls]) => sum + calls, 0);
  const bound = (locks * (2 * DEFAULTS.keyMajority - 1) * 1000) / DEFAULTS.extendIntervalMs;
  console.log(
    `commands sent by the locker: ${perSecond(sentCalls)}/s (${(sentCalls / seconds / locks).toFixed(2)}/s per lock); calls inside scripts are counted separately above`,
  );
  console.log(
    `RESULT ${JSON.stringify({ locks, seconds, lost, sentPerSecond: sentCalls / seconds, boundPerSecond: bound })}`,
  );
} finally {
  await locker.close();
  await client.close().catch(() => {});
  await server?.stop();
}
