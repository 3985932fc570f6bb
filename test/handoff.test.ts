import { execFileSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, type Locker, type LockerOptions } from '../src/index.js';
import { exited, forkHelper, message } from './helpers/child.js';
import { checkMutex } from './helpers/mutex-check.js';
import { calls, connect, keysOf, queued } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { abortedWithin, bound, sleep, until, watched } from './helpers/wait.js';

// The queue (the default): a release gives the keys to the first queued waiter. Each test counts
// commands or kills processes, so each gets a server of its own.
const test = suite<{ server: RedisServer; lockers: Locker[] }>('handoff');

test.before.each(async (ctx) => {
  ctx.server = await startRedisServer();
  ctx.lockers = [];
});

test.after.each(async (ctx) => {
  await Promise.all(ctx.lockers.map((locker) => locker.close()));
  await ctx.server.stop();
});

async function lockers(
  ctx: { server: RedisServer; lockers: Locker[] },
  n: number,
  options: LockerOptions = {},
) {
  for (let i = 0; i < n; i++) {
    // A long validity: within the tests' bounds only a handoff or an invalidation can move the lock.
    ctx.lockers.push(
      await createLocker({
        url: ctx.server.url,
        keyValidityMs: 30_000,
        ...options,
      }),
    );
  }
  return ctx.lockers;
}

test('a release hands the lock to the waiting locker, which sends nothing to take it', async (ctx) => {
  const [a, b] = (await lockers(ctx, 2)) as [Locker, Locker];
  const client = await connect(ctx.server.url);
  try {
    const held = await a.withContext('direct', bound());
    const waiting = b.withContext('direct', bound());
    await until(async () => (await queued(client, 'direct')) === 1); // b's attempt failed and queued its ticket
    const before = await calls(client, 'evalsha');
    assert.is(await held.release(), true);
    const lock = await waiting;
    const after = await calls(client, 'evalsha');
    // Only a's release script ran: b took the lock without an acquire of its own.
    assert.is(after - before, 1);
    assert.not.ok(lock.signal.aborted);
    const keys = await client.mGet(keysOf('direct'));
    assert.ok(keys[0] && keys.every((v) => v === keys[0]), 'the keys hold the new holder value');
    const pttl = await client.pTTL('rueidislock:0:direct');
    assert.ok(pttl > 0 && pttl <= 30_000, `PTTL ${pttl}`);
    assert.is(await lock.release(), true);
    // No lock key, queue, ticket or handoff key is left behind; the fencing token's key
    // expires by itself.
    assert.equal(await client.keys('rueidislock:*'), ['rueidislock:f:direct']);
    assert.ok((await client.pTTL('rueidislock:f:direct')) > 0);
  } finally {
    await client.close();
  }
});

test('the holder that got the lock by handoff still detects its loss', async (ctx) => {
  const [a, b] = (await lockers(ctx, 2)) as [Locker, Locker];
  const client = await connect(ctx.server.url);
  try {
    const held = await a.withContext('tracked', bound());
    const waiting = b.withContext('tracked', bound());
    await until(async () => (await queued(client, 'tracked')) === 1);
    const reads = await calls(client, 'mget');
    await held.release();
    const lock = await waiting;
    // Its re-read of the keys (one MGET for them all) put them back in its tracking table.
    await until(async () => (await calls(client, 'mget')) >= reads + 1);
    await client.del(['rueidislock:0:tracked', 'rueidislock:1:tracked']);
    await abortedWithin(lock.signal, 5000).catch(() => {});
    assert.ok(lock.signal.aborted, 'the loss went unnoticed');
  } finally {
    await client.close();
  }
});

test('waiters in different lockers are served in the order they queued', async (ctx) => {
  const [a, ...others] = await lockers(ctx, 4);
  const client = await connect(ctx.server.url);
  try {
    const held = await (a as Locker).withContext('fifo', bound());
    const order: number[] = [];
    const waiters: Promise<void>[] = [];
    for (const [i, locker] of others.entries()) {
      waiters.push(
        locker.withContext('fifo', bound(10_000)).then(async (lock) => {
          order.push(i);
          await lock.release(); // hands it to the next in the queue
        }),
      );
      await until(async () => (await queued(client, 'fifo')) === i + 1); // one after another
    }
    await held.release();
    await Promise.all(waiters);
    assert.equal(order, [0, 1, 2]);
  } finally {
    await client.close();
  }
});

test('a waiter that gives up leaves the queue: the next one gets the lock at once', async (ctx) => {
  const [a, b, c] = (await lockers(ctx, 3)) as [Locker, Locker, Locker];
  const client = await connect(ctx.server.url);
  try {
    const held = await a.withContext('withdrawn', bound());
    const quitter = new AbortController();
    const gaveUp = b.withContext('withdrawn', { signal: quitter.signal }).catch((e: unknown) => e);
    await until(async () => (await queued(client, 'withdrawn')) === 1);
    const waiting = c.withContext('withdrawn', bound());
    await until(async () => (await queued(client, 'withdrawn')) === 2);
    quitter.abort(new Error('gave up'));
    assert.instance(await gaveUp, Error);
    // b's way out of the queue goes on after its call rejected.
    const ticketsAndHandoffs = () => client.keys('rueidislock:[th]:*');
    await until(async () => (await ticketsAndHandoffs()).length <= 1);
    // b left nothing behind: its ticket and handoff keys are gone (c's remain while it waits).
    const left = await ticketsAndHandoffs();
    assert.is(left.length, 1, String(left));
    await held.release();
    // Had b's ticket stayed, the lock would sit with a gone waiter for the 30 s validity.
    const lock = await waiting;
    assert.is(await lock.release(), true);
  } finally {
    await client.close();
  }
});

test('a waiter process killed while queued holds the lock up for at most its validity', async (ctx) => {
  const [a, c] = (await lockers(ctx, 2, { keyValidityMs: 1500 })) as [Locker, Locker];
  const held = await a.withContext('crash', bound());
  const child = forkHelper('./waiter.ts', [ctx.server.url, 'crash', '1500']);
  const client = await connect(ctx.server.url);
  try {
    await message(child, 'waiting');
    const queue = () => client.zRange('rueidislock:q:crash', 0, -1);
    await until(async () => (await queue()).length === 1);
    const [dead] = await queue();
    child.kill('SIGKILL');
    await exited(child);
    const waiting = c.withContext('crash', bound(10_000));
    // c is queued (the dead waiter's ticket may be gone by then, if this process stalled).
    await until(async () => (await queue()).some((ticket) => ticket !== dead));
    await held.release(); // may hand the keys to the dead waiter's ticket
    const lock = await waiting;
    assert.not.ok(lock.signal.aborted);
    await lock.release();
  } finally {
    child.kill('SIGKILL');
    await client.close();
  }
});

test('never two holders: three lockers, two waiters each, many handoffs', async (ctx) => {
  const all = await lockers(ctx, 3, { keyValidityMs: 2000 });
  const { acquisitions, overlaps } = await checkMutex(all, 'mutex', 25, 20_000);
  assert.is(acquisitions, 150);
  assert.is(overlaps, 0);
});

test('a holder that lost its lock to a force hands nothing on', async (ctx) => {
  const [a, w, c] = (await lockers(ctx, 3, { keyMajority: 1 })) as [Locker, Locker, Locker];
  const client = await connect(ctx.server.url);
  try {
    const held = await a.withContext('forced', bound());
    const waiting = watched(w.withContext('forced', bound(10_000)));
    await until(async () => (await queued(client, 'forced')) === 1); // w is queued
    const forced = await c.forceWithContext('forced');
    // a hears of the force and ends: its release must not give w keys it no longer has.
    await sleep(300); // a window: w must not get the lock in it
    assert.ok(held.signal.aborted);
    assert.not.ok(waiting.resolved(), 'the waiter got the lock while the forcing locker held it');
    await forced.release();
    const lock = await waiting.promise;
    assert.is(await lock.release(), true);
  } finally {
    await client.close();
  }
});

test('without NOLOOP a waiter does not mistake its own ticket renewal for a handoff', async (ctx) => {
  const [a, w] = (await lockers(ctx, 2, { noLoopTracking: false })) as [Locker, Locker];
  const held = await a.withContext('echo', bound());
  const waiting = watched(w.withContext('echo', bound(10_000)));
  await sleep(300); // a window: the waiter must not take the held lock in it
  assert.not.ok(waiting.resolved(), 'the waiter got a lock that is held');
  await held.release();
  const lock = await waiting.promise;
  assert.is(await lock.release(), true);
});

test('a waiter that refused a late handoff is not fooled when its handoff key expires', async (ctx) => {
  const [a] = (await lockers(ctx, 1, { keyValidityMs: 10_000 })) as [Locker];
  const [w] = (await lockers(ctx, 1, { keyValidityMs: 1000 })).slice(-1) as [Locker];
  const client = await connect(ctx.server.url);
  try {
    const held = await a.withContext('stale', bound());
    const waiting = watched(w.withContext('stale', bound(15_000)));
    await until(async () => (await queued(client, 'stale')) === 1);
    const [value] = await client.zRange('rueidislock:q:stale', 0, -1);
    assert.ok(value, 'the waiter is queued');
    // While this process is stalled, something writes the waiter's handoff key (as a release
    // would) with a short life: the waiter hears of it only after its registration's deadline.
    const stallUntil = Date.now() + 1100;
    while (Date.now() < stallUntil - 800) {} // a stalled event loop, on purpose
    const key = `rueidislock:h:${value}`;
    execFileSync('redis-cli', ['-p', String(ctx.server.port), 'SET', key, 'handed', 'PX', '1500']);
    while (Date.now() < stallUntil) {}
    // The waiter refused that handoff, attempted again (the lock is a's), and re-registered;
    // the key's expiry, about 1.8 s after the stall began, must not read as a handoff.
    await sleep(1500); // a window: the expiry must not read as a handoff in it
    assert.not.ok(waiting.resolved(), 'the waiter took a lock that a holds');
    await held.release();
    const lock = await waiting.promise;
    assert.is(await lock.release(), true);
  } finally {
    await client.close();
  }
});

test('a queue left by crashed waiters does not hold up a newcomer beyond their tickets', async (ctx) => {
  const [w] = (await lockers(ctx, 1, { keyValidityMs: 1000 })) as [Locker];
  const client = await connect(ctx.server.url);
  try {
    // Three waiters that crashed while queued: entries with no ticket, never promoted.
    const dead = ['dead-1', 'dead-2', 'dead-3'];
    await client.zAdd(
      'rueidislock:q:crashed',
      dead.map((value, i) => ({ score: Date.now() - 10_000 + i, value })),
    );
    // The dead get promoted, their tickets run out (one validity each round), and they are
    // dropped: a few validities, well within the bound; not the 60-validity backstop.
    const lock = await w.withContext('crashed', bound(15_000));
    assert.equal(await client.zRange('rueidislock:q:crashed', 0, -1), []);
    assert.is(await lock.release(), true);
  } finally {
    await client.close();
  }
});

test.run();
