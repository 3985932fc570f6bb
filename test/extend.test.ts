import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker } from '../src/index.js';
import { calls, connect } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { bound, sleep } from './helpers/wait.js';

// Each test counts commands, so each gets a server of its own.
const test = suite<{ server: RedisServer }>('extend');

test.before.each(async (ctx) => {
  ctx.server = await startRedisServer();
});

test.after.each(async (ctx) => {
  await ctx.server.stop();
});

/** Hold one lock for `ms` and count the EVALSHA, GET and MGET calls the server ran meanwhile. */
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
    const before = await Promise.all(['evalsha', 'get', 'mget'].map((c) => calls(client, c)));
    await sleep(ms); // a window: what runs in it is counted
    const after = await Promise.all(['evalsha', 'get', 'mget'].map((c) => calls(client, c)));
    const counts = {
      evalsha: (after[0] as number) - (before[0] as number),
      get: (after[1] as number) - (before[1] as number),
      mget: (after[2] as number) - (before[2] as number),
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

test('extensions keep a 300 ms lock alive for five validities with one script per interval', async ({
  server,
}) => {
  const { evalsha, aborted, pttl } = await holdAndCount(server.url, 1500, true);
  assert.not.ok(aborted);
  assert.ok(pttl > 0, `PTTL ${pttl}`);
  // 1500 ms / 100 ms = 15 extensions, each one script for all 3 keys; timers only run late.
  assert.ok(evalsha >= 5, `only ${evalsha} extension scripts ran`);
  assert.ok(evalsha <= 16, `${evalsha} extension scripts: more than one per interval`);
});

test('with NOLOOP our own extensions cause no ownership check: only the scripts read the keys', async ({
  server,
}) => {
  const { evalsha, get, mget } = await holdAndCount(server.url, 600, true);
  assert.ok(evalsha > 0);
  // Each extension script reads each of the 3 keys twice (compare, then re-track).
  assert.is(get, 2 * 3 * evalsha);
  assert.is(mget, 0);
});

test('without NOLOOP each extension echoes back and costs read-only checks, never writes', async ({
  server,
}) => {
  const { evalsha, get, mget, aborted } = await holdAndCount(server.url, 600, false);
  assert.not.ok(aborted);
  assert.ok(mget > 0, `no ownership check for ${evalsha} echoed extensions`);
  assert.ok(mget <= 3 * evalsha + 3, `${mget} checks for ${evalsha} extensions`);
  // No check turned into an extension: still one script per interval.
  assert.ok(evalsha <= 7, `${evalsha} extension scripts in 600 ms at a 100 ms interval`);
  assert.is(get, 2 * 3 * evalsha);
});

test('a key that keeps reading short (clock far behind, no NOLOOP) cannot start an extension loop', async ({
  server,
}) => {
  const admin = await connect(server.url);
  const realNow = Date.now;
  // PXAT from a clock 600 ms behind: every extension's key reads 600 ms short, so its echo
  // finds it expiring before the next planned extension, again and again.
  Date.now = () => realNow() - 600;
  const locker = await createLocker({
    url: server.url,
    keyValidityMs: 1000,
    extendIntervalMs: 450,
    noLoopTracking: false,
  });
  try {
    const lock = await locker.withContext('skewed', bound());
    await admin.sendCommand(['PEXPIRE', 'rueidislock:0:skewed', '300']);
    const before = await calls(admin, 'evalsha');
    await sleep(2000); // a window: what runs in it is counted
    const extensions = (await calls(admin, 'evalsha')) - before;
    // Planned: 2000 / 450, about 5. Early ones at most one per quarter interval: about 18 more.
    // A loop would be hundreds.
    assert.ok(extensions <= 40, `${extensions} extension scripts in 2 s`);
    await lock.release();
  } finally {
    Date.now = realNow;
    admin.destroy();
    await locker.close();
  }
});

test.run();
