import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, type LockError } from '../src/index.js';
import { provideRedis, type TestRedis } from './helpers/redis.js';
import { startRedisServer } from './helpers/redis-server.js';

// PXAT carries this process's wall clock to the server: these tests set it back.
const test = suite<{ redis: TestRedis }>('clock');
const realNow = Date.now;

test.before(async (ctx) => {
  ctx.redis = await provideRedis();
});

test.after.each(() => {
  Date.now = realNow;
});

test.after(async (ctx) => {
  await ctx.redis.stop();
});

test('a clock far behind the server is warned of at connect', async ({ redis }) => {
  const warnings: Error[] = [];
  const onWarning = (warning: Error) => warnings.push(warning);
  process.on('warning', onWarning);
  Date.now = () => realNow() - 60_000;
  try {
    const locker = await createLocker({ url: redis.url });
    await locker.close();
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', onWarning);
  }
  const skew = warnings.find((w) => (w as { code?: string }).code === 'TRACKLOCK_CLOCK_SKEW');
  assert.ok(skew, 'no clock warning');
  assert.match(skew.message, /behind/);
});

test('a clock behind three nodes is warned of once per locker, not once per node', async () => {
  const servers = await Promise.all([startRedisServer(), startRedisServer(), startRedisServer()]);
  const warnings: Error[] = [];
  const onWarning = (warning: Error) => {
    if ((warning as { code?: string }).code === 'TRACKLOCK_CLOCK_SKEW') warnings.push(warning);
  };
  process.on('warning', onWarning);
  Date.now = () => realNow() - 60_000;
  try {
    const locker = await createLocker({ nodes: servers.map((server) => server.url) });
    await locker.close();
    await new Promise((resolve) => setImmediate(resolve));
    assert.is(warnings.length, 1);
  } finally {
    process.off('warning', onWarning);
    await Promise.all(servers.map((server) => server.stop()));
  }
});

test('keys that expire as soon as they are set (clock behind by more than the validity) are an error, not a busy lock', async ({
  redis,
}) => {
  process.on('warning', ignore);
  Date.now = () => realNow() - 60_000;
  const locker = await createLocker({ url: redis.url, keyValidityMs: 5000 });
  try {
    const error = await locker.tryWithContext('skewed').catch((e: unknown) => e);
    assert.is((error as LockError).code, 'ERR_UNAVAILABLE');
    assert.match(String((error as Error).cause), /clock/);
  } finally {
    await locker.close();
    process.off('warning', ignore);
  }
});

test('fallbackSetPx is immune to the clock', async ({ redis }) => {
  Date.now = () => realNow() - 60_000;
  const locker = await createLocker({ url: redis.url, fallbackSetPx: true });
  try {
    const lock = await locker.tryWithContext('relative');
    assert.not.ok(lock.signal.aborted);
    assert.is(await lock.release(), true);
  } finally {
    await locker.close();
  }
});

function ignore() {}

test.run();
