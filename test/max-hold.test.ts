import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, type Locker, MaxHoldError } from '../src/index.js';
import { connect, keysOf, provideRedis, type TestRedis } from './helpers/redis.js';
import { abortedWithin, bound } from './helpers/wait.js';

// maxHoldMs (issue 15): a cap on how long a lock is held, so that a stuck holder cannot keep it
// for ever by its extensions.
const test = suite<{ redis: TestRedis; lockers: Locker[] }>('maxHoldMs');

test.before(async (ctx) => {
  ctx.redis = await provideRedis();
});

test.before.each((ctx) => {
  ctx.lockers = [];
});

test.after.each(async (ctx) => {
  await Promise.all(ctx.lockers.map((locker) => locker.close()));
});

test.after(async (ctx) => {
  await ctx.redis.stop();
});

async function locker(ctx: { redis: TestRedis; lockers: Locker[] }, maxHoldMs?: number) {
  const created = await createLocker({
    url: ctx.redis.url,
    keyValidityMs: 1000,
    ...(maxHoldMs === undefined ? {} : { maxHoldMs }),
  });
  ctx.lockers.push(created);
  return created;
}

test('a lock held for maxHoldMs stops extending, aborts with MaxHoldError and lets go of its keys', async (ctx) => {
  const holder = await locker(ctx, 1500);
  const started = performance.now();
  const lock = await holder.withContext('capped', bound());
  // Past a validity: extensions kept it until the cap.
  const reason = await abortedWithin(lock.signal, 10_000);
  const heldMs = performance.now() - started;
  assert.instance(reason, MaxHoldError);
  assert.is((reason as MaxHoldError).code, 'ERR_MAX_HOLD');
  assert.is((reason as MaxHoldError).maxHoldMs, 1500);
  assert.ok(heldMs >= 1500, `aborted after ${heldMs} ms`);
  const client = await connect(ctx.redis.url);
  try {
    assert.is(await client.exists(keysOf('capped')), 0, 'the keys were not released');
  } finally {
    client.destroy();
  }
  assert.is(await lock.release(), false);
});

test('a waiter gets a capped lock as soon as the cap ends it', async (ctx) => {
  const [holder, waiter] = [await locker(ctx, 800), await locker(ctx)];
  const lock = await holder.withContext('next', bound());
  const next = await waiter.withContext('next', bound(10_000));
  assert.ok(lock.signal.aborted);
  assert.instance(lock.signal.reason, MaxHoldError);
  assert.ok((next.token as bigint) > (lock.token as bigint));
  await next.release();
});

test('a call may set its own maxHoldMs, over the locker default or without one', async (ctx) => {
  const holder = await locker(ctx);
  const lock = await holder.withContext('per-call', { maxHoldMs: 300, ...bound() });
  assert.instance(await abortedWithin(lock.signal, 5000), MaxHoldError);
  const tried = await holder.tryWithContext('per-call-try', { maxHoldMs: 300 });
  assert.instance(await abortedWithin(tried.signal, 5000), MaxHoldError);
  const capped = await locker(ctx, 300);
  const longer = await capped.withContext('longer', { maxHoldMs: 60_000 });
  await new Promise((resolve) => setTimeout(resolve, 600)); // the locker's cap would have ended it
  assert.not.ok(longer.signal.aborted, 'the call\u2019s maxHoldMs did not win');
  assert.is(await longer.release(), true);
});

test('withLock rejects with MaxHoldError when fn outlives the cap', async (ctx) => {
  const holder = await locker(ctx);
  const error = await holder
    .withLock('slow', (signal) => abortedWithin(signal, 5000), { maxHoldMs: 200 })
    .catch((e: unknown) => e);
  assert.instance(error, MaxHoldError);
});

test('a lock handed from a waiter of the same locker keeps that waiter\u2019s cap', async (ctx) => {
  const holder = await locker(ctx);
  const first = await holder.withContext('local', bound());
  const waiting = holder.withContext('local', { maxHoldMs: 300, ...bound(10_000) });
  await new Promise((resolve) => setTimeout(resolve, 20));
  await first.release();
  const passed = await waiting;
  assert.instance(await abortedWithin(passed.signal, 5000), MaxHoldError);
});

test('maxHoldMs is checked', async (ctx) => {
  for (const bad of [0, -1, 1.5]) {
    const error = await createLocker({ maxHoldMs: bad }).catch((e: unknown) => e);
    assert.instance(error, RangeError, String(bad));
    assert.match((error as Error).message, /maxHoldMs/);
  }
  const holder = await locker(ctx);
  const error = await holder.withContext('bad', { maxHoldMs: -5 }).catch((e: unknown) => e);
  assert.instance(error, RangeError);
  assert.match((error as Error).message, /maxHoldMs/);
});

test.run();
