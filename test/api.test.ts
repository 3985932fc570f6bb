import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  createLocker,
  type LockError,
  type Locker,
  LockerClosedError,
  LockLostError,
  LockReleasedError,
  NotLockedError,
} from '../src/index.js';
import {
  type Client,
  calls,
  connect,
  keysOf,
  provideRedis,
  type TestRedis,
} from './helpers/redis.js';
import { bound, sleep, until } from './helpers/wait.js';

const test = suite<{ redis: TestRedis; client: Client; a: Locker; b: Locker }>('api');
let n = 0;
const fresh = () => `api-${process.pid}-${++n}`;

test.before(async (ctx) => {
  ctx.redis = await provideRedis();
  ctx.client = await connect(ctx.redis.url);
  ctx.a = await createLocker({ url: ctx.redis.url, commandTimeoutMs: 5000 });
  ctx.b = await createLocker({ url: ctx.redis.url, commandTimeoutMs: 5000 });
});

test.after(async (ctx) => {
  await ctx.a.close();
  await ctx.b.close();
  await ctx.client.close();
  await ctx.redis.stop();
});

test('withContext resolves a [signal, release] tuple that also has named members', async ({
  a,
}) => {
  const name = fresh();
  const lock = await a.withContext(name, bound());
  const [signal, release] = lock;
  assert.instance(signal, AbortSignal);
  assert.is(lock.signal, signal);
  assert.is(lock.name, name);
  assert.is(typeof release, 'function');
  assert.is(typeof lock[Symbol.asyncDispose], 'function');
  assert.not.ok(signal.aborted);
  assert.is(await release(), true);
});

test('the keys follow rueidislock: rueidislock:i:name for i < 2M-1, one value on all', async ({
  a,
  client,
}) => {
  const name = fresh();
  const lock = await a.withContext(name, bound());
  const values = await client.mGet(keysOf(name));
  assert.ok(values[0]);
  assert.equal(values, [values[0], values[0], values[0]]);
  assert.is(await client.get(`rueidislock:3:${name}`), null);
  const pttl = await client.pTTL(`rueidislock:0:${name}`);
  assert.ok(pttl > 0 && pttl <= 5000, `PTTL ${pttl}`);
  await lock.release();
  assert.is(await client.exists(keysOf(name)), 0);
});

test('release aborts the signal with LockReleasedError, deletes the keys, and is idempotent', async ({
  a,
  client,
}) => {
  const lock = await a.withContext(fresh(), bound());
  const first = lock.release();
  assert.is(lock.release(), first);
  assert.is(await first, true);
  assert.ok(lock.signal.aborted);
  assert.instance(lock.signal.reason, LockReleasedError);
  assert.is((lock.signal.reason as LockError).code, 'ERR_LOCK_RELEASED');
  assert.is(await client.exists(`rueidislock:0:${lock.name}`), 0);
  assert.is(await lock.release(), true);
});

test('tryWithContext rejects NotLockedError while another locker holds the lock', async ({
  a,
  b,
}) => {
  const name = fresh();
  const held = await a.withContext(name, bound());
  const error = await b.tryWithContext(name).catch((e: unknown) => e);
  assert.instance(error, NotLockedError);
  assert.is((error as NotLockedError).code, 'ERR_NOT_LOCKED');
  await held.release();
  const mine = await b.tryWithContext(name);
  assert.is(await mine.release(), true);
});

test('tryWithContext leaves nothing in Redis when it fails', async ({ a, b, client }) => {
  const name = fresh();
  const held = await a.withContext(name, bound());
  const before = await client.mGet(keysOf(name));
  await b.tryWithContext(name).catch(() => {});
  const after = await client.mGet(keysOf(name));
  assert.equal(after, before);
  await held.release();
});

test('withLock passes the signal to fn, returns its result and releases', async ({ a, client }) => {
  const name = fresh();
  let seen: AbortSignal | undefined;
  const result = await a.withLock(
    name,
    async (signal) => {
      seen = signal;
      assert.is(await client.exists(`rueidislock:0:${name}`), 1);
      return 42;
    },
    bound(),
  );
  assert.is(result, 42);
  assert.ok(seen?.aborted);
  assert.is(await client.exists(`rueidislock:0:${name}`), 0);
});

test('withLock rethrows what fn throws and still releases', async ({ a, client }) => {
  const name = fresh();
  const boom = new Error('boom');
  const error = await a
    .withLock(name, () => {
      throw boom;
    })
    .catch((e: unknown) => e);
  assert.is(error, boom);
  assert.is(await client.exists(`rueidislock:0:${name}`), 0);
});

test('await using releases the lock at the end of the block', async ({ a, client }) => {
  const name = fresh();
  let signal: AbortSignal;
  {
    await using lock = await a.withContext(name, bound());
    signal = lock.signal;
    assert.is(await client.exists(`rueidislock:0:${name}`), 1);
  }
  assert.ok(signal.aborted);
  assert.is(await client.exists(`rueidislock:0:${name}`), 0);
});

test('a parent signal aborted while waiting rejects with its reason and leaves no key of the attempt', async ({
  a,
  b,
  client,
}) => {
  const name = fresh();
  const held = await a.withContext(name, bound());
  const holderValue = await client.get(`rueidislock:0:${name}`);
  const parent = new AbortController();
  const reason = new Error('gave up');
  const before = await calls(client, 'evalsha');
  const waiting = b.withContext(name, { signal: parent.signal });
  // Aborted while waiting: after its first attempt found the lock taken.
  await until(async () => (await calls(client, 'evalsha')) > before);
  parent.abort(reason);
  assert.is(await waiting.catch((e: unknown) => e), reason);
  await held.release();
  // Every key is either gone or still the holder's: the waiter wrote nothing that stayed.
  for (const [i, value] of (await client.mGet(keysOf(name))).entries()) {
    assert.ok(value === null || value === holderValue, `key ${i} = ${value}`);
  }
  assert.is(await client.exists(keysOf(name)), 0);
});

test('an already aborted parent signal rejects at once with its reason', async ({ a }) => {
  const reason = new Error('no');
  const error = await a
    .withContext(fresh(), { signal: AbortSignal.abort(reason) })
    .catch((e: unknown) => e);
  assert.is(error, reason);
});

test('a parent signal aborted while held aborts the lock with its reason and deletes the keys', async ({
  a,
  client,
}) => {
  const name = fresh();
  const parent = new AbortController();
  const lock = await a.withContext(name, { signal: parent.signal });
  const reason = new Error('shutdown');
  parent.abort(reason);
  assert.ok(lock.signal.aborted);
  assert.is(lock.signal.reason, reason);
  assert.is(await lock.release(), false);
  assert.is(await client.exists(keysOf(name)), 0);
});

test('waiters in one locker get the lock in arrival order', async ({ a, b }) => {
  const name = fresh();
  const held = await a.withContext(name, bound());
  const order: number[] = [];
  const waiters = [1, 2, 3].map((i) =>
    b.withContext(name, bound()).then(async (lock) => {
      order.push(i);
      await lock.release();
    }),
  );
  await held.release();
  await Promise.all(waiters);
  assert.equal(order, [1, 2, 3]);
});

test('many concurrent waiters on one locker cause no MaxListenersExceededWarning', async ({
  a,
  b,
}) => {
  const warnings: Error[] = [];
  const onWarning = (warning: Error) => warnings.push(warning);
  process.on('warning', onWarning);
  try {
    const name = fresh();
    const held = await a.withContext(name, bound());
    const waiters = Array.from({ length: 30 }, () =>
      b.withContext(name, bound()).then((lock) => lock.release()),
    );
    await held.release();
    await Promise.all(waiters);
    await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on next tick
  } finally {
    process.off('warning', onWarning);
  }
  assert.equal(
    warnings.map((w) => w.name),
    [],
  );
});

test('forceWithContext takes a held lock', async ({ a, b }) => {
  const name = fresh();
  const held = await a.withContext(name, bound());
  const forced = await b.forceWithContext(name);
  assert.not.ok(forced.signal.aborted);
  assert.is(await forced.release(), true);
  await held.release();
});

test('release resolves false when another locker forced the lock just before', async ({ a, b }) => {
  const name = fresh();
  const lock = await a.withContext(name, bound());
  const forced = await b.forceWithContext(name);
  // Whether or not a's invalidation has arrived yet, its deletions find the keys not its own.
  assert.is(await lock.release(), false);
  await forced.release();
});

test('withLock rejects with LockLostError when the lock was forced away while fn ignored its signal', async ({
  a,
  b,
}) => {
  const name = fresh();
  const error = await a
    .withLock(name, async () => {
      const forced = await b.forceWithContext(name);
      await forced.release();
      return 'done anyway';
    })
    .catch((e: unknown) => e);
  assert.instance(error, LockLostError);
});

test('withLock rejects with LockerClosedError when the locker closed while fn ran', async ({
  redis,
}) => {
  const locker = await createLocker({ url: redis.url });
  const error = await locker
    .withLock(fresh(), async () => {
      await locker.close();
      return 'done anyway';
    })
    .catch((e: unknown) => e);
  assert.instance(error, LockerClosedError);
});

test('waitTimeoutMs gives up waiting with NotLockedError', async ({ a, b }) => {
  const name = fresh();
  const held = await a.withContext(name, bound());
  const error = await b.withContext(name, { waitTimeoutMs: 50 }).catch((e: unknown) => e);
  assert.instance(error, NotLockedError);
  assert.match((error as Error).message, /waitTimeoutMs \(50 ms\)/);
  await held.release();
});

test('waitTimeoutMs 0 tries once: a free lock is always taken', async ({ a }) => {
  for (let i = 0; i < 20; i++) {
    const lock = await a.withContext(fresh(), { waitTimeoutMs: 0 });
    assert.is(await lock.release(), true);
  }
});

test('waitTimeoutMs does not limit how long the lock is held', async ({ a }) => {
  const lock = await a.withContext(fresh(), { waitTimeoutMs: 20 });
  await sleep(100); // a window, not a wait: the lock must outlive waitTimeoutMs
  assert.not.ok(lock.signal.aborted, String(lock.signal.reason));
  assert.is(await lock.release(), true);
});

test('many calls that share one signal, waiting or holding, print no listener-leak warning', async ({
  a,
  b,
}) => {
  const warnings: Error[] = [];
  const onWarning = (warning: Error) => warnings.push(warning);
  process.on('warning', onWarning);
  const shutdown = new AbortController();
  try {
    const name = fresh();
    const held = await a.withContext(name, bound());
    // The README's shutdown pattern: one signal for every call.
    const waiting = Array.from({ length: 15 }, () =>
      b.withContext(name, { signal: shutdown.signal }).catch((e: unknown) => e),
    );
    const holding = await Promise.all(
      Array.from({ length: 15 }, () => a.withContext(fresh(), { signal: shutdown.signal })),
    );
    await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on a tick
    shutdown.abort(new Error('shutting down'));
    for (const error of await Promise.all(waiting)) assert.is(error, shutdown.signal.reason);
    for (const lock of holding) assert.is(lock.signal.reason, shutdown.signal.reason);
    await held.release();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(
      warnings.map((warning) => warning.name),
      [],
      warnings.map((warning) => warning.message).join('; '),
    );
  } finally {
    process.off('warning', onWarning);
  }
});

test.run();
