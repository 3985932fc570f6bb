import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, type Locker, LockLostError } from '../src/index.js';
import {
  type Client,
  calls,
  connect,
  keysOf,
  provideRedis,
  type TestRedis,
} from './helpers/redis.js';
import { abortedWithin, bound, sleep, until } from './helpers/wait.js';

const test = suite<{ redis: TestRedis; client: Client; a: Locker; b: Locker }>('loss');
let n = 0;
const fresh = () => `loss-${process.pid}-${++n}`;
const key = (i: number, name: string) => `rueidislock:${i}:${name}`;

test.before(async (ctx) => {
  ctx.redis = await provideRedis();
  ctx.client = await connect(ctx.redis.url);
  // A long validity: a loss seen within the test's bound can only come from an invalidation.
  const options = { url: ctx.redis.url, keyValidityMs: 30_000, commandTimeoutMs: 5000 };
  ctx.a = await createLocker(options);
  ctx.b = await createLocker(options);
});

test.after(async (ctx) => {
  await ctx.a.close();
  await ctx.b.close();
  await ctx.client.close();
  await ctx.redis.stop();
});

test('deleting a majority of the keys aborts the signal with LockLostError and deletes the rest', async ({
  a,
  client,
}) => {
  const name = fresh();
  const lock = await a.withContext(name, bound());
  await client.del([key(0, name), key(1, name)]);
  const reason = await abortedWithin(lock.signal, 5000);
  assert.instance(reason, LockLostError);
  assert.is((reason as LockLostError).code, 'ERR_LOCK_LOST');
  assert.is((reason as LockLostError).loss, 'changed');
  await lock.release().then((held) => assert.is(held, false));
  assert.is(await client.exists(key(2, name)), 0);
});

test('overwriting a majority of the keys aborts the signal and leaves the new values alone', async ({
  a,
  client,
}) => {
  const name = fresh();
  const lock = await a.withContext(name, bound());
  await client.set(key(1, name), 'intruder');
  await client.set(key(2, name), 'intruder');
  assert.instance(await abortedWithin(lock.signal, 5000), LockLostError);
  await lock.release();
  assert.is(await client.get(key(1, name)), 'intruder');
  assert.is(await client.get(key(2, name)), 'intruder');
  await client.del([key(1, name), key(2, name)]);
});

test('forceWithContext from another locker aborts the holder', async ({ a, b }) => {
  const name = fresh();
  const lock = await a.withContext(name, bound());
  const forced = await b.forceWithContext(name);
  assert.instance(await abortedWithin(lock.signal, 5000), LockLostError);
  assert.not.ok(forced.signal.aborted);
  assert.is(await forced.release(), true);
});

test('forceWithContext from the same locker aborts its own earlier holder', async ({ a }) => {
  const name = fresh();
  const lock = await a.withContext(name, bound());
  const forced = await a.forceWithContext(name);
  assert.instance(await abortedWithin(lock.signal, 5000), LockLostError);
  assert.not.ok(forced.signal.aborted);
  await forced.release();
});

test('deleting one of three keys does not abort the lock', async ({ client }) => {
  const url = client.options?.url as string;
  const locker = await createLocker({ url, keyValidityMs: 600, extendIntervalMs: 100 });
  try {
    const name = fresh();
    const lock = await locker.withContext(name, bound());
    await client.del(key(0, name));
    // A window, not a wait: more than two validities, in which several extensions ran on the
    // two keys left and the lock must not be lost.
    await sleep(1500);
    assert.not.ok(lock.signal.aborted, String(lock.signal.reason));
    assert.is(await lock.release(), true);
  } finally {
    await locker.close();
  }
});

test('a deletion is still seen after many extensions (our own writes do not untrack the keys)', async ({
  client,
}) => {
  const url = client.options?.url as string;
  const locker = await createLocker({ url, keyValidityMs: 30_000, extendIntervalMs: 20 });
  try {
    const name = fresh();
    const lock = await locker.withContext(name, bound());
    const before = await calls(client, 'evalsha');
    await until(async () => (await calls(client, 'evalsha')) >= before + 15); // fifteen extensions
    assert.not.ok(lock.signal.aborted);
    await client.del(keysOf(name));
    // Validity is 30 s: only an invalidation can abort it within the bound.
    assert.instance(await abortedWithin(lock.signal, 5000), LockLostError);
  } finally {
    await locker.close();
  }
});

test('keys whose expiry another client shortened are extended again, and the lock holds', async ({
  a,
  client,
}) => {
  const name = fresh();
  const lock = await a.withContext(name, bound());
  // Another program shortens two of the three keys' TTL: rueidislock re-extends them too.
  await client.sendCommand(['PEXPIRE', key(0, name), '100']);
  await client.sendCommand(['PEXPIRE', key(1, name), '100']);
  const extended = async (i: number) => (await client.pTTL(key(i, name))) > 1000;
  await until(async () => (await extended(0)) && (await extended(1)), AbortSignal.timeout(5000));
  await sleep(300); // a window: well past the shortened expiry, and the lock must hold
  assert.is(await client.get(key(0, name)), await client.get(key(2, name)));
  assert.not.ok(lock.signal.aborted, String(lock.signal.reason));
  assert.is(await lock.release(), true);
});

test('keys shortened again and again are each time extended before they expire', async ({
  a,
  client,
}) => {
  const name = fresh();
  // Not bound() as the lock's signal: that would also end the hold after 5 s, which this test's
  // windows pass on a loaded machine.
  const lock = await a.withContext(name, { waitTimeoutMs: 5000 });
  // Shortenings in a row, each extended early: however early extensions in a row are paced
  // (against an echo loop), each must still come before its key expires (a second here,
  // where a quarter interval is 3.75 s).
  for (let round = 0; round < 9; round++) {
    await client.sendCommand(['PEXPIRE', key(1, name), '1000']);
    await client.sendCommand(['PEXPIRE', key(2, name), '1000']);
    await sleep(400); // the pace of the shortenings: part of what is tested
  }
  const extended = async (i: number) => (await client.pTTL(key(i, name))) > 5000;
  await until(async () => (await extended(1)) && (await extended(2)), AbortSignal.timeout(5000));
  await sleep(1200); // a window: past the last shortened expiry, and the lock must hold
  assert.not.ok(lock.signal.aborted, String(lock.signal.reason));
  assert.is(await lock.release(), true);
});

test('a lost lock lets a waiter in another locker take it', async ({ a, b, client }) => {
  const name = fresh();
  const lock = await a.withContext(name, bound());
  const before = await calls(client, 'evalsha');
  const waiting = b.withContext(name, bound());
  await until(async () => (await calls(client, 'evalsha')) > before); // b found it taken
  await client.del(keysOf(name));
  const next = await waiting;
  // An outside DEL frees the keys for both at once: the old holder hears of it in about one
  // round trip, which may be after the waiter got in (this is a fault, not a handoff).
  assert.instance(await abortedWithin(lock.signal, 5000), LockLostError);
  assert.not.ok(next.signal.aborted);
  await next.release();
});

test.run();
