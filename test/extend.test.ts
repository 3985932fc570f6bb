import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker } from '../src/index.js';
import { calls, connect, sleep } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';

// Each test counts commands, so each gets a server of its own.
const test = suite<{ server: RedisServer }>('extend');
const bound = () => ({ signal: AbortSignal.timeout(5000) });

test.before.each(async (ctx) => {
  ctx.server = await startRedisServer();
});

test.after.each(async (ctx) => {
  await ctx.server.stop();
});

/** Hold one lock for `ms` and return how many EVALSHA and GET calls the server ran meanwhile. */
async function holdAndCount(url: string, ms: number, noLoopTracking: boolean) {
  const client = await connect(url);
  const locker = await createLocker({
    url,
    keyValidityMs: 300,
    extendIntervalMs: 100,
    noLoopTracking,
  });
  try {
    const lock = await locker.withContext('held', bound());
    const [evalsha, get] = [await calls(client, 'evalsha'), await calls(client, 'get')];
    await sleep(ms);
    const counts = {
      evalsha: (await calls(client, 'evalsha')) - evalsha,
      get: (await calls(client, 'get')) - get,
      aborted: lock.signal.aborted,
      pttl: await client.pTTL('rueidislock:0:held'),
    };
    await lock.release();
    return counts;
  } finally {
    await locker.close();
    await client.close();
  }
}

test('extensions keep a 300 ms lock for five validities at 3 scripts per 100 ms interval', async ({
  server,
}) => {
  const { evalsha, aborted, pttl } = await holdAndCount(server.url, 1500, true);
  assert.not.ok(aborted);
  assert.ok(pttl > 0, `PTTL ${pttl}`);
  // 1500 ms / 100 ms = 15 rounds of 3 keys; timers only ever run late, so never more.
  assert.ok(evalsha >= 3 * 5, `only ${evalsha} extension scripts ran`);
  assert.ok(evalsha <= 3 * 16, `${evalsha} extension scripts: more than one per key per interval`);
});

test('with NOLOOP our own extensions cause no ownership check: only the scripts read the keys', async ({
  server,
}) => {
  const { evalsha, get } = await holdAndCount(server.url, 600, true);
  // Each extension script reads its key twice (compare, then re-track); nothing else reads.
  assert.ok(evalsha > 0);
  assert.is(get, 2 * evalsha);
});

test('without NOLOOP each extension echoes back and costs one read-only check per key', async ({
  server,
}) => {
  const { evalsha, get, aborted } = await holdAndCount(server.url, 600, false);
  assert.not.ok(aborted);
  assert.ok(get > 2 * evalsha, `${get} GETs for ${evalsha} scripts`);
  assert.ok(
    get <= 3 * evalsha + 3,
    `${get} GETs for ${evalsha} scripts: checks answered by writes?`,
  );
});

test.run();
